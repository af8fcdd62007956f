"""Publishing accepted events to Apache Kafka (see ``gateway.publish`` for the record shape).

    from gateway.publish_kafka import KafkaPublisher, parse_kafka_uri
    publisher = KafkaPublisher(parse_kafka_uri("kafka://broker-1:9092,broker-2:9092/events?timeout=10"))
    publisher.check()                 # a broker answers with the topic's metadata, else PublishError
    await publisher.publish("demo", data, "handle/name/1.0.0", 1710028630000)   # after delivery
    publisher.close()                 # flushes

URIs: ``kafka://HOST:PORT[,HOST:PORT...]/TOPIC`` (the topic may hold ``{pipeline}``) with
parameters:

- ``timeout``: seconds, default 10: the delivery timeout, retries included (reported up to a
  second later: librdkafka scans for timeouts once a second), and the start-up check's bound;
- ``check=false``: skip the start-up check;
- ``config_file``: a file of ``key=value`` librdkafka settings (TLS, SASL), so secrets stay out
  of the command line; librdkafka settings may also be given directly
  (``?security.protocol=SSL&ssl.ca.location=/etc/ca.pem``); ``acks`` can only be ``all``.

Uses confluent-kafka (librdkafka; ``pip install 'beam-privacy-streams[kafka]'``) with
``acks=all`` and idempotence, so a delivered record is on every in-sync replica and internal
retries add no duplicates. ``publish`` waits for the record's delivery report; a background
thread serves the producer's callbacks. Records: value the event's JSON, headers as
``gateway.publish.message_attributes``, create time strmMeta.timestamp, no key.
"""
from __future__ import annotations

import asyncio
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from gateway.publish import (PIPELINE_PLACEHOLDER, PublishError, check_from, message_attributes, split_query,
                             timeout_from)

log = logging.getLogger(__name__)
librdkafka_log = logging.getLogger(__name__ + ".librdkafka")


class _OncePer(logging.Filter):
    """Lets a given message through once per ``seconds`` (librdkafka repeats a dead broker's error)."""

    def __init__(self, seconds: float = 30.0):
        super().__init__()
        self.seconds = seconds
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = record.created
        key = record.getMessage()
        if now - self._last.get(key, float("-inf")) < self.seconds:
            return False
        if len(self._last) > 1000:
            self._last.clear()
        self._last[key] = now
        return True


librdkafka_log.addFilter(_OncePer())

_URI = re.compile(r"^kafka://(?P<servers>[^/?#]+)/(?P<topic>[^/?#]+)$")
_SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$")
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_FIXED = {"bootstrap.servers", "message.timeout.ms", "delivery.timeout.ms"}  # from the URI and timeout
_ALL_ACKS = {"all", "-1"}


@dataclass(frozen=True)
class KafkaTarget:
    uri: str
    bootstrap_servers: str
    topic_template: str
    timeout: float
    settings: dict = field(default_factory=dict)  # extra librdkafka settings
    check_at_start: bool = True

    def topic(self, pipeline: str) -> str:
        return self.topic_template.replace(PIPELINE_PLACEHOLDER, pipeline)

    @property
    def per_pipeline(self) -> bool:
        return PIPELINE_PLACEHOLDER in self.topic_template

    def producer_config(self) -> dict:
        config = {
            "client.id": "pstream-gateway",
            "enable.idempotence": True,
            "linger.ms": 2,
            **self.settings,
            "bootstrap.servers": self.bootstrap_servers,
            "acks": "all",
            "message.timeout.ms": int(self.timeout * 1000),
        }
        config["request.timeout.ms"] = min(int(config.get("request.timeout.ms", 30000)), config["message.timeout.ms"])
        return config


def read_config_file(path: str, uri: str) -> dict[str, str]:
    """``key=value`` lines; blank lines and lines starting with # or ! are skipped."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ValueError(f"publish target '{uri}': cannot read config_file {path}: {exc.strerror}") from None
    settings = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"publish target '{uri}': {path} line {number} is not key=value")
        settings[key.strip()] = value.strip()
    return settings


def parse_kafka_uri(uri: str) -> KafkaTarget:
    base, params = split_query(uri)
    match = _URI.match(base)
    if match is None:
        raise ValueError(f"publish target '{uri}': use kafka://HOST:PORT[,HOST:PORT...]/TOPIC")
    servers = match["servers"].split(",")
    if not all(_SERVER.match(server) for server in servers):
        raise ValueError(f"publish target '{uri}': brokers must be HOST:PORT, comma-separated")
    topic = match["topic"]
    if not _TOPIC.match(topic.replace(PIPELINE_PLACEHOLDER, "pipeline")) or topic in (".", ".."):
        raise ValueError(f"publish target '{uri}': '{topic}' is not a valid Kafka topic name")
    timeout = timeout_from(params, uri)
    check = check_from(params, uri)
    settings = {}
    config_file = params.pop("config_file", None)
    if config_file:
        settings.update(read_config_file(config_file, uri))
    settings.update(params)
    bad = sorted(key for key in settings if "." not in key and key != "acks")
    if bad:
        raise ValueError(f"publish target '{uri}': unknown parameter(s) {', '.join(bad)} "
                         "(known: timeout, check, config_file, and librdkafka settings such as security.protocol)")
    fixed = sorted(key for key in settings if key in _FIXED)
    if fixed:
        raise ValueError(f"publish target '{uri}': {', '.join(fixed)} come(s) from the URI and its timeout")
    if str(settings.get("acks", "all")) not in _ALL_ACKS:
        raise ValueError(f"publish target '{uri}': acks must be all (the gateway answers 204 only for a record "
                         "on every in-sync replica)")
    return KafkaTarget(uri, ",".join(servers), topic, timeout, settings, check)


def _settle(future: asyncio.Future, error) -> None:
    if not future.done():  # a request cancelled meanwhile (client gone) needs no answer
        future.set_result(error)


def _report_to(loop: asyncio.AbstractEventLoop, future: asyncio.Future):
    """A delivery callback (run on the producer's thread) that resolves ``future`` on its loop."""
    def delivered(error, _record) -> None:
        try:
            loop.call_soon_threadsafe(_settle, future, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass
    return delivered


class KafkaPublisher:
    """One confluent-kafka Producer for all pipelines; ``publish`` awaits the delivery report."""

    def __init__(self, target: KafkaTarget):
        try:
            import confluent_kafka
        except ImportError:
            raise PublishError(f"publish target '{target.uri}' needs confluent-kafka: "
                               "pip install 'beam-privacy-streams[kafka]'") from None
        self._kafka = confluent_kafka
        self.target = target
        self.uri = target.uri
        self._closed = threading.Event()
        self.producer = None
        try:
            self.producer = confluent_kafka.Producer(target.producer_config(), logger=librdkafka_log)
        except (confluent_kafka.KafkaException, ValueError, TypeError) as exc:
            raise PublishError(f"cannot configure a Kafka producer for '{target.uri}': {exc}") from None
        self._poller = threading.Thread(target=self._serve_callbacks, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _serve_callbacks(self) -> None:
        while not self._closed.is_set():
            self.producer.poll(0.05)

    def check(self) -> None:
        """Broker metadata within the timeout (for the topic, unless it has {pipeline}); else PublishError."""
        topic = None if self.target.per_pipeline else self.target.topic_template
        where = f"Kafka brokers {self.target.bootstrap_servers}"
        try:
            metadata = self.producer.list_topics(topic, timeout=self.target.timeout)
        except self._kafka.KafkaException as exc:
            raise PublishError(f"cannot reach {where} within {self.target.timeout:g} s "
                               f"(publish target '{self.uri}'): {_reason(exc)}") from None
        if topic is not None:
            error = metadata.topics[topic].error if topic in metadata.topics else None
            if topic not in metadata.topics or error is not None:
                raise PublishError(f"Kafka topic {topic} is not available on {where} "
                                   f"(publish target '{self.uri}'): {error.str() if error else 'not listed'}")

    async def publish(self, pipeline: str, data: bytes, schema_ref: str, timestamp_ms: int) -> None:
        topic = self.target.topic(pipeline)
        loop = asyncio.get_running_loop()
        delivered = loop.create_future()
        headers = [(key, value.encode()) for key, value in message_attributes(pipeline, schema_ref).items()]
        try:
            self.producer.produce(topic, value=data, headers=headers, timestamp=timestamp_ms,
                                  on_delivery=_report_to(loop, delivered))
        except BufferError:
            raise PublishError(f"Kafka producer queue for {topic} is full") from None
        except self._kafka.KafkaException as exc:
            raise PublishError(f"publishing to Kafka topic {topic} failed: {_reason(exc)}") from None
        error = await delivered
        if error is not None:
            raise PublishError(f"publishing to Kafka topic {topic} at {self.target.bootstrap_servers} failed: "
                               f"{error.name()}: {error.str()}")

    def close(self) -> None:
        if self.producer is None:
            return
        self._closed.set()
        self._poller.join(5)
        remaining = self.producer.flush(self.target.timeout)
        if remaining:
            log.warning("%d Kafka record(s) for '%s' were not delivered at shutdown", remaining, self.uri)
        self.producer = None


def _reason(exc: BaseException) -> str:
    error = exc.args[0] if exc.args else None
    if hasattr(error, "name") and hasattr(error, "str"):
        return f"{error.name()}: {error.str()}"
    return str(exc) or type(exc).__name__
