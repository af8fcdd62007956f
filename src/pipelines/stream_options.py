"""Options of streaming runs (``--streaming``): the source and the export windows.

    from apache_beam.options.pipeline_options import PipelineOptions
    from pipelines.stream_options import StreamingSourceOptions
    options = PipelineOptions(["--streaming", "--pubsub_subscription=projects/p/subscriptions/events"])
    options.view_as(StreamingSourceOptions).pubsub_subscription

Exactly one source: a Pub/Sub subscription or topic (Dataflow), or Kafka bootstrap servers with
topics (Flink). ``--allowed_lateness`` and ``--export_shards`` shape the one late-data decision
(``transforms.lateness``) and the writers (``transforms.windowed_export``). Every option defaults to None (meaning: the documented default), as in
``pipelines.options``; ``templates/metadata.json`` lists these parameters too (a test keeps them
in step).
"""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from transforms.stream_sources import FORMATS
from transforms.windowed_export import DEFAULT_ALLOWED_LATENESS

DEFAULT_EXPORT_SHARDS = 1


class StreamingSourceOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser):
        group = parser.add_argument_group("streaming source and export windows (with --streaming)")
        group.add_argument("--pubsub_subscription", default=None,
                           help="Pub/Sub subscription of gateway events: projects/<project>/subscriptions/<name>.")
        group.add_argument("--pubsub_topic", default=None,
                           help="Pub/Sub topic of gateway events, read through a new subscription (only events "
                                "published after the start): projects/<project>/topics/<name>.")
        group.add_argument("--pubsub_timestamp_attribute", default=None,
                           help="Pub/Sub attribute holding each event's strmMeta.timestamp (epoch ms), so the "
                                "watermark follows event time; default: publish time.")
        group.add_argument("--payload_format", default=None, choices=list(FORMATS),
                           help="Message payload: json or avro (binary, the contract's schema); default json. "
                                "A Strm-Serialization-Type attribute or header overrides it per message.")
        group.add_argument("--kafka_bootstrap_servers", default=None,
                           help="Kafka bootstrap servers, host:port[,host:port] (Flink runs).")
        group.add_argument("--kafka_topics", default=None,
                           help="Kafka topics of gateway events, comma-separated.")
        group.add_argument("--kafka_consumer_config", default=None,
                           help="Extra Kafka consumer properties as a JSON object, e.g. "
                                "'{\"security.protocol\": \"SSL\"}'.")
        group.add_argument("--kafka_expansion_service", default=None,
                           help="Address (host:port) of a running Beam expansion service for ReadFromKafka; "
                                "default: Beam starts its own (needs Java).")
        group.add_argument("--allowed_lateness", default=None, type=int,
                           help="Seconds an event may arrive after its export window ended (the watermark passed "
                                "the window's end) and still be exported with it; from window end + this many "
                                "seconds on it is too late for every output and one dead letter. "
                                f"Default {DEFAULT_ALLOWED_LATENESS}.")
        group.add_argument("--export_shards", default=None, type=int,
                           help="Lateness-decision shards, and writers (and files) per export window and "
                                f"output; default {DEFAULT_EXPORT_SHARDS}. Raise it for high event rates.")
