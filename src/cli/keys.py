"""``pstream keys export`` and ``pstream decrypt``: plaintext keys out, decrypted events out.

    pstream keys export out/keys --kek local://out/kek.json -o keys.csv
    pstream decrypt out/encrypted --keys keys.csv > decrypted.jsonl

``keys export`` unwraps the key rows of one or more runs into the reference's key-export format
(keyLink, Tink JSON keyset, policyId, expiresAt). ``decrypt`` decrypts every PII field of
encrypted events with those keys; events whose key is not in the file (forgotten subjects) keep
their non-PII fields and get null PII fields, and are counted on stderr.
"""
from __future__ import annotations

import sys

import orjson

from cli.jsonl_files import read_jsonl
from cli import key_store
from cli.main import summary
from cli.plaintext_paths import add_force_option, refuse_plaintext_path
from cli.policies import register_purge
from privacy.daead import DecryptError
from privacy.fields import FieldPlan
from privacy.kek import KekError, kek_from_uri
from privacy.key_export import export_keys, format_key_export, read_key_export
from privacy.private_files import open_private


def register(subparsers) -> None:
    keys = subparsers.add_parser("keys", help=summary("keys"))
    actions = keys.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    export = actions.add_parser(
        "export", help="unwrap key rows (a run's keys/ output) into the reference's key-export format",
        description="Unwraps key rows with the KEK and writes keyLink, encryptionKey (a Tink JSON keyset), "
        "policyId, expiresAt. The output holds PLAINTEXT KEYS: keep it as safe as the data itself.")
    export.add_argument("paths", nargs="+", help="keys/ directories, JSONL files or globs (local or URIs)")
    export.add_argument("--kek", required=True, help="the KEK URI the run used, e.g. local://out/kek.json")
    export.add_argument("--output", "-o", default="-", help="file to write: .csv (default format) or .jsonl; - for stdout")
    export.add_argument("--quiet", action="store_true", help="no progress line (shown only on a terminal)")
    add_force_option(export)
    export.set_defaults(func=_export)
    register_purge(actions)  # pstream keys purge (cli/policies.py)
    key_store.register(actions)  # pstream keys compact | migrate (cli/key_store.py)

    decrypt = subparsers.add_parser(
        "decrypt", help=summary("decrypt"),
        description="Decrypts every PII field of encrypted events (one JSON object per line) with a key-export "
        "file, writing one decrypted event per line.")
    decrypt.add_argument("paths", nargs="+", help="encrypted JSONL files, directories or globs")
    decrypt.add_argument("--keys", required=True, help="key-export file from `pstream keys export` (.csv or .jsonl)")
    decrypt.add_argument("--contract", default=None,
                         help="contract reference or YAML path; default: each event's strmMeta.eventContractRef")
    decrypt.add_argument("--output", "-o", default="-", help="file to write; - for stdout (default)")
    decrypt.add_argument("--quiet", action="store_true", help="no progress line (shown only on a terminal)")
    add_force_option(decrypt)
    decrypt.set_defaults(func=_decrypt)


def _open_output(path: str):
    """stdout, or a file only its owner can read (plaintext keys, decrypted events)."""
    return sys.stdout if path == "-" else open_private(path, "w", newline="")


def _export(args) -> int:
    from pipelines.progress import track

    problem = refuse_plaintext_path(args.output, "plaintext keys", args.force)
    if problem:
        print(f"pstream keys export: {problem}", file=sys.stderr)
        return 2
    try:
        kek = kek_from_uri(args.kek)
        rows = list(track(export_keys((row for _, _, row in read_jsonl(args.paths)), kek), "exporting keys",
                          enabled=not args.quiet, unit="keys"))
    except (KekError, KeyError, ValueError) as exc:
        print(f"pstream keys export: {exc}", file=sys.stderr)
        return 2
    out = _open_output(args.output)
    out.write(format_key_export(rows, args.output.endswith(".jsonl")))
    if out is not sys.stdout:
        out.close()
    print(f"exported {len(rows)} keys (plaintext) to {args.output if args.output != '-' else 'stdout'}", file=sys.stderr)
    return 0


def _decrypt(args) -> int:
    from contracts import ContractError
    from controlplane.contracts import load_for_reading as load_contract   # jsonschema: not for --help
    from pipelines.progress import track

    problem = refuse_plaintext_path(args.output, "decrypted events", args.force)
    if problem:
        print(f"pstream decrypt: {problem}", file=sys.stderr)
        return 2
    try:
        keys = read_key_export(args.keys)
        fixed_plan = FieldPlan(load_contract(args.contract)) if args.contract else None
    except (OSError, ContractError, KeyError, ValueError) as exc:
        print(f"pstream decrypt: {exc}", file=sys.stderr)
        return 2
    plans: dict[str, FieldPlan] = {}
    decrypted = missing = failed = 0
    out = _open_output(args.output)
    for path, number, event in track(read_jsonl(args.paths), "decrypting", enabled=not args.quiet, unit="events"):
        meta = event.get("strmMeta") or {}
        plan = fixed_plan
        if plan is None:
            ref = meta.get("eventContractRef")
            if ref not in plans:
                try:
                    plans[ref] = FieldPlan(load_contract(ref))
                except ContractError as exc:
                    print(f"pstream decrypt: {path}:{number}: {exc} (--contract names the contract of these events)",
                          file=sys.stderr)
                    if out is not sys.stdout:
                        out.close()
                    return 2
            plan = plans[ref]
        key = keys.get(meta.get("keyLink"))
        if key is None:
            missing += 1
            event = plan.nullify(event)
        else:
            try:
                event = plan.decrypt_all(event, key)
                decrypted += 1
            except DecryptError as exc:
                failed += 1
                print(f"{path}:{number}: {exc}", file=sys.stderr)
                event = plan.nullify(event)
        out.write(orjson.dumps(event).decode() + "\n")
    if out is not sys.stdout:
        out.close()
    print(f"decrypted {decrypted} events; {missing} without a key (PII set to null); {failed} failed",
          file=sys.stderr)
    return 0
