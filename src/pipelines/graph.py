"""Assemble the privacy pipeline's graph (DESIGN.md) from a PipelineConfig.

    import apache_beam as beam
    from pipelines.config import load_config
    from pipelines.graph import build_batch_graph
    with beam.Pipeline(runner="FnApiRunner") as p:
        files = build_batch_graph(p, load_config())   # the committed files' paths

source (files, or a database table: pipelines.sources) -> ValidateEvents -> EncryptPii ->
PrivacyStreams, each output written as JSONL under the config's output root: encrypted/,
streams/<name>/, keys/, dead_letter/. Events travel between the stages as batches of (position,
event) pairs (``transforms.event_batches``): encrypted/ and the streams are PCollections of
batches (``EVENT_OUTPUTS``), keys/ and dead_letter/ of rows. A batch run's outputs (and its exporters') are one commit
(``transforms.write_jsonl``): ``output_run`` says where and how (``config.write_mode``); keys/
holds each keyLink the run used once (``DistinctKeyRows``). The micro-aggregation job:
pipelines.micro_aggregation.
"""
from __future__ import annotations

import time

import apache_beam as beam

from contracts.batch_input import BatchInput
from pipelines.config import PipelineConfig
from pipelines.sources import read_batch_source
from privacy.kek import prepare_kek
from transforms.encrypt import DistinctKeyRows, EncryptPii, KeyRingSpec
from transforms.event_batches import SingleBatches, Unbatch
from transforms.privacy_streams import PrivacyStreams
from transforms.validate import ValidateEvents
from transforms.run_commit import OutputRun
from transforms.write_jsonl import RunOutputs, WriteJsonlBatches, runner_name

ENCRYPTED, STREAMS, KEYS, DEAD_LETTERS = "encrypted", "streams", "keys", "dead_letter"


def is_event_output(name: str) -> bool:
    """True for the outputs that hold batches of events (encrypted, streams/<name>), False for rows."""
    return name == ENCRYPTED or name.startswith(f"{STREAMS}/")


def key_ring_spec(config: PipelineConfig) -> KeyRingSpec:
    """Where keys are made, and for how long they are kept: the config's retention, and the
    policy of a contract that names one (read from the key store here, on the launcher)."""
    policies = tuple(sorted(config.retention_policies().items()))
    return KeyRingSpec(config.key_store, config.kek, config.retention_days, policies)


def privacy_graph(batches, config: PipelineConfig, admit: beam.PTransform | None = None) -> dict:
    """Validate, encrypt and fan out batches of (position, event) pairs; returns the named PCollections.

    Positions travel with the events through every stage, so each stage's dead letters name
    ``file:line`` (or the message). The encrypted output and each stream are PCollections of
    batches of (position, event) pairs (``is_event_output``; ``transforms.event_batches.Unbatch``
    gives one event per element, with its own timestamp); keys and dead letters hold rows.
    ``admit`` (streaming: ``transforms.lateness.AdmitInTime``, a per-event decision) takes the
    valid events one by one (unbatched, each with its own timestamp) before they are encrypted
    and fanned out; its ADMITTED events go on as one-element batches, its TOO_LATE rows join the
    dead letters.
    """
    contracts = {config.contract.ref: config.contract}
    prepare_kek(config.kek)  # a local KEK is made here, on the launcher, once: workers only open it
    keys = key_ring_spec(config)
    checked = batches | "ValidateEvents" >> ValidateEvents(contracts)
    valid, too_late = checked[ValidateEvents.VALID], []
    if admit is not None:
        decided = valid | "ValidEvents" >> Unbatch() | "AdmitInTime" >> admit
        valid, too_late = decided[admit.ADMITTED] | "AdmittedBatches" >> SingleBatches(), [decided[admit.TOO_LATE]]
    encrypted = valid | "EncryptPii" >> EncryptPii(contracts, keys)
    streams = encrypted[EncryptPii.ENCRYPTED] | "PrivacyStreams" >> PrivacyStreams(contracts, config.streams, keys)
    outputs = {
        ENCRYPTED: encrypted[EncryptPii.ENCRYPTED],
        KEYS: encrypted[EncryptPii.KEYS],
        DEAD_LETTERS: [checked[ValidateEvents.DEAD_LETTER], *too_late, encrypted[EncryptPii.DEAD_LETTER],
                       streams[PrivacyStreams.DEAD_LETTER]],
    }
    for spec in config.streams:
        outputs[f"{STREAMS}/{spec.name}"] = streams[spec.name]
    return outputs


def output_names(config: PipelineConfig) -> list[str]:
    """The outputs of a batch run under its output root."""
    return [ENCRYPTED, *(f"{STREAMS}/{spec.name}" for spec in config.streams), KEYS, DEAD_LETTERS]


def output_run(config: PipelineConfig, exporters=(), runner: str = "FnApiRunner",
               started: float | None = None) -> OutputRun:
    """The run's identity and commit roots: the output root's directories and each exporter's."""
    run = OutputRun.create(config.output, output_names(config), config.write_mode, started=started, runner=runner)
    for exporter in exporters:
        run.add_directory(exporter.directory)
    return run


def write_outputs(outputs: dict, config: PipelineConfig, run: RunOutputs, batched=is_event_output) -> dict:
    """Write every output as JSONL under the output root (temp files of ``run``, committed by
    ``run.commit()``); returns the PCollections of temp files by output name. ``batched(name)``:
    whether an output holds batches of events (default: encrypted and the streams) or rows."""
    written = {}
    for name, pcoll in outputs.items():
        if isinstance(pcoll, list):
            pcoll = pcoll | f"Flatten {name}" >> beam.Flatten()
        kind = {KEYS: "keys", DEAD_LETTERS: "dead-letter"}.get(name, "stream")
        written[name] = pcoll | f"Write {name}" >> WriteJsonlBatches(
            config.output_dir(name), kind=kind, partition_by_day=config.partition_by_day and name != KEYS,
            max_bytes=config.max_file_bytes, counter=name, run=run, batches=batched(name))
    return written


def build_batch_graph(pipeline, config: PipelineConfig, now_ms: int | None = None, exporters=(),
                      run: OutputRun | None = None):
    """The whole batch job: read files or a table, run the privacy graph, write every output (and
    exporter), commit them in one step. Returns the PCollection of the committed files' paths."""
    run = run or output_run(config, exporters, runner_name(pipeline), started=time.time())
    outputs_run = RunOutputs(pipeline, run)
    batch = BatchInput(config.contract, config.consent, config.timestamp, now_ms=now_ms)
    read = read_batch_source(pipeline, config, batch)
    outputs = privacy_graph(read["events"], config)
    outputs[DEAD_LETTERS] = [read[DEAD_LETTERS], *outputs[DEAD_LETTERS]]
    outputs[KEYS] = outputs[KEYS] | "DistinctKeys" >> DistinctKeyRows()
    write_outputs(outputs, config, outputs_run)
    if exporters:
        from pipelines.exporting import write_batch_exports  # connectors and exporters (pipelines/connectors.py)
        write_batch_exports(outputs, list(exporters), config.max_file_bytes, outputs_run)
    return outputs_run.commit()
