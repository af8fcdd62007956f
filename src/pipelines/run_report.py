"""The run report: ``<output>/_report.json`` and ``<output>/_report.html`` after every batch run.

    from pipelines.run_report import build_report, write_report, read_report
    report = build_report(config, values, run_id=run.run_id, seconds=12.3, stage_ms=stage_times(result))
    json_path, html_path = write_report(config.output, report)     # owner-only, replaced atomically
    read_report("out")                                             # the dict again (pstream report OUT)

``pipelines.run`` writes it after the run has committed its outputs (``transforms.run_commit``),
so the report never takes part in ``--write_mode``: it is not a run file, readers of outputs
list only ``*.jsonl`` files and never see it, and each run into the output replaces it (with
``append`` it describes the latest run; its ``run`` names it). A run whose report cannot be
written removes the old one; a run stopped between its commit and its report leaves the old one,
and ``stale_reason`` (``pstream report`` exits 1 with it) says that it is not of the last
committed run. A failed run commits nothing, so the report still describes the outputs.

What is in it, and where each figure comes from:

- ``counts`` and ``outputs``: the run's Beam counters (the summary's numbers, the same values);
  ``counters`` keeps every counter as ``namespace/name``.
- ``dead_letters``: per stage (counters) and per (stage, reason), counted from the run's own
  committed ``dead_letter/`` files. Reasons never hold input values (``transforms.dead_letters``).
- ``consent_levels``: events per ``strmMeta.consentLevels`` list, from the run's committed
  encrypted (or micro-aggregated) files: level numbers only.
- ``keys``: created and reused (counters).
- ``stage_seconds``: execution time per top-level step of the graph (Beam's
  ``ptransform_execution_time`` monitoring metric; empty on runners that do not report it).

No field value of any event is read into the report: positions are left out as well.
The HTML page is one file with inline SVG bar charts and no script, no external resource.
"""
from __future__ import annotations

import html
import json
import os
import re
import time
from collections import Counter

REPORT_JSON = "_report.json"
REPORT_HTML = "_report.html"
VERSION = 1
_CONSENT = re.compile(rb'"consentLevels":\s*(\[[0-9,\s]*\]|null)')
_EXEC_TIME = "metric:ptransform_execution_time:total_msecs:v1"
MAX_REASONS = 50   # distinct (stage, reason) pairs kept; the rest are summed as "other reasons"


def stage_times(result) -> dict[str, int]:
    """Milliseconds of execution per top-level step (``ReadInput``, ``ValidateEvents``, ...), from the
    runner's monitoring metrics (sampled: a fast step may show 0); {} when the runner has none.
    Beam's own ``ref_PCollection_...`` steps are left out."""
    try:
        found = result.monitoring_metrics().query()["counters"]
    except Exception:  # runners without monitoring metrics
        return {}
    totals: Counter = Counter()
    for counter in found:
        if counter.key.metric.name == _EXEC_TIME and counter.key.step and not counter.key.step.startswith("ref_"):
            value = counter.committed if counter.committed is not None else counter.attempted
            totals[counter.key.step.split("/", 1)[0]] += int(value or 0)
    return dict(sorted(totals.items(), key=lambda kv: (-kv[1], kv[0])))   # 0 ms steps too: they ran


def _run_files(directory: str, run_id: str) -> list[str]:
    from transforms.run_commit import committed_files

    return [p for p in committed_files([directory]) if run_id in p.rsplit("/", 1)[-1]]


def _lines(path: str):
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        yield from handle


def consent_levels(directory: str, run_id: str) -> dict[str, int]:
    """Events per consent-level list (``"[1, 2]"``, ``"[]"``) in a run's committed files of one output."""
    seen: Counter = Counter()
    for path in _run_files(directory, run_id):
        for line in _lines(path):
            match = _CONSENT.search(line)
            if match:
                levels = json.loads(match.group(1)) or []
                seen[json.dumps(sorted(levels))] += 1
            elif line.strip():
                seen["(none)"] += 1
    return dict(sorted(seen.items()))


def dead_letter_reasons(directory: str, run_id: str) -> list[dict]:
    """(stage, reason, count) of a run's committed dead letters, most frequent first; positions are
    left out. More than ``MAX_REASONS`` distinct reasons: the rest are one row per stage."""
    seen: Counter = Counter()
    for path in _run_files(directory, run_id):
        for line in _lines(path):
            if line.strip():
                row = json.loads(line)
                seen[(str(row.get("stage")), str(row.get("reason")))] += 1
    rows = [{"stage": s, "reason": r, "count": n} for (s, r), n in seen.most_common()]
    kept, rest = rows[:MAX_REASONS], Counter()
    for row in rows[MAX_REASONS:]:
        rest[row["stage"]] += row["count"]
    kept += [{"stage": s, "reason": "(other reasons)", "count": n} for s, n in sorted(rest.items())]
    return kept


def build_report(config, values: dict[str, int], run_id: str, seconds: float,
                 stage_ms: dict[str, int] | None = None, write_mode: str | None = None) -> dict:
    """The report of a finished local batch run (``config``: ``pipelines.config.PipelineConfig``)."""
    from pipelines.config import MICRO_AGGREGATION

    micro = config.job == MICRO_AGGREGATION
    main_output = "micro_aggregated" if micro else "encrypted"
    stages = {name[len("pipeline/dead_letter_"):]: n for name, n in sorted(values.items())
              if name.startswith("pipeline/dead_letter_")}
    names = (["micro_aggregated", "keys", "dead_letter"] if micro else
             ["encrypted", *(f"streams/{s.name}" for s in config.streams), "keys", "dead_letter"])
    names += sorted(name[len("written/"):] for name in values
                    if name.startswith("written/") and name[len("written/"):] not in names)   # exporters'
    outputs = {name: values.get(f"written/{name}", 0) for name in names}
    counts = {
        "rows_read": values.get("pipeline/rows_read", 0),
        "valid": values.get("pipeline/valid", 0),
        "dead_letters": sum(stages.values()),
    }
    if micro:
        counts["published"] = values.get("microaggregation/records_out", 0)
        counts["suppressed"] = values.get("microaggregation/suppressed", 0)
    return {
        "version": VERSION,
        "run": run_id,
        "pipeline": config.name,
        "job": config.job,
        "contract": config.contract.ref,
        "output": config.output,
        "write_mode": write_mode or config.write_mode,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 3),
        "rows_per_second": round(counts["rows_read"] / seconds, 1) if seconds else 0,
        "counts": counts,
        "outputs": outputs,
        "keys": {"created": values.get("pipeline/keys_created", 0), "reused": values.get("pipeline/keys_reused", 0)},
        "dead_letters": {
            "by_stage": stages,
            "by_reason": dead_letter_reasons(config.output_dir("dead_letter"), run_id),
        },
        "consent_levels": consent_levels(config.output_dir(main_output), run_id),
        "stage_seconds": {step: round(ms / 1000, 3) for step, ms in (stage_ms or {}).items()},
        "counters": dict(sorted(values.items())),
    }


# -- files ------------------------------------------------------------------------------------------
def _write(path: str, data: bytes) -> None:
    """Local: owner-only, replaced atomically (``privacy.private_files.replace_private``); remote:
    Beam's FileSystems."""
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.create(path) as handle:
            handle.write(data)
        return
    from privacy.private_files import replace_private

    replace_private(path, data)


def remove_report(output: str) -> None:
    """Remove an output root's report files (a run whose report could not be written leaves none,
    rather than the previous run's)."""
    paths = list(report_paths(output))
    if "://" in output:
        from apache_beam.io.filesystems import FileSystems

        try:
            FileSystems.delete([p for p in paths if FileSystems.exists(p)])
        except Exception:  # nothing to remove, or a store that refuses: the staleness check still tells
            pass
        return
    for path in paths:
        try:
            os.unlink(path)
        except OSError:   # not there, or not a file: nothing of an old report to remove
            pass


def latest_run(output: str) -> str | None:
    """The id of the run committed last into an output root (its ``done`` record), or None."""
    from transforms.run_commit import DONE, _read_records

    try:
        records = _read_records(output.rstrip("/"))
    except Exception:
        return None
    done = [(float(r.get("committed_at") or 0), r["run"]) for r in records.values() if r.get("state") == DONE]
    return max(done)[1] if done else None


def stale_reason(output: str, report: dict) -> str | None:
    """Why a report does not describe the output root's last committed run, or None when it does
    (or when the root has no run records)."""
    last = latest_run(output)
    if last is None or last == report.get("run"):
        return None
    return (f"this report is of run {report.get('run')}, but the run committed last into {output} is {last}, "
            "which wrote no report (it ran on a remote runner, or was stopped after its commit): its figures "
            "are not these")


def report_paths(output: str) -> tuple[str, str]:
    root = output.rstrip("/")
    return f"{root}/{REPORT_JSON}", f"{root}/{REPORT_HTML}"


def write_report(output: str, report: dict) -> tuple[str, str]:
    """Write both files into the output root; returns their paths."""
    json_path, html_path = report_paths(output)
    _write(json_path, (json.dumps(report, indent=2, sort_keys=False) + "\n").encode())
    _write(html_path, render_html(report).encode())
    return json_path, html_path


def read_report(output: str) -> dict:
    """The report of an output root (or the path of a ``_report.json``); FileNotFoundError if none."""
    path = output if output.endswith(".json") else report_paths(output)[0]
    if "://" in path:
        from apache_beam.io.filesystems import FileSystems

        try:
            with FileSystems.open(path) as handle:
                return json.loads(handle.read())
        except Exception as exc:
            raise FileNotFoundError(f"{path}: {type(exc).__name__}") from None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# -- charts -----------------------------------------------------------------------------------------
def chart_data(report: dict) -> list[tuple[str, str, list[tuple[str, float]]]]:
    """(title, unit, [(label, value)]) of each chart, for the HTML page and the terminal."""
    reasons = [(f"{r['stage']}: {r['reason']}", r["count"]) for r in report["dead_letters"]["by_reason"]]
    return [
        ("Events per output", "events", list(report["outputs"].items())),
        ("Dead letters by stage", "rows", list(report["dead_letters"]["by_stage"].items())),
        ("Dead letters by reason", "rows", reasons),
        ("Consent levels seen", "events", list(report["consent_levels"].items())),
        ("Keys", "keys", [("created", report["keys"]["created"]), ("reused", report["keys"]["reused"])]),
        ("Time per stage (seconds of execution, sampled)", "s", list(report["stage_seconds"].items())),
    ]


def _svg_bars(rows: list[tuple[str, float]], unit: str) -> str:
    if not rows:
        return '<p class="none">none</p>'
    label_w, bar_w, row_h = 360, 380, 24
    top = max(v for _, v in rows) or 1
    height = row_h * len(rows) + 6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 110}" height="{height}" '
             f'role="img" aria-label="bar chart">']
    for i, (label, value) in enumerate(rows):
        y = i * row_h + 3
        width = max(1, round(bar_w * value / top)) if value else 0
        shown = label if len(label) <= 58 else label[:57] + "…"
        number = f"{value:,.3f}" if isinstance(value, float) and not float(value).is_integer() else f"{int(value):,}"
        parts.append(f'<text x="{label_w - 8}" y="{y + 16}" text-anchor="end">{html.escape(shown)}</text>'
                     f'<rect x="{label_w}" y="{y + 2}" width="{width}" height="{row_h - 8}" class="bar">'
                     f'<title>{html.escape(label)}: {number} {html.escape(unit)}</title></rect>'
                     f'<text x="{label_w + width + 6}" y="{y + 16}">{number}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(report: dict) -> str:
    """One self-contained page: the run's figures and its charts (inline SVG, no script)."""
    e = html.escape
    counts = "".join(f"<tr><th>{e(k.replace('_', ' '))}</th><td>{v:,}</td></tr>" for k, v in report["counts"].items())
    charts = "".join(f'<section><h2>{e(title)}</h2>{_svg_bars(rows, unit)}</section>'
                     for title, unit, rows in chart_data(report))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Run report: {e(report['pipeline'])} {e(report['run'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; }} th, td {{ padding: 2px 12px; text-align: left; }}
td {{ text-align: right; font-variant-numeric: tabular-nums; }}
svg text {{ font-size: 13px; fill: #222; }} .bar {{ fill: #3b6ea8; }} .none {{ color: #777; }}
</style></head>
<body>
<h1>Run report: {e(report['pipeline'])}</h1>
<p id="run">run {e(report['run'])} · {e(report['contract'])} → {e(report['output'])} · write mode
{e(report['write_mode'])} · finished {e(report['finished_at'])} · {report['seconds']:,.1f} s
({report['rows_per_second']:,.0f} rows/s)</p>
<table id="counts">{counts}</table>
{charts}
</body></html>
"""


def terminal(report: dict, console=None) -> None:
    """Print a report with rich: the counts and each chart as bars."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = console or Console()
    console.print(Text(f"Run report: {report['pipeline']}  run {report['run']}", style="bold"))
    console.print(Text(f"{report['contract']} -> {report['output']}, write mode {report['write_mode']}, "
                  f"finished {report['finished_at']}, {report['seconds']:,.1f} s "
                  f"({report['rows_per_second']:,.0f} rows/s)"))
    counts = Table(show_header=False, box=None)
    for key, value in report["counts"].items():
        counts.add_row(key.replace("_", " "), f"{value:,}")
    console.print(counts)
    width = 30
    for title, unit, rows in chart_data(report):
        console.print(Text(f"\n{title}", style="bold"))
        table = Table(show_header=False, box=None)
        table.add_column()
        table.add_column(justify="right")
        table.add_column()
        top = max((v for _, v in rows), default=0) or 1
        for label, value in rows:
            number = f"{value:,.3f}" if isinstance(value, float) else f"{value:,}"
            table.add_row(Text(label), number, "█" * max(1 if value else 0, round(width * value / top)))
        if not rows:
            table.add_row("(none)", "", "")
        console.print(table)


def after_run(config, values: dict[str, int], result, run_id: str, seconds: float, echo=print) -> str | None:
    """``pipelines.run``'s hook after a local batch run committed: write the report, print its path.
    A report that cannot be written is a warning (the run's outputs are committed and counted)."""
    try:
        report = build_report(config, values, run_id, seconds, stage_times(result))
        json_path, html_path = write_report(config.output, report)
    except Exception as exc:  # never the exception's text: it may quote a line of an output
        remove_report(config.output)   # not the previous run's report beside this run's outputs
        echo(f"warning: the run report was not written ({type(exc).__name__})")
        return None
    echo(f"report: {html_path} and {json_path.rsplit('/', 1)[-1]} (pstream report {config.output})")
    return json_path
