"""Key-store backends for tests: a fresh SQLite file, or a fresh schema in the local PostgreSQL.

    from store_backends import store_uri, PG_URL   # store_uri: a fixture, parametrized by backend

PostgreSQL is the real server at 127.0.0.1:5432, database ``test`` (override with
$PSTREAM_TEST_PG). Each test gets its own schema ``pstream_test_<random>``, dropped afterwards.
Tests are skipped, with the reason shown by ``pytest -rs``, only when no server answers there.
"""
from __future__ import annotations

import contextlib

import os
import uuid

import pytest

PG_URL = os.environ.get("PSTREAM_TEST_PG", "postgresql://127.0.0.1:5432/test")


def pg_available() -> str | None:
    """None if the test server answers, else why not."""
    from privacy.keystore_pg import connect, connection_options

    options, _, _ = connection_options(PG_URL)
    try:
        connect({**options, "timeout": 5}).close()
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        return f"no PostgreSQL at {PG_URL}: {exc}"
    return None


def new_pg_uri() -> str:
    return f"{PG_URL}?schema=pstream_test_{uuid.uuid4().hex[:12]}"


def drop_pg(uri: str) -> None:
    from privacy.keystore_pg import PostgresKeyStore

    store = PostgresKeyStore(uri)
    store.drop_schema()
    store.close()


@contextlib.contextmanager
def fresh_pg_uri():
    """The URI of an empty PostgreSQL key store (its own schema), dropped afterwards; skips the
    test when no server answers."""
    reason = pg_available()
    if reason:
        pytest.skip(reason)
    uri = new_pg_uri()
    try:
        yield uri
    finally:
        drop_pg(uri)


@pytest.fixture
def pg_uri():
    """An empty PostgreSQL key store's URI."""
    with fresh_pg_uri() as uri:
        yield uri


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request, tmp_path):
    """The URI of an empty key store of each backend (open it as often as you need)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'keystore.sqlite'}"
        return
    with fresh_pg_uri() as uri:
        yield uri


def pg_store_file_bytes(store) -> bytes:
    """The bytes of every file of a PostgreSQL store's tables, indexes and TOAST tables, read from the
    server's data directory after a CHECKPOINT (so that what the server holds in memory is on disk).
    Skips the test when the data directory cannot be read (a remote server, not running as root)."""
    from privacy.keystore_pg import connect, connection_options

    options, _, _ = connection_options(store.uri)
    db = connect(options)
    try:
        db.execute("CHECKPOINT")
        data_dir = db.execute("SHOW data_directory").fetchone()[0]
    finally:
        db.close()
    if not os.access(data_dir, os.R_OK):
        pytest.skip(f"cannot read the PostgreSQL data directory {data_dir}")
    chunks = []
    for relative in store.relation_files().values():
        base = os.path.join(data_dir, relative)
        segment = 0
        while os.path.exists(base if segment == 0 else f"{base}.{segment}"):
            with open(base if segment == 0 else f"{base}.{segment}", "rb") as handle:
                chunks.append(handle.read())
            segment += 1
    return b"".join(chunks)
