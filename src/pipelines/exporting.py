"""Exporters in the graph: connectors checked before the run, outputs written to them.

    from pipelines.exporting import prepare_exports, write_batch_exports
    exports = prepare_exports(config, options)     # Beam options for the connectors, then the probe
    outputs = privacy_graph(pairs, config)         # pipelines.graph
    write_batch_exports(outputs, exports.exporters, config.max_file_bytes, run)   # run: the job's RunOutputs

``prepare_exports`` runs before the pipeline is built, so a connector with wrong credentials
fails the launch with a message naming it, before any event is read. In a batch run every
exporter writes one file set per run (``<run start>-stream-<run uuid>---<shard>.jsonl``, as the
output root does), committed with the run's other outputs (``transforms.write_jsonl``; each
exporter directory outside the output root keeps its own run records); in a streaming run (``pipelines.streaming``) one per export window of the
exporter's ``interval``.
"""
from __future__ import annotations

from pipelines.config import PipelineConfig
from pipelines.connectors import ENCRYPTED, KEYS, Exporter, Exports, load_exports, probe_exporters

STREAMS_PREFIX = "streams/"


def exportable_outputs(config: PipelineConfig) -> list[str]:
    """Names an exporter's ``output`` may take: encrypted, keys, and the privacy streams."""
    return [ENCRYPTED, KEYS] + [spec.name for spec in config.streams]


def output_key(exporter: Exporter) -> str:
    """The key of ``pipelines.graph.privacy_graph``'s outputs that an exporter writes."""
    return exporter.output if exporter.output in (ENCRYPTED, KEYS) else STREAMS_PREFIX + exporter.output


def prepare_exports(config: PipelineConfig, options, probe: bool = True) -> Exports:
    """Parse the config's connectors and exporters, set their Beam options, probe each one."""
    exports = load_exports(config.extra, exportable_outputs(config), config.source)
    exports.apply(options)
    if probe and exports.exporters:
        probe_exporters(exports.exporters, options)
    return exports


def write_batch_exports(outputs: dict, exporters: list[Exporter], max_bytes: int, run=None,
                        write_mode: str = "append", run_started: float | None = None,
                        event_batches: bool = True) -> dict:
    """One WriteJsonlBatches per exporter (shards of ``max_bytes``): temp files of ``run`` (a
    ``transforms.write_jsonl.RunOutputs`` whose OutputRun registered the exporters' directories:
    the batch job's one commit) or, without ``run``, each a run of its own in ``write_mode`` (the
    local loop's export passes, which append); returns the PCollections by exporter name.
    ``event_batches``: the encrypted and stream outputs are batches of (position, event) pairs
    (``pipelines.graph.privacy_graph``'s); False when they are events, one per element. Keys are
    rows either way."""
    from transforms.write_jsonl import WriteJsonlBatches
    written = {}
    for exporter in exporters:
        written[f"exporter/{exporter.name}"] = outputs[output_key(exporter)] | f"Export {exporter.name}" >> \
            WriteJsonlBatches(exporter.directory, kind=exporter.file_kind, max_bytes=max_bytes,
                              run_started=run_started, counter=f"exporter_{exporter.name}", run=run,
                              write_mode=write_mode, batches=event_batches and output_key(exporter) != KEYS)
    return written


def summary_rows(values: dict[str, int], exporters: list[Exporter]) -> list[tuple[str, int]]:
    """Rows for the run summary: events written by each exporter."""
    return [(f"{exporter.directory}/ ({exporter.name})", values.get(f"written/exporter_{exporter.name}", 0))
            for exporter in exporters]
