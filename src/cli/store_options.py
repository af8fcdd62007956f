"""The --output, --key-store and --kek options shared by the key and data-subject commands.

    from cli.store_options import add_store_options, open_store, open_kek
    add_store_options(parser, kek=True)
    store = open_store(args)        # KeyStoreError if the default SQLite file does not exist

Defaults follow the pipeline's: the key store ``<output>/keystore.sqlite`` and the KEK
``local://<output>/kek.json`` of a local output root (default ``out``). A default that does not
exist is an error rather than a new empty store, so a typo in --output cannot report
"0 keys deleted" for a subject whose keys are elsewhere.
"""
from __future__ import annotations

import os
import sys


def add_store_options(parser, kek: bool = False) -> None:
    parser.add_argument("--output", default="out",
                        help="the pipeline's output root: its keys/, streams/ and encrypted/ (default %(default)s)")
    parser.add_argument("--key-store", default=None,
                        help="key store URI (sqlite:///path, postgresql://...); default <output>/keystore.sqlite")
    if kek:
        parser.add_argument("--kek", default=None,
                            help="KEK URI (local://path, aws-kms://..., gcp-kms://...); default local://<output>/kek.json")


def open_store(args, migrating: bool = False):
    from privacy.keystore import KeyStoreError, open_key_store

    uri = args.key_store
    if not uri:
        path = os.path.join(args.output, "keystore.sqlite")
        if "://" in args.output or not os.path.exists(path):
            raise KeyStoreError(f"no key store at {path}: give --output (the run's output root) or --key-store")
        uri = "sqlite://" + os.path.abspath(path)
    return open_key_store(uri, migrating)


def open_kek(args):
    from privacy.kek import KekError, kek_from_uri

    uri = args.kek
    if not uri:
        path = os.path.join(args.output, "kek.json")
        if "://" in args.output or not os.path.exists(path):
            raise KekError(f"no KEK at {path}: give --kek")
        uri = "local://" + os.path.abspath(path)
    return kek_from_uri(uri)


def local_output(args) -> str | None:
    """The output root to scrub, if it exists (remote roots are used as given)."""
    if "://" in args.output:
        return args.output
    return args.output if os.path.isdir(args.output) else None


def add_audit_options(parser) -> None:
    """--audit-log and --user of the commands that write an audit entry (forget, access export, purge, compact)."""
    parser.add_argument("--audit-log", default=None, metavar="FILE",
                        help="the audit log to append this request to (default: $PSTREAM_AUDIT_LOG; the project's "
                        "audit.jsonl for a project pipeline's output; else audit.jsonl next to a SQLite key store; else "
                        "in the local output root)")
    parser.add_argument("--user", default=None, help="who is acting, for the audit log (default: $PSTREAM_USER, else "
                        "the OS user)")


class RequestAudit:
    """One audit entry per data-subject request or key purge (``controlplane.audit``): checked before the
    request changes anything (a log that cannot take the entry refuses the request), appended after it
    with counts only: never ids, hashes of them, values or keys.

        audit = RequestAudit(args, store, "subjects", "forget")   # ValueError: the log cannot be used
        ...the request...
        audit.append({"subjects": 2, "keysDeleted": 7})          # AuditError / OSError: say so, exit 1
    """

    def __init__(self, args, store, kind: str, action: str):
        from controlplane.audit import log_for_store, store_label
        from controlplane.lifecycle import current_user

        self.kind, self.action = kind, action
        self.user = current_user(getattr(args, "user", None))
        self.log = log_for_store(getattr(args, "output", None), getattr(store, "uri", None),
                                 getattr(args, "audit_log", None))
        self.log.check()
        self.details = {"store": store_label(getattr(store, "uri", None)), "output": getattr(args, "output", None)}

    def files(self) -> list[str]:
        return [str(self.log.path), str(self.log.head_path)]

    def append(self, counts: dict, **details) -> dict:
        return self.log.append(self.kind, self.action, self.user, counts=counts, details={**self.details, **details})

    def done(self, command: str, counts: dict, **details) -> bool:
        """``append``; False (after saying so on stderr) when the log cannot take the entry."""
        from controlplane.audit import AuditError
        try:
            self.append(counts, **details)
        except (AuditError, OSError) as exc:
            print(f"pstream {command}: done, but the audit log could not record it: {exc}", file=sys.stderr)
            return False
        return True


def removed_counts(report) -> dict:
    """A scrub report's removed rows as audit counts: {'keyRowsRemoved': 3, 'eventRowsRemoved': 9, ...}."""
    counts = {}
    for kind, count in report.removed.items():
        first, *rest = kind.split()
        counts[first + "".join(word.title() for word in rest) + "Removed"] = count
    return counts
