"""The PostgreSQL key store's own statements: the cascade trigger (and the migration of stores made
with the foreign key before it), the insert path's two statements under racing writers, and a
subject row added while its key is forgotten. Real server (store_backends); skipped without one."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from cli.main import main as pstream
from privacy.kek import LocalKek
from privacy.keyring import KeyRing
from privacy.keystore import KeyRecord, open_key_store
from store_backends import pg_uri  # noqa: F401  (fixture: an empty PostgreSQL store)

DAY = "2024-03-01"


def record(link: str, value: str, subjects=(), day: str = DAY, expires_at: int = 10**13) -> KeyRecord:
    return KeyRecord(link, value, day, 7, b"wrapped-" + link.encode(), "local://kek", 1, expires_at,
                     tuple(subjects), "")


def raw(store):
    from privacy.keystore_pg import connect

    return connect(store._options)


def subject_rows(store) -> list[tuple[str, str]]:
    with raw(store) as db:
        return db.execute(f"SELECT subject_hash, key_link FROM {store._t}.key_subjects ORDER BY 1, 2").fetchall()


def foreign_keys(store) -> list[str]:
    with raw(store) as db:
        return [r[0] for r in db.execute("SELECT conname::text FROM pg_constraint WHERE contype = 'f' AND "
                                         "conrelid = to_regclass(%s)", (f"{store._t}.key_subjects",))]


def test_subject_rows_go_with_their_key_whoever_deletes_it(pg_uri):
    store = open_key_store(pg_uri)
    assert store.cascade_by_trigger() and foreign_keys(store) == []
    store.insert_new([record("k1", "u1", ["alice"]), record("k2", "u2", ["alice", "bob"]),
                      record("k3", "u3", ["carol"], expires_at=5), record("k4", "u4", ["dave"])])
    assert store.delete_subjects(["bob"]) == ["k2"]
    assert ("alice", "k2") not in subject_rows(store)  # the other subject's row of the deleted key went too
    assert store.purge_expired(10) == ["k3"]
    with raw(store) as db:  # a DELETE not made by this store (an older pstream, an operator) cascades too
        db.execute(f"DELETE FROM {store._t}.data_keys WHERE key_link = 'k4'")
    assert subject_rows(store) == [("alice", "k1")]


def test_a_store_made_with_the_foreign_key_is_migrated_to_the_trigger(pg_uri, tmp_path, capsys):
    store = open_key_store(pg_uri)
    with raw(store) as db:  # the shape of the stores made before the trigger
        db.execute(f"DROP TRIGGER key_subjects_go_with_their_key ON {store._t}.data_keys")
        db.execute(f"DROP FUNCTION {store._t}.key_subjects_go_with_their_key()")
        db.execute(f"ALTER TABLE {store._t}.key_subjects ADD FOREIGN KEY (key_link) "
                   f"REFERENCES {store._t}.data_keys (key_link) ON DELETE CASCADE")
    kek_path = tmp_path / "kek.json"
    ring = KeyRing(open_key_store(pg_uri), LocalKek.create(kek_path))
    keys, created = ring.keys_for({("alice", DAY): {"alice"}, ("bob", DAY): {"bob"}, ("shared", DAY): {"alice", "bob"}})
    assert len(created) == 3 and not store.cascade_by_trigger() and len(foreign_keys(store)) == 1
    alice = ring.ids.subject_hash("alice")
    assert store.delete_subjects([ring.ids.subject_hash("bob")]) == sorted([keys[("bob", DAY)][0],
                                                                           keys[("shared", DAY)][0]])
    assert subject_rows(store) == [(alice, keys[("alice", DAY)][0])]  # the foreign key's cascade, still

    args = ["keys", "migrate", "--key-store", pg_uri, "--kek", f"local://{kek_path}"]
    assert pstream(args) == 0
    assert capsys.readouterr().out.startswith("migrated 0 keys in ")  # no key rewritten: only the cascade
    assert store.cascade_by_trigger() and foreign_keys(store) == []
    more, _ = ring.keys_for({("carol", DAY): {"carol", "alice"}})
    assert store.delete_subjects([alice]) == sorted([keys[("alice", DAY)][0], more[("carol", DAY)][0]])
    assert subject_rows(store) == []  # carol's row went with the shared key, by the trigger
    assert pstream(args) == 0 and store.cascade_by_trigger()  # again: nothing to do
    capsys.readouterr()


class _RaceAtInsert:
    """Writers that all pass their look-up, then insert at the same moment."""

    def __init__(self, store, barrier):
        self._store, self._barrier = store, barrier

    def __getattr__(self, name):
        return getattr(self._store, name)

    def insert_new(self, records):
        self._barrier.wait(timeout=60)
        return self._store.insert_new(records)


def test_writers_racing_on_overlapping_pairs_end_with_one_key_each_and_adopt_the_winners(pg_uri, tmp_path):
    """Four writers, each wanting its own pairs and half of its neighbour's: every plain INSERT but
    the first to commit fails on a unique violation and goes again with ON CONFLICT DO NOTHING."""
    kek_path = tmp_path / "kek.json"
    LocalKek.create(kek_path)
    writers, barrier, results = 4, threading.Barrier(4), queue.Queue()
    wanted = [{(f"user-{i}", DAY) for i in range(100 * w, 100 * w + 150)} for w in range(writers)]

    def write(index):
        ring = KeyRing(_RaceAtInsert(open_key_store(pg_uri), barrier), LocalKek(kek_path))
        keys, created = ring.keys_for({pair: {pair[0]} for pair in wanted[index]})
        results.put((index, {pair: link for pair, (link, _) in keys.items()}, {r.key_link for r in created}))

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    collected = [results.get_nowait() for _ in range(writers)]
    store = open_key_store(pg_uri)
    ring = KeyRing(store, LocalKek(kek_path))
    every = set().union(*wanted)
    hashed = {(ring.ids.value_hash(v), d): (v, d) for v, d in every}
    stored = {hashed[pair]: r for pair, r in store.lookup(hashed).items()}
    assert len(stored) == len(every) == 100 * writers + 50
    for _, links, _ in collected:  # each writer holds the stored key of every pair it wanted
        assert links == {pair: stored[pair].key_link for pair in links}
    created = [link for _, _, made in collected for link in made]
    assert sorted(created) == sorted(r.key_link for r in stored.values())  # each key made by one writer
    shared = [pair for pair in every if sum(pair in w for w in wanted) == 2]
    assert len(shared) == 50 * (writers - 1)
    assert all(len(stored[pair].subject_hashes) == 1 for pair in stored)  # the subject, once, on the winner's key


def test_a_subject_added_while_its_key_is_forgotten_is_not_left_behind(pg_uri):
    store = open_key_store(pg_uri)
    store.insert_new([record("k1", "u1", ["alice"])])
    forget = raw(store)
    forget.autocommit = False
    forget.execute(f"DELETE FROM {store._t}.data_keys WHERE key_link = 'k1'")  # not committed yet
    adder = threading.Thread(target=store.add_subjects, args=([("k1", "bob")],))
    adder.start()
    time.sleep(0.5)
    assert adder.is_alive()  # add_subjects waits for the forget's commit (FOR KEY SHARE on the key)
    forget.commit()
    forget.close()
    adder.join(timeout=30)
    assert not adder.is_alive()
    assert subject_rows(store) == []
