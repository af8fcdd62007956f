"""Run the privacy pipeline: ``python -m pipelines.run [options] [Beam options]``.

    python -m pipelines.run                                   # the web shop example, into ./out
    python -m pipelines.run --config pipeline.yaml --output out2
    python -m pipelines.run --input data.jsonl --contract acme/Shop/1.0.0 --direct_num_workers=2
    python -m pipelines.run --job micro_aggregation --k 5 --quasi_identifiers age,transactionAmount
    python -m pipelines.run --help

With no arguments it runs the workshop's web shop example on the local runner (generating
``example_input.csv`` if absent) with two privacy streams, then prints a summary: rows read,
valid, dead letters, keys created and events per output. It exits 1 if the counts do not add up
(rows read must equal valid + dead letters). Every Beam option is accepted too (``--runner``,
``--direct_num_workers``, ``--temp_location``, ...). Without ``--runner`` a batch job runs on
the FnApiRunner: the in-process engine of Beam's DirectRunner, without its attempt to download
the Prism runner first.

A batch run is one commit (``transforms.write_jsonl``): readers see all of its files or none.
``--write_mode`` says what happens to what an earlier run wrote: ``replace`` (the default: the
run's files replace them when it commits, so running the same command twice leaves one copy),
``append`` or ``fail``. Before writing, a run removes what killed runs left behind; the summary
says so. A run that fails in this process removes its own temp files before exiting.

After a local batch run has committed, ``<output>/_report.json`` and ``_report.html`` describe it
(``pipelines.run_report``; ``pstream report OUT`` shows it in the terminal).
"""
from __future__ import annotations

import argparse
import csv
import difflib
import io
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions, _BeamArgumentParser

from pipelines import micro_aggregation, run_report
from pipelines.config import MICRO_AGGREGATION, ConfigError, PipelineConfig, is_remote, load_config
from pipelines.connectors import ConnectorError
from pipelines.example_data import write_webshop_csv
from pipelines.exporting import prepare_exports, summary_rows
from pipelines.graph import build_batch_graph, output_run
from pipelines.incremental import save_watermark
from pipelines.sources import SourceConfigError, prepare_database
from pipelines.options import PrivacyPipelineOptions
from pipelines.progress import input_progress
from pipelines.stream_options import StreamingSourceOptions
from pipelines.streaming import is_remote_runner, job_id, reads_a_stream, run_streaming
from transforms.read_input import infer_format
from transforms.run_commit import OutputExistsError
from transforms.write_jsonl import runner_name

LOCAL_RUNNER = "FnApiRunner"
HEADER_BYTES = 1 << 20  # a CSV header longer than this is cut (and likely not a header)
_LOG = logging.getLogger(__name__)
OVERRIDES = ("input", "input_format", "contract", "output", "key_store", "kek", "retention_days",
             "partition_by_day", "export_interval", "max_file_bytes", "write_mode", "job", "k", "quasi_identifiers")


def _beam_parser() -> argparse.ArgumentParser:
    """A parser of every registered Beam options class (ours, runners', IOs'), built the way
    ``PipelineOptions.get_all_options`` builds its own (Beam's parser class, no abbreviations)."""
    parser = _BeamArgumentParser(allow_abbrev=False, add_help=False)
    classes = {}
    for cls in PipelineOptions.__subclasses__():
        classes.setdefault(str(cls), cls)
    for cls in classes.values():
        cls._add_argparse_args(parser)  # pylint: disable=protected-access
    return parser


def unknown_arguments(argv: list[str]) -> str | None:
    """What no options class declares, as a message (option names only, never their values), or None."""
    beam = _beam_parser()
    _, unknown = beam.parse_known_args(argv)
    if not unknown:
        return None
    names = [arg.split("=", 1)[0] for arg in unknown if arg.startswith("-")]
    if not names:
        return f"unrecognized arguments: {len(unknown)} value(s) without an option (options are --name value)"
    known = [o for action in beam._actions for o in action.option_strings]
    near = next((m[0] for m in (difflib.get_close_matches(n, known, n=1, cutoff=0.75) for n in names) if m), None)
    return f"unrecognized arguments: {' '.join(names)}" + (f" (did you mean {near}?)" if near else "")


def parse_args(argv: list[str]) -> tuple[PipelineOptions, PrivacyPipelineOptions]:
    """Our options and Beam's; an option nobody declares is an error (exit 2), never a default run."""
    parser = argparse.ArgumentParser(
        prog="python -m pipelines.run",
        allow_abbrev=False,  # as Beam's parser: '--inp' must not silently mean '--input' here only
        description="Check events against a data contract, encrypt every PII field with a key per data "
        "subject and UTC day, and write the encrypted stream, the privacy streams, the wrapped keys and "
        "the dead letters as JSONL. Without arguments: the workshop's web shop example into ./out.",
        epilog="All Apache Beam pipeline options are accepted as well, e.g. --runner=DataflowRunner, "
        "--direct_num_workers=2 --direct_running_mode=multi_processing.",
    )
    PrivacyPipelineOptions._add_argparse_args(parser)
    StreamingSourceOptions._add_argparse_args(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress line (it is shown only on a terminal, "
                        "for runs longer than a few seconds)")   # taken out of argv by run(), never Beam's
    parser.parse_known_args(argv)  # --help and bad values of our own options stop here
    unknown = unknown_arguments(argv)
    if unknown:
        parser.error(unknown)  # usage and the message on stderr, exit 2
    options = PipelineOptions(argv)
    return options, options.view_as(PrivacyPipelineOptions)


def prepare(config: PipelineConfig, echo=print) -> None:
    """Make the example input when the embedded default runs without one; check the input exists.

    A database input is checked by connecting (columns against the contract; incremental bounds)."""
    if config.database is not None:
        try:
            prepare_database(config)
        except SourceConfigError as exc:
            raise ConfigError(str(exc)) from None
        return
    if not config.input_path:
        raise ConfigError(f"{config.source}: no input: give --input or input.path in the config")
    if config.is_default_example and not is_remote(config.input_path) and not Path(config.input_path).exists():
        try:
            count = write_webshop_csv(config.input_path)
        except ValueError as exc:   # e.g. faker absent: a workers' install, without the workshop extra
            raise ConfigError(f"no input given, and the example input cannot be generated: {exc}") from None
        echo(f"generated {count} web shop rows into {config.input_path}")
    try:
        matched = FileSystems.match([config.input_path])[0].metadata_list
    except Exception as exc:  # Beam raises BeamIOError and friends, with the cause inside
        raise ConfigError(f"input '{config.input_path}' cannot be listed: {exc}") from None
    if not matched:
        raise ConfigError(f"input '{config.input_path}' matches no file")
    check_csv_headers(config, [m.path for m in matched])


def _csv_header(path: str) -> list[str] | None:
    """The header of a CSV file (BOM stripped), read from its first bytes; None for an empty file."""
    with FileSystems.open(path) as handle:  # compressed files (.gz, ...) by their suffix
        head = handle.read(HEADER_BYTES)
    text = head.decode("utf-8", errors="replace").removeprefix("\ufeff")
    return next(csv.reader(io.StringIO(text, newline="")), None)


def check_csv_headers(config: PipelineConfig, paths: list[str]) -> None:
    """Every CSV file must have the columns the config reads consent and event time from.

    Without the consent column every row would silently get the default levels (privacy streams
    empty, not a word); without the time column every row would be a dead letter. One small read
    per file, a few at a time.
    """
    wanted = [(key, field) for key, field in (("input.consent.field", config.consent.field),
                                              ("input.timestamp.field", config.timestamp.field)) if field]
    csv_paths = [p for p in paths if (config.input_format or infer_format(p)) == "csv"]
    if not wanted or not csv_paths:
        return
    with ThreadPoolExecutor(max_workers=min(8, len(csv_paths))) as pool:
        headers = list(pool.map(_csv_header, csv_paths))
    for path, header in zip(csv_paths, headers):
        for key, field in wanted:
            if header is not None and field not in header:
                raise ConfigError(f"{path}: the CSV header has no column '{field}' ({key} of {config.source}); "
                                  "every row needs it")


def accepted_contract(contract, allow_draft: bool, echo=print):
    """The contract a run may use: ACTIVE as it is; DEPRECATED with a warning; DRAFT, IN_REVIEW and
    APPROVED only with ``--allow_draft_contract`` (then treated as ACTIVE for this run, said on the
    console); ARCHIVED never. ConfigError (exit 2) otherwise."""
    from dataclasses import replace

    from contracts.model import ACTIVE, DEPRECATED

    if contract.state == ACTIVE:
        return contract
    if contract.state == DEPRECATED:
        echo(f"warning: contract {contract.ref} is DEPRECATED: its events are still accepted; move to a newer version")
        return contract
    if contract.state == "ARCHIVED":
        raise ConfigError(f"contract {contract.ref} is ARCHIVED: it accepts no events (create a new version)")
    if not allow_draft:
        raise ConfigError(f"contract {contract.ref} is not active (state {contract.state}): only ACTIVE and "
                          "DEPRECATED contracts accept events; activate it (pstream contracts activate) or try it "
                          "out with --allow_draft_contract")
    echo(f"warning: contract {contract.ref} is {contract.state}, used as ACTIVE for this run "
         "(--allow_draft_contract): not for production data")
    return replace(contract, state=ACTIVE)


def no_pii_warning(config: PipelineConfig) -> str | None:
    """The summary's line for a contract without PII fields (nothing is encrypted), or None."""
    if config.contract.pii:
        return None
    return (f"contract {config.contract.ref} declares no PII field: nothing is encrypted, every field is "
            "written as given (mark personal fields with fieldMetadata: personalDataConfig: {isPii: true})")


def counters(result) -> dict[str, int]:
    """Committed counter values by 'namespace/name', summed over steps."""
    totals: dict[str, int] = {}
    for counter in result.metrics().query(MetricsFilter())["counters"]:
        key = f"{counter.key.metric.namespace}/{counter.key.metric.name}"
        value = counter.committed if counter.committed is not None else counter.attempted
        totals[key] = totals.get(key, 0) + (value or 0)
    return totals


COMMIT_ROWS = (("runs_rolled_back", "killed runs rolled back"), ("runs_completed", "killed runs completed"),
               ("temp_files_deleted", "leftover temp files deleted"), ("runs_replaced", "earlier runs replaced"),
               ("replaced_files_deleted", "files of replaced runs deleted"),
               ("leftovers_kept", "leftovers kept (run may be alive)"))


def summarize(values: dict[str, int], config: PipelineConfig) -> tuple[list[tuple[str, int]], list[str]]:
    """Summary rows and the list of broken invariants (empty when every row is accounted for)."""
    read = values.get("pipeline/rows_read", 0)
    valid = values.get("pipeline/valid", 0)
    dead = sum(v for k, v in values.items() if k.startswith("pipeline/dead_letter_"))
    rows = [("rows read", read), ("valid", valid), ("dead letters", dead),
            ("keys created", values.get("pipeline/keys_created", 0))]
    outputs = ["encrypted"] + [f"streams/{s.name}" for s in config.streams] + ["keys", "dead_letter"]
    rows += [(f"{config.output_dir(name)}/", values.get(f"written/{name}", 0)) for name in outputs]
    rows += [(label, values[f"commit/{name}"]) for name, label in COMMIT_ROWS if values.get(f"commit/{name}")]
    problems = []
    if read != valid + values.get("pipeline/dead_letter_read", 0) + values.get("pipeline/dead_letter_validate", 0):
        problems.append(f"rows read ({read}) != valid + dead letters")
    if values.get("written/encrypted", 0) + values.get("pipeline/dead_letter_encrypt", 0) != valid:
        problems.append("valid events != encrypted events written + encryption dead letters")
    if values.get("written/dead_letter", 0) != dead:
        problems.append("dead letters counted != dead letters written")
    return rows, problems


def run(argv: list[str] | None = None, echo=print) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet = "--quiet" in argv
    argv = [arg for arg in argv if arg != "--quiet"]
    options, privacy = parse_args(argv)
    standard = options.view_as(StandardOptions)
    standard.streaming = standard.streaming or reads_a_stream(options)
    FileSystems.set_options(options)  # a remote config or input is read before the pipeline exists
    try:
        config = load_config(privacy.config, {name: getattr(privacy, name) for name in OVERRIDES})
        config.contract = accepted_contract(config.contract, bool(privacy.allow_draft_contract), echo)
        if not standard.streaming:
            prepare(config, echo)
        config.retention_policies()  # a contract's retention policy must be in the key store: refused here, not later
        exports = prepare_exports(config, options)  # connectors' Beam options; probe before any event is read
    except (ConfigError, ConnectorError) as exc:
        echo(f"error: {exc}")
        return 2
    no_pii = no_pii_warning(config)
    if no_pii:
        _LOG.warning(no_pii)
    return run_config(config, options, exports.exporters, echo, progress=not quiet)


def run_config(config: PipelineConfig, options: PipelineOptions, exporters=(), echo=print,
               progress: bool = False) -> int:
    """Run the job of a config already made (``load_config``, or ``PipelineConfig.build`` in the
    local loop) with its exporters (``prepare_exports``): 0, or 1 when the counts do not add up.
    ``progress``: a progress line on a terminal while a local batch job runs (``pipelines.progress``)."""
    standard = options.view_as(StandardOptions)
    no_pii = no_pii_warning(config)
    if standard.streaming:
        return run_streaming(options, config, list(exporters), echo)
    if standard.runner is None and not standard.streaming:
        standard.runner = LOCAL_RUNNER
    micro = config.job == MICRO_AGGREGATION
    source = config.database.label if config.database is not None else config.input_path
    started = time.time()
    pipeline = beam.Pipeline(options=options)
    run_outputs = (micro_aggregation.output_run(config, runner_name(pipeline), started) if micro
                   else output_run(config, exporters, runner_name(pipeline), started))
    if config.write_mode == "fail":
        try:
            run_outputs.refuse_existing()
        except OutputExistsError as exc:
            echo(f"error: {exc}")
            return 2
    echo(f"running {config.name}{' (micro_aggregation)' if micro else ''}: {source} ({config.contract.ref}) "
         f"-> {config.output} (run {run_outputs.run_id}, write mode {config.write_mode})")
    if micro:
        micro_aggregation.build_micro_aggregation_graph(pipeline, config, run=run_outputs)
    else:
        build_batch_graph(pipeline, config, exporters=exporters, run=run_outputs)
    incremental = config.database is not None and config.database.incremental
    try:
        with input_progress(config, enabled=progress and not is_remote_runner(options)):
            result = pipeline.run()
            if is_remote_runner(options) and not incremental:  # Dataflow, Flink: the job's counters are in its console
                echo(f"submitted to {standard.runner}: {job_id(result)}")
                return 0
            state = result.wait_until_finish()   # incremental: the watermark is saved only after the run finished
    except BaseException as exc:  # the job ended here without its commit: leave nothing behind
        run_outputs.abort()
        if isinstance(exc, OutputExistsError) or isinstance(exc.__cause__, OutputExistsError):
            echo(f"error: {exc.__cause__ or exc}")
            return 2
        raise
    if is_remote_runner(options):
        if str(state).upper().endswith("DONE"):
            echo(f"finished on {standard.runner}: {job_id(result)}; incremental state {save_watermark(config)}")
            return 0
        echo(f"error: {standard.runner} job {job_id(result)} ended {state}; the incremental state is unchanged")
        return 1
    elapsed = time.time() - started
    values = counters(result)
    if micro:
        rows, problems = micro_aggregation.summarize(values, config)
    else:
        rows, problems = summarize(values, config)
        rows += summary_rows(values, list(exporters))
    width = max(len(label) for label, _ in rows)
    echo(f"\n{'output / count':<{width}}  {'events':>10}")
    for label, value in rows:
        echo(f"{label:<{width}}  {value:>10,}")
    read = rows[0][1]
    echo(f"\n{read:,} rows in {elapsed:.1f} s ({read / elapsed if elapsed else 0:,.0f} rows/s)")
    if no_pii:
        echo(f"warning: {no_pii}")
    for problem in problems:
        echo(f"error: counts do not add up: {problem}")
    failed = bool(problems)
    if micro:
        report = micro_aggregation.read_report(config) or {"error": "no report was written"}
        echo("")
        for line in micro_aggregation.report_lines(report):
            echo(line)
        failed = failed or "error" in report
    run_report.after_run(config, values, result, run_outputs.run_id, elapsed, echo)
    if not failed and incremental:
        echo(f"incremental state: {save_watermark(config)} (read up to {config.database.until})")
    return 1 if failed else 0


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    sys.exit(run())


if __name__ == "__main__":
    main()
