"""``pstream audit``: the audit log of contract transitions and data-subject requests.

    pstream audit list                                # one line per entry: seq, time, kind, action, user, ...
    pstream audit list --since 2026-12-01 --kind contract
    pstream audit list --log out/audit.jsonl --format json
    pstream audit verify                              # exit 0: intact (prints the head hash); 1: names each problem

The log is ``controlplane.audit``'s: ``<project>/audit.jsonl`` for the project's commands;
a data-subject request on an output root without a project is logged next to its SQLite key
store (``--log`` reads any log). ``verify`` recomputes the hash chain and finds an edited, a
deleted or a reordered entry; ``--expect-head HASH`` also checks the last entry's hash against one
kept elsewhere (a rewrite of the whole file and its head is otherwise not detectable). For the
project's log (no ``--log``) it also checks that every transition in the project's lifecycle
records is in the log (a log deleted together with its head is found that way).
"""
from __future__ import annotations

import sys

from cli.main import summary


def register(subparsers) -> None:
    audit = subparsers.add_parser("audit", help=summary("audit"), description=summary("audit") + ".")
    actions = audit.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = actions.add_parser("list", help="the entries: who did what, when, why, with counts",
                                 description="One line per entry: number, time (UTC), kind, action, user, target, "
                                 "reason, counts. Entries hold no personal values, subject ids or key material.")
    listing.add_argument("--since", metavar="WHEN", help="only entries from this moment on: ISO date/time (UTC "
                         "unless it says) or epoch milliseconds")
    listing.add_argument("--kind", choices=["contract", "purpose", "subjects", "keys"], help="only entries of this kind")
    listing.add_argument("--format", choices=["text", "json"], default="text", help="output format (default %(default)s)")
    _log_options(listing)
    listing.set_defaults(func=_list)
    verify = actions.add_parser("verify", help="check the hash chain: exit 1 naming each edited, deleted or moved entry",
                                description="Recomputes every entry's hash and the chain of 'prev' hashes, the "
                                "sequence numbers and the head file; for the project's log, also that every "
                                "transition in the project's contract lifecycle records is in it. Exit 0 when "
                                "intact (prints the number of entries and the head hash, to keep elsewhere), 1 "
                                "naming each problem.")
    verify.add_argument("--expect-head", metavar="HASH", help="the last entry's hash must be this one")
    _log_options(verify)
    verify.set_defaults(func=_verify)


def _log_options(parser) -> None:
    parser.add_argument("--log", metavar="FILE", help="the audit log file (default: the project's audit.jsonl)")
    parser.add_argument("--project-dir", dest="project_dir", default=None,
                        help="project directory (default: $PSTREAM_PROJECT_DIR or ~/.config/pstream)")


def _log(args):
    from controlplane.audit import AuditLog, log_for_project
    from controlplane.project import default_project_dir

    return AuditLog(args.log) if args.log else log_for_project(args.project_dir or default_project_dir())


def _since_ms(text: str) -> int:
    from datetime import datetime, timezone

    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since '{text}' is not an ISO date/time or epoch milliseconds") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return int(moment.timestamp() * 1000)


def _list(args) -> int:
    import json

    from controlplane.lifecycle import shown

    try:
        since = _since_ms(args.since) if args.since else None
    except ValueError as exc:
        print(f"pstream audit list: {exc}", file=sys.stderr)
        return 2
    log = _log(args)
    entries = log.entries(since, args.kind)
    if args.format == "json":
        print(json.dumps(entries, indent=2, ensure_ascii=False))
        return 0
    for entry in entries:
        counts = " ".join(f"{k}={v}" for k, v in (entry.get("counts") or {}).items())
        details = entry.get("details") or {}
        change = f"{details['from'] or '-'}->{details['to']}" if "from" in details and "to" in details else ""
        parts = [shown(v) for v in (entry.get("seq"), entry.get("at", ""), entry.get("kind", ""),
                                    entry.get("action", ""), entry.get("user", ""), entry.get("target") or "-",
                                    change or "-", counts or "-")]
        reason = entry.get("reason")
        print("\t".join(parts) + (f"\treason: {json.dumps(reason, ensure_ascii=False)}" if reason else ""))
    print(f"{len(entries)} entries of {log.path}", file=sys.stderr)
    return 0


def _verify(args) -> int:
    from controlplane.audit import AuditError

    log = _log(args)
    try:
        problems = log.verify(args.expect_head)
        if not args.log:
            problems += _unlogged_transitions(args, log)
    except (AuditError, OSError) as exc:
        print(f"pstream audit verify: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"pstream audit verify: {log.path}: {len(problems)} problem(s):", file=sys.stderr)
        for problem in problems[:50]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    head = log.head()
    count = len(log.lines())
    print(f"{log.path}: {count} entries, intact" + (f"; head {head[1]}" if head else ""))
    return 0


def _unlogged_transitions(args, log) -> list[str]:
    """The project's lifecycle transitions (its contracts' records) that its audit log lacks: a log
    deleted or rewritten with its head, or a record written by hand. (A log may hold more than the
    records: its entry is written before the record.)"""
    from controlplane.contracts import ContractRegistry
    from controlplane.lifecycle import LifecycleError
    from controlplane.project import default_project_dir

    registry = ContractRegistry(args.project_dir or default_project_dir(), contracts_path=False)
    logged = {(e.get("target"), e.get("action"), e.get("user")) for e in log.entries(kind="contract")}
    problems = []
    for path in sorted(registry.contracts_dir.glob("*/*/*.lifecycle.json")):
        ref = f"{path.parent.parent.name}/{path.parent.name}/{path.name[:-len('.lifecycle.json')]}"
        try:
            record = registry.record(ref)
        except (LifecycleError, ValueError) as exc:
            problems.append(f"{path}: {exc}")
            continue
        missing = [e for e in record.history if (ref, e.get("action"), e.get("user")) not in logged]
        if missing:
            first = missing[0]
            problems.append(f"{ref}: its lifecycle record has {len(missing)} transition(s) the audit log lacks (the "
                            f"first: {first.get('action')} by {first.get('user')}): the log was deleted or "
                            "rewritten, or the record written by hand")
    created = sorted({e.get("target") for e in log.entries(kind="contract") if e.get("action") == "create"}
                     - {None})
    for ref in created:
        try:
            yaml_file, record_file = registry.path(ref), registry.record_path(ref)
        except ValueError:   # not a reference: the entry is the log's problem, named above if edited
            continue
        if yaml_file is not None and yaml_file.parent.parent.parent == registry.contracts_dir \
                and not record_file.exists():
            problems.append(f"{ref}: the audit log has its create, but its lifecycle record {record_file} is gone: "
                            "without it the file's state: line decides; put the record back")
    return problems
