"""Both key-store backends (SQLite file, real PostgreSQL) against one interface, concurrency included."""
from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import uuid

import pytest

from privacy.kek import LocalKek
from privacy.keyring import DAY_MS, KeyRing, day_start_ms
from privacy.keystore import KeyRecord, open_key_store
from privacy.policies import Policy
from store_backends import store_uri  # noqa: F401  (fixture: sqlite and postgresql)

DAY = "2024-03-01"


def record(link: str, value: str, day: str = DAY, subjects=(), expires_at: int = 10**13, key_id: int = 7) -> KeyRecord:
    """A record as the store sees it: ``value`` and ``subjects`` stand for hashes (the store never hashes)."""
    return KeyRecord(link, value, day, key_id, b"wrapped-" + link.encode(), "local://kek", 1, expires_at,
                     tuple(subjects), "")


def test_insert_new_keeps_the_first_key_per_value_and_day_and_returns_it(store_uri):
    store = open_key_store(store_uri)
    first = record("link-a", "477049", subjects=["477049"], key_id=4_000_000_000)  # > 2**31: Tink ids are uint32
    kept = store.insert_new([first])
    assert kept == {("477049", DAY): first}
    loser = record("link-b", "477049", subjects=["someone-else"])
    kept = store.insert_new([loser, record("link-c", "477049", "2024-03-02")])
    assert kept[("477049", DAY)] == first  # the winner's row, subjects and all: the loser's subject is not added
    assert kept[("477049", "2024-03-02")].key_link == "link-c"
    assert store.by_links(["link-a", "link-b", "link-c"]).keys() == {"link-a", "link-c"}
    assert store.lookup([("477049", DAY), ("nobody", DAY)]) == {("477049", DAY): first}
    assert store.by_links(["link-a"])["link-a"].wrapped_key == b"wrapped-link-a"


def test_subjects_keylinks_delete_and_count(store_uri):
    store = open_key_store(store_uri)
    store.insert_new([
        record("k1", "u1", "2024-03-01", ["alice"]),
        record("k2", "u1", "2024-03-02", ["alice"]),
        record("k3", "shared-session", DAY, ["alice", "bob"]),
        record("k4", "u2", DAY, ["bob"]),
        record("k5", "u3", DAY, []),
    ])
    store.add_subjects([("k4", "carol"), ("k4", "bob")])  # duplicates are ignored
    assert store.subjects() == [("alice", 3), ("bob", 2), ("carol", 1)]
    assert [r.key_link for r in store.keys_of_subjects(["alice"])] == ["k1", "k3", "k2"]  # by day, then link
    assert store.keys_of_subjects(["nobody"]) == []

    deleted = store.delete_subjects(["alice"])
    assert deleted == ["k1", "k2", "k3"]  # the shared key goes too: its data can no longer be split
    assert store.subjects() == [("bob", 1), ("carol", 1)]
    assert store.by_links(["k1", "k2", "k3", "k4", "k5"]).keys() == {"k4", "k5"}
    assert store.delete_subjects(["alice"]) == []  # a second forget finds nothing
    store.add_subjects([("k1", "alice")])  # a late subject row for a deleted key is not stored
    assert store.keys_of_subjects(["alice"]) == []


def test_purge_expired_uses_the_given_clock(store_uri, kek_path):
    now = [day_start_ms(DAY) / 1000 + 3600]
    ring = KeyRing(open_key_store(store_uri), LocalKek(kek_path), retention_days=2, clock=lambda: now[0])
    keys, created = ring.keys_for({("u1", DAY): {"u1"}, ("u1", "2024-03-02"): {"u1"}})
    assert sorted(r.expires_at for r in created) == [day_start_ms(DAY) + 2 * DAY_MS, day_start_ms("2024-03-02") + 2 * DAY_MS]
    assert all(r.created_at == int(now[0] * 1000) for r in created)
    store = ring.store
    assert store.purge_expired(day_start_ms("2024-03-03") - 1) == []
    assert store.purge_expired(day_start_ms("2024-03-03")) == [keys[("u1", DAY)][0]]
    assert store.purge_expired(day_start_ms("2024-03-04")) == [keys[("u1", "2024-03-02")][0]]
    assert store.subjects() == []


def test_policies_are_kept_and_updated(store_uri, kek_path):
    store = open_key_store(store_uri)
    store.save_policy(Policy("marketing", "Marketing", 30, "consent"))
    store.save_policy(Policy("marketing", "Marketing", 60, "consent, GDPR 6(1)(a)"))
    store.save_policy(Policy("analytics", "", 2556, "legitimate interest"))
    assert store.policies() == [Policy("analytics", "", 2556, "legitimate interest"),
                                Policy("marketing", "Marketing", 60, "consent, GDPR 6(1)(a)")]
    ring = KeyRing(store, LocalKek(kek_path), **Policy("marketing", retention_days=60).ring_options(), clock=lambda: 0)
    _, created = ring.keys_for({("u1", DAY): set()})
    assert created[0].policy_id == "marketing"
    assert created[0].expires_at == Policy("marketing", retention_days=60).expires_at_ms(DAY)


def test_schema_is_created_on_first_use_with_the_indexes(store_uri):
    store = open_key_store(store_uri)
    open_key_store(store_uri)  # a second opening finds the schema in place
    if store_uri.startswith("sqlite"):
        db = sqlite3.connect(store.path)
        index_columns = {
            tuple(col[2] for col in db.execute(f"PRAGMA index_info('{name}')"))
            for table in ("data_keys", "key_subjects")
            for _, name, *_ in db.execute(f"PRAGMA index_list('{table}')")
        }
    else:
        from privacy.keystore_pg import connect, connection_options

        options, schema, _ = connection_options(store_uri)
        with connect(options) as db:
            rows = db.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = %s", (schema,)).fetchall()
        index_columns = {tuple(c.strip() for c in r[0].rsplit("(", 1)[1].rstrip(")").split(",")) for r in rows}
    assert {("key_link",), ("value_hash", "day"), ("subject_hash", "key_link"), ("expires_at",)} <= index_columns


@pytest.fixture
def kek_path(tmp_path) -> str:
    """A local KEK file that exists before any writer starts."""
    path = tmp_path / "kek.json"
    LocalKek.create(path)
    return str(path)


class _RaceAtInsert:
    """A key store whose writers all pass their look-up, then insert at the same moment."""

    def __init__(self, store, barrier):
        self._store = store
        self._barrier = barrier

    def __getattr__(self, name):
        return getattr(self._store, name)

    def insert_new(self, records):
        self._barrier.wait(timeout=60)
        return self._store.insert_new(records)


PAIRS = [(f"user-{i}", day) for i in range(150) for day in ("2024-03-01", "2024-03-02")]


def _writer(uri: str, kek_path: str, barrier, results, index: int) -> None:
    """One pipeline worker: keys for every pair, then the ciphertext of one value under each."""
    ring = KeyRing(_RaceAtInsert(open_key_store(uri), barrier), LocalKek(kek_path))
    keys, created = ring.keys_for({pair: {pair[0]} for pair in PAIRS})
    results.put((index, {pair: (link, key.encrypt("alice@example.com")) for pair, (link, key) in keys.items()},
                 [r.key_link for r in created], kek_path))


def _check_one_key_per_pair(uri: str, results: list) -> None:
    store = open_key_store(uri)
    ids = KeyRing(store, LocalKek(results[0][3])).ids
    hashed = {(ids.value_hash(value), day): (value, day) for value, day in PAIRS}
    stored = {hashed[pair]: record for pair, record in store.lookup(hashed).items()}
    assert len(stored) == len(PAIRS)
    for _, keys, _, _ in results:  # every writer ended with the stored key: the losers adopted the winners'
        assert {pair: link for pair, (link, _) in keys.items()} == {pair: r.key_link for pair, r in stored.items()}
    ciphertexts = {pair: {keys[pair][1] for _, keys, _, _ in results} for pair in PAIRS}
    assert all(len(texts) == 1 for texts in ciphertexts.values())  # same value, same day -> same ciphertext
    created = [link for _, _, links, _ in results for link in links]
    assert sorted(created) == sorted(r.key_link for r in stored.values())  # each key created exactly once
    assert len({owner for owner, _, links, _ in results if links}) >= 1
    assert store.subjects() == sorted((ids.subject_hash(f"user-{i}"), 2) for i in range(150))  # no losing key


def test_concurrent_threads_end_with_one_key_per_value_and_day(store_uri, kek_path):
    writers = 6
    barrier = threading.Barrier(writers)
    import queue

    results = queue.Queue()
    threads = [threading.Thread(target=_writer, args=(store_uri, kek_path, barrier, results, i))
               for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    collected = [results.get_nowait() for _ in range(writers)]
    _check_one_key_per_pair(store_uri, collected)
    # all six generated a key for every pair and raced to insert it: five lost every pair or split them
    assert sum(len(links) for _, _, links, _ in collected) == len(PAIRS)


def test_concurrent_processes_end_with_one_key_per_value_and_day(store_uri, kek_path):
    context = multiprocessing.get_context("fork")
    writers = 4
    barrier = context.Barrier(writers)
    results = context.Queue()
    processes = [context.Process(target=_writer, args=(store_uri, kek_path, barrier, results, i))
                 for i in range(writers)]
    for process in processes:
        process.start()
    collected = [results.get(timeout=120) for _ in range(writers)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    _check_one_key_per_pair(store_uri, collected)


def test_unknown_store_scheme_and_bad_schema():
    from privacy.keystore import KeyStoreError

    with pytest.raises(KeyStoreError, match="unknown key store 'mysql://x'"):
        open_key_store("mysql://x")
    with pytest.raises(KeyStoreError, match="schema 'Bad-Name'"):
        open_key_store("postgresql://127.0.0.1/test?schema=Bad-Name")


def test_postgres_uri_never_shows_the_password():
    from privacy.keystore_pg import connection_options

    options, schema, shown = connection_options(f"postgresql://keys:s3cret%21@db.internal:6432/privacy?schema=k_{uuid.uuid4().hex[:4]}")
    assert options["password"] == "s3cret!" and options["port"] == 6432 and options["database"] == "privacy"
    assert "s3cret" not in shown and shown.startswith("postgresql://keys@db.internal:6432/privacy?schema=k_")


def test_commits_are_durable_before_they_return(store_uri):
    """A key that encrypted output must outlive a power loss: SQLite fsyncs its log on every
    commit (synchronous=FULL; NORMAL would keep the last commits in the OS cache only), and the
    PostgreSQL session waits for the server's WAL flush."""
    store = open_key_store(store_uri)
    if store_uri.startswith("sqlite"):
        assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    else:
        store._transaction(lambda db: None)  # connects
        assert store._db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
