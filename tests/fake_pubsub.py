"""A local Pub/Sub publisher service over real gRPC, for tests.

    with FakePubSub(topics=["projects/demo/topics/events"]) as pubsub:   # a gRPC server on a free port
        env = {"PUBSUB_EMULATOR_HOST": pubsub.host}                       # 127.0.0.1:PORT
        ...
        pubsub.messages["projects/demo/topics/events"]   # [PubsubMessage, ...] as published
        pubsub.fail_with = grpc.StatusCode.UNAVAILABLE    # every Publish answers this until None

It serves google.pubsub.v1.Publisher's Publish, GetTopic and CreateTopic with grpc's generic
handlers and google.pubsub_v1's own message classes, so requests are (de)serialized exactly as
the real service does; Publish to an unknown topic is NOT_FOUND, as on Pub/Sub. Message ids are
assigned in order ("1", "2", ...); ``calls`` lists (method, topic) of every call received.
"""
from __future__ import annotations

import threading
from collections import defaultdict
from concurrent import futures

import grpc
from google.pubsub_v1 import types

SERVICE = "google.pubsub.v1.Publisher"


class FakePubSub:
    def __init__(self, topics=()):
        self.topics: set[str] = set(topics)
        self.messages: dict[str, list] = defaultdict(list)
        self.calls: list[tuple[str, str]] = []
        self.fail_with: grpc.StatusCode | None = None
        self._lock = threading.Lock()
        self._next_id = 1
        handlers = {
            "Publish": self._unary(self._publish, types.PublishRequest, types.PublishResponse),
            "GetTopic": self._unary(self._get_topic, types.GetTopicRequest, types.Topic),
            "CreateTopic": self._unary(self._create_topic, types.Topic, types.Topic),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.host = f"127.0.0.1:{self.port}"

    @staticmethod
    def _unary(method, request_type, response_type):
        return grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=request_type.deserialize, response_serializer=response_type.serialize)

    def start(self) -> "FakePubSub":
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)

    def __enter__(self) -> "FakePubSub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def published(self, topic: str) -> list:
        with self._lock:
            return list(self.messages.get(topic, ()))

    # ------------------------------------------------------------------ RPCs
    def _publish(self, request: types.PublishRequest, context):
        with self._lock:
            self.calls.append(("Publish", request.topic))
            if self.fail_with is not None:
                context.abort(self.fail_with, "the fake answers an error, as told")
            if request.topic not in self.topics:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Resource not found (resource={request.topic}).")
            ids = []
            for message in request.messages:
                stored = types.PubsubMessage(data=message.data, attributes=dict(message.attributes),
                                             message_id=str(self._next_id))
                self._next_id += 1
                self.messages[request.topic].append(stored)
                ids.append(stored.message_id)
        return types.PublishResponse(message_ids=ids)

    def _get_topic(self, request: types.GetTopicRequest, context):
        with self._lock:
            self.calls.append(("GetTopic", request.topic))
            if self.fail_with is not None:
                context.abort(self.fail_with, "the fake answers an error, as told")
            if request.topic not in self.topics:
                context.abort(grpc.StatusCode.NOT_FOUND, f"Resource not found (resource={request.topic}).")
        return types.Topic(name=request.topic)

    def _create_topic(self, request: types.Topic, context):
        with self._lock:
            self.calls.append(("CreateTopic", request.name))
            if request.name in self.topics:
                context.abort(grpc.StatusCode.ALREADY_EXISTS, "Resource already exists in the project")
            self.topics.add(request.name)
        return types.Topic(name=request.name)
