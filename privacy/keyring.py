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

``KeyRing.shared`` gives one ring per (store, KEK) per process, so the encrypting and the
decrypting steps of a fused Beam stage share their cache. The clock is injectable.
"""
from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Callable

from privacy.daead import SivKey
from privacy.kek import Kek, kek_from_uri
from privacy.keystore import KeyRecord, KeyStore, Pair, open_key_store

DEFAULT_RETENTION_DAYS = 2556
DAY_MS = 86_400_000


def utc_day(timestamp_ms: int) -> str:
    """The UTC day ('YYYY-MM-DD') of an epoch-millisecond timestamp."""
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")


def day_start_ms(day: str) -> int:
    return int(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp() * 1000)


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
    ):
        self.store = store
        self.kek = kek
        self.retention_days = retention_days
        self.policy_id = policy_id
        self.clock = clock
        self._by_pair: dict[Pair, tuple[str, SivKey]] = {}
        self._by_link: dict[str, SivKey] = {}
        self._subjects: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    @classmethod
    def shared(cls, store_uri: str, kek_uri: str, retention_days: int = DEFAULT_RETENTION_DAYS) -> "KeyRing":
        """The process-wide ring for a store and KEK (created on first use)."""
        key = (store_uri, kek_uri, retention_days)
        with cls._shared_lock:
            ring = cls._shared.get(key)
            if ring is None:
                ring = cls._shared[key] = cls(open_key_store(store_uri), kek_from_uri(kek_uri), retention_days)
            return ring

    def _remember(self, record: KeyRecord) -> tuple[str, SivKey]:
        key = self._by_link.get(record.key_link)
        if key is None:
            material = self.kek.unwrap(record.wrapped_key, record.key_link.encode())
            key = self._by_link[record.key_link] = SivKey(record.key_id, material)
        entry = self._by_pair[record.pair] = (record.key_link, key)
        self._subjects.update((record.key_link, s) for s in record.subjects)
        return entry

    def _new_record(self, pair: Pair, subjects: set[str]) -> KeyRecord:
        key = SivKey.generate()
        link = str(uuid.uuid4())
        return KeyRecord(
            key_link=link,
            key_field_value=pair[0],
            day=pair[1],
            key_id=key.key_id,
            wrapped_key=self.kek.wrap(key.material, link.encode()),
            kek_uri=self.kek.uri,
            created_at=int(self.clock() * 1000),
            expires_at=day_start_ms(pair[1]) + self.retention_days * DAY_MS,
            subjects=tuple(sorted(s for s in subjects if s)),
            policy_id=self.policy_id,
        )

    def keys_for(self, wanted: dict[Pair, set[str]]) -> tuple[dict[Pair, tuple[str, SivKey]], list[KeyRecord]]:
        """Keys for every wanted (value, day) -> data subjects; and the records newly created."""
        with self._lock:
            result = {pair: self._by_pair[pair] for pair in wanted if pair in self._by_pair}
            missing = [pair for pair in wanted if pair not in result]
            created: list[KeyRecord] = []
            if missing:
                for pair, record in self.store.lookup(missing).items():
                    result[pair] = self._remember(record)
                fresh = [self._new_record(pair, wanted[pair]) for pair in missing if pair not in result]
                if fresh:
                    ours = {r.key_link: r for r in fresh}
                    for pair, record in self.store.insert_new(fresh).items():
                        result[pair] = self._remember(record)
                        if record.key_link in ours:
                            created.append(ours[record.key_link])
            new_subjects = {
                (result[pair][0], s) for pair, subjects in wanted.items() for s in subjects if s
            } - self._subjects
            if new_subjects:
                self.store.add_subjects(new_subjects)
                self._subjects |= new_subjects
            return result, created

    def key_for_link(self, key_link: str) -> SivKey | None:
        """The key a keyLink names: from the cache, else from the store; None if it is gone."""
        with self._lock:
            key = self._by_link.get(key_link)
            if key is None:
                record = self.store.by_links([key_link]).get(key_link)
                if record is None:
                    return None
                key = self._remember(record)[1]
            return key
