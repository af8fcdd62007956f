"""The PostgreSQL key store: the production backend (Cloud SQL, AlloyDB, RDS, on-prem PostgreSQL).

    from privacy.keystore import open_key_store
    store = open_key_store("postgresql://keys@10.0.0.5:5432/privacy?schema=pstream&sslmode=require")
    store = open_key_store("postgresql://")      # everything from PGHOST, PGPORT, PGUSER, PGPASSWORD,
                                                 # PGDATABASE (and PGSSLMODE)

Same interface as ``privacy.keystore.SqliteKeyStore``; importing this module registers the
``postgresql://`` and ``postgres://`` schemes in ``KEY_STORES`` (``open_key_store`` does it on
first use). The driver is pg8000 (pure Python; Beam's GCP extra installs it too); batches go as one
array literal per column (``_array``), unnested by the server, so a batch is one statement. The URI's
password, if any, is never shown: ``store.uri`` leaves it out. On Dataflow or Flink give the
workers a reachable address (Cloud SQL's private IP or the Cloud SQL Auth Proxy, an RDS
endpoint) and credentials through the URI or the PG* environment variables.

The schema (``?schema=``, default ``public``) is created on first use, under an advisory lock so
that workers starting together do not race: ``data_keys`` (primary key keyLink; UNIQUE
(value_hash, day); index on expires_at), ``key_subjects`` (primary key (subject_hash, keyLink),
so indexed by subject; index on keyLink; rows go with their key, ON DELETE CASCADE),
``policies``, ``store_keys`` (the look-up key and masking keys, wrapped) and ``store_meta``
(``schema_version``). No key-field value or subject id is stored, only their keyed hashes.

What a DELETE leaves: PostgreSQL marks deleted rows dead and keeps their bytes in the table's
files until the space is reused; the write-ahead log, base backups, replicas and PITR archives
keep their own copies. ``compact()`` (``pstream keys compact``) runs ``VACUUM FULL`` on the key
tables: each is rewritten into a new file holding only live rows, and the old file is removed.
See docs/key-management.md for what remains outside the table files and what to do about it.

Concurrent writers: ``insert_new`` inserts a batch with ``ON CONFLICT DO NOTHING`` in one
transaction (one statement with its subject rows, for a batch of up to 5,000), rows sorted by
(value, day) so that two batches lock rows in the same order and cannot deadlock; ``RETURNING``
names the rows it kept, and only the (value, day)s it lost are read
back. A writer that lost a (value, day) to another waits for the winner's commit and gets the
winner's row; ``KeyRing.keys_for`` encrypts only with
returned rows. Deadlocks, serialization failures and dropped connections are retried.
"""
from __future__ import annotations

import os
import re
import ssl
import threading
import time
from typing import Iterable
from urllib.parse import parse_qs, unquote, urlsplit

import pg8000.native

from privacy.keystore import (SCHEMA_VERSION, KEY_STORES, KeyRecord, KeyStoreError, Pair, needs_migration,
                              old_version_message)
from privacy.lookup import LOOKUP_KEY, LookupKey, new_store_key, open_store_key

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RETRY_CODES = {"40P01", "40001", "57P01"}  # deadlock, serialization failure, admin shutdown
_ATTEMPTS = 5
_CHUNK = 5000
_COLUMNS = "key_link, value_hash, day, key_id, wrapped_key, kek_uri, created_at, expires_at, policy_id"


KEY_TABLES = ("data_keys", "key_subjects", "store_keys", "store_meta", "policies")


def _schema_sql(schema: str) -> list[str]:
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".data_keys (
            key_link TEXT PRIMARY KEY,
            value_hash TEXT NOT NULL,
            day DATE NOT NULL,
            key_id BIGINT NOT NULL,
            wrapped_key BYTEA NOT NULL,
            kek_uri TEXT NOT NULL,
            policy_id TEXT NOT NULL DEFAULT '',
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            CONSTRAINT data_keys_one_per_value_and_day UNIQUE (value_hash, day))""",
        f"""CREATE TABLE IF NOT EXISTS "{schema}".key_subjects (
            subject_hash TEXT NOT NULL,
            key_link TEXT NOT NULL REFERENCES "{schema}".data_keys (key_link) ON DELETE CASCADE,
            PRIMARY KEY (subject_hash, key_link))""",
        f'CREATE INDEX IF NOT EXISTS key_subjects_by_link ON "{schema}".key_subjects (key_link)',
        f'CREATE INDEX IF NOT EXISTS data_keys_by_expiry ON "{schema}".data_keys (expires_at)',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".policies (
            policy_id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            retention_days INTEGER NOT NULL,
            legal_grounds TEXT NOT NULL DEFAULT '',
            description TEXT NOT NULL DEFAULT '')""",
        f"""CREATE TABLE IF NOT EXISTS "{schema}".store_keys (
            name TEXT PRIMARY KEY,
            wrapped_key BYTEA NOT NULL,
            kek_uri TEXT NOT NULL,
            created_at BIGINT NOT NULL)""",
        f'CREATE TABLE IF NOT EXISTS "{schema}".store_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)',
        f"""INSERT INTO "{schema}".store_meta (name, value) VALUES ('schema_version', '{SCHEMA_VERSION}')
            ON CONFLICT DO NOTHING""",
    ]


def _array(values) -> str:
    """A PostgreSQL array literal of texts, every element quoted (``CAST(:x AS text[])`` reads it).

    pg8000 escapes a Python list element by element in Python, character by character: for the
    key store's batches (hex hashes, keyLinks, days) that was most of a new key's cost. Here each
    element is quoted with two C-level replaces; NULL elements are not needed (none of our
    columns is nullable)."""
    return "{" + ",".join(['"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values]) + "}"


def _int_array(values) -> str:
    return "{" + ",".join([str(int(v)) for v in values]) + "}"


def _chunks(items: list, size: int = _CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def connection_options(uri: str) -> tuple[dict, str, str]:
    """pg8000 connect() arguments, the schema, and the URI without its password."""
    parts = urlsplit(uri)
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    env = os.environ
    options = {
        "host": parts.hostname or env.get("PGHOST", "127.0.0.1"),
        "port": parts.port or int(env.get("PGPORT", "5432")),
        "user": unquote(parts.username) if parts.username else env.get("PGUSER") or env.get("USER", "postgres"),
        "database": unquote(parts.path.lstrip("/")) or env.get("PGDATABASE") or None,
        "password": unquote(parts.password) if parts.password is not None else env.get("PGPASSWORD"),
        "application_name": "pstream-keystore",
        "timeout": float(query["timeout"]) if "timeout" in query else None,  # socket timeout, seconds
    }
    sslmode = query.get("sslmode", env.get("PGSSLMODE", "disable"))
    if sslmode in ("require", "verify-ca", "verify-full"):
        context = ssl.create_default_context()
        if sslmode == "require":  # encrypted, not verified: libpq's meaning of 'require'
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        options["ssl_context"] = context
    elif sslmode not in ("disable", "allow", "prefer"):
        raise KeyStoreError(f"sslmode '{sslmode}' is not one of disable, require, verify-ca, verify-full")
    schema = query.get("schema", "public")
    if not SCHEMA_NAME.match(schema):
        raise KeyStoreError(f"schema '{schema}': use lowercase letters, digits and '_' (at most 63)")
    shown = f"postgresql://{options['user']}@{options['host']}:{options['port']}/{options['database'] or ''}"
    return options, schema, f"{shown}?schema={schema}"


class PostgresKeyStore:
    """Key store in PostgreSQL; see the module docstring."""

    def __init__(self, uri: str, migrating: bool = False):
        self._options, self.schema, self.uri = connection_options(uri)
        self._lock = threading.Lock()
        self._db = None
        self._compacted = False
        self._deleted = False
        self._connect()
        self.schema_version = self._transaction(self._create_or_read_version)
        if self.schema_version != SCHEMA_VERSION and not migrating:
            self.close()
            raise KeyStoreError(old_version_message(self.uri, self.schema_version))

    def _create_or_read_version(self, db) -> int:
        """Under the advisory lock: create the schema of a new store, or read an existing one's version."""
        db.run("SELECT pg_advisory_xact_lock(hashtext('pstream.keystore.schema'))")
        version = self._version(db)
        if version is None:
            for sql in _schema_sql(self.schema):
                db.run(sql)
            version = SCHEMA_VERSION
        return version

    def _version(self, db) -> int | None:
        meta, keys = db.run("SELECT to_regclass(:m), to_regclass(:k)",
                            m=f'"{self.schema}".store_meta', k=f'"{self.schema}".data_keys')[0]
        if meta is not None:
            rows = db.run(f"SELECT value FROM {self._t}.store_meta WHERE name = 'schema_version'")
            return int(rows[0][0]) if rows else 1
        return 1 if keys is not None else None

    def _connect(self) -> None:
        try:
            self._db = pg8000.native.Connection(**self._options)
        except (pg8000.native.InterfaceError, OSError) as exc:
            where = f"{self._options['host']}:{self._options['port']}"
            raise KeyStoreError(f"cannot connect to the PostgreSQL key store at {where}: {exc}") from None

    def _transaction(self, work, alone: bool = False):
        """Run work(connection) in one transaction, retrying deadlocks and lost connections.
        ``alone``: work is one statement, its own transaction (no START and COMMIT round trips)."""
        with self._lock:
            for attempt in range(_ATTEMPTS):
                try:
                    if self._db is None:
                        self._connect()
                    if alone:
                        return work(self._db)
                    self._db.run("START TRANSACTION")
                    try:
                        result = work(self._db)
                        self._db.run("COMMIT")
                        return result
                    except BaseException:
                        try:
                            self._db.run("ROLLBACK")
                        except Exception:
                            pass
                        raise
                except pg8000.native.DatabaseError as exc:
                    code = exc.args[0].get("C") if exc.args and isinstance(exc.args[0], dict) else None
                    if code not in _RETRY_CODES or attempt == _ATTEMPTS - 1:
                        raise
                except pg8000.native.InterfaceError:
                    self._db = None  # connection lost: reconnect and try again
                    if attempt == _ATTEMPTS - 1:
                        raise
                time.sleep(0.01 * 2**attempt)

    @property
    def _t(self) -> str:
        return f'"{self.schema}"'

    def _select(self, db, where: str, **params) -> list[KeyRecord]:
        rows = db.run(
            f"SELECT k.key_link, k.value_hash, to_char(k.day, 'YYYY-MM-DD'), k.key_id, k.wrapped_key, "
            f"k.kek_uri, k.created_at, k.expires_at, k.policy_id, "
            f"array_remove(array_agg(s.subject_hash ORDER BY s.subject_hash), NULL) "
            f"FROM {self._t}.data_keys k LEFT JOIN {self._t}.key_subjects s ON s.key_link = k.key_link "
            f"WHERE {where} GROUP BY k.key_link", **params)
        return [KeyRecord(r[0], r[1], r[2], int(r[3]), bytes(r[4]), r[5], int(r[6]), int(r[7]), tuple(r[9] or ()), r[8])
                for r in rows]

    def _lookup(self, db, pairs: list[Pair]) -> dict[Pair, KeyRecord]:
        found = {}
        for chunk in _chunks(pairs):
            for record in self._select(
                db, "(k.value_hash, k.day) IN (SELECT * FROM unnest(CAST(:values AS text[]), CAST(:days AS date[])))",
                values=_array([p[0] for p in chunk]), days=_array([p[1] for p in chunk]),
            ):
                found[record.pair] = record
        return found

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, KeyRecord]:
        pairs = list(pairs)
        return self._transaction(lambda db: self._lookup(db, pairs), alone=len(pairs) <= _CHUNK) if pairs else {}

    def insert_new(self, records: list[KeyRecord]) -> dict[Pair, KeyRecord]:
        records = sorted(records, key=lambda r: r.pair)  # one lock order for every writer
        if not records:
            return {}
        kept = self._transaction(lambda db: self._insert(db, records), alone=len(records) <= _CHUNK)
        found = {r.pair: r for r in records if r.key_link in kept}  # ours, as inserted (with their subjects)
        lost = [r.pair for r in records if r.key_link not in kept]
        if lost:  # another writer's (value, day): its row, read after its commit (the INSERT waited for it)
            found.update(self.lookup(lost))
        return found

    def _insert(self, db, records: list[KeyRecord]) -> set[str]:
        """Insert what is absent, with its subject rows, one statement per chunk; returns the keyLinks
        inserted (the rest lost to rows already there, whose subjects ``add_subjects`` adds)."""
        kept = set()
        for chunk in _chunks(records):
            subjects = sorted((s, r.key_link) for r in chunk for s in r.subject_hashes)
            rows = db.run(
                f"WITH ins AS (INSERT INTO {self._t}.data_keys ({_COLUMNS}) "
                "SELECT key_link, value_hash, day, key_id, decode(wrapped_key, 'hex'), kek_uri, created_at, "
                "expires_at, policy_id FROM unnest(CAST(:links AS text[]), CAST(:values AS text[]), "
                "CAST(:days AS date[]), CAST(:ids AS bigint[]), CAST(:wrapped AS text[]), CAST(:keks AS text[]), "
                "CAST(:created AS bigint[]), CAST(:expires AS bigint[]), CAST(:policies AS text[])) "
                "AS u(key_link, value_hash, day, key_id, wrapped_key, kek_uri, created_at, expires_at, policy_id) "
                "ORDER BY value_hash, day ON CONFLICT DO NOTHING RETURNING key_link), "
                f"subjects AS (INSERT INTO {self._t}.key_subjects (subject_hash, key_link) "
                "SELECT s.subject, s.key_link FROM unnest(CAST(:subjects AS text[]), CAST(:subject_links AS text[])) "
                "AS s(subject, key_link) JOIN ins ON ins.key_link = s.key_link ORDER BY 1, 2 ON CONFLICT DO NOTHING) "
                "SELECT key_link FROM ins",
                links=_array([r.key_link for r in chunk]), values=_array([r.value_hash for r in chunk]),
                days=_array([r.day for r in chunk]), ids=_int_array([r.key_id for r in chunk]),
                wrapped=_array([r.wrapped_key.hex() for r in chunk]), keks=_array([r.kek_uri for r in chunk]),
                created=_int_array([r.created_at for r in chunk]), expires=_int_array([r.expires_at for r in chunk]),
                policies=_array([r.policy_id for r in chunk]),
                subjects=_array([s for s, _ in subjects]), subject_links=_array([link for _, link in subjects]),
            )
            kept.update(row[0] for row in rows)
        return kept

    def _add_subjects(self, db, links_subjects: list[tuple[str, str]]) -> None:
        rows = sorted({(subject, link) for link, subject in links_subjects})
        for chunk in _chunks(rows):
            # Only for keys that exist: a key lost to another writer, or deleted meanwhile, gets none.
            db.run(
                f"INSERT INTO {self._t}.key_subjects (subject_hash, key_link) "
                f"SELECT u.subject, k.key_link FROM unnest(CAST(:subjects AS text[]), CAST(:links AS text[])) "
                f"AS u(subject, key_link) JOIN {self._t}.data_keys k ON k.key_link = u.key_link "
                f"ORDER BY 1, 2 ON CONFLICT DO NOTHING",
                subjects=_array([r[0] for r in chunk]), links=_array([r[1] for r in chunk]),
            )

    def add_subjects(self, links_subjects: Iterable[tuple[str, str]]) -> None:
        rows = list(links_subjects)
        if rows:
            self._transaction(lambda db: self._add_subjects(db, rows))

    def by_links(self, links: Iterable[str]) -> dict[str, KeyRecord]:
        links = sorted(set(links))

        def work(db):
            found = {}
            for chunk in _chunks(links):
                for record in self._select(db, "k.key_link = ANY(CAST(:links AS text[]))", links=_array(chunk)):
                    found[record.key_link] = record
            return found

        return self._transaction(work) if links else {}

    def subjects(self) -> list[tuple[str, int]]:
        rows = self._transaction(lambda db: db.run(
            f"SELECT subject_hash, count(*) FROM {self._t}.key_subjects GROUP BY subject_hash ORDER BY subject_hash"))
        return [(r[0], int(r[1])) for r in rows]

    def keys_of_subjects(self, subject_hashes: Iterable[str]) -> list[KeyRecord]:
        subjects = sorted(set(subject_hashes))
        if not subjects:
            return []
        records = self._transaction(lambda db: self._select(
            db, f"k.key_link IN (SELECT key_link FROM {self._t}.key_subjects WHERE subject_hash = ANY(CAST(:s AS text[])))",
            s=_array(subjects)))
        return sorted(records, key=lambda r: (r.day, r.key_link))

    def delete_subjects(self, subject_hashes: Iterable[str]) -> list[str]:
        subjects = sorted(set(subject_hashes))
        if not subjects:
            return []
        rows = self._transaction(lambda db: db.run(
            f"DELETE FROM {self._t}.data_keys WHERE key_link IN (SELECT key_link FROM {self._t}.key_subjects "
            f"WHERE subject_hash = ANY(CAST(:s AS text[]))) RETURNING key_link", s=_array(subjects)))
        self._deleted = self._deleted or bool(rows)
        return sorted(r[0] for r in rows)

    def purge_expired(self, now_ms: int) -> list[str]:
        rows = self._transaction(lambda db: db.run(
            f"DELETE FROM {self._t}.data_keys WHERE expires_at <= :now RETURNING key_link", now=int(now_ms)))
        self._deleted = self._deleted or bool(rows)
        return sorted(r[0] for r in rows)

    def save_policy(self, policy) -> None:
        self._transaction(lambda db: db.run(
            f"INSERT INTO {self._t}.policies (policy_id, name, retention_days, legal_grounds, description) "
            "VALUES (:id, :name, :days, :grounds, :description) ON CONFLICT (policy_id) DO UPDATE SET "
            "name = excluded.name, retention_days = excluded.retention_days, "
            "legal_grounds = excluded.legal_grounds, description = excluded.description",
            id=policy.policy_id, name=policy.name, days=policy.retention_days,
            grounds=policy.legal_grounds, description=policy.description))

    def policies(self) -> list:
        from privacy.policies import Policy

        rows = self._transaction(lambda db: db.run(
            f"SELECT policy_id, name, retention_days, legal_grounds, description FROM {self._t}.policies "
            "ORDER BY policy_id"))
        return [Policy(*row) for row in rows]

    def _store_key_row(self, db, name: str, kek) -> bytes:
        rows = db.run(f"SELECT wrapped_key FROM {self._t}.store_keys WHERE name = :n", n=name)
        if not rows:  # the first writer's key stays; a loser waits for its commit and reads it
            db.run(f"INSERT INTO {self._t}.store_keys (name, wrapped_key, kek_uri, created_at) "
                   "VALUES (:n, :w, :k, :c) ON CONFLICT DO NOTHING",
                   n=name, w=new_store_key(kek, name), k=kek.uri, c=int(time.time() * 1000))
            rows = db.run(f"SELECT wrapped_key FROM {self._t}.store_keys WHERE name = :n", n=name)
        return bytes(rows[0][0])

    def store_key(self, name: str, kek) -> bytes:
        wrapped = self._transaction(lambda db: self._store_key_row(db, name, kek))
        return open_store_key(kek, name, wrapped, self.uri)

    def relation_files(self) -> dict[str, str]:
        """{relation name: its main file, relative to the server's data directory} for this store's
        tables, their TOAST tables and every index on them (what ``compact`` rewrites)."""
        rows = self._transaction(lambda db: db.run(
            "SELECT c.relname, pg_relation_filepath(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind IN ('r', 'i') "
            "UNION ALL SELECT t.relname, pg_relation_filepath(t.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class t ON t.oid = c.reltoastrelid "
            "WHERE n.nspname = :s", s=self.schema))
        return {name: path for name, path in rows if path}

    def _size(self) -> int:
        return int(self._transaction(lambda db: db.run(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = :s AND c.relkind = 'r'", s=self.schema))[0][0])

    def compact(self) -> dict:
        """VACUUM FULL on every key table: each is rewritten into a new file of live rows only (with its
        indexes and TOAST table) and the old files are removed. Takes an exclusive lock on each table
        for the time of its rewrite: writers wait, they do not fail."""
        before = self._size()
        with self._lock:
            if self._db is None:
                self._connect()
            for table in KEY_TABLES:
                self._db.run(f"VACUUM FULL {self._t}.{table}")  # outside a transaction (autocommit)
        self._compacted, self._deleted = True, False
        return {"bytes before": before, "bytes after": self._size(), "complete": True}

    def residue(self) -> str | None:
        if self._deleted and not self._compacted:
            return ("PostgreSQL keeps deleted rows' bytes in its table files until they are rewritten: run "
                    f"`pstream keys compact --key-store {self.uri}` (VACUUM FULL); its WAL, backups, replicas "
                    "and archives keep copies for as long as they are kept (docs/key-management.md)")
        return None

    def migrate(self, kek) -> int:
        """Schema 1 -> 2 in one transaction: rows read, old tables dropped, hashed rows written back."""
        if not needs_migration(self.uri, self.schema_version):
            return 0

        def work(db):
            db.run("SELECT pg_advisory_xact_lock(hashtext('pstream.keystore.schema'))")
            if self._version(db) == SCHEMA_VERSION:  # another process migrated it meanwhile
                return 0
            keys = db.run(f"SELECT key_link, key_field_value, to_char(day, 'YYYY-MM-DD'), key_id, wrapped_key, "
                          f"kek_uri, created_at, expires_at, policy_id FROM {self._t}.data_keys")
            subjects = db.run(f"SELECT subject, key_link FROM {self._t}.key_subjects")
            db.run(f"DROP TABLE {self._t}.key_subjects, {self._t}.data_keys")
            for sql in _schema_sql(self.schema):
                db.run(sql)
            ids = LookupKey(open_store_key(kek, LOOKUP_KEY, self._store_key_row(db, LOOKUP_KEY, kek), self.uri))
            by_link: dict[str, list[str]] = {}
            for subject, link in subjects:
                by_link.setdefault(link, []).append(ids.subject_hash(subject))
            self._insert(db, sorted(
                (KeyRecord(r[0], ids.value_hash(r[1]), r[2], int(r[3]), bytes(r[4]), r[5], int(r[6]), int(r[7]),
                           tuple(by_link.get(r[0], ())), r[8]) for r in keys), key=lambda r: r.pair))
            return len(keys)

        count = self._transaction(work)  # one transaction: the old rows or the new ones, never neither
        self.schema_version = SCHEMA_VERSION
        return count

    def drop_schema(self) -> None:
        """Drop this store's schema and every key in it (tests; decommissioning). Not for 'public'."""
        if self.schema == "public":
            raise KeyStoreError("refusing to drop the public schema")
        self._transaction(lambda db: db.run(f"DROP SCHEMA IF EXISTS {self._t} CASCADE"))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                try:
                    self._db.close()
                except Exception:
                    pass
                self._db = None


def _open(rest: str, migrating: bool = False) -> PostgresKeyStore:
    return PostgresKeyStore("postgresql://" + rest, migrating)


KEY_STORES["postgresql"] = _open
KEY_STORES["postgres"] = _open
