"""The streaming job: the batch job's privacy graph, fed by Pub/Sub or Kafka, written per export window.

    python -m pipelines.run --streaming --runner=DataflowRunner --project=my-project --region=europe-west1 \\
        --pubsub_subscription=projects/my-project/subscriptions/events --output=gs://my-bucket/shop \\
        --key_store=postgresql://... --kek=gcp-kms://... --temp_location=gs://my-bucket/tmp

    from pipelines.streaming import build_streaming_graph
    build_streaming_graph(pipeline, config, source_options, exporters)            # Pub/Sub or Kafka
    build_streaming_graph(pipeline, config, source_options, exporters, source=s)  # any (position, event) source

Every output (encrypted/, streams/<name>/, keys/ under the output root, and each exporter) is
written by ``WriteWindowedJsonl``: fixed windows of event time (``strmMeta.timestamp``), the
output root's of ``export_interval`` seconds and each exporter's of its own ``interval``; a
window's files are written once, when the watermark passes its end plus ``--allowed_lateness``
(default 60 s). Events that come later are counted (``export/too_late_<output>``) and become
dead letters, written with the others under dead_letter/. Keys do not follow export windows:
a key belongs to (key-field value, UTC day of the event), in streaming as in batch.

``include_existing_events``: a Kafka consumer group without committed offsets starts at the
topic's end, or at its beginning when any exporter sets include_existing_events. A Pub/Sub
subscription delivers what it retains; reading ``--pubsub_topic`` makes a new subscription and
sees only new events. A batch run exports every event of its input.
"""
from __future__ import annotations

import json
import uuid

import apache_beam as beam

from pipelines.config import ConfigError, PipelineConfig
from pipelines.connectors import Exporter
from pipelines.exporting import output_key
from pipelines.graph import DEAD_LETTERS, privacy_graph
from pipelines.stream_options import DEFAULT_EXPORT_SHARDS, StreamingSourceOptions
from transforms.stream_sources import JSON, ReadKafkaEvents, ReadPubSubEvents
from transforms.windowed_export import DEFAULT_ALLOWED_LATENESS, WriteWindowedJsonl


def stream_source(config: PipelineConfig, options: StreamingSourceOptions, exporters=()) -> beam.PTransform:
    """The source chosen by the options: Pub/Sub (subscription or topic) or Kafka."""
    contracts = {config.contract.ref: config.contract}
    payload_format = options.payload_format or JSON
    pubsub = [name for name in ("pubsub_subscription", "pubsub_topic") if getattr(options, name)]
    kafka = bool(options.kafka_bootstrap_servers or options.kafka_topics)
    if len(pubsub) + kafka != 1:
        raise ConfigError("a streaming run reads exactly one source: --pubsub_subscription, --pubsub_topic, "
                          "or --kafka_bootstrap_servers with --kafka_topics")
    if pubsub:
        return ReadPubSubEvents(contracts, options.pubsub_subscription, options.pubsub_topic, payload_format,
                                options.pubsub_timestamp_attribute)
    topics = [t.strip() for t in (options.kafka_topics or "").split(",") if t.strip()]
    if not options.kafka_bootstrap_servers or not topics:
        raise ConfigError("Kafka needs both --kafka_bootstrap_servers and --kafka_topics")
    try:
        extra = json.loads(options.kafka_consumer_config) if options.kafka_consumer_config else {}
    except ValueError:
        raise ConfigError("--kafka_consumer_config must be a JSON object") from None
    if not isinstance(extra, dict):
        raise ConfigError("--kafka_consumer_config must be a JSON object")
    return ReadKafkaEvents(contracts, options.kafka_bootstrap_servers, topics, payload_format,
                           {str(k): str(v) for k, v in extra.items()}, options.kafka_expansion_service,
                           from_earliest=any(e.include_existing_events for e in exporters))


def _lateness_and_shards(options: StreamingSourceOptions) -> tuple[int, int]:
    lateness = DEFAULT_ALLOWED_LATENESS if options.allowed_lateness is None else options.allowed_lateness
    shards = options.export_shards or DEFAULT_EXPORT_SHARDS
    if lateness < 0 or shards < 1:
        raise ConfigError("--allowed_lateness must be >= 0 seconds and --export_shards >= 1")
    return lateness, shards


def write_streaming_outputs(outputs: dict, config: PipelineConfig, exporters: list[Exporter],
                            allowed_lateness: int, shards: int, run_id: str) -> dict:
    """Write every output per export window; returns the file-path PCollections by writer label."""
    sinks: dict[str, list[tuple[int, str, str]]] = {}   # output key -> (interval, directory, counter)
    for name in outputs:
        if name != DEAD_LETTERS:
            sinks[name] = [(config.export_interval, config.output_dir(name), name)]
    for exporter in exporters:
        sinks[output_key(exporter)].append((exporter.interval, exporter.directory, f"exporter_{exporter.name}"))
    written, too_late = {}, []
    for name, targets in sinks.items():
        for interval in sorted({interval for interval, _, _ in targets}):
            group = [(directory, counter) for i, directory, counter in targets if i == interval]
            label = f"Write {name} every {interval}s"
            result = outputs[name] | label >> WriteWindowedJsonl(
                [d for d, _ in group], interval, allowed_lateness, kind="keys" if name == "keys" else "stream",
                run_id=run_id, shards=shards, max_bytes=config.max_file_bytes, counter=name,
                counters=[c for _, c in group])
            written[label] = result[WriteWindowedJsonl.FILES]
            too_late.append(result[WriteWindowedJsonl.TOO_LATE])
    dead = outputs[DEAD_LETTERS]
    dead = (list(dead) if isinstance(dead, list) else [dead]) + too_late
    label = f"Write {DEAD_LETTERS}"
    written[label] = (dead | "Flatten dead letters" >> beam.Flatten()
                      | label >> WriteWindowedJsonl(config.output_dir(DEAD_LETTERS), config.export_interval,
                                                    allowed_lateness, kind="dead-letter", run_id=run_id,
                                                    shards=shards, counter=DEAD_LETTERS, report_too_late=False)
                      )[WriteWindowedJsonl.FILES]
    return written


def build_streaming_graph(pipeline, config: PipelineConfig, options: StreamingSourceOptions,
                          exporters: list[Exporter] = (), source: beam.PTransform | None = None,
                          run_id: str | None = None) -> dict:
    """The streaming job: read, run the privacy graph, write every output per export window."""
    lateness, shards = _lateness_and_shards(options)
    source = source if source is not None else stream_source(config, options, exporters)
    read = pipeline | "ReadStream" >> source
    outputs = privacy_graph(read[ReadPubSubEvents.EVENTS], config)
    outputs[DEAD_LETTERS] = [read[ReadPubSubEvents.DEAD_LETTER], *outputs[DEAD_LETTERS]]
    return write_streaming_outputs(outputs, config, list(exporters), lateness, shards,
                                   run_id or str(uuid.uuid4()))


def reads_a_stream(pipeline_options) -> bool:
    """True when a streaming source is given: the job is then a streaming job, --streaming or not
    (a flex template's parameters cannot carry Beam's bare --streaming flag)."""
    options = pipeline_options.view_as(StreamingSourceOptions)
    return any(getattr(options, name) for name in ("pubsub_subscription", "pubsub_topic", "kafka_bootstrap_servers",
                                                    "kafka_topics"))


def is_remote_runner(pipeline_options) -> bool:
    """Dataflow, Flink and other job services run on: the launcher submits and does not wait."""
    from apache_beam.options.pipeline_options import StandardOptions, TestOptions
    runner = pipeline_options.view_as(StandardOptions).runner or ""
    runner = runner if isinstance(runner, str) else type(runner).__name__
    local = ("", "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner", "SwitchingDirectRunner", "PrismRunner")
    return runner not in local or bool(pipeline_options.view_as(TestOptions).dry_run)


def job_id(result) -> str:
    """The runner's job id of a submitted pipeline, or a note when there is none (dry run)."""
    ident = getattr(result, "job_id", None)
    ident = ident() if callable(ident) else ident
    return str(ident or getattr(result, "_job_id", None) or "no job id (dry run)")


def run_streaming(pipeline_options, config: PipelineConfig, exporters: list[Exporter], echo=print) -> int:
    """Build and start the streaming job. Returns once the runner has it (Dataflow, Flink)."""
    options = pipeline_options.view_as(StreamingSourceOptions)
    try:
        pipeline = beam.Pipeline(options=pipeline_options)
        build_streaming_graph(pipeline, config, options, exporters)
    except ConfigError as exc:
        echo(f"error: {exc}")
        return 2
    echo(f"starting streaming job {config.name} ({config.contract.ref}) -> {config.output}")
    result = pipeline.run()
    echo(f"submitted: {job_id(result)}; state {result.state}")
    return 0
