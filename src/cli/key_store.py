"""``pstream keys compact`` and ``pstream keys migrate``, and what forget and purge share about the store.

    pstream keys compact --key-store postgresql://keys@db:5432/privacy?schema=pstream
    pstream keys compact --output out                  # the local SQLite store: VACUUM
    pstream keys migrate --output out                  # a store of an older version, and its keys/ rows

``compact`` rewrites the key store's files so that the bytes of deleted rows (forgotten subjects,
purged keys) are gone from them: PostgreSQL runs ``VACUUM FULL`` on the key tables (each is
rewritten into a new file of live rows; writers wait while it runs), SQLite runs ``VACUUM`` and
truncates its write-ahead log. What a PostgreSQL server keeps elsewhere (WAL segments, backups,
replicas, archives) is in docs/key-management.md.

``migrate`` turns a store of schema version 1 (plaintext key-field values and subject ids) into
the current one, in one transaction, then rewrites the key rows under ``--output`` (``keys/``
and any other file holding key rows): ``keyFieldValue`` and ``dataSubjects`` become
``keyFieldHash`` and ``dataSubjectHashes``. It needs the store's KEK (the look-up key it makes is
wrapped by it). Running it again changes nothing.
"""
from __future__ import annotations

import os
import sys

from cli.store_options import RequestAudit, add_audit_options, add_store_options, local_output, open_kek, open_store
from privacy.kek import KekError
from privacy.keystore import KeyStoreError, SqliteKeyStore
from privacy.lookup import is_hash, lookup_key


def register(key_actions) -> None:
    """Adds ``compact`` and ``migrate`` to the ``pstream keys`` sub-commands (called by cli.keys)."""
    compact = key_actions.add_parser(
        "compact", help="rewrite the key store's files so deleted keys' bytes are gone (PostgreSQL: VACUUM FULL)",
        description="After forget or purge: PostgreSQL keeps deleted rows in its table files until they are "
        "rewritten; this runs VACUUM FULL on the key tables (SQLite: VACUUM and a truncated log).")
    add_store_options(compact)
    add_audit_options(compact)
    compact.set_defaults(func=_compact)
    migrate = key_actions.add_parser(
        "migrate", help="upgrade a key store of an older version (plaintext ids) and its keys/ rows to hashes",
        description="Rewrites a key store of schema version 1 in one transaction: key-field values and subject "
        "ids become keyed hashes (HMAC-SHA-256 under a new look-up key wrapped by --kek); then the key rows "
        "under --output get keyFieldHash and dataSubjectHashes instead of the plaintext fields.")
    add_store_options(migrate, kek=True)
    migrate.set_defaults(func=_migrate)


def open_ids(args, store):
    """The store's look-up key, with the KEK of --kek (or the output root's)."""
    return lookup_key(store, open_kek(args))


def subject_hashes(args, store, subjects: list[str], hashed: bool) -> dict[str, str]:
    """{given argument: subject hash}: hashed with the store's look-up key, or checked as hashes (--hashed)."""
    if hashed:
        bad = [s for s in subjects if not is_hash(s)]
        if bad:
            raise ValueError(f"--hashed: {len(bad)} of the arguments are not 64 lowercase hex characters")
        return {s: s for s in subjects}
    ids = open_ids(args, store)
    return {s: ids.subject_hash(s) for s in subjects}


def store_files(store) -> list[str]:
    """The key store's own files (a SQLite store and its log): forget's scan leaves them to the store."""
    if isinstance(store, SqliteKeyStore):
        return [str(store.path) + suffix for suffix in ("", "-wal", "-shm", "-journal")]
    return []


def report_residue(store, command: str) -> None:
    note = store.residue()
    if note:
        print(f"pstream {command}: note: {note}", file=sys.stderr)


def _compact(args) -> int:
    try:
        store = open_store(args)
        audit = RequestAudit(args, store, "keys", "compact")
        result = store.compact()
    except (KeyStoreError, ValueError) as exc:
        print(f"pstream keys compact: {exc}", file=sys.stderr)
        return 2
    print(f"compacted {store.uri}: {result['bytes before']:,} -> {result['bytes after']:,} bytes")
    report_residue(store, "keys compact")
    logged = audit.done("keys compact", {"bytesBefore": result["bytes before"], "bytesAfter": result["bytes after"]},
                      complete=bool(result["complete"]))
    return 0 if result["complete"] and logged else 1


def _rewrite(ids):
    def rewrite(row: dict) -> dict:
        if "keyFieldValue" not in row and "dataSubjects" not in row:
            return row
        new = {}
        for name, value in row.items():
            if name == "keyFieldValue":
                new["keyFieldHash"] = ids.value_hash(value)
            elif name == "dataSubjects":
                new["dataSubjectHashes"] = sorted({ids.subject_hash(s) for s in value or ()})
            else:
                new[name] = value
        return new

    return rewrite


def _migrate(args) -> int:
    try:
        store = open_store(args, migrating=True)
        kek = open_kek(args)
        count = store.migrate(kek)
        ids = lookup_key(store, kek)
    except (KeyStoreError, KekError) as exc:
        print(f"pstream keys migrate: {exc}", file=sys.stderr)
        return 2
    root = local_output(args)
    from cli.export_files import rewrite_key_rows   # Beam's file systems: not imported for --help
    rows = rewrite_key_rows(root, _rewrite(ids)) if root and (("://" in root) or os.path.isdir(root)) else 0
    print(f"migrated {count} keys in {store.uri}; rewrote {rows} key rows"
          + (f" under {root}" if root else ""))
    return 0
