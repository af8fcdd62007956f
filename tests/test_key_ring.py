"""The key ring and the SQLite store: one key per (value, day), a bounded cache, adopted keys, UUIDv7 links."""
from __future__ import annotations

import uuid

from privacy.daead import SivKey
from privacy.kek import LocalKek
from privacy.keyring import KeyRing, new_key_link
from privacy.keystore import KeyRecord, SqliteKeyStore

DAY = "2024-05-01"


def ring(tmp_path, cache_size=100, store=None) -> KeyRing:
    return KeyRing(store or SqliteKeyStore(tmp_path / "keys.sqlite"), LocalKek.create(tmp_path / "kek.json"),
                   cache_size=cache_size)


def test_each_pair_gets_one_key_and_later_calls_reuse_it(tmp_path):
    keys = ring(tmp_path)
    first, created = keys.keys_for({("u1", DAY): {"u1"}, ("u2", DAY): {"u2"}})
    assert sorted(r.pair for r in created) == sorted((keys.ids.value_hash(u), DAY) for u in ("u1", "u2"))
    assert {r.subject_hashes for r in created} == {(keys.ids.subject_hash("u1"),), (keys.ids.subject_hash("u2"),)}
    again, created_again = keys.keys_for({("u1", DAY): {"u1"}})
    assert created_again == [] and again[("u1", DAY)][0] == first[("u1", DAY)][0]
    assert first[("u1", DAY)][0] != first[("u2", DAY)][0]


def test_an_evicted_key_comes_back_from_the_store_unchanged(tmp_path):
    keys = ring(tmp_path, cache_size=2)
    pairs = {(f"u{i}", DAY): {f"u{i}"} for i in range(6)}
    first, created = keys.keys_for(pairs)
    assert len(created) == 6 and len(keys._entries) == 2  # the cache is bounded
    tokens = {pair: key.encrypt("secret") for pair, (_, key) in first.items()}
    again, created_again = keys.keys_for(pairs)
    assert created_again == []
    for pair, (link, key) in again.items():
        assert link == first[pair][0] and key.encrypt("secret") == tokens[pair]  # unwrapped from the store
    link, key = first[("u0", DAY)]
    keys.keys_for({(f"x{i}", DAY): set() for i in range(3)})  # push u0 out again
    assert link not in keys._entries
    assert keys.key_for_link(link).encrypt("secret") == tokens[("u0", DAY)]
    assert keys.key_for_link(str(uuid.uuid4())) is None


def test_subjects_added_after_eviction_reach_the_store(tmp_path):
    keys = ring(tmp_path, cache_size=1)
    link = keys.keys_for({("u1", DAY): {"u1"}})[0][("u1", DAY)][0]
    keys.keys_for({("u2", DAY): {"u2"}})
    keys.keys_for({("u1", DAY): {"u1", "device-7"}})
    assert keys.store.by_links([link])[link].subject_hashes == tuple(sorted(
        keys.ids.subject_hash(s) for s in ("device-7", "u1")))


def test_a_second_writer_adopts_the_key_the_first_one_stored(tmp_path):
    writer_a = ring(tmp_path)
    writer_b = ring(tmp_path, store=SqliteKeyStore(tmp_path / "keys.sqlite"))  # its own connection
    link_a, key_a = writer_a.keys_for({("u1", DAY): {"u1"}})[0][("u1", DAY)]
    result, created = writer_b.keys_for({("u1", DAY): {"u1"}})
    assert created == [] and result[("u1", DAY)][0] == link_a
    assert result[("u1", DAY)][1].encrypt("x") == key_a.encrypt("x")


def record(link: str, value: str, subjects=("s",)) -> KeyRecord:
    """A record as the store sees it: ``value`` and ``subjects`` stand for hashes (the store never hashes)."""
    key = SivKey.generate()
    return KeyRecord(link, value, DAY, key.key_id, b"wrapped-" + link.encode(), "local://kek.json", 1, 2, subjects)


def test_insert_new_returns_what_the_store_keeps(tmp_path):
    store = SqliteKeyStore(tmp_path / "keys.sqlite")
    mine = [record(new_key_link(), "u1", ("b", "a")), record(new_key_link(), "u2")]
    kept = store.insert_new(mine)  # all new: returned without reading them back ...
    looked_up = store.lookup([("u1", DAY), ("u2", DAY)])
    assert kept == looked_up  # ... and equal to what a read gives (subjects sorted)
    assert kept[("u1", DAY)].subject_hashes == ("a", "b")
    rival = record(new_key_link(), "u1")  # another writer's key for a stored pair
    fresh = record(new_key_link(), "u3")
    kept = store.insert_new([rival, fresh])
    assert kept[("u1", DAY)].key_link == mine[0].key_link  # the stored key wins
    assert kept[("u3", DAY)].key_link == fresh.key_link


def test_key_links_are_uuid7_in_time_order():
    clock = iter([1_700_000_000.0, 1_700_000_000.25, 1_700_000_001.5]).__next__
    links = [new_key_link(clock) for _ in range(3)]
    parsed = [uuid.UUID(link) for link in links]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert [u.int >> 80 for u in parsed] == [1_700_000_000_000, 1_700_000_000_250, 1_700_000_001_500]
    assert links == sorted(links)
    assert len({new_key_link() for _ in range(1000)}) == 1000


def _open_store(path, barrier, results):
    barrier.wait()
    try:
        SqliteKeyStore(path).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the test
        results.put(repr(exc))


def test_workers_opening_one_new_store_together_all_succeed(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    outcomes = []
    for attempt in range(15):  # SQLite refused the WAL switch at once in about 1 of 10 such openings
        barrier, results = context.Barrier(4), context.Queue()
        workers = [context.Process(target=_open_store, args=(tmp_path / f"k{attempt}.sqlite", barrier, results))
                   for _ in range(4)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        outcomes += [results.get(timeout=5) for _ in workers]
    assert outcomes == ["ok"] * len(outcomes)


def test_a_key_evicted_after_key_for_link_is_found_again_by_its_pair(tmp_path):
    keys = ring(tmp_path, cache_size=2)
    link = keys.keys_for({("u1", DAY): {"u1"}})[0][("u1", DAY)][0]
    keys.keys_for({(f"x{i}", DAY): set() for i in range(3)})  # u1 leaves the cache
    assert keys.key_for_link(link) is not None  # back in through its keyLink: no pair known yet
    again, created = keys.keys_for({("u1", DAY): {"u1"}})  # the store finds it by the pair's hash
    assert created == [] and again[("u1", DAY)][0] == link
    keys.keys_for({(f"y{i}", DAY): set() for i in range(3)})  # evicting it again leaves no stale pair
    assert ("u1", DAY) not in keys._link_of_pair
    assert keys.keys_for({("u1", DAY): set()})[0][("u1", DAY)][0] == link


def test_the_bounds_hold_after_batches_larger_than_the_cache(tmp_path, monkeypatch):
    import privacy.keyring as keyring

    monkeypatch.setattr(keyring, "HOT_KEYS", 3)
    keys = ring(tmp_path, cache_size=5)
    first, created = keys.keys_for({(f"u{i}", DAY): {f"u{i}"} for i in range(12)})  # one batch, more than both bounds
    assert len(created) == 12
    assert len(keys._entries) == 5 and len(keys._hot) == 3 and len(keys._link_of_pair) == 5
    assert set(keys._hot) <= set(keys._entries)
    assert len(keys._value_hashes) <= 5 and len(keys._subject_hashes) <= 5
    tokens = {pair: key.encrypt("secret") for pair, (_, key) in first.items()}
    again, created_again = keys.keys_for({(f"u{i}", DAY): {f"u{i}"} for i in range(12)})  # cached, rebuilt, unwrapped
    assert created_again == []
    assert {pair: (link, key.encrypt("secret")) for pair, (link, key) in again.items()} == {
        pair: (first[pair][0], tokens[pair]) for pair in first}
    assert len(keys._entries) == 5 and len(keys._hot) == 3


def test_a_key_another_writer_made_in_the_same_batch_is_adopted_with_our_subjects(tmp_path):
    writer_a = ring(tmp_path)
    writer_b = ring(tmp_path, store=SqliteKeyStore(tmp_path / "keys.sqlite"))
    link_a = writer_a.keys_for({("u1", DAY): {"u1"}})[0][("u1", DAY)][0]
    # b has not seen u1: its look-up finds a's key, and u2 is new; b's data subject for u1 is added
    result, created = writer_b.keys_for({("u1", DAY): {"device-9"}, ("u2", DAY): {"u2"}})
    assert result[("u1", DAY)][0] == link_a and [r.pair for r in created] == [(writer_b.ids.value_hash("u2"), DAY)]
    assert writer_b.store.by_links([link_a])[link_a].subject_hashes == tuple(sorted(
        writer_b.ids.subject_hash(s) for s in ("u1", "device-9")))
    # a cached key whose subjects grow in a later batch gets them in the store, once
    writer_b.keys_for({("u2", DAY): {"u2", "device-3"}})
    link_b = result[("u2", DAY)][0]
    assert writer_b.store.by_links([link_b])[link_b].subject_hashes == tuple(sorted(
        writer_b.ids.subject_hash(s) for s in ("u2", "device-3")))
