"""The key ring: data keys for (key-field value, UTC day), backed by a key store and a KEK.

    from privacy.keyring import KeyRing
    ring = KeyRing.shared("sqlite:///out/keystore.sqlite", "local://out/kek.json")
    keys, created = ring.keys_for({("477049", "2022-09-16"): {"477049"}})
    key_link, siv_key = keys[("477049", "2022-09-16")]
    ring.key_for_link(key_link)          # the same SivKey, from the in-process cache

``keys_for`` resolves a whole batch at once: cached keys first, then one store look-up, then
new keys for what is still missing, inserted with the store's unique constraint deciding; when
another writer won, its key is adopted. ``created`` lists the records this call inserted (the
pipeline's ``keys`` output). Unwrapped keys live only in this process's memory.

Callers speak plaintext (key-field values, subject ids); the ring hashes them with the store's
look-up key (``ring.ids``, ``privacy.lookup``) before anything reaches the store, so records
(``created`` included) carry only ``value_hash`` and ``subject_hashes``.
``ring.masking_key("webshop-1")`` is a privacy stream's masking key (``privacy.masking``).

Retention: a key expires at its day's start plus a policy's days and records the policy's id
(``policyId``). A wanted ``(value, day)`` gets a key of the ring's policy (``retention_days``,
``policy_id``); ``(value, day, policy)`` one of that ``privacy.policies.Policy`` (a contract's
``retention``)::

    keys, created = ring.keys_for({("477049", "2022-09-16", marketing): {"477049"}})

The policy id is part of the key's identity (``privacy.lookup``: the value is hashed with it), so
one value and day has a key per policy, and each policy's keys expire on their own. A key made
earlier keeps its expiry when its policy's days change later.

``KeyRing.shared`` gives one ring per (store, KEK) per process, so the encrypting and the
decrypting steps of a fused Beam stage share their cache. The cache keeps the ``cache_size``
most recently used keys unwrapped (about 0.7 KiB each: key material, pair, subject hashes), so
memory stays flat however many keys a run makes; an evicted key is read from the store and
unwrapped again when needed. Of those, the ``HOT_KEYS`` most recently used also keep their
``SivKey`` (about 4 KiB more each, mostly OpenSSL's AES-SIV state); a cached key without one
gets it back in microseconds, without the store.
A key this ring created is used as generated, not unwrapped again. keyLinks are UUIDv7
(``new_key_link``: time-ordered, see there). The clock is injectable.
"""
from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections import OrderedDict
from datetime import date, timedelta
from functools import lru_cache
from typing import Callable

from privacy.daead import KEY_SIZE, SivKey, new_key_id
from privacy.kek import Kek, kek_from_uri
from privacy.keystore import KeyRecord, KeyStore, Pair, open_key_store
from privacy.lookup import lookup_key
from privacy.masking import masking_key_name

DEFAULT_RETENTION_DAYS = 2556
DEFAULT_CACHE_SIZE = 100_000  # unwrapped keys (web shop: 500 customers x 180 days = 90,000 at most)
HOT_KEYS = 20_000  # of those, the ones that keep their SivKey (OpenSSL state)
DAY_MS = 86_400_000


_EPOCH_DAY = date(1970, 1, 1)


@lru_cache(maxsize=4096)
def _day_text(day_number: int) -> str:
    return (_EPOCH_DAY + timedelta(days=day_number)).isoformat()  # zero-padded: '0999-12-31'


def utc_day(timestamp_ms: int) -> str:
    """The UTC day ('YYYY-MM-DD', years 0001-9999) of an epoch-millisecond timestamp."""
    return _day_text(timestamp_ms // DAY_MS)


@lru_cache(maxsize=4096)
def day_start_ms(day: str) -> int:
    return (date.fromisoformat(day) - _EPOCH_DAY).days * DAY_MS


def new_key_link(clock: Callable[[], float] = time.time, random_bits: int | None = None) -> str:
    """A UUID version 7 (RFC 9562): 48 bits of Unix milliseconds, then 74 random bits.

    Time-ordered, so the key store's indexes on keyLink grow at their end instead of at random
    places: creating a key costs half as much and stays flat as the store grows. It tells when
    the key was made (about when its first event was processed), never whose key it is.
    """
    if random_bits is None:
        random_bits = secrets.randbits(80)
    return _uuid7_text(int(clock() * 1000), random_bits)


def _uuid7_text(millis: int, random_bits: int) -> str:
    """``str(uuid.UUID(int=...))`` of the UUIDv7 of ``millis`` and ``random_bits``, without the UUID object."""
    value = (millis & (2**48 - 1)) << 80 | random_bits & (2**80 - 1)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    text = "%032x" % value
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class _Entry:
    """A cached key: its (value, day, policy id), the unwrapped key's id and material, and the
    subject hashes known to the store."""

    __slots__ = ("pair", "key_id", "material", "prefix", "subjects")

    def __init__(self, pair: tuple[str, str, str], key: SivKey, subject_hashes):
        self.pair = pair  # plaintext (value, day, policy id): this process's memory only
        self.key_id = key.key_id
        self.material = key.material
        self.prefix = key.prefix if key.prefix_type == "TINK" else None
        self.subjects = set(subject_hashes)


class KeyRing:
    """Resolves and caches data keys; see the module docstring."""

    _shared: dict[tuple, "KeyRing"] = {}
    _shared_lock = threading.Lock()

    def __init__(
        self,
        store: KeyStore,
        kek: Kek,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        policy_id: str = "",
        clock: Callable[[], float] = time.time,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ):
        self.store = store
        self.kek = kek
        self.retention_days = retention_days
        self.policy_id = policy_id
        self.clock = clock
        self.cache_size = max(1, cache_size)
        self._entries: OrderedDict[str, _Entry] = OrderedDict()  # keyLink -> entry, least recently used first
        self._link_of_pair: dict[tuple[str, str, str], str] = {}  # (value, day, policy id) -> keyLink
        self._hot: OrderedDict[str, SivKey] = OrderedDict()  # keyLink -> SivKey, for HOT_KEYS of the entries
        self._hot_size = min(self.cache_size, HOT_KEYS)
        self._subject_hashes: dict[str, str] = {}  # subject -> its keyed hash, bounded like the cache
        self._value_hashes: dict[tuple[str, str], str] = {}  # (value, policy id) -> its look-up hash, bounded too
        self._lock = threading.Lock()
        self.ids = lookup_key(store, kek)  # KekError here if the store was set up with another KEK

    @classmethod
    def shared(cls, store_uri: str, kek_uri: str, retention_days: int = DEFAULT_RETENTION_DAYS) -> "KeyRing":
        """The process-wide ring for a store and KEK (created on first use)."""
        key = (store_uri, kek_uri, retention_days)
        with cls._shared_lock:
            ring = cls._shared.get(key)
            if ring is None:
                ring = cls._shared[key] = cls(open_key_store(store_uri), kek_from_uri(kek_uri), retention_days)
            return ring

    def _key(self, link: str, entry: _Entry) -> SivKey:
        """The SivKey of a cached entry: kept for the most recently used, else made from its material."""
        hot = self._hot
        key = hot.get(link)
        if key is None:
            key = hot[link] = (SivKey.of_checked(entry.key_id, entry.material, entry.prefix) if entry.prefix
                               else SivKey(entry.key_id, entry.material))
            if len(hot) > self._hot_size:
                hot.popitem(last=False)
        else:
            hot.move_to_end(link)
        return key

    def _remember(self, record: KeyRecord, pair, key: SivKey | None = None) -> tuple[str, SivKey]:
        """Cache a stored record's key for its plaintext pair (unwrapping it unless ``key`` is ours).
        The caches are trimmed to their bounds by ``_evict``, at the end of ``keys_for``."""
        link = record.key_link
        entry = self._entries.get(link)
        if entry is None:
            if key is None:
                key = SivKey(record.key_id, self.kek.unwrap(record.wrapped_key, link.encode()))
            entry = self._entries[link] = _Entry(pair, key, record.subject_hashes)
            self._hot[link] = key
        else:
            entry.subjects.update(record.subject_hashes)
            entry.pair = pair  # it may have come in through key_for_link, without its pair
            self._entries.move_to_end(link)
            key = self._key(link, entry)
        self._link_of_pair[pair] = link
        return link, key

    def _evict(self) -> None:
        while len(self._entries) > self.cache_size:
            link, entry = self._entries.popitem(last=False)
            self._hot.pop(link, None)
            if entry.pair is not None and self._link_of_pair.get(entry.pair) == link:
                del self._link_of_pair[entry.pair]
        hot = self._hot
        for _ in range(len(hot) - self._hot_size):  # the least recently used SivKeys beyond HOT_KEYS
            hot.popitem(last=False)
        if len(self._subject_hashes) > self.cache_size:
            self._subject_hashes.clear()
        if len(self._value_hashes) > self.cache_size:
            self._value_hashes.clear()

    def _policy(self, name: tuple) -> tuple[str, int]:
        """(policy id, retention days) of a wanted key: its own policy, else the ring's."""
        if len(name) == 2:
            return self.policy_id, self.retention_days
        policy = name[2]
        return policy.policy_id, policy.retention_days

    def _new_records(self, wanted: list[tuple[Pair, set, tuple[str, int]]]) -> list[tuple[KeyRecord, SivKey]]:
        """New keys for (hashed pair, subjects, policy)s: the key ids, key material and keyLinks' random
        bits from one read of the OS's CSPRNG for the whole batch."""
        size = 4 + KEY_SIZE + 10
        pool = secrets.token_bytes(size * len(wanted))
        made = []
        clock, wrap, kek_uri, subject_hash = self.clock, self.kek.wrap, self.kek.uri, self._subject_hash
        from_bytes, of_checked = int.from_bytes, SivKey.of_checked
        offset = 0
        for hashed, subjects, policy in wanted:
            raw = pool[offset:offset + size]
            offset += size
            key_id = from_bytes(raw[:4], "big") or new_key_id()
            key = of_checked(key_id, raw[4:4 + KEY_SIZE], b"\x01" + key_id.to_bytes(4, "big"))  # TINK prefix
            now_ms = int(clock() * 1000)
            link = _uuid7_text(now_ms, from_bytes(raw[4 + KEY_SIZE:], "big"))
            record = KeyRecord(link, hashed[0], hashed[1], key.key_id, wrap(key.material, link.encode()), kek_uri,
                               now_ms, day_start_ms(hashed[1]) + policy[1] * DAY_MS,
                               tuple(sorted({subject_hash(s) for s in subjects if s})), policy[0])
            made.append((record, key))
        return made

    def _subject_hash(self, subject: str) -> str:
        hashed = self._subject_hashes.get(subject)
        if hashed is None:
            hashed = self._subject_hashes[subject] = self.ids.subject_hash(subject)
        return hashed

    def _value_hash(self, value: str, policy_id: str) -> str:
        """The look-up hash of a key-field value (of a policy), kept for the next batches."""
        hashed = self._value_hashes.get((value, policy_id))
        if hashed is None:
            hashed = self._value_hashes[(value, policy_id)] = self.ids.value_hash(value, policy_id)
        return hashed

    def masking_key(self, stream: str) -> bytes:
        """The masking key of a privacy stream (made, wrapped and stored on first use)."""
        return self.store.store_key(masking_key_name(stream), self.kek)

    def keys_for(self, wanted: dict[tuple, set]) -> tuple[dict[tuple, tuple[str, SivKey]], list[KeyRecord]]:
        """Keys for every wanted (value, day) or (value, day, policy) -> data subjects (plaintext);
        and the records newly created. The result is keyed as ``wanted``."""
        with self._lock:
            entries, link_of_pair, hot = self._entries, self._link_of_pair, self._hot
            to_end, hot_to_end, hot_get = entries.move_to_end, hot.move_to_end, hot.get
            of_checked = SivKey.of_checked
            result: dict[tuple, tuple[str, SivKey]] = {}
            missing: dict[tuple, list] = {}  # (value, day, policy id) -> the wanted names of that key
            own = self.policy_id
            for name in wanted:  # cached keys: one dict look-up, two moves to the recent end
                slot = (name[0], name[1], own if len(name) == 2 else name[2].policy_id)
                link = link_of_pair.get(slot)
                if link is None:
                    names = missing.get(slot)
                    if names is None:
                        missing[slot] = [name]
                    else:
                        names.append(name)
                    continue
                to_end(link)
                key = hot_get(link)
                if key is None:  # cached without its SivKey: made again from the material (as _key does)
                    entry = entries[link]
                    key = hot[link] = (of_checked(entry.key_id, entry.material, entry.prefix) if entry.prefix
                                       else SivKey(entry.key_id, entry.material))
                else:
                    hot_to_end(link)
                result[name] = (link, key)
            created: list[KeyRecord] = []
            ours: dict[str, tuple[KeyRecord, SivKey]] = {}
            if missing:
                value_hash, value_hashes = self._value_hash, self._value_hashes
                plain = {(value_hashes.get((slot[0], slot[2])) or value_hash(slot[0], slot[2]), slot[1]): slot
                         for slot in missing}
                found = {}
                for hashed, record in self.store.lookup(plain).items():
                    found[plain[hashed]] = self._remember(record, plain[hashed])
                todo = []
                policy_of = self._policy
                for hashed, slot in plain.items():
                    if slot not in found:
                        names = missing[slot]
                        subjects = wanted[names[0]] if len(names) == 1 else set().union(*(wanted[n] for n in names))
                        todo.append((hashed, subjects, policy_of(names[0])))
                fresh = self._new_records(todo)
                if fresh:
                    ours = {record.key_link: (record, key) for record, key in fresh}
                    for hashed, record in self.store.insert_new([record for record, _ in fresh]).items():
                        mine = ours.get(record.key_link)  # None: another writer's key won, adopted
                        found[plain[hashed]] = self._remember(record, plain[hashed], mine[1] if mine else None)
                        if mine:
                            created.append(mine[0])
                for slot, names in missing.items():
                    for name in names:
                        result[name] = found[slot]
            new_subjects = set()
            subject_hash, hashes = self._subject_hash, self._subject_hashes
            for name, subjects in wanted.items():
                if subjects:
                    link = result[name][0]
                    if link in ours:  # made in this call: its subject hashes are those of every name of its slot
                        continue
                    known = entries[link].subjects
                    for subject in subjects:
                        if not subject:
                            continue
                        hashed = hashes.get(subject) or subject_hash(subject)
                        if hashed not in known:
                            new_subjects.add((link, hashed))
            if new_subjects:
                self.store.add_subjects(new_subjects)
                for link, subject in new_subjects:
                    entries[link].subjects.add(subject)
            self._evict()
            return result, created

    def key_for_link(self, key_link: str) -> SivKey | None:
        """The key a keyLink names: from the cache, else from the store; None if it is gone."""
        with self._lock:
            entry = self._entries.get(key_link)
            if entry is not None:
                self._entries.move_to_end(key_link)
                return self._key(key_link, entry)
            record = self.store.by_links([key_link]).get(key_link)
            if record is None:
                return None
            key = SivKey(record.key_id, self.kek.unwrap(record.wrapped_key, key_link.encode()))
            self._entries[key_link] = _Entry(None, key, record.subject_hashes)  # no plaintext pair known
            self._hot[key_link] = key
            self._evict()
            return key
