"""The streaming job: the batch job's privacy graph, fed by Pub/Sub or Kafka, written per export window.

    python -m pipelines.run --streaming --runner=DataflowRunner --project=my-project --region=europe-west1 \\
        --pubsub_subscription=projects/my-project/subscriptions/events --output=gs://my-bucket/shop \\
        --key_store=postgresql://... --kek=gcp-kms://... --temp_location=gs://my-bucket/tmp
    python -m pipelines.streaming summary gs://my-bucket/shop     # events and too-late events per output

    from pipelines.streaming import build_streaming_graph
    build_streaming_graph(pipeline, config, source_options, exporters)            # Pub/Sub or Kafka
    build_streaming_graph(pipeline, config, source_options, exporters, source=s)  # any (position, event) source

**Late data: one decision per event.** Valid events pass ``transforms.lateness.AdmitInTime``
before they are encrypted and fanned out: an event is too late when the watermark has reached
the close of its export window (window end + ``--allowed_lateness``, default 60 s; of all the
intervals in use, the window that closes first). A too-late event is in none of the outputs and
is one dead-letter row (stage ``export``, ``window``, ``outputs``: the outputs it belonged to); it
creates no key. Invalid events are dead letters of validation whatever their lateness, as in
batch runs.

**Outputs.** encrypted/ and streams/<name>/ under the output root, and their exporters, are
written by ``WriteWindowedJsonl``: fixed windows of event time, the output root's of
``export_interval`` seconds and each exporter's of its own ``interval``, each window's files
written once, when the watermark passes its close. keys/ and dead_letter/ (and key exporters) are
not subject to export lateness: ``WriteProcessingTimeJsonl`` writes their rows in batches per
interval of processing time, named after the interval's UTC start. Keys do not follow export
windows either: a key belongs to (key-field value, UTC day of the event), in streaming as in batch.

**Too-late counts.** Counters ``export/too_late`` and ``export/too_late_<output>`` (Dataflow's
console); on any runner, the local one included, ``summary`` computes them from dead_letter/.

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
from pipelines.graph import DEAD_LETTERS, ENCRYPTED, KEYS, STREAMS, is_event_output, privacy_graph
from pipelines.stream_options import DEFAULT_EXPORT_SHARDS, StreamingSourceOptions
from transforms.event_batches import SingleBatches, Unbatch
from transforms.lateness import AdmitInTime
from transforms.stream_sources import JSON, ReadKafkaEvents, ReadPubSubEvents
from transforms.windowed_export import DEFAULT_ALLOWED_LATENESS, WriteProcessingTimeJsonl, WriteWindowedJsonl


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


class OutputsOf:
    """The outputs an encrypted event belongs to: encrypted, and each privacy stream its consent admits."""

    def __init__(self, config: PipelineConfig):
        self.streams = list(config.streams)

    def __call__(self, event: dict) -> list[str]:
        consent = (event.get("strmMeta") or {}).get("consentLevels") or ()
        return [ENCRYPTED] + [f"{STREAMS}/{spec.name}" for spec in self.streams if spec.admits(consent)]


def export_intervals(config: PipelineConfig, exporters: list[Exporter]) -> list[int]:
    """The window intervals of every output subject to export lateness (keys are not)."""
    return sorted({config.export_interval} | {e.interval for e in exporters if e.output != KEYS})


def write_streaming_outputs(outputs: dict, config: PipelineConfig, exporters: list[Exporter],
                            allowed_lateness: int, shards: int, run_id: str) -> dict:
    """Write every output (events per export window, keys and dead letters per processing-time interval);
    returns the file-path PCollections by writer label."""
    sinks: dict[str, list[tuple[int, str, str]]] = {}   # output key -> (interval, directory, counter)
    for name in outputs:
        if name != DEAD_LETTERS:
            sinks[name] = [(config.export_interval, config.output_dir(name), name)]
    for exporter in exporters:
        sinks[output_key(exporter)].append((exporter.interval, exporter.directory, f"exporter_{exporter.name}"))
    written, after_close = {}, []
    for name, targets in sinks.items():
        for interval in sorted({interval for interval, _, _ in targets}):
            directories = [directory for i, directory, _ in targets if i == interval]
            counters = [counter for i, _, counter in targets if i == interval]
            label = f"Write {name} every {interval}s"
            if name == KEYS:
                written[label] = outputs[name] | label >> WriteProcessingTimeJsonl(
                    directories, interval, kind="keys", run_id=run_id, shards=shards,
                    max_bytes=config.max_file_bytes, counter=name, counters=counters)
                continue
            result = outputs[name] | label >> WriteWindowedJsonl(
                directories, interval, allowed_lateness, kind="stream", run_id=run_id, shards=shards,
                max_bytes=config.max_file_bytes, counter=name, counters=counters)
            written[label] = result[WriteWindowedJsonl.FILES]
            after_close.append(result[WriteWindowedJsonl.AFTER_CLOSE])
    dead = outputs[DEAD_LETTERS]
    dead = (list(dead) if isinstance(dead, list) else [dead]) + after_close
    label = f"Write {DEAD_LETTERS}"
    written[label] = (dead | "Flatten dead letters" >> beam.Flatten()
                      | label >> WriteProcessingTimeJsonl(config.output_dir(DEAD_LETTERS), config.export_interval,
                                                          kind="dead-letter", run_id=run_id, shards=shards,
                                                          max_bytes=config.max_file_bytes, counter=DEAD_LETTERS))
    return written


def build_streaming_graph(pipeline, config: PipelineConfig, options: StreamingSourceOptions,
                          exporters: list[Exporter] = (), source: beam.PTransform | None = None,
                          run_id: str | None = None) -> dict:
    """The streaming job: read, decide lateness, run the privacy graph, write every output.

    The source's (position, event) pairs enter the privacy graph as one-element batches; the
    encrypted and stream batches leave it as one event per element again, each with its own
    timestamp (``transforms.event_batches.Unbatch``), for the windowed writers."""
    lateness, shards = _lateness_and_shards(options)
    source = source if source is not None else stream_source(config, options, exporters)
    read = pipeline | "ReadStream" >> source
    admit = AdmitInTime(export_intervals(config, list(exporters)), lateness, shards, OutputsOf(config))
    batches = read[ReadPubSubEvents.EVENTS] | "SingleBatches" >> SingleBatches()
    outputs = privacy_graph(batches, config, admit=admit)
    for name in [name for name in outputs if is_event_output(name)]:
        outputs[name] = outputs[name] | f"Unbatch {name}" >> Unbatch(positions=False)
    outputs[DEAD_LETTERS] = [read[ReadPubSubEvents.DEAD_LETTER], *outputs[DEAD_LETTERS]]
    return write_streaming_outputs(outputs, config, list(exporters), lateness, shards,
                                   run_id or str(uuid.uuid4()))


# -- the summary of a streaming job's output root ---------------------------------------------------
def too_late_counts(dead_letter_rows) -> dict[str, int]:
    """Too-late events per output, from dead-letter rows (the ``outputs`` of each ``export`` row)."""
    counts: dict[str, int] = {}
    for row in dead_letter_rows:
        if row.get("stage") == "export":
            for output in row.get("outputs") or ():
                counts[output] = counts.get(output, 0) + 1
    return counts


def summarize(root: str) -> list[tuple[str, int, int | None]]:
    """(folder, rows, too-late events) for each output under a streaming job's output root: read from the
    files, so it works on every runner (the DirectRunner loses counters after its first watermark step)."""
    import os

    from cli.jsonl_files import expand_paths, read_jsonl   # the one reader of JSONL folders, local or remote
    root = root.rstrip("/")

    def rows(folder: str) -> list[dict]:
        files = [path for path in expand_paths([f"{root}/{folder}"]) if "://" in path or os.path.isfile(path)]
        return [row for _, _, row in read_jsonl(files)]

    dead = rows(DEAD_LETTERS)
    late = too_late_counts(dead)
    streams = sorted({path[len(root) + 1:].split("/")[1] for path in expand_paths([f"{root}/{STREAMS}"])
                      if path.startswith(f"{root}/{STREAMS}/") and path.count("/") > root.count("/") + 2})
    summary = [(f"{root}/{name}/", len(rows(name)), late.get(name, 0))
               for name in [ENCRYPTED] + [f"{STREAMS}/{stream}" for stream in streams]]
    return summary + [(f"{root}/{KEYS}/", len(rows(KEYS)), None), (f"{root}/{DEAD_LETTERS}/", len(dead), None)]


def main(argv: list[str] | None = None, echo=print) -> int:
    """``python -m pipelines.streaming summary OUTPUT_ROOT``."""
    import argparse
    import os
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.streaming",
        description="Summarize a streaming job's output root: rows in each output and, per output, the events "
                    "that came too late for it (dead letters of stage export).")
    commands = parser.add_subparsers(dest="command", required=True)
    summary = commands.add_parser("summary", help="rows and too-late events per output")
    summary.add_argument("root", help="the job's --output (a local path or gs://, s3://, azfs://)")
    args = parser.parse_args(argv)
    if "://" not in args.root and not os.path.isdir(args.root):
        echo(f"error: {args.root} is not a directory (give the job's --output)")
        return 2
    rows = summarize(args.root)
    width = max(len(folder) for folder, _, _ in rows)
    echo(f"{'output':<{width}}  {'rows':>10}  {'too late':>10}")
    for folder, count, late in rows:
        echo(f"{folder:<{width}}  {count:>10,}  {'' if late is None else f'{late:,}':>10}")
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())
