"""Key-store backends for tests: a fresh SQLite file, or a fresh schema in the local PostgreSQL.

    from store_backends import store_uri, PG_URL   # store_uri: a fixture, parametrized by backend

PostgreSQL is the real server at 127.0.0.1:5432, database ``test`` (override with
$PSTREAM_TEST_PG). Each test gets its own schema ``pstream_test_<random>``, dropped afterwards.
Tests are skipped, with the reason shown by ``pytest -rs``, only when no server answers there.
"""
from __future__ import annotations

import os
import uuid

import pytest

PG_URL = os.environ.get("PSTREAM_TEST_PG", "postgresql://127.0.0.1:5432/test")


def pg_available() -> str | None:
    """None if the test server answers, else why not."""
    import pg8000.native

    from privacy.keystore_pg import connection_options

    options, _, _ = connection_options(PG_URL)
    try:
        pg8000.native.Connection(**{**options, "timeout": 5}).close()
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


@pytest.fixture(params=["sqlite", "postgresql"])
def store_uri(request, tmp_path):
    """The URI of an empty key store of each backend (open it as often as you need)."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'keystore.sqlite'}"
        return
    reason = pg_available()
    if reason:
        pytest.skip(reason)
    uri = new_pg_uri()
    yield uri
    drop_pg(uri)
