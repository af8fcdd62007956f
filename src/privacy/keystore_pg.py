"""The PostgreSQL key store: the production backend (Cloud SQL, AlloyDB, RDS, on-prem PostgreSQL).

    from privacy.keystore import open_key_store
    store = open_key_store("postgresql://keys@10.0.0.5:5432/privacy?schema=pstream&sslmode=require")
    store = open_key_store("postgresql://")      # everything from PGHOST, PGPORT, PGUSER, PGPASSWORD,
                                                 # PGDATABASE (and PGSSLMODE)

Same interface as ``privacy.keystore.SqliteKeyStore``; importing this module registers the
``postgresql://`` and ``postgres://`` schemes in ``KEY_STORES`` (``open_key_store`` does it on
first use). The driver is psycopg 3 on libpq (``psycopg[binary]``, as ``transforms.postgres_ranges``);
the connection is in autocommit, so a statement of its own needs no BEGIN and COMMIT round trips.
``sslmode`` has libpq's meaning (verify-ca and verify-full check against the system's CAs unless
PGSSLROOTCERT names others); ``?timeout=`` bounds connecting and unacknowledged writes. The URI's
password, if any, is never shown: ``store.uri`` leaves it out, and a connection error has it
masked. On Dataflow or Flink give the workers a reachable address (Cloud SQL's private IP or the
Cloud SQL Auth Proxy, an RDS endpoint) and credentials through the URI or the PG* environment
variables (libpq's PGOPTIONS too).

The schema (``?schema=``, default ``public``) is created on first use, under an advisory lock so
that workers starting together do not race: ``data_keys`` (primary key keyLink; UNIQUE
(value_hash, day); index on expires_at), ``key_subjects`` (primary key (subject_hash, keyLink),
so indexed by subject; index on keyLink), ``policies``, ``store_keys`` (the look-up key and masking
keys, wrapped) and ``store_meta`` (``schema_version``). No key-field value or subject id is stored,
only their keyed hashes. Every index serves a query: keyLink for ``by_links`` and decryption,
(value_hash, day) for ``lookup`` and the one-key-per-pair rule, (subject_hash, keyLink) for
``subjects``, ``keys_of_subjects`` and forget, key_subjects' keyLink for a key's subjects and the
cascade, expires_at for ``purge_expired``.

A key's subject rows go with it: a statement-level ``AFTER DELETE`` trigger on data_keys deletes
them, whoever deletes the key (forget, expiry, an operator). It replaces the foreign key with
``ON DELETE CASCADE`` of earlier stores, whose check ran once per inserted subject row (a sixth of
a new key's time on the server); ``pstream keys migrate`` turns such a store's foreign key into the
trigger. ``add_subjects`` takes ``FOR KEY SHARE`` on the keys it adds rows to, which is what the
foreign key's check did: a concurrent forget waits for it and then deletes the new rows too, or
has deleted the key first and no row is added.

Statements, as measured on 2,000-key batches (benchmarks/key_stores.py): columns go as arrays
(``unnest``), one statement per batch of up to 5,000; the arrays are sent in PostgreSQL's binary
form, built by ``_Array`` with one ``join`` or ``struct.pack`` each (psycopg adapts a list element
by element in Python: 30 ms of the batch; pg8000 had escaped text arrays); results come in binary.
A new key's pairs were looked up just before (``KeyRing.keys_for``), so ``insert_new`` first
sends a plain INSERT of the keys and, in the same statement, their subject rows: no speculative
insertion (an index pre-check and a WAL confirmation record per row), no join. If a pair is there
after all (another writer's, or one given twice) the statement fails with a unique violation and
nothing of it stays; then ``ON CONFLICT (value_hash, day) DO NOTHING ... RETURNING`` inserts what
is absent, the subject rows only of the keys it kept. A key's subjects are read by a correlated
``ARRAY(...)`` on key_subjects' keyLink index, not a join and GROUP BY over the table. JIT is off
for the session: once a look-up's cost estimate passed ``jit_above_cost``, compiling it took
200 ms against 5 ms to run it. Commits are synchronous, as the SQLite store's are
(``synchronous=FULL``): a key that encrypted output must outlive a crash of the machine. A
deployment that accepts losing the last commits on a server crash can set
``PGOPTIONS='-c synchronous_commit=off'`` (the WAL flush was 16 ms of a 2,000-key insert here).

What a DELETE leaves: PostgreSQL marks deleted rows dead and keeps their bytes in the table's
files until the space is reused; the write-ahead log, base backups, replicas and PITR archives
keep their own copies. ``compact()`` (``pstream keys compact``) runs ``VACUUM FULL`` on the key
tables: each is rewritten into a new file holding only live rows, and the old file is removed.
See docs/key-management.md for what remains outside the table files and what to do about it.

Concurrent writers: rows are sorted by (value hash, day) in Python and inserted in that order
(``unnest`` keeps it), one order for every writer, so two batches lock rows in the same order and
cannot deadlock. A writer whose INSERT meets another's uncommitted row for a pair waits for its
commit; the plain INSERT then fails and the ON CONFLICT one skips the pair, and only the pairs lost
are read back: the loser gets the winner's row, and ``KeyRing.keys_for`` encrypts only with
returned rows. Deadlocks, serialization failures and dropped connections are retried.
"""
from __future__ import annotations

import os
import re
import struct
import threading
import time
from typing import Iterable
from urllib.parse import parse_qs, unquote, urlsplit

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from privacy.keystore import (SCHEMA_VERSION, KEY_STORES, KeyRecord, KeyStoreError, Pair, needs_migration,
                              old_version_message)
from privacy.lookup import LOOKUP_KEY, LookupKey, new_store_key, open_store_key

SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_RETRY_CODES = {"40P01", "40001", "57P01"}  # deadlock, serialization failure, admin shutdown
_ATTEMPTS = 5
_CHUNK = 5000
_COLUMNS = "key_link, value_hash, day, key_id, wrapped_key, kek_uri, created_at, expires_at, policy_id"
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


KEY_TABLES = ("data_keys", "key_subjects", "store_keys", "store_meta", "policies")


CASCADE_TRIGGER = "key_subjects_go_with_their_key"


def _cascade_sql(schema: str) -> list[str]:
    """A key's subject rows are deleted with it, by one statement per DELETE on data_keys (what
    ``ON DELETE CASCADE`` did, without the foreign key's check per inserted subject row)."""
    return [
        f"""CREATE OR REPLACE FUNCTION "{schema}".{CASCADE_TRIGGER}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM "{schema}".key_subjects s USING gone WHERE s.key_link = gone.key_link;
                RETURN NULL;
            END $$""",
        f"""CREATE TRIGGER {CASCADE_TRIGGER} AFTER DELETE ON "{schema}".data_keys
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION "{schema}".{CASCADE_TRIGGER}()""",
    ]


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
            key_link TEXT NOT NULL,
            PRIMARY KEY (subject_hash, key_link))""",
        f'CREATE INDEX IF NOT EXISTS key_subjects_by_link ON "{schema}".key_subjects (key_link)',
        *_cascade_sql(schema),
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


def _chunks(items: list, size: int = _CHUNK):
    for start in range(0, len(items), size):
        yield items[start : start + size]


_ARRAY_HEAD = struct.Struct("!iiiii")  # dimensions, has-nulls flag, element type, length, lower bound
_LENGTH = struct.Struct("!i").pack
_TEXT, _BYTEA, _INT8 = 25, 17, 20  # pg_type oids


class _Array:
    """A one-dimensional array parameter, already in PostgreSQL's binary form (``array_send``).

    psycopg adapts a Python list element by element in Python (``types/array.py``): for a batch
    of 2,000 keys' eleven lists that was about 30 ms, a third of the insert. These are built with
    one ``join`` or one ``struct.pack`` each, and the server reads them without parsing text."""

    __slots__ = ("data",)

    def __init__(self, data: bytes):
        self.data = data

    @staticmethod
    def _head(element_oid: int, length: int) -> bytes:
        return _ARRAY_HEAD.pack(1, 0, element_oid, length, 1) if length else struct.pack("!iii", 0, 0, element_oid)


def _elements(encoded: list[bytes]) -> bytes:
    """Each element with its length before it. Elements of one length (hashes, keyLinks, days,
    wrapped keys) in one ``join`` on that length's prefix."""
    if not encoded:
        return b""
    size = len(encoded[0])
    if size == len(encoded[-1]) and len(set(map(len, encoded))) == 1:
        prefix = _LENGTH(size)
        return prefix + prefix.join(encoded)
    return b"".join([_LENGTH(len(e)) + e for e in encoded])


class _Texts(_Array):
    __slots__ = ()

    def __init__(self, values: list[str]):
        super().__init__(self._head(_TEXT, len(values)) + _elements([v.encode() for v in values]))


class _Byteas(_Array):
    __slots__ = ()

    def __init__(self, values: list[bytes]):
        super().__init__(self._head(_BYTEA, len(values)) + _elements(values))


class _Int8s(_Array):
    __slots__ = ()

    def __init__(self, values: list[int]):
        flat = [8] * (2 * len(values))
        flat[1::2] = values
        super().__init__(self._head(_INT8, len(values)) + struct.pack(f"!{'iq' * len(values)}", *flat))


class _ArrayDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: _Array) -> bytes:
        return obj.data


class _TextsDumper(_ArrayDumper):
    oid = 1009  # text[]


class _ByteasDumper(_ArrayDumper):
    oid = 1001  # bytea[]


class _Int8sDumper(_ArrayDumper):
    oid = 1016  # bigint[]


_ADAPTERS = psycopg.adapt.AdaptersMap(psycopg.adapters)
_ADAPTERS.register_dumper(_Texts, _TextsDumper)
_ADAPTERS.register_dumper(_Byteas, _ByteasDumper)
_ADAPTERS.register_dumper(_Int8s, _Int8sDumper)


def connection_options(uri: str) -> tuple[dict, str, str]:
    """The connection's settings (host, port, user, database, password, application_name, sslmode,
    timeout), the schema, and the URI without its password. ``libpq_options`` makes psycopg's
    ``connect()`` arguments of them."""
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
        "timeout": float(query["timeout"]) if "timeout" in query else None,  # seconds
        "sslmode": query.get("sslmode", env.get("PGSSLMODE", "disable")),
    }
    if options["sslmode"] not in _SSLMODES:
        raise KeyStoreError(f"sslmode '{options['sslmode']}' is not one of disable, require, verify-ca, verify-full")
    schema = query.get("schema", "public")
    if not SCHEMA_NAME.match(schema):
        raise KeyStoreError(f"schema '{schema}': use lowercase letters, digits and '_' (at most 63)")
    shown = f"postgresql://{options['user']}@{options['host']}:{options['port']}/{options['database'] or ''}"
    return options, schema, f"{shown}?schema={schema}"


def libpq_options(options: dict) -> dict:
    """``psycopg.connect()`` keyword arguments for ``connection_options``' settings. ``sslmode`` has
    libpq's meaning; verify-ca and verify-full check the server against the system's CAs unless
    PGSSLROOTCERT names others. ``timeout``: seconds to connect, and for unacknowledged data to a
    server that stopped answering (tcp_user_timeout)."""
    kwargs = {"host": options["host"], "port": options["port"], "user": options["user"],
              "application_name": options["application_name"], "sslmode": options["sslmode"]}
    if options.get("database"):
        kwargs["dbname"] = options["database"]
    if options.get("password") is not None:
        kwargs["password"] = options["password"]
    if options["sslmode"] in ("verify-ca", "verify-full") and not os.environ.get("PGSSLROOTCERT"):
        kwargs["sslrootcert"] = "system"
    if options.get("timeout"):
        kwargs["connect_timeout"] = max(1, round(options["timeout"]))
        kwargs["tcp_user_timeout"] = int(options["timeout"] * 1000)
    return kwargs


def connect(options: dict, **kwargs) -> psycopg.Connection:
    """A psycopg connection (autocommit: each statement its own transaction unless in
    ``conn.transaction()``) for ``connection_options``' settings; KeyStoreError, naming the server
    but never the password, if none can be made."""
    try:
        return psycopg.connect(**libpq_options(options), autocommit=True, **kwargs)
    except psycopg.Error as exc:
        reason = str(exc).strip()
        if options.get("password"):
            reason = reason.replace(options["password"], "***")
        where = f"{options['host']}:{options['port']}"
        raise KeyStoreError(f"cannot connect to the PostgreSQL key store at {where}: {reason}") from None


class PostgresKeyStore:
    """Key store in PostgreSQL; see the module docstring."""

    def __init__(self, uri: str, migrating: bool = False):
        self._options, self.schema, self.uri = connection_options(uri)
        self._lock = threading.Lock()
        self._db: psycopg.Connection | None = None
        self._compacted = False
        self._deleted = False
        self._connect()
        self.schema_version = self._transaction(self._create_or_read_version)
        if self.schema_version != SCHEMA_VERSION and not migrating:
            self.close()
            raise KeyStoreError(old_version_message(self.uri, self.schema_version))

    def _create_or_read_version(self, db) -> int:
        """Under the advisory lock: create the schema of a new store, or read an existing one's version."""
        db.execute("SELECT pg_advisory_xact_lock(hashtext('pstream.keystore.schema'))")
        version = self._version(db)
        if version is None:
            for sql in _schema_sql(self.schema):
                db.execute(sql)
            version = SCHEMA_VERSION
        return version

    def _version(self, db) -> int | None:
        meta, keys = db.execute("SELECT to_regclass(%s)::text, to_regclass(%s)::text",
                                (f'"{self.schema}".store_meta', f'"{self.schema}".data_keys')).fetchone()
        if meta is not None:
            rows = db.execute(f"SELECT value FROM {self._t}.store_meta WHERE name = 'schema_version'").fetchall()
            return int(rows[0][0]) if rows else 1
        return 1 if keys is not None else None

    def _connect(self) -> None:
        self._db = connect(self._options, context=_ADAPTERS)
        # Short statements: JIT compiling one (its cost estimate can pass jit_above_cost as the tables
        # grow) takes longer than running it (200 ms against 5 ms for a look-up of 2,000 keys).
        self._db.execute("SET jit = off")

    def _transaction(self, work, alone: bool = False):
        """Run work(connection) in one transaction, retrying deadlocks and lost connections.
        ``alone``: work is one statement, its own transaction (autocommit: no BEGIN and COMMIT)."""
        with self._lock:
            for attempt in range(_ATTEMPTS):
                try:
                    if self._db is None or self._db.closed:
                        self._connect()
                    if alone:
                        return work(self._db)
                    with self._db.transaction():
                        return work(self._db)
                except psycopg.Error as exc:
                    lost = self._db is not None and (self._db.broken or self._db.closed)
                    if lost:
                        self._drop_connection()  # reconnect and try again
                    elif exc.sqlstate not in _RETRY_CODES:
                        raise
                    if attempt == _ATTEMPTS - 1:
                        raise
                time.sleep(0.01 * 2**attempt)

    def _drop_connection(self) -> None:
        try:
            self._db.close()
        except Exception:
            pass
        self._db = None

    @property
    def _t(self) -> str:
        return f'"{self.schema}"'

    def _select(self, db, where: str, params: dict) -> list[KeyRecord]:
        rows = db.execute(
            f"SELECT k.key_link, k.value_hash, to_char(k.day, 'YYYY-MM-DD'), k.key_id, k.wrapped_key, "
            f"k.kek_uri, k.created_at, k.expires_at, k.policy_id, ARRAY(SELECT s.subject_hash FROM "
            f"{self._t}.key_subjects s WHERE s.key_link = k.key_link ORDER BY 1) "  # by key_subjects_by_link
            f"FROM {self._t}.data_keys k WHERE {where}", params, binary=True).fetchall()
        return [KeyRecord(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(r[9]), r[8]) for r in rows]

    def _lookup(self, db, pairs: list[Pair]) -> dict[Pair, KeyRecord]:
        found = {}
        for chunk in _chunks(pairs):
            for record in self._select(
                db, "(k.value_hash, k.day) IN (SELECT * FROM unnest(CAST(%(values)b AS text[]), "
                    "CAST(CAST(%(days)b AS text[]) AS date[])))",
                {"values": _Texts([p[0] for p in chunk]), "days": _Texts([p[1] for p in chunk])},
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
        alone = len(records) <= _CHUNK
        try:  # the usual case: the ring looked every pair up just before, none is there
            kept = self._transaction(lambda db: self._insert(db, records, absent=True), alone=alone)
        except psycopg.errors.UniqueViolation:  # one is now (another writer's), or a pair came twice
            kept = self._transaction(lambda db: self._insert(db, records), alone=alone)
        found = {r.pair: r for r in records if r.key_link in kept}  # ours, as inserted (with their subjects)
        lost = [r.pair for r in records if r.key_link not in kept]
        if lost:  # another writer's (value, day): its row, read after its commit (the INSERT waited for it)
            found.update(self.lookup(lost))
        return found

    def _insert(self, db, records: list[KeyRecord], absent: bool = False) -> set[str]:
        """Insert records with their subject rows, one statement per chunk; returns the keyLinks inserted.

        ``absent``: the caller expects no (value, day) to be there. A plain INSERT then, and the
        subject rows without a join: every row goes in, or the statement fails with a unique
        violation (after waiting for the commit of a writer that inserted one of the pairs) and
        nothing of it stays. Otherwise ``ON CONFLICT DO NOTHING``, which costs a speculative
        insertion per row (a pre-check of the index, a confirmation record in the WAL): rows
        already there are left, and the rest lost to them (their subjects ``add_subjects`` adds)."""
        kept = set()
        for chunk in _chunks(records):
            subjects = sorted((s, r.key_link) for r in chunk for s in set(r.subject_hashes))
            keys = (f"INSERT INTO {self._t}.data_keys ({_COLUMNS}) "
                    "SELECT * FROM unnest(CAST(%(links)b AS text[]), CAST(%(values)b AS text[]), "
                    "CAST(CAST(%(days)b AS text[]) AS date[]), CAST(%(ids)b AS bigint[]), CAST(%(wrapped)b AS bytea[]), "
                    "CAST(%(keks)b AS text[]), CAST(%(created)b AS bigint[]), CAST(%(expires)b AS bigint[]), "
                    "CAST(%(policies)b AS text[]))")
            subject_rows = (f"INSERT INTO {self._t}.key_subjects (subject_hash, key_link) "
                            "SELECT * FROM unnest(CAST(%(subjects)b AS text[]), CAST(%(subject_links)b AS text[])) "
                            "AS s(subject, key_link)")
            params = {"links": _Texts([r.key_link for r in chunk]), "values": _Texts([r.value_hash for r in chunk]),
                      "days": _Texts([r.day for r in chunk]), "ids": _Int8s([r.key_id for r in chunk]),
                      "wrapped": _Byteas([r.wrapped_key for r in chunk]), "keks": _Texts([r.kek_uri for r in chunk]),
                      "created": _Int8s([r.created_at for r in chunk]),
                      "expires": _Int8s([r.expires_at for r in chunk]), "policies": _Texts([r.policy_id for r in chunk]),
                      "subjects": _Texts([s for s, _ in subjects]),
                      "subject_links": _Texts([link for _, link in subjects])}
            if absent:  # a data-modifying WITH runs whether or not it is referenced
                db.execute(f"WITH keys AS ({keys}) {subject_rows}", params)
                kept.update(r.key_link for r in chunk)
                continue
            rows = db.execute(
                f"WITH ins AS ({keys} ON CONFLICT (value_hash, day) DO NOTHING RETURNING key_link), "
                f"subjects AS ({subject_rows} WHERE s.key_link IN (SELECT key_link FROM ins) ON CONFLICT DO NOTHING) "
                "SELECT key_link FROM ins", params, binary=True).fetchall()
            kept.update(row[0] for row in rows)
        return kept

    def _add_subjects(self, db, links_subjects: list[tuple[str, str]]) -> None:
        rows = sorted({(subject, link) for link, subject in links_subjects})
        for chunk in _chunks(rows):
            # Only for keys that exist: a key lost to another writer, or deleted meanwhile, gets none.
            # FOR KEY SHARE holds each key until the commit (a DELETE of it waits, then its trigger
            # deletes these rows too), and skips a key deleted meanwhile: no subject row outlives its key.
            db.execute(
                f"INSERT INTO {self._t}.key_subjects (subject_hash, key_link) "
                f"SELECT u.subject, k.key_link FROM unnest(CAST(%(subjects)b AS text[]), CAST(%(links)b AS text[])) "
                f"AS u(subject, key_link) JOIN {self._t}.data_keys k ON k.key_link = u.key_link "
                f"ORDER BY 1, 2 FOR KEY SHARE OF k ON CONFLICT DO NOTHING",
                {"subjects": _Texts([r[0] for r in chunk]), "links": _Texts([r[1] for r in chunk])},
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
                for record in self._select(db, "k.key_link = ANY(CAST(%(links)b AS text[]))", {"links": _Texts(chunk)}):
                    found[record.key_link] = record
            return found

        return self._transaction(work, alone=len(links) <= _CHUNK) if links else {}

    def subjects(self) -> list[tuple[str, int]]:
        rows = self._transaction(lambda db: db.execute(
            f"SELECT subject_hash, count(*) FROM {self._t}.key_subjects GROUP BY subject_hash "
            "ORDER BY subject_hash").fetchall())
        return [(r[0], int(r[1])) for r in rows]

    def keys_of_subjects(self, subject_hashes: Iterable[str]) -> list[KeyRecord]:
        subjects = sorted(set(subject_hashes))
        if not subjects:
            return []
        records = self._transaction(lambda db: self._select(
            db, f"k.key_link IN (SELECT key_link FROM {self._t}.key_subjects "
                "WHERE subject_hash = ANY(CAST(%(s)b AS text[])))", {"s": _Texts(subjects)}))
        return sorted(records, key=lambda r: (r.day, r.key_link))

    def delete_subjects(self, subject_hashes: Iterable[str]) -> list[str]:
        subjects = sorted(set(subject_hashes))
        if not subjects:
            return []
        rows = self._transaction(lambda db: db.execute(
            f"DELETE FROM {self._t}.data_keys WHERE key_link IN (SELECT key_link FROM {self._t}.key_subjects "
            "WHERE subject_hash = ANY(CAST(%(s)b AS text[]))) RETURNING key_link", {"s": _Texts(subjects)}).fetchall())
        self._deleted = self._deleted or bool(rows)
        return sorted(r[0] for r in rows)

    def purge_expired(self, now_ms: int) -> list[str]:
        rows = self._transaction(lambda db: db.execute(
            f"DELETE FROM {self._t}.data_keys WHERE expires_at <= CAST(%(now)s AS bigint) RETURNING key_link",
            {"now": int(now_ms)}).fetchall())
        self._deleted = self._deleted or bool(rows)
        return sorted(r[0] for r in rows)

    def save_policy(self, policy) -> None:
        self._transaction(lambda db: db.execute(
            f"INSERT INTO {self._t}.policies (policy_id, name, retention_days, legal_grounds, description) "
            "VALUES (%(id)s, %(name)s, %(days)s, %(grounds)s, %(description)s) ON CONFLICT (policy_id) DO UPDATE SET "
            "name = excluded.name, retention_days = excluded.retention_days, "
            "legal_grounds = excluded.legal_grounds, description = excluded.description",
            {"id": policy.policy_id, "name": policy.name, "days": policy.retention_days,
             "grounds": policy.legal_grounds, "description": policy.description}))

    def policies(self) -> list:
        from privacy.policies import Policy

        rows = self._transaction(lambda db: db.execute(
            f"SELECT policy_id, name, retention_days, legal_grounds, description FROM {self._t}.policies "
            "ORDER BY policy_id").fetchall())
        return [Policy(*row) for row in rows]

    def _store_key_row(self, db, name: str, kek) -> bytes:
        select = f"SELECT wrapped_key FROM {self._t}.store_keys WHERE name = %s"
        rows = db.execute(select, (name,)).fetchall()
        if not rows:  # the first writer's key stays; a loser waits for its commit and reads it
            db.execute(f"INSERT INTO {self._t}.store_keys (name, wrapped_key, kek_uri, created_at) "
                       "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                       (name, new_store_key(kek, name), kek.uri, int(time.time() * 1000)))
            rows = db.execute(select, (name,)).fetchall()
        return bytes(rows[0][0])

    def store_key(self, name: str, kek) -> bytes:
        wrapped = self._transaction(lambda db: self._store_key_row(db, name, kek))
        return open_store_key(kek, name, wrapped, self.uri)

    def relation_files(self) -> dict[str, str]:
        """{relation name: its main file, relative to the server's data directory} for this store's
        tables, their TOAST tables and every index on them (what ``compact`` rewrites)."""
        rows = self._transaction(lambda db: db.execute(
            "SELECT c.relname::text, pg_relation_filepath(c.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %(s)s AND c.relkind IN ('r', 'i') "
            "UNION ALL SELECT t.relname::text, pg_relation_filepath(t.oid) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class t ON t.oid = c.reltoastrelid "
            "WHERE n.nspname = %(s)s", {"s": self.schema}).fetchall())
        return {name: path for name, path in rows if path}

    def _size(self) -> int:
        return int(self._transaction(lambda db: db.execute(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
            "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'", (self.schema,)).fetchone()[0]))

    def compact(self) -> dict:
        """VACUUM FULL on every key table: each is rewritten into a new file of live rows only (with its
        indexes and TOAST table) and the old files are removed. Takes an exclusive lock on each table
        for the time of its rewrite: writers wait, they do not fail."""
        before = self._size()
        with self._lock:
            if self._db is None or self._db.closed:
                self._connect()
            for table in KEY_TABLES:
                self._db.execute(f"VACUUM FULL {self._t}.{table}")  # outside a transaction (autocommit)
        self._compacted, self._deleted = True, False
        return {"bytes before": before, "bytes after": self._size(), "complete": True}

    def residue(self) -> str | None:
        if self._deleted and not self._compacted:
            return ("PostgreSQL keeps deleted rows' bytes in its table files until they are rewritten: run "
                    f"`pstream keys compact --key-store {self.uri}` (VACUUM FULL); its WAL, backups, replicas "
                    "and archives keep copies for as long as they are kept (docs/key-management.md)")
        return None

    def migrate(self, kek) -> int:
        """Schema 1 -> 2 in one transaction: rows read, old tables dropped, hashed rows written back.
        A store of version 2 made before the cascade trigger gets it instead of its foreign key."""
        if not needs_migration(self.uri, self.schema_version):
            self._transaction(self._cascade_by_trigger)
            return 0

        def work(db):
            db.execute("SELECT pg_advisory_xact_lock(hashtext('pstream.keystore.schema'))")
            if self._version(db) == SCHEMA_VERSION:  # another process migrated it meanwhile
                return 0
            keys = db.execute(f"SELECT key_link, key_field_value, to_char(day, 'YYYY-MM-DD'), key_id, wrapped_key, "
                              f"kek_uri, created_at, expires_at, policy_id FROM {self._t}.data_keys").fetchall()
            subjects = db.execute(f"SELECT subject, key_link FROM {self._t}.key_subjects").fetchall()
            db.execute(f"DROP TABLE {self._t}.key_subjects, {self._t}.data_keys")
            for sql in _schema_sql(self.schema):
                db.execute(sql)
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

    def cascade_by_trigger(self) -> bool:
        """Whether subject rows go with their key by the trigger (else by the older foreign key)."""
        return bool(self._transaction(lambda db: db.execute(
            "SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = %s",
            (f"{self._t}.data_keys", CASCADE_TRIGGER)).fetchall()))

    def _cascade_by_trigger(self, db) -> bool:
        """Under the schema lock: replace key_subjects' foreign key (ON DELETE CASCADE, checked per
        inserted row) by the statement-level trigger; False if the store had it already."""
        db.execute("SELECT pg_advisory_xact_lock(hashtext('pstream.keystore.schema'))")
        table = f"{self._t}.key_subjects"
        keys = db.execute("SELECT conname::text FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'f'",
                          (table,)).fetchall()
        has_trigger = db.execute("SELECT 1 FROM pg_trigger WHERE tgrelid = to_regclass(%s) AND tgname = %s",
                                 (f"{self._t}.data_keys", CASCADE_TRIGGER)).fetchall()
        if has_trigger and not keys:
            return False
        if not has_trigger:  # first, so that no DELETE in between leaves subject rows behind
            for sql in _cascade_sql(self.schema):
                db.execute(sql)
        for (name,) in keys:
            db.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        return True

    def drop_schema(self) -> None:
        """Drop this store's schema and every key in it (tests; decommissioning). Not for 'public'."""
        if self.schema == "public":
            raise KeyStoreError("refusing to drop the public schema")
        self._transaction(lambda db: db.execute(f"DROP SCHEMA IF EXISTS {self._t} CASCADE"))

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._drop_connection()


def _open(rest: str, migrating: bool = False) -> PostgresKeyStore:
    return PostgresKeyStore("postgresql://" + rest, migrating)


KEY_STORES["postgresql"] = _open
KEY_STORES["postgres"] = _open
