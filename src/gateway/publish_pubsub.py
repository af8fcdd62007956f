"""Publishing accepted events to Google Cloud Pub/Sub (see ``gateway.publish`` for the message shape).

    from gateway.publish_pubsub import PubSubPublisher, parse_pubsub_uri
    publisher = PubSubPublisher(parse_pubsub_uri("pubsub://projects/my-project/topics/events?timeout=5"))
    publisher.check()                  # the topic exists and answers, else PublishError
    await publisher.publish("demo", data, "handle/name/1.0.0", 1710028630000)   # after the ack
    publisher.close()

URIs: ``pubsub://projects/PROJECT/topics/TOPIC`` or ``pubsub://PROJECT/TOPIC``, the topic may
hold ``{pipeline}``; parameter ``timeout`` (seconds, default 10) bounds each publish, retries of
transient errors (UNAVAILABLE, DEADLINE_EXCEEDED, ...) included, and the start-up check;
``check=false`` skips the start-up check.

Uses google-cloud-pubsub's ``PublisherClient`` (its batching: many concurrent requests share one
Publish call). Credentials are Google's application default; with ``PUBSUB_EMULATOR_HOST=host:port``
the client talks plaintext gRPC to that emulator without credentials.

The start-up check is a GetTopic: NOT_FOUND stops the start; PERMISSION_DENIED does not (an
account with only roles/pubsub.publisher may publish without being allowed to read the topic).
A topic not checked at start (``{pipeline}``, ``check=false``) is checked the first time it is
published to, until that succeeds (503s meanwhile).
"""
from __future__ import annotations

import asyncio
import logging
import os
import re
from dataclasses import dataclass

from gateway.publish import (PIPELINE_PLACEHOLDER, TIMESTAMP_ATTRIBUTE, PublishError, check_from,
                             message_attributes, split_query, timeout_from)

log = logging.getLogger(__name__)

_LONG = re.compile(r"^pubsub://projects/(?P<project>[^/?#]+)/topics/(?P<topic>[^/?#]+)$")
_SHORT = re.compile(r"^pubsub://(?P<project>[^/?#]+)/(?P<topic>[^/?#]+)$")
_TOPIC_ID = re.compile(r"^[A-Za-z][-A-Za-z0-9_.~+%]{2,254}$")


@dataclass(frozen=True)
class PubSubTarget:
    uri: str
    project: str
    topic_template: str  # the topic id, possibly with {pipeline}
    timeout: float
    check_at_start: bool = True

    def topic_path(self, pipeline: str) -> str:
        return f"projects/{self.project}/topics/{self.topic_template.replace(PIPELINE_PLACEHOLDER, pipeline)}"

    @property
    def per_pipeline(self) -> bool:
        return PIPELINE_PLACEHOLDER in self.topic_template


def parse_pubsub_uri(uri: str) -> PubSubTarget:
    base, params = split_query(uri)
    match = _LONG.match(base) or _SHORT.match(base)
    if match is None:
        raise ValueError(f"publish target '{uri}': use pubsub://projects/PROJECT/topics/TOPIC "
                         "or pubsub://PROJECT/TOPIC")
    topic = match["topic"]
    if not _TOPIC_ID.match(topic.replace(PIPELINE_PLACEHOLDER, "pipeline")) or "goog" == topic[:4].lower():
        raise ValueError(f"publish target '{uri}': '{topic}' is not a valid Pub/Sub topic id")
    timeout = timeout_from(params, uri)
    check = check_from(params, uri)
    if params:
        raise ValueError(f"publish target '{uri}': unknown parameter(s) {', '.join(sorted(params))} "
                         "(known: timeout, check)")
    return PubSubTarget(uri, match["project"], topic, timeout, check)


class PubSubPublisher:
    """One PublisherClient for all pipelines; ``publish`` awaits the message's publish future."""

    def __init__(self, target: PubSubTarget):
        from google.api_core import exceptions, retry
        from google.cloud import pubsub_v1

        self.target = target
        self.uri = target.uri
        transient = retry.if_exception_type(
            exceptions.Aborted, exceptions.Cancelled, exceptions.DeadlineExceeded, exceptions.InternalServerError,
            exceptions.ResourceExhausted, exceptions.ServiceUnavailable, exceptions.Unknown)
        self._retry = retry.Retry(predicate=transient, initial=0.05, maximum=1.0, multiplier=2.0,
                                  timeout=target.timeout)
        self._checked: set[str] = set()
        self.client = None
        try:
            self.client = pubsub_v1.PublisherClient(
                publisher_options=pubsub_v1.types.PublisherOptions(retry=self._retry, timeout=target.timeout))
        except Exception as exc:  # google.auth's DefaultCredentialsError, bad endpoint, ...
            raise PublishError(f"cannot open a Pub/Sub client for '{target.uri}': {_reason(exc)}") from None

    @property
    def endpoint(self) -> str:
        return os.environ.get("PUBSUB_EMULATOR_HOST") or "pubsub.googleapis.com"

    def check(self, pipeline: str | None = None) -> None:
        """GetTopic, bounded by the timeout; PublishError if the topic is missing or nobody answers."""
        if pipeline is None and self.target.per_pipeline:
            return  # checked per pipeline, on first use
        topic = self.target.topic_path(pipeline or "")
        from google.api_core import exceptions

        try:
            self.client.get_topic(topic=topic, retry=self._retry, timeout=self.target.timeout)
        except exceptions.NotFound:
            raise PublishError(f"Pub/Sub topic {topic} does not exist (publish target '{self.uri}', "
                               f"endpoint {self.endpoint})") from None
        except exceptions.PermissionDenied:
            log.info("not allowed to read Pub/Sub topic %s; assuming it exists", topic)
        except Exception as exc:  # RetryError after UNAVAILABLE / DEADLINE_EXCEEDED, auth failures
            raise PublishError(f"cannot reach Pub/Sub topic {topic} at {self.endpoint} within "
                               f"{self.target.timeout:g} s: {_reason(exc)}") from None
        self._checked.add(topic)

    async def publish(self, pipeline: str, data: bytes, schema_ref: str, timestamp_ms: int) -> None:
        topic = self.target.topic_path(pipeline)
        if topic not in self._checked:
            await asyncio.get_running_loop().run_in_executor(None, self.check, pipeline)
        attributes = message_attributes(pipeline, schema_ref)
        attributes[TIMESTAMP_ATTRIBUTE] = str(timestamp_ms)
        try:
            await asyncio.wrap_future(self.client.publish(topic, data, **attributes))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise PublishError(f"publishing to Pub/Sub topic {topic} failed: {_reason(exc)}") from None

    def close(self) -> None:
        if self.client is not None:
            try:
                self.client.stop()  # sends what is batched
            except Exception:  # already stopped, or the channel is gone
                log.debug("stopping the Pub/Sub client failed", exc_info=True)
            self.client = None


def _reason(exc: BaseException) -> str:
    """A short reason: the gRPC status and server message, or the exception's text (no event data)."""
    cause = getattr(exc, "cause", None) or exc  # RetryError wraps the last error
    text = str(getattr(cause, "message", "") or cause).splitlines()[0] if str(cause) else ""
    return f"{type(cause).__name__}: {text[:300]}" if text else type(cause).__name__
