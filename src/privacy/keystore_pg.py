"""The PostgreSQL key store: the production backend (Cloud SQL, AlloyDB, RDS, on-prem PostgreSQL).

    from privacy.keystore import open_key_store
    store = open_key_store("postgresql://keys@10.0.0.5:5432/privacy?schema=pstream&sslmode=require")
    store = open_key_store("postgresql://")      # everything from PGHOST, PGPORT, PGUSER, PGPASSWORD,
                                                 # PGDATABASE (and PGSSLMODE)

Same interface as ``privacy.keystore.SqliteKeyStore``; importing this module registers the
``postgresql://`` and ``postgres://`` schemes in ``KEY_STORES`` (``open_key_store`` does it on
first use). The driver is pg8000 (pure Python; Beam's GCP extra installs it too). The URI's
password, if any, is never shown: ``store.uri`` leaves it out. On Dataflow or Flink give the
workers a reachable address (Cloud SQL's private IP or the Cloud SQL Auth Proxy, an RDS
endpoint) and credentials through the URI or the PG* environment variables.

The schema (``?schema=``, default ``public``) is created on first use, under an advisory lock so
that workers starting together do not race: ``data_keys`` (primary key keyLink; UNIQUE
(key_field_value, day); index on expires_at), ``key_subjects`` (primary key (subject, keyLink),
so indexed by subject; index on keyLink; rows go with their key, ON DELETE CASCADE) and
``policies``.

Concurrent writers: ``insert_new`` inserts a batch with ``ON CONFLICT DO NOTHING`` in one
transaction, rows sorted by (value, day) so that two batches lock rows in the same order and
cannot deadlock, then reads back what was kept. A writer that lost a (value, day) to another
waits for the winner's commit and gets the winner's row; ``KeyRing.keys_for`` encrypts only with
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

from privacy.keystore import KEY_STORES, KeyRecord, KeyStoreError, Pair

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RETRY_CODES = {"40P01", "40001", "57P01"}  # deadlock, serialization failure, admin shutdown
_ATTEMPTS = 5
_CHUNK = 5000
_COLUMNS = "key_link, key_field_value, day, key_id, wrapped_key, kek_uri, created_at, expires_at, policy_id"


def _schema_sql(schema: str) -> list[str]:
    return [
        f'CREATE SCHEMA IF NOT EXISTS "{schema}"',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".data_keys (
            key_link TEXT PRIMARY KEY,
            key_field_value TEXT NOT NULL,
            day DATE NOT NULL,
            key_id BIGINT NOT NULL,
            wrapped_key BYTEA NOT NULL,
            kek_uri TEXT NOT NULL,
            policy_id TEXT NOT NULL DEFAULT '',
            created_at BIGINT NOT NULL,
            expires_at BIGINT NOT NULL,
            CONSTRAINT data_keys_one_per_value_and_day UNIQUE (key_field_value, day))""",
        f"""CREATE TABLE IF NOT EXISTS "{schema}".key_subjects (
            subject TEXT NOT NULL,
            key_link TEXT NOT NULL REFERENCES "{schema}".data_keys (key_link) ON DELETE CASCADE,
            PRIMARY KEY (subject, key_link))""",
        f'CREATE INDEX IF NOT EXISTS key_subjects_by_link ON "{schema}".key_subjects (key_link)',
        f'CREATE INDEX IF NOT EXISTS data_keys_by_expiry ON "{schema}".data_keys (expires_at)',
        f"""CREATE TABLE IF NOT EXISTS "{schema}".policies (
            policy_id TEXT PRIMARY KEY,
            name TEXT NOT NULL DEFAULT '',
            retention_days INTEGER NOT NULL,
            legal_grounds TEXT NOT NULL DEFAULT '',
            description TEXT NOT NULL DEFAULT '')""",
    ]


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

    def __init__(self, uri: str):
        self._options, self.schema, self.uri = connection_options(uri)
        self._lock = threading.Lock()
        self._db = None
        self._connect()
        self._transaction(lambda db: [db.run("SELECT pg_advisory_xact_lock(hashtext('pstream.keystore.schema'))")]
                          + [db.run(sql) for sql in _schema_sql(self.schema)])

    def _connect(self) -> None:
        try:
            self._db = pg8000.native.Connection(**self._options)
        except (pg8000.native.InterfaceError, OSError) as exc:
            where = f"{self._options['host']}:{self._options['port']}"
            raise KeyStoreError(f"cannot connect to the PostgreSQL key store at {where}: {exc}") from None

    def _transaction(self, work):
        """Run work(connection) in one transaction, retrying deadlocks and lost connections."""
        with self._lock:
            for attempt in range(_ATTEMPTS):
                try:
                    if self._db is None:
                        self._connect()
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
            f"SELECT k.key_link, k.key_field_value, to_char(k.day, 'YYYY-MM-DD'), k.key_id, k.wrapped_key, "
            f"k.kek_uri, k.created_at, k.expires_at, k.policy_id, "
            f"array_remove(array_agg(s.subject ORDER BY s.subject), NULL) "
            f"FROM {self._t}.data_keys k LEFT JOIN {self._t}.key_subjects s ON s.key_link = k.key_link "
            f"WHERE {where} GROUP BY k.key_link", **params)
        return [KeyRecord(r[0], r[1], r[2], int(r[3]), bytes(r[4]), r[5], int(r[6]), int(r[7]), tuple(r[9] or ()), r[8])
                for r in rows]

    def _lookup(self, db, pairs: list[Pair]) -> dict[Pair, KeyRecord]:
        found = {}
        for chunk in _chunks(pairs):
            for record in self._select(
                db, "(k.key_field_value, k.day) IN (SELECT * FROM unnest(CAST(:values AS text[]), CAST(:days AS date[])))",
                values=[p[0] for p in chunk], days=[p[1] for p in chunk],
            ):
                found[record.pair] = record
        return found

    def lookup(self, pairs: Iterable[Pair]) -> dict[Pair, KeyRecord]:
        pairs = list(pairs)
        return self._transaction(lambda db: self._lookup(db, pairs)) if pairs else {}

    def insert_new(self, records: list[KeyRecord]) -> dict[Pair, KeyRecord]:
        records = sorted(records, key=lambda r: r.pair)  # one lock order for every writer

        def work(db):
            for chunk in _chunks(records):
                db.run(
                    f"INSERT INTO {self._t}.data_keys ({_COLUMNS}) "
                    "SELECT * FROM unnest(CAST(:links AS text[]), CAST(:values AS text[]), CAST(:days AS date[]), "
                    "CAST(:ids AS bigint[]), CAST(:wrapped AS bytea[]), CAST(:keks AS text[]), "
                    "CAST(:created AS bigint[]), CAST(:expires AS bigint[]), CAST(:policies AS text[])) "
                    "AS u(key_link, key_field_value, day, key_id, wrapped_key, kek_uri, created_at, expires_at, policy_id) "
                    "ORDER BY key_field_value, day ON CONFLICT DO NOTHING",
                    links=[r.key_link for r in chunk], values=[r.key_field_value for r in chunk],
                    days=[r.day for r in chunk], ids=[r.key_id for r in chunk],
                    wrapped=[r.wrapped_key for r in chunk], keks=[r.kek_uri for r in chunk],
                    created=[r.created_at for r in chunk], expires=[r.expires_at for r in chunk],
                    policies=[r.policy_id for r in chunk],
                )
            self._add_subjects(db, [(r.key_link, s) for r in records for s in r.subjects])
            return None

        if records:
            self._transaction(work)
        return self.lookup(r.pair for r in records)

    def _add_subjects(self, db, links_subjects: list[tuple[str, str]]) -> None:
        rows = sorted({(subject, link) for link, subject in links_subjects})
        for chunk in _chunks(rows):
            # Only for keys that exist: a key lost to another writer, or deleted meanwhile, gets none.
            db.run(
                f"INSERT INTO {self._t}.key_subjects (subject, key_link) "
                f"SELECT u.subject, k.key_link FROM unnest(CAST(:subjects AS text[]), CAST(:links AS text[])) "
                f"AS u(subject, key_link) JOIN {self._t}.data_keys k ON k.key_link = u.key_link "
                f"ORDER BY 1, 2 ON CONFLICT DO NOTHING",
                subjects=[r[0] for r in chunk], links=[r[1] for r in chunk],
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
                for record in self._select(db, "k.key_link = ANY(CAST(:links AS text[]))", links=chunk):
                    found[record.key_link] = record
            return found

        return self._transaction(work) if links else {}

    def subjects(self) -> list[tuple[str, int]]:
        rows = self._transaction(lambda db: db.run(
            f"SELECT subject, count(*) FROM {self._t}.key_subjects GROUP BY subject ORDER BY subject"))
        return [(r[0], int(r[1])) for r in rows]

    def keys_of_subjects(self, subjects: Iterable[str]) -> list[KeyRecord]:
        subjects = sorted(set(subjects))
        if not subjects:
            return []
        records = self._transaction(lambda db: self._select(
            db, f"k.key_link IN (SELECT key_link FROM {self._t}.key_subjects WHERE subject = ANY(CAST(:s AS text[])))",
            s=subjects))
        return sorted(records, key=lambda r: (r.day, r.key_link))

    def delete_subjects(self, subjects: Iterable[str]) -> list[str]:
        subjects = sorted(set(subjects))
        if not subjects:
            return []
        rows = self._transaction(lambda db: db.run(
            f"DELETE FROM {self._t}.data_keys WHERE key_link IN (SELECT key_link FROM {self._t}.key_subjects "
            f"WHERE subject = ANY(CAST(:s AS text[]))) RETURNING key_link", s=subjects))
        return sorted(r[0] for r in rows)

    def purge_expired(self, now_ms: int) -> list[str]:
        rows = self._transaction(lambda db: db.run(
            f"DELETE FROM {self._t}.data_keys WHERE expires_at <= :now RETURNING key_link", now=int(now_ms)))
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


def _open(rest: str) -> PostgresKeyStore:
    return PostgresKeyStore("postgresql://" + rest)


KEY_STORES["postgresql"] = _open
KEY_STORES["postgres"] = _open
