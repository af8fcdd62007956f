"""The key store: the one source of truth for data keys, stored only wrapped by a KEK.

One key per (key-field value, UTC day). The store never sees a key-field value or a data-subject
id: it is given, stores and is asked for their keyed hashes (HMAC-SHA-256 under the store's
look-up key, ``privacy.lookup``). The unique constraint on (value hash, day) decides between
concurrent writers: ``insert_new`` inserts what is missing and returns the rows that were kept,
which may be another writer's. Callers encrypt only with kept keys (see ``privacy.keyring``), so
no event is ever left encrypted with a key that was not stored.

    from privacy.keystore import open_key_store
    from privacy.lookup import lookup_key
    store = open_key_store("sqlite:///out/keystore.sqlite")   # or a plain path
    ids = lookup_key(store, kek)                              # the store's look-up key (HMAC)
    kept = store.insert_new([record, ...])                  # {(value hash, day): KeyRecord}
    store.lookup([(ids.value_hash("477049"), "2022-09-16")]) # {(value hash, day): KeyRecord}
    store.by_links(["c4b90723-..."])                        # {keyLink: KeyRecord}

Data subjects and retention (both backends), by subject hash (``ids.subject_hash(id)``)::

    store.subjects()                        # [(subject hash, number of keys), ...] by hash
    store.keys_of_subjects([h])             # [KeyRecord, ...] by day: the subject's keyLinks
    store.delete_subjects([h])              # keyLinks deleted (crypto-shredding); len() = count
    store.purge_expired(now_ms)             # keyLinks deleted because expiresAt <= now_ms
    store.save_policy(policy); store.policies()
    store.store_key("mask/webshop-1", kek)  # a key of the store's own, made once, kept wrapped
    store.compact()                         # rewrite the files so deleted rows' bytes are gone
    store.residue()                         # None, or what of deleted rows the storage still holds

A key lists every data subject whose events it encrypted; deleting a subject deletes every key
that lists them (a key shared with another subject goes too: its data can no longer be split).

The SQLite store sets ``secure_delete`` (deleted rows are overwritten with zeros) and truncates
its write-ahead log after every delete, so a forgotten key's bytes are gone from both files at
once (``residue()`` says so when another process kept the log from being truncated). Commits are
durable (``synchronous=FULL``: the log is fsynced before a commit returns), as PostgreSQL's are:
a key that encrypted output must outlive a power loss.

Schema version 2 (``store_meta.schema_version``). A store of an older version (plaintext
key-field values and subject ids) is refused with a message naming ``pstream keys migrate``;
``migrate_key_store(uri, kek)`` rewrites it in place. Backends register in ``KEY_STORES`` by URI
scheme; the SQLite one needs no set-up, and ``postgresql://`` (``privacy.keystore_pg``) is
imported on first use.
"""
from __future__ import annotations

import importlib
import sqlite3
import threading
import time
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Protocol

from privacy.private_files import private_file
from privacy.lookup import LOOKUP_KEY, LookupKey, new_store_key, open_store_key

Pair = tuple[str, str]  # (key-field value hash, UTC day 'YYYY-MM-DD')
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class KeyRecord:
    """A data key as stored: wrapped, with the hashes of what it belongs to and when it expires."""

    key_link: str
    value_hash: str  # HMAC-SHA-256 of the key-field value (privacy.lookup), never the value
    day: str
    key_id: int
    wrapped_key: bytes = field(repr=False)
    kek_uri: str
    created_at: int  # epoch ms
    expires_at: int  # epoch ms
    subject_hashes: tuple[str, ...] = ()
    policy_id: str = ""

    @cached_property  # read several times per new key; frozen fields, so it never changes
    def pair(self) -> Pair:
        return (self.value_hash, self.day)


class KeyStore(Protocol):
    uri: str

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, KeyRecord]: ...

    def insert_new(self, records: list[KeyRecord]) -> dict[Pair, KeyRecord]: ...

    def add_subjects(self, links_subjects: Iterable[tuple[str, str]]) -> None: ...

    def by_links(self, links: Iterable[str]) -> dict[str, KeyRecord]: ...

    def subjects(self) -> list[tuple[str, int]]: ...

    def keys_of_subjects(self, subject_hashes: Iterable[str]) -> list[KeyRecord]: ...

    def delete_subjects(self, subject_hashes: Iterable[str]) -> list[str]: ...

    def purge_expired(self, now_ms: int) -> list[str]: ...

    def save_policy(self, policy) -> None: ...

    def policies(self) -> list: ...

    def store_key(self, name: str, kek) -> bytes: ...

    def compact(self) -> dict: ...

    def residue(self) -> str | None: ...

    def close(self) -> None: ...


class KeyStoreError(RuntimeError):
    """A key store that cannot be opened or used."""


def old_version_message(uri: str, version: int) -> str:
    if version > SCHEMA_VERSION:
        return (f"the key store {uri} has schema version {version}, newer than this pstream knows "
                f"({SCHEMA_VERSION}): use a newer pstream")
    return (f"the key store {uri} was made by an older pstream (schema version {version}: key-field values "
            f"and data-subject ids in plaintext). Migrate it once with `pstream keys migrate --key-store "
            f"{uri} --kek <its KEK> --output <the runs' output root>` (it also rewrites the keys/ rows); "
            f"see docs/key-management.md")


def needs_migration(uri: str, version: int) -> bool:
    """False for a current store, True for one of version 1; KeyStoreError for any other version."""
    if version == SCHEMA_VERSION:
        return False
    if version != 1:
        raise KeyStoreError(old_version_message(uri, version))
    return True


def migrate_key_store(uri: str | Path, kek) -> int:
    """Rewrite a store of schema version 1 to the current one (hashes for values and subject ids,
    the old rows' bytes removed); the number of keys migrated, 0 if it was current already."""
    store = open_key_store(uri, migrating=True)
    try:
        return store.migrate(kek)
    finally:
        store.close()


_TABLES = [
    """CREATE TABLE IF NOT EXISTS data_keys (
    key_link TEXT PRIMARY KEY,
    value_hash TEXT NOT NULL,
    day TEXT NOT NULL,
    key_id INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    kek_uri TEXT NOT NULL,
    policy_id TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    UNIQUE (value_hash, day))""",
    """CREATE TABLE IF NOT EXISTS key_subjects (
    subject_hash TEXT NOT NULL,
    key_link TEXT NOT NULL REFERENCES data_keys (key_link) ON DELETE CASCADE,
    PRIMARY KEY (subject_hash, key_link))""",
    "CREATE INDEX IF NOT EXISTS key_subjects_by_link ON key_subjects (key_link)",
    "CREATE INDEX IF NOT EXISTS data_keys_by_expiry ON data_keys (expires_at)",
    """CREATE TABLE IF NOT EXISTS policies (
    policy_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    retention_days INTEGER NOT NULL,
    legal_grounds TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '')""",
    """CREATE TABLE IF NOT EXISTS store_keys (
    name TEXT PRIMARY KEY,
    wrapped_key BLOB NOT NULL,
    kek_uri TEXT NOT NULL,
    created_at INTEGER NOT NULL)""",
    "CREATE TABLE IF NOT EXISTS store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    f"INSERT OR IGNORE INTO store_meta (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}')",
]
_COLUMNS = "key_link, value_hash, day, key_id, wrapped_key, kek_uri, created_at, expires_at, policy_id"
_CHUNK = 400  # stays under SQLite's limit of bound parameters per statement
CACHE_KIB = 32 * 1024  # SQLite's page cache per connection (its default is 2 MiB)
CHECKPOINT_PAGES = 10_000  # WAL pages (4 KiB) between checkpoints (default 1,000)


def _chunks(items: list, size: int = _CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _now_ms() -> int:
    return int(time.time() * 1000)


class SqliteKeyStore:
    """Key store in one SQLite file (WAL mode; safe for several processes on one machine)."""

    def __init__(self, path: str | Path, migrating: bool = False):
        self.path = Path(path)
        self.uri = f"sqlite://{self.path.resolve()}"
        for suffix in ("", "-wal", "-shm"):  # owner-only before SQLite opens it (-wal, -shm take its mode)
            if not suffix or Path(f"{self.path}{suffix}").exists():
                private_file(f"{self.path}{suffix}")
        self._lock = threading.Lock()
        self._wal_kept = False
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")  # deleted rows are overwritten with zeros, not just unlinked
        if self._db.execute("PRAGMA secure_delete").fetchone()[0] != 1:
            raise KeyStoreError(f"SQLite {sqlite3.sqlite_version} cannot overwrite deleted rows (secure_delete)")
        self._use_wal(timeout=60)
        # FULL: a commit is on disk before it returns (in WAL mode NORMAL keeps the last commits
        # only in the OS cache, where a power loss takes them), so no key that encrypted output
        # is lost with the machine; it costs one fsync per batch of keys.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # random index pages: keep many in memory
        self._db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")  # fewer, larger checkpoints
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self.schema_version = self._version()
                if self.schema_version is None:
                    for statement in _TABLES:
                        self._db.execute(statement)
                    self.schema_version = SCHEMA_VERSION
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._db.close()
                raise
        if self.schema_version != SCHEMA_VERSION and not migrating:
            self._db.close()
            raise KeyStoreError(old_version_message(self.uri, self.schema_version))

    def _use_wal(self, timeout: float) -> None:
        """Switch to WAL mode. SQLite answers "locked" at once, without waiting, while another
        process creates or switches the same new file (workers starting together): try again."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _version(self) -> int | None:
        """The schema version of the open file: None for a new, empty one; 1 before store_meta existed."""
        tables = {name for (name,) in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "store_meta" in tables:
            row = self._db.execute("SELECT value FROM store_meta WHERE name = 'schema_version'").fetchone()
            return int(row[0]) if row else 1
        return 1 if "data_keys" in tables else None

    def _records(self, where: str, params: list) -> list[KeyRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM data_keys WHERE {where}", params).fetchall()
        if not rows:
            return []
        subjects: dict[str, list[str]] = {}
        for chunk in _chunks([r[0] for r in rows]):
            marks = ",".join("?" * len(chunk))
            for subject, link in self._db.execute(
                f"SELECT subject_hash, key_link FROM key_subjects WHERE key_link IN ({marks})", chunk
            ):
                subjects.setdefault(link, []).append(subject)
        return [
            KeyRecord(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7], tuple(sorted(subjects.get(r[0], ()))), r[8])
            for r in rows
        ]

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, KeyRecord]:
        pairs = list(pairs)
        found = {}
        with self._lock:
            for chunk in _chunks(pairs, _CHUNK // 2):
                where = " OR ".join(["(value_hash = ? AND day = ?)"] * len(chunk))
                for record in self._records(where, [v for pair in chunk for v in pair]):
                    found[(record.value_hash, record.day)] = record
        return found

    def insert_new(self, records: list[KeyRecord]) -> dict[Pair, KeyRecord]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany(
                    f"INSERT OR IGNORE INTO data_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                    [
                        (r.key_link, r.value_hash, r.day, r.key_id, r.wrapped_key, r.kek_uri,
                         r.created_at, r.expires_at, r.policy_id)
                        for r in records
                    ],
                )
                all_inserted = self._db.total_changes - before == len(records)
                self._db.executemany(  # every key is ours and there: no look-up per subject row
                    "INSERT OR IGNORE INTO key_subjects (subject_hash, key_link) VALUES (?, ?)" if all_inserted else
                    "INSERT OR IGNORE INTO key_subjects (subject_hash, key_link) "
                    "SELECT ?, key_link FROM data_keys WHERE key_link = ?",
                    [(s, r.key_link) for r in records for s in r.subject_hashes],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        pairs = [(r.value_hash, r.day) for r in records]  # = r.pair, without the cached_property's cost
        if all_inserted and len(set(pairs)) == len(records):
            # Every row is ours: return what the store now holds without reading it back.
            kept = {}
            for pair, r in zip(pairs, records):
                subjects = r.subject_hashes
                if len(subjects) > 1 and subjects != tuple(sorted(set(subjects))):
                    r = replace(r, subject_hashes=tuple(sorted(set(subjects))))
                kept[pair] = r
            return kept
        return self.lookup(pairs)

    def add_subjects(self, links_subjects: Iterable[tuple[str, str]]) -> None:
        """Add (keyLink, subject hash) rows; a key deleted meanwhile (forgotten, purged) gets none."""
        rows = [(subject, link) for link, subject in links_subjects]
        if rows:
            with self._lock:
                self._db.executemany(
                    "INSERT OR IGNORE INTO key_subjects (subject_hash, key_link) "
                    "SELECT ?, key_link FROM data_keys WHERE key_link = ?", rows)

    def by_links(self, links: Iterable[str]) -> dict[str, KeyRecord]:
        links = list(links)
        found = {}
        with self._lock:
            for chunk in _chunks(links):
                for record in self._records(f"key_link IN ({','.join('?' * len(chunk))})", chunk):
                    found[record.key_link] = record
        return found

    def subjects(self) -> list[tuple[str, int]]:
        with self._lock:
            return [tuple(row) for row in self._db.execute(
                "SELECT subject_hash, count(*) FROM key_subjects GROUP BY subject_hash ORDER BY subject_hash")]

    def keys_of_subjects(self, subject_hashes: Iterable[str]) -> list[KeyRecord]:
        subject_hashes = sorted(set(subject_hashes))
        found: dict[str, KeyRecord] = {}
        with self._lock:
            for chunk in _chunks(subject_hashes):
                where = (f"key_link IN (SELECT key_link FROM key_subjects WHERE subject_hash IN "
                         f"({','.join('?' * len(chunk))}))")
                for record in self._records(where, chunk):
                    found[record.key_link] = record
        return sorted(found.values(), key=lambda r: (r.day, r.key_link))

    def _delete_where(self, select_links: str, params: list) -> list[str]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                links = [row[0] for row in self._db.execute(select_links, params)]
                for chunk in _chunks(links):
                    self._db.execute(f"DELETE FROM data_keys WHERE key_link IN ({','.join('?' * len(chunk))})", chunk)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            if links:
                self._truncate_wal()
        return sorted(links)

    def _truncate_wal(self, wait_s: float = 2.0) -> None:
        """Copy the log into the file and truncate it: the log's older frames still hold the deleted
        rows as they were inserted. A process reading the store meanwhile keeps it from finishing;
        after ``wait_s`` that is left to ``residue()`` to report rather than waiting for it."""
        self._db.execute(f"PRAGMA busy_timeout={int(wait_s * 1000)}")
        try:
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self._db.execute("PRAGMA busy_timeout=60000")  # the connection's own timeout (connect(timeout=60))
        self._wal_kept = bool(busy)

    def delete_subjects(self, subject_hashes: Iterable[str]) -> list[str]:
        deleted: list[str] = []
        for chunk in _chunks(sorted(set(subject_hashes))):
            deleted += self._delete_where(
                f"SELECT DISTINCT key_link FROM key_subjects WHERE subject_hash IN ({','.join('?' * len(chunk))})",
                chunk)
        return sorted(deleted)

    def purge_expired(self, now_ms: int) -> list[str]:
        return self._delete_where("SELECT key_link FROM data_keys WHERE expires_at <= ?", [int(now_ms)])

    def save_policy(self, policy) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO policies (policy_id, name, retention_days, legal_grounds, description) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (policy_id) DO UPDATE SET name = excluded.name, "
                "retention_days = excluded.retention_days, legal_grounds = excluded.legal_grounds, "
                "description = excluded.description",
                (policy.policy_id, policy.name, policy.retention_days, policy.legal_grounds, policy.description))

    def policies(self) -> list:
        from privacy.policies import Policy  # privacy.policies imports the key ring, which imports us

        with self._lock:
            rows = self._db.execute("SELECT policy_id, name, retention_days, legal_grounds, description "
                                    "FROM policies ORDER BY policy_id").fetchall()
        return [Policy(*row) for row in rows]

    def _store_key_row(self, name: str, kek) -> bytes:
        row = self._db.execute("SELECT wrapped_key FROM store_keys WHERE name = ?", (name,)).fetchone()
        if row is None:  # the first writer's key stays; others read it back
            self._db.execute("INSERT OR IGNORE INTO store_keys (name, wrapped_key, kek_uri, created_at) "
                             "VALUES (?, ?, ?, ?)", (name, new_store_key(kek, name), kek.uri, _now_ms()))
            row = self._db.execute("SELECT wrapped_key FROM store_keys WHERE name = ?", (name,)).fetchone()
        return bytes(row[0])

    def store_key(self, name: str, kek) -> bytes:
        with self._lock:
            wrapped = self._store_key_row(name, kek)
        return open_store_key(kek, name, wrapped, self.uri)

    def compact(self) -> dict:
        """Rebuild the file (VACUUM: fresh B-trees, no free pages) and truncate the log."""
        files = [self.path, Path(f"{self.path}-wal")]
        before = sum(p.stat().st_size for p in files if p.exists())
        with self._lock:
            self._db.execute("VACUUM")
            self._truncate_wal(wait_s=60)
        after = sum(p.stat().st_size for p in files if p.exists())
        return {"bytes before": before, "bytes after": after, "complete": not self._wal_kept}

    def residue(self) -> str | None:
        if self._wal_kept:
            return (f"another process has {self.path} open, so its write-ahead log (which may still hold the "
                    f"deleted keys) was not truncated: run `pstream keys compact` once it is idle")
        return None

    def migrate(self, kek) -> int:
        """Schema 1 -> 2 in one transaction: hashes for values and subjects; then VACUUM."""
        if not needs_migration(self.uri, self.schema_version):
            return 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in ("DROP INDEX IF EXISTS key_subjects_by_link", "DROP INDEX IF EXISTS data_keys_by_expiry",
                                  "ALTER TABLE key_subjects RENAME TO v1_key_subjects",
                                  "ALTER TABLE data_keys RENAME TO v1_data_keys", *_TABLES):
                    self._db.execute(statement)
                ids = LookupKey(open_store_key(kek, LOOKUP_KEY, self._store_key_row(LOOKUP_KEY, kek), self.uri))
                self._db.create_function("pstream_value_hash", 1, ids.value_hash, deterministic=True)
                self._db.create_function("pstream_subject_hash", 1, ids.subject_hash, deterministic=True)
                self._db.execute(
                    f"INSERT INTO data_keys ({_COLUMNS}) SELECT key_link, pstream_value_hash(key_field_value), day, "
                    "key_id, wrapped_key, kek_uri, created_at, expires_at, policy_id FROM v1_data_keys")
                count = self._db.execute("SELECT count(*) FROM data_keys").fetchone()[0]
                self._db.execute("INSERT OR IGNORE INTO key_subjects (subject_hash, key_link) "
                                 "SELECT pstream_subject_hash(subject), key_link FROM v1_key_subjects")
                self._db.execute("DROP TABLE v1_key_subjects")
                self._db.execute("DROP TABLE v1_data_keys")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self.schema_version = SCHEMA_VERSION
        self.compact()  # the old rows' pages were zeroed (secure_delete); VACUUM and the log truncation finish it
        return count

    def close(self) -> None:
        self._db.close()


KEY_STORES: dict[str, Callable[..., KeyStore]] = {
    "sqlite": SqliteKeyStore,
}
# Backends in other modules (with their own database drivers) register themselves on import.
STORE_MODULES = {"postgresql": "privacy.keystore_pg", "postgres": "privacy.keystore_pg"}


def open_key_store(uri: str | Path, migrating: bool = False) -> KeyStore:
    """Open a key store by URI: ``sqlite:///abs/path.sqlite``, ``sqlite://rel/path``, a plain path,
    or ``postgresql://user@host:5432/db?schema=keys`` (see ``privacy.keystore_pg``). A store of an
    older schema version is refused (KeyStoreError naming the migration) unless ``migrating``."""
    text = str(uri)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return SqliteKeyStore(text, migrating)
    if scheme not in KEY_STORES and scheme in STORE_MODULES:
        importlib.import_module(STORE_MODULES[scheme])
    if scheme not in KEY_STORES:
        raise KeyStoreError(f"unknown key store '{text}': use one of {', '.join(s + '://' for s in KEY_STORES)}")
    return KEY_STORES[scheme](rest, migrating)
