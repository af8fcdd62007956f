"""``pstream report OUT``: the report of the last batch run into an output root, in the terminal.

    pstream report out                 # counts and charts (rich)
    pstream report out --json          # the _report.json as written
    pstream report out --html          # the path of the HTML page, to open in a browser

``python -m pipelines.run`` writes ``<output>/_report.json`` and ``<output>/_report.html`` after
each batch run (``pipelines.run_report``); this command only reads them. Exit 1, with a warning,
when the report is not of the run committed last into OUTPUT (that run was stopped after its
commit, before its report).
"""
from __future__ import annotations

import json
import sys

from cli.main import summary


def register(subparsers) -> None:
    report = subparsers.add_parser(
        "report", help=summary("report"),
        description="Show the report of the last batch run into OUTPUT: rows read, valid, dead letters, "
        "events per output, dead letters by stage and reason, consent levels seen, keys created and reused, "
        "time per stage. No personal value is in it.")
    report.add_argument("output", metavar="OUTPUT", help="the run's output root (e.g. out), or a _report.json")
    shown = report.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="print the report's JSON")
    shown.add_argument("--html", action="store_true", help="print the path of the HTML page")
    report.set_defaults(func=_report)


def _report(args) -> int:
    from pipelines.run_report import read_report, report_paths, stale_reason, terminal

    try:
        report = read_report(args.output)
    except FileNotFoundError:
        print(f"pstream report: no run report in {args.output} (python -m pipelines.run writes _report.json "
              "there after a batch run)", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        print(f"pstream report: {args.output}: unreadable report ({type(exc).__name__})", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.html:
        print(report_paths(args.output)[1])
    else:
        terminal(report)
    stale = None if args.output.endswith(".json") else stale_reason(args.output, report)
    if stale:
        print(f"pstream report: warning: {stale}", file=sys.stderr)
        return 1
    return 0
