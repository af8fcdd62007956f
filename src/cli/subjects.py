"""``pstream subjects``: list data subjects, their keyLinks, forget them, answer access requests.

    pstream subjects list --output out                   # subject hash and number of keys, one a line
    pstream subjects list --ids --output out             # ... and the id, read back from encrypted/
    pstream subjects keylinks 477049 --output out        # keyLink and day, one a line
    pstream subjects forget 477049 107296 --output out   # prints: deleted 7 keys
    pstream subjects export 477049 --output out -o dsar.json

The key store knows data subjects only by a keyed hash of their id (HMAC-SHA-256 under its
look-up key, which the KEK unwraps: these commands take --kek, default the output root's
``kek.json``). So ``list`` shows hashes and key counts; ``list --ids`` also shows each id, found
by decrypting the data-subject field of the encrypted events with the subject's own keys (an id
whose events are all gone stays a hash). Commands that take ids hash them; ``--hashed`` takes
the hashes ``list`` prints instead.

(An id holding tabs, newlines or other control characters is printed as a JSON string.)

``forget`` deletes every key that lists one of the subjects from the key store (their encrypted
data, wherever it was copied, can no longer be decrypted), then reads every file under
--output, hidden and temp files included, and removes every copy of those keys: key rows,
privacy-stream rows (decrypted), key exports, access reports (``cli.export_files``); files given
with --key-export too. A file it cannot clean is named and the exit status is 1. The number
printed is the number of keys deleted from the key store. On PostgreSQL the deleted rows stay in
the table files until ``--compact`` (or ``pstream keys compact``) rewrites them. ``export`` is a
data-subject access request: it reads only encrypted files that can hold the subject's events
(day partitions of their keys' days) and decrypts only lines whose keyLink is theirs.
For the output root of a ``pstream local`` pipeline (``<project>/out/<id>``, see ``pstream get
stream``), ``forget`` first removes the subjects' events from that pipeline's spool
(``controlplane.spool_lifecycle.forget_in_output_spool``).
"""
from __future__ import annotations

import json
import os
import sys
import time

from cli.key_store import open_ids, report_residue, store_files, subject_hashes
from cli.main import summary
from cli.plaintext_paths import add_force_option, refuse_plaintext_path
from cli.store_options import RequestAudit, add_audit_options, removed_counts, add_store_options, local_output, open_kek, open_store
from privacy.daead import SivKey
from privacy.fields import FieldPlan
from privacy.kek import KekError
from privacy.keystore import KeyStoreError
from privacy.lookup import lookup_key
from privacy.onthefly import StoreKeys
from privacy.private_files import open_private
from privacy.subjects import access_report, check_subject_id, key_days, key_link_of_line, recover_subject_ids

_HASHED_HELP = "the arguments are subject hashes (as `subjects list` prints them), not ids"


def register(subparsers) -> None:
    subjects = subparsers.add_parser("subjects", help=summary("subjects"))
    actions = subjects.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser(
        "list", help="data subjects in the key store (by hash), with their number of keys",
        description="Prints subject hash <TAB> number of keys. The key store holds no ids; with --ids each id "
        "is read back from the encrypted events (their data-subject field, decrypted with the subject's keys).")
    listing.add_argument("--ids", action="store_true",
                         help="also print each subject's id, recovered from the encrypted output (needs the KEK)")
    listing.add_argument("--paths", nargs="+", default=None, metavar="PATH",
                         help="encrypted JSONL files, directories or globs for --ids; default <output>/encrypted")
    add_store_options(listing, kek=True)
    listing.set_defaults(func=_list)

    links = actions.add_parser("keylinks", help="the keyLinks (and days) of one data subject")
    links.add_argument("subject", help="data subject id")
    links.add_argument("--hashed", action="store_true", help=_HASHED_HELP)
    add_store_options(links, kek=True)
    links.set_defaults(func=_keylinks)

    forget = actions.add_parser(
        "forget", help="delete the keys of data subjects (right to be forgotten); prints the number of keys deleted",
        description="Deletes every key listing one of the subjects from the key store, then reads every file under "
        "--output (hidden and temp files included) and removes every copy of those keys: key rows, privacy-stream "
        "rows, key exports, access reports. Encrypted exports stay: nothing can decrypt them any more. A file it "
        "cannot clean is named and the exit status is 1.")
    forget.add_argument("subjects", nargs="+", metavar="SUBJECT", help="data subject ids")
    forget.add_argument("--hashed", action="store_true", help=_HASHED_HELP)
    forget.add_argument("--key-export", action="append", default=[], metavar="FILE",
                        help="a key-export file (pstream keys export) to remove the keys from; repeatable")
    forget.add_argument("--compact", action="store_true",
                        help="then rewrite the key store's files (PostgreSQL: VACUUM FULL), as `pstream keys compact`")
    add_store_options(forget, kek=True)
    add_audit_options(forget)
    forget.set_defaults(func=_forget)

    export = actions.add_parser(
        "export", help="access request: every record of a data subject, decrypted, as JSON",
        description="Finds the subject's events in the encrypted exports through their keyLinks, decrypts them "
        "with the key store's keys and prints a JSON report (keys, policies, records).")
    export.add_argument("subject", help="data subject id")
    export.add_argument("--paths", nargs="+", default=None, metavar="PATH",
                        help="encrypted JSONL files, directories or globs; default <output>/encrypted")
    export.add_argument("--contract", default=None,
                        help="contract reference or YAML path; default: each event's strmMeta.eventContractRef")
    export.add_argument("-o", "--report", default="-", help="file to write the report to; - for stdout (default)")
    export.add_argument("--quiet", action="store_true", help="no progress line (shown only on a terminal)")
    add_force_option(export)
    add_store_options(export, kek=True)
    add_audit_options(export)
    export.set_defaults(func=_export)


def _fail(command: str, exc: Exception) -> int:
    print(f"pstream subjects {command}: {exc}", file=sys.stderr)
    return 2


def _plans(contract: str | None):
    """plan_for(ref): one FieldPlan per contract reference (or the one --contract); None if unknown."""
    from contracts import ContractError
    from controlplane.contracts import load_for_reading as load_contract   # jsonschema: not for --help

    fixed = FieldPlan(load_contract(contract)) if contract else None
    plans: dict = {}

    def plan_for(ref):
        if fixed is not None:
            return fixed
        if ref not in plans:
            try:
                plans[ref] = FieldPlan(load_contract(ref))
            except (ContractError, TypeError, ValueError):
                plans[ref] = None
        return plans[ref]

    return plan_for


def _read_events(files: list[str], links: set[str] | None = None, progress=None):
    """Events of the files; with ``links``, other lines are skipped without being parsed.
    ``progress``: a ``pipelines.progress.Progress`` that counts the lines and bytes scanned."""
    from apache_beam.io.filesystems import FileSystems

    for path in files:
        with FileSystems.open(path) as raw:
            for line in iter(raw.readline, b""):
                if progress is not None:
                    progress.advance(1, len(line))
                if not line.strip():
                    continue
                if links is None or key_link_of_line(line) in links:
                    yield json.loads(line)


def _ids_of(args, store, wanted: set[str]) -> tuple[dict[str, str], int]:
    """{subject hash: id} recovered from the encrypted output, and the number of files read."""
    from cli.export_files import encrypted_files

    kek = open_kek(args)
    ids = lookup_key(store, kek)
    keys = StoreKeys(store, kek, max_age_s=float("inf"))
    files = encrypted_files(args.paths or args.output)
    plan_for = _plans(None)
    found: dict[str, str] = {}
    chunk: list[dict] = []

    def flush():
        known = keys.keys({(e.get("strmMeta") or {}).get("keyLink") for e in chunk} - {None})
        found.update(recover_subject_ids(chunk, plan_for, known.get, ids, wanted - found.keys()))
        chunk.clear()

    for event in _read_events(files):
        chunk.append(event)
        if len(chunk) >= 5000:
            flush()
            if len(found) == len(wanted):
                break
    if chunk:
        flush()
    return found, len(files)


def _shown(subject: str) -> str:
    """An id as one column: as it is, or as a JSON string when it holds tabs, newlines or other controls."""
    return json.dumps(subject, ensure_ascii=False) if any(ord(c) < 32 or ord(c) == 127 for c in subject) else subject


def _list(args) -> int:
    from contracts import ContractError

    try:
        store = open_store(args)
        rows = store.subjects()
        found, files = _ids_of(args, store, {h for h, _ in rows}) if args.ids and rows else ({}, 0)
    except (KeyStoreError, KekError, ContractError) as exc:
        return _fail("list", exc)
    for subject_hash, count in rows:
        print(f"{subject_hash}\t{count}" + (f"\t{_shown(found.get(subject_hash, ''))}" if args.ids else ""))
    recovered = f" ({len(found)} ids recovered from {files} encrypted files)" if args.ids else ""
    print(f"{len(rows)} data subjects{recovered}", file=sys.stderr)
    return 0


def _keylinks(args) -> int:
    try:
        store = open_store(args)
        hashes = subject_hashes(args, store, [check_subject_id(args.subject)], args.hashed)
        records = store.keys_of_subjects(hashes.values())
    except (KeyStoreError, KekError, ValueError) as exc:
        return _fail("keylinks", exc)
    for record in records:
        print(f"{record.key_link}\t{record.day}")
    print(f"{len(records)} keyLinks", file=sys.stderr)
    return 0


def _forget(args) -> int:
    started = time.monotonic()
    try:
        subjects = {check_subject_id(s) for s in args.subjects}
        from controlplane.spool_lifecycle import forget_in_output_spool   # a `pstream local` project's spool
        store = open_store(args)
        audit = RequestAudit(args, store, "subjects", "forget")   # a log that cannot take the entry: nothing done
        spooled = forget_in_output_spool(args.output, subjects)
        if spooled is not None:
            print(spooled.summary(), file=sys.stderr)
        hashes = subject_hashes(args, store, sorted(subjects), args.hashed)
        deleted = store.delete_subjects(hashes.values())
    except (KeyStoreError, KekError, ValueError) as exc:
        return _fail("forget", exc)
    from cli.export_files import scrub_output   # Beam's file systems: not imported for --help
    report = scrub_output(local_output(args), set(deleted), set(hashes.values()),
                          set() if args.hashed else subjects, extra=args.key_export,
                          skip=store_files(store) + audit.files())
    if args.compact:
        store.compact()
    print(f"deleted {len(deleted)} keys")
    if not audit.done("subjects forget", {
            "subjects": len(subjects), "keysDeleted": len(deleted), "filesRead": report.files,
            **removed_counts(report), "filesLeft": len(report.left),
            "spoolEventsRemoved": spooled.events_removed if spooled is not None else 0},
            hashed=bool(args.hashed), compact=bool(args.compact)):
        return 1
    print(f"{report.summary()} in {time.monotonic() - started:.2f} s", file=sys.stderr)
    report_residue(store, "subjects forget")
    if report.left:
        print(f"pstream subjects forget: INCOMPLETE: {len(report.left)} files under the output still hold the "
              "forgotten keys in a form forget cannot rewrite; remove or clean them:\n  " + "\n  ".join(report.left),
              file=sys.stderr)
        return 1
    return 0


def _export(args) -> int:
    from contracts import ContractError
    from controlplane.contracts import load_for_reading as load_contract   # jsonschema: not for --help

    problem = refuse_plaintext_path(args.report, "an access report (personal data)", args.force)
    if problem:
        print(f"pstream subjects export: {problem}", file=sys.stderr)
        return 2
    try:
        subject = check_subject_id(args.subject)
        store = open_store(args)
        audit = RequestAudit(args, store, "subjects", "export")   # a log that cannot take the entry: nothing done
        kek = open_kek(args)
        records = store.keys_of_subjects([open_ids(args, store).subject_hash(subject)])
        keys = {r.key_link: SivKey(r.key_id, kek.unwrap(r.wrapped_key, r.key_link.encode())) for r in records}
        plan_for = _plans(args.contract)
        policies = {p.policy_id: p for p in store.policies()}
    except (KeyStoreError, KekError, ContractError, ValueError) as exc:
        return _fail("export", exc)
    from cli.export_files import encrypted_files   # Beam's file systems: not imported for --help
    files = encrypted_files(args.paths or args.output, key_days(records)) if records else []
    from pipelines.progress import Progress, input_bytes
    total = sum(input_bytes(f) or 0 for f in files) if files and not args.quiet else None
    with Progress("scanning encrypted events", total_bytes=total, enabled=not args.quiet, unit="lines") as progress:
        report = access_report(subject, records, keys, _read_events(files, set(keys), progress), plan_for, policies)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if args.report == "-":
        sys.stdout.write(text)
    else:
        with open_private(args.report, "w", encoding="utf-8") as handle:  # personal data: owner only
            handle.write(text)
    print(f"{report['recordCount']} records of {len(records)} keys in {len(files)} files"
          f"{'; ' + str(report['undecryptable']) + ' undecryptable' if report['undecryptable'] else ''}",
          file=sys.stderr)
    counts = {"subjects": 1, "keys": len(records), "records": report["recordCount"], "filesRead": len(files),
              "undecryptable": report["undecryptable"]}
    return 0 if audit.done("subjects export", counts, to="stdout" if args.report == "-" else "file") else 1

