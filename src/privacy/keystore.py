"""The key store: the one source of truth for data keys, stored only wrapped by a KEK.

One key per (key-field value, UTC day). The store's unique constraint on that pair decides
between concurrent writers: ``insert_new`` inserts what is missing and returns the rows that
were kept, which may be another writer's. Callers encrypt only with kept keys (see
``privacy.keyring``), so no event is ever left encrypted with a key that was not stored.

    from privacy.keystore import open_key_store
    store = open_key_store("sqlite:///out/keystore.sqlite")   # or a plain path
    kept = store.insert_new([record, ...])                  # {(value, day): KeyRecord}
    store.lookup([("477049", "2022-09-16")])                # {(value, day): KeyRecord}
    store.by_links(["c4b90723-..."])                        # {keyLink: KeyRecord}

Data subjects and retention (both backends)::

    store.subjects()                        # [(subject, number of keys), ...] by subject
    store.keys_of_subjects(["477049"])      # [KeyRecord, ...] by day: the subject's keyLinks
    store.delete_subjects(["477049"])       # keyLinks deleted (crypto-shredding); len() = count
    store.purge_expired(now_ms)             # keyLinks deleted because expiresAt <= now_ms
    store.save_policy(policy); store.policies()

A key lists every data subject whose events it encrypted; deleting a subject deletes every key
that lists them (a key shared with another subject goes too: its data can no longer be split).

Backends register in ``KEY_STORES`` by URI scheme; the SQLite one needs no set-up, and
``postgresql://`` (``privacy.keystore_pg``) is imported on first use.
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

Pair = tuple[str, str]  # (key-field value, UTC day 'YYYY-MM-DD')


@dataclass(frozen=True)
class KeyRecord:
    """A data key as stored: wrapped, with what it belongs to and when it expires."""

    key_link: str
    key_field_value: str
    day: str
    key_id: int
    wrapped_key: bytes = field(repr=False)
    kek_uri: str
    created_at: int  # epoch ms
    expires_at: int  # epoch ms
    subjects: tuple[str, ...] = ()
    policy_id: str = ""

    @cached_property  # read several times per new key; frozen fields, so it never changes
    def pair(self) -> Pair:
        return (self.key_field_value, self.day)


class KeyStore(Protocol):
    uri: str

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, KeyRecord]: ...

    def insert_new(self, records: list[KeyRecord]) -> dict[Pair, KeyRecord]: ...

    def add_subjects(self, links_subjects: Iterable[tuple[str, str]]) -> None: ...

    def by_links(self, links: Iterable[str]) -> dict[str, KeyRecord]: ...

    def subjects(self) -> list[tuple[str, int]]: ...

    def keys_of_subjects(self, subjects: Iterable[str]) -> list[KeyRecord]: ...

    def delete_subjects(self, subjects: Iterable[str]) -> list[str]: ...

    def purge_expired(self, now_ms: int) -> list[str]: ...

    def save_policy(self, policy) -> None: ...

    def policies(self) -> list: ...

    def close(self) -> None: ...


class KeyStoreError(RuntimeError):
    """A key store that cannot be opened or used."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS data_keys (
    key_link TEXT PRIMARY KEY,
    key_field_value TEXT NOT NULL,
    day TEXT NOT NULL,
    key_id INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    kek_uri TEXT NOT NULL,
    policy_id TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    UNIQUE (key_field_value, day)
);
CREATE TABLE IF NOT EXISTS key_subjects (
    subject TEXT NOT NULL,
    key_link TEXT NOT NULL REFERENCES data_keys (key_link) ON DELETE CASCADE,
    PRIMARY KEY (subject, key_link)
);
CREATE INDEX IF NOT EXISTS key_subjects_by_link ON key_subjects (key_link);
CREATE INDEX IF NOT EXISTS data_keys_by_expiry ON data_keys (expires_at);
CREATE TABLE IF NOT EXISTS policies (
    policy_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    retention_days INTEGER NOT NULL,
    legal_grounds TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT ''
);
"""
_COLUMNS = "key_link, key_field_value, day, key_id, wrapped_key, kek_uri, created_at, expires_at, policy_id"
_CHUNK = 400  # stays under SQLite's limit of bound parameters per statement
CACHE_KIB = 32 * 1024  # SQLite's page cache per connection (its default is 2 MiB)
CHECKPOINT_PAGES = 10_000  # WAL pages (4 KiB) between checkpoints (default 1,000)


def _chunks(items: list, size: int = _CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqliteKeyStore:
    """Key store in one SQLite file (WAL mode; safe for several processes on one machine)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.uri = f"sqlite://{self.path.resolve()}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        self._use_wal(timeout=60)
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")  # random index pages: keep many in memory
        self._db.execute(f"PRAGMA wal_autocheckpoint={CHECKPOINT_PAGES}")  # fewer, larger checkpoints
        with self._lock:
            self._db.executescript(_SCHEMA)

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

    def _records(self, where: str, params: list) -> list[KeyRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM data_keys WHERE {where}", params).fetchall()
        if not rows:
            return []
        subjects: dict[str, list[str]] = {}
        for chunk in _chunks([r[0] for r in rows]):
            marks = ",".join("?" * len(chunk))
            for subject, link in self._db.execute(
                f"SELECT subject, key_link FROM key_subjects WHERE key_link IN ({marks})", chunk
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
                where = " OR ".join(["(key_field_value = ? AND day = ?)"] * len(chunk))
                for record in self._records(where, [v for pair in chunk for v in pair]):
                    found[record.pair] = record
        return found

    def insert_new(self, records: list[KeyRecord]) -> dict[Pair, KeyRecord]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                before = self._db.total_changes
                self._db.executemany(
                    f"INSERT OR IGNORE INTO data_keys ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)",
                    [
                        (r.key_link, r.key_field_value, r.day, r.key_id, r.wrapped_key, r.kek_uri,
                         r.created_at, r.expires_at, r.policy_id)
                        for r in records
                    ],
                )
                all_inserted = self._db.total_changes - before == len(records)
                self._db.executemany(
                    "INSERT OR IGNORE INTO key_subjects (subject, key_link) "
                    "SELECT ?, key_link FROM data_keys WHERE key_link = ?",
                    [(s, r.key_link) for r in records for s in r.subjects],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if all_inserted and len({r.pair for r in records}) == len(records):
            # Every row is ours: return what the store now holds without reading it back.
            return {r.pair: r if r.subjects == tuple(sorted(set(r.subjects))) else
                    replace(r, subjects=tuple(sorted(set(r.subjects)))) for r in records}
        return self.lookup(r.pair for r in records)

    def add_subjects(self, links_subjects: Iterable[tuple[str, str]]) -> None:
        rows = [(subject, link) for link, subject in links_subjects]
        if rows:
            with self._lock:  # a key deleted meanwhile (forgotten, purged) gets no subject row
                self._db.executemany(
                    "INSERT OR IGNORE INTO key_subjects (subject, key_link) "
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
                "SELECT subject, count(*) FROM key_subjects GROUP BY subject ORDER BY subject")]

    def keys_of_subjects(self, subjects: Iterable[str]) -> list[KeyRecord]:
        subjects = sorted(set(subjects))
        found: dict[str, KeyRecord] = {}
        with self._lock:
            for chunk in _chunks(subjects):
                where = (f"key_link IN (SELECT key_link FROM key_subjects WHERE subject IN "
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
        return sorted(links)

    def delete_subjects(self, subjects: Iterable[str]) -> list[str]:
        deleted: list[str] = []
        for chunk in _chunks(sorted(set(subjects))):
            deleted += self._delete_where(
                f"SELECT DISTINCT key_link FROM key_subjects WHERE subject IN ({','.join('?' * len(chunk))})", chunk)
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

    def close(self) -> None:
        self._db.close()


KEY_STORES: dict[str, Callable[[str], KeyStore]] = {
    "sqlite": SqliteKeyStore,
}
# Backends in other modules (with their own database drivers) register themselves on import.
STORE_MODULES = {"postgresql": "privacy.keystore_pg", "postgres": "privacy.keystore_pg"}


def open_key_store(uri: str | Path) -> KeyStore:
    """Open a key store by URI: ``sqlite:///abs/path.sqlite``, ``sqlite://rel/path``, a plain path,
    or ``postgresql://user@host:5432/db?schema=keys`` (see ``privacy.keystore_pg``)."""
    text = str(uri)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return SqliteKeyStore(text)
    if scheme not in KEY_STORES and scheme in STORE_MODULES:
        importlib.import_module(STORE_MODULES[scheme])
    if scheme not in KEY_STORES:
        raise KeyStoreError(f"unknown key store '{text}': use one of {', '.join(s + '://' for s in KEY_STORES)}")
    return KEY_STORES[scheme](rest)
