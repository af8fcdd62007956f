"""``pstream subjects``: list data subjects, their keyLinks, forget them, answer access requests.

    pstream subjects list --output out                   # subject and number of keys, one a line
    pstream subjects keylinks 477049 --output out        # keyLink and day, one a line
    pstream subjects forget 477049 107296 --output out   # prints: deleted 7 keys
    pstream subjects export 477049 --output out -o dsar.json

``forget`` deletes every key that lists one of the subjects from the key store (their encrypted
data, wherever it was copied, can no longer be decrypted) and removes the rows of those keys
from the output root's ``keys/`` and ``streams/`` files and from key-export files (found under
the root, or named with --key-export). The number printed is the number of keys deleted from
the key store. ``export`` is a data-subject access request: it reads only encrypted files that
can hold the subject's events (day partitions of their keys' days) and decrypts only lines whose
keyLink is theirs. The key store may be PostgreSQL (--key-store postgresql://...). For the
output root of a ``pstream local`` pipeline (``<project>/out/<id>``, see ``pstream get stream``),
``forget`` first removes the subjects' events from that pipeline's spool
(``controlplane.spool_lifecycle.forget_in_output_spool``).
"""
from __future__ import annotations

import json
import sys

from cli.main import summary
from cli.store_options import add_store_options, local_output, open_kek, open_store
from privacy.daead import SivKey
from privacy.fields import FieldPlan
from privacy.kek import KekError
from privacy.keystore import KeyStoreError
from privacy.subjects import access_report, check_subject_id, key_days, key_link_of_line


def register(subparsers) -> None:
    subjects = subparsers.add_parser("subjects", help=summary("subjects"))
    actions = subjects.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    listing = actions.add_parser("list", help="data subjects in the key store, with their number of keys")
    add_store_options(listing)
    listing.set_defaults(func=_list)

    links = actions.add_parser("keylinks", help="the keyLinks (and days) of one data subject")
    links.add_argument("subject", help="data subject id")
    add_store_options(links)
    links.set_defaults(func=_keylinks)

    forget = actions.add_parser(
        "forget", help="delete the keys of data subjects (right to be forgotten); prints the number of keys deleted",
        description="Deletes every key listing one of the subjects from the key store, then removes the rows of "
        "those keys from keys/, streams/ and key-export files under --output. Encrypted exports stay: "
        "nothing can decrypt them any more.")
    forget.add_argument("subjects", nargs="+", metavar="SUBJECT", help="data subject ids")
    forget.add_argument("--key-export", action="append", default=[], metavar="FILE",
                        help="a key-export file (pstream keys export) to remove the keys from; repeatable")
    add_store_options(forget)
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
    add_store_options(export, kek=True)
    export.set_defaults(func=_export)


def _fail(command: str, exc: Exception) -> int:
    print(f"pstream subjects {command}: {exc}", file=sys.stderr)
    return 2


def _list(args) -> int:
    try:
        rows = open_store(args).subjects()
    except KeyStoreError as exc:
        return _fail("list", exc)
    for subject, count in rows:
        print(f"{subject}\t{count}")
    print(f"{len(rows)} data subjects", file=sys.stderr)
    return 0


def _keylinks(args) -> int:
    try:
        records = open_store(args).keys_of_subjects([check_subject_id(args.subject)])
    except (KeyStoreError, ValueError) as exc:
        return _fail("keylinks", exc)
    for record in records:
        print(f"{record.key_link}\t{record.day}")
    print(f"{len(records)} keyLinks", file=sys.stderr)
    return 0


def _forget(args) -> int:
    try:
        subjects = {check_subject_id(s) for s in args.subjects}
        from controlplane.spool_lifecycle import forget_in_output_spool   # a `pstream local` project's spool
        spooled = forget_in_output_spool(args.output, subjects)
        if spooled is not None:
            print(spooled.summary(), file=sys.stderr)
        store = open_store(args)
        deleted = store.delete_subjects(subjects)
    except (KeyStoreError, ValueError) as exc:
        return _fail("forget", exc)
    from cli.export_files import scrub_output   # Beam's file systems: not imported for --help
    removed = scrub_output(local_output(args), set(deleted), subjects, extra=args.key_export)
    print(f"deleted {len(deleted)} keys")
    print("removed rows: " + ", ".join(f"{kind} {count}" for kind, count in removed.items()), file=sys.stderr)
    return 0


def _events(files: list[str], links: set[str]):
    """Events of the keyLinks: other lines are skipped without being parsed."""
    from apache_beam.io.filesystems import FileSystems

    for path in files:
        with FileSystems.open(path) as raw:
            for line in iter(raw.readline, b""):
                if key_link_of_line(line) in links:
                    yield json.loads(line)


def _export(args) -> int:
    from contracts import ContractError, load_contract   # the loader (jsonschema): not for --help

    try:
        subject = check_subject_id(args.subject)
        store = open_store(args)
        records = store.keys_of_subjects([subject])
        kek = open_kek(args) if records else None
        keys = {r.key_link: SivKey(r.key_id, kek.unwrap(r.wrapped_key, r.key_link.encode())) for r in records}
        fixed = FieldPlan(load_contract(args.contract)) if args.contract else None
        policies = {p.policy_id: p for p in store.policies()}
    except (KeyStoreError, KekError, ContractError, ValueError) as exc:
        return _fail("export", exc)
    plans: dict[str, FieldPlan] = {}

    def plan_for(ref: str) -> FieldPlan:
        if fixed is not None:
            return fixed
        if ref not in plans:
            plans[ref] = FieldPlan(load_contract(ref))
        return plans[ref]

    from cli.export_files import encrypted_files
    files = encrypted_files(args.paths or args.output, key_days(records)) if records else []
    report = access_report(subject, records, keys, _events(files, set(keys)), plan_for, policies)
    text = json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if args.report == "-":
        sys.stdout.write(text)
    else:
        with open(args.report, "w", encoding="utf-8") as handle:
            handle.write(text)
    print(f"{report['recordCount']} records of {len(records)} keys in {len(files)} files"
          f"{'; ' + str(report['undecryptable']) + ' undecryptable' if report['undecryptable'] else ''}",
          file=sys.stderr)
    return 0
