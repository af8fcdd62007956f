"""Where accepted events go: the local spool (implemented), or a message broker (interface only).

    from gateway.publish import publisher_for
    publisher_for(None)                        # None: the spool, the default and only working choice
    publisher_for("pubsub://project/topic")    # raises NotImplementedError (see below)

An ``EventPublisher`` makes one JSON line durable and returns; the gateway answers 204 only
after ``publish`` returned, so a publisher must return only once the broker acknowledged the
message (Pub/Sub: the publish future resolved; Kafka: acks=all delivered)::

    class EventPublisher(Protocol):
        async def publish(self, pipeline: str, line: bytes) -> None: ...
        def close(self) -> None: ...

NOT IMPLEMENTED: Pub/Sub and Kafka publishers. ``pubsub://`` and ``kafka://`` URIs are
recognised and refused at start with this message, so a configuration never silently falls back
to the spool. Dataflow and Flink runs read files today (the spool's segments, copied or mounted).
"""
from __future__ import annotations

from typing import Protocol


class EventPublisher(Protocol):
    async def publish(self, pipeline: str, line: bytes) -> None: ...

    def close(self) -> None: ...


BROKER_SCHEMES = {"pubsub": "Google Cloud Pub/Sub", "kafka": "Apache Kafka"}


def publisher_for(uri: str | None):
    """None for the spool; NotImplementedError for broker URIs; ValueError for anything else."""
    if not uri:
        return None
    scheme = uri.split("://", 1)[0]
    if scheme in BROKER_SCHEMES:
        raise NotImplementedError(f"publishing to {BROKER_SCHEMES[scheme]} ({uri}) is not implemented yet: "
                                  "the gateway writes accepted events to its local spool only")
    raise ValueError(f"unknown publish target '{uri}': use pubsub://project/topic or kafka://host:port/topic")
