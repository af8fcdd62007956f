"""The micro-aggregation batch job: k-anonymous quasi-identifiers, PII encrypted as in the main job.

    python -m pipelines.run --job micro_aggregation --k 5 --quasi_identifiers age,transactionAmount \\
        --input shop.csv --output out_k5

    from pipelines.micro_aggregation import build_micro_aggregation_graph
    written = build_micro_aggregation_graph(pipeline, config)     # config.job == "micro_aggregation"

source -> ValidateEvents -> EncryptPii -> MicroAggregate, written under the output root:
``micro_aggregated/`` (the events, each quasi-identifier replaced by its group's aggregate; PII
encrypted, strmMeta kept), ``keys/`` (wrapped keys, as the main job writes them),
``dead_letter/`` and ``report/`` (one JSON line: k, groups, smallest group, information loss,
suppressed records and why; ``privacy.kanonymity`` defines each figure). Privacy streams and
exporters of the config belong to the encryption job and are not written here. Records
without the required consent are left out, as privacy streams leave them out.
"""
from __future__ import annotations

import json
import time

from apache_beam.io.filesystems import FileSystems

from contracts.batch_input import BatchInput
from pipelines.config import PipelineConfig
from pipelines.graph import DEAD_LETTERS, KEYS, key_ring_spec, write_outputs
from pipelines.sources import read_batch_source
from privacy.kek import prepare_kek
from transforms.encrypt import DistinctKeyRows, EncryptPii
from transforms.microaggregate import MicroAggregate
from transforms.run_commit import OutputRun, committed_files
from transforms.validate import ValidateEvents
from transforms.write_jsonl import RunOutputs, runner_name

RECORDS, REPORT = "micro_aggregated", "report"


def output_run(config: PipelineConfig, runner: str = "FnApiRunner", started: float | None = None) -> OutputRun:
    """The job's identity and commit root: its four outputs under the output root."""
    return OutputRun.create(config.output, [RECORDS, KEYS, DEAD_LETTERS, REPORT], config.write_mode,
                            started=started, runner=runner)


def build_micro_aggregation_graph(pipeline, config: PipelineConfig, now_ms: int | None = None,
                                  run: OutputRun | None = None):
    """The whole job, its outputs one commit (as ``pipelines.graph.build_batch_graph``'s): the
    PCollection of the committed files' paths."""
    run = RunOutputs(pipeline, run or output_run(config, runner_name(pipeline), time.time()))
    contracts = {config.contract.ref: config.contract}
    batch = BatchInput(config.contract, config.consent, config.timestamp, now_ms=now_ms)
    read = read_batch_source(pipeline, config, batch)
    prepare_kek(config.kek)  # a local KEK is made here, on the launcher, once (as pipelines.graph does)
    checked = read["events"] | "ValidateEvents" >> ValidateEvents(contracts)
    encrypted = checked[ValidateEvents.VALID] | "EncryptPii" >> EncryptPii(contracts, key_ring_spec(config))
    aggregated = encrypted[EncryptPii.ENCRYPTED] | "MicroAggregate" >> MicroAggregate(config.micro_aggregation, batches=True)
    outputs = {
        RECORDS: aggregated[MicroAggregate.RECORDS],
        KEYS: encrypted[EncryptPii.KEYS] | "DistinctKeys" >> DistinctKeyRows(),
        DEAD_LETTERS: [read[DEAD_LETTERS], checked[ValidateEvents.DEAD_LETTER], encrypted[EncryptPii.DEAD_LETTER]],
        REPORT: aggregated[MicroAggregate.REPORT],
    }
    write_outputs(outputs, config, run)
    return run.commit()


def read_report(config: PipelineConfig) -> dict | None:
    """The newest committed report under ``<output>/report/`` (a local run reads it back to print it)."""
    files = committed_files([config.output_dir(REPORT)])
    if not files:
        return None
    newest = max(files, key=lambda path: FileSystems.match([path])[0].metadata_list[0].last_updated_in_seconds)
    with FileSystems.open(newest) as handle:
        return json.loads(handle.read().decode("utf-8").splitlines()[0])


def summarize(values: dict[str, int], config: PipelineConfig) -> tuple[list[tuple[str, int]], list[str]]:
    """Summary rows and broken invariants of a micro-aggregation run (pipelines.run prints them)."""
    read = values.get("pipeline/rows_read", 0)
    valid = values.get("pipeline/valid", 0)
    dead = sum(v for k, v in values.items() if k.startswith("pipeline/dead_letter_"))
    out, suppressed = values.get("microaggregation/records_out", 0), values.get("microaggregation/suppressed", 0)
    rows = [("rows read", read), ("valid", valid), ("dead letters", dead), ("suppressed", suppressed),
            ("keys created", values.get("pipeline/keys_created", 0))]
    rows += [(f"{config.output_dir(name)}/", values.get(f"written/{name}", 0)) for name in (RECORDS, KEYS, DEAD_LETTERS)]
    problems = []
    if read != valid + values.get("pipeline/dead_letter_read", 0) + values.get("pipeline/dead_letter_validate", 0):
        problems.append(f"rows read ({read}) != valid + dead letters")
    if out + suppressed + values.get("pipeline/dead_letter_encrypt", 0) != valid:
        problems.append("valid events != published + suppressed + encryption dead letters")
    if values.get(f"written/{RECORDS}", 0) != out:
        problems.append("published records != records written")
    return rows, problems


def report_lines(report: dict) -> list[str]:
    """The report as a few lines for the terminal."""
    if "error" in report:
        return [f"error: micro-aggregation: {report['error']}"]
    loss = report["information_loss"]
    per_field = ", ".join(f"{name} {value:.4f}" for name, value in loss["per_field"].items())
    lines = [f"micro-aggregation: k = {report['k']}, {report['groups']:,} groups, smallest {report['smallest_group']}, "
             f"{report['records_out']:,} of {report['records_in']:,} records published",
             f"information loss (SSE/SST): {loss['total']:.4f}" + (f" ({per_field})" if per_field else "")]
    for name, level in report["generalisation"].items():
        lines.append(f"generalised {name}: level {level['level']} of {level['top']}")
    for reason, count in report["suppressed"]["reasons"].items():
        lines.append(f"suppressed {count:,}: {reason}")
    return lines
