"""EncryptPii: encrypt every PII field with the key of (key-field value, UTC day of the event).

    from transforms.encrypt import EncryptPii, KeyRingSpec
    spec = KeyRingSpec("sqlite:///out/keystore.sqlite", "local://out/kek.json")
    out = valid_events | EncryptPii({contract.ref: contract}, spec)
    out[EncryptPii.ENCRYPTED]     # events, PII encrypted, strmMeta.keyLink set
    out[EncryptPii.KEYS]          # one row per key this run created, wrapped by the KEK
    out[EncryptPii.DEAD_LETTER]   # events that could not be encrypted (reason only)

Elements are buffered per bundle (``batch_size``) so that keys are resolved in one key-store
round trip per batch: cached keys first, then a look-up, then new keys inserted under the
store's unique constraint (another writer's key is adopted). Only kept keys encrypt anything.
All PII fields of one event share one key, so their ciphertexts share the first bytes.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils.windowed_value import WindowedValue

from contracts.model import Contract
from privacy.fields import FieldPlan
from privacy.keyring import DEFAULT_RETENTION_DAYS, KeyRing, utc_day
from privacy.keystore import KeyRecord
from transforms.dead_letters import DEAD_LETTER, dead_letter


@dataclass(frozen=True)
class KeyRingSpec:
    """Where keys live: the key store URI, the KEK URI and the retention policy."""

    store_uri: str
    kek_uri: str
    retention_days: int = DEFAULT_RETENTION_DAYS

    def open(self) -> KeyRing:
        return KeyRing.shared(self.store_uri, self.kek_uri, self.retention_days)


def key_row(record: KeyRecord) -> dict:
    """The ``keys`` output row of a new key: wrapped material only."""
    return {
        "keyLink": record.key_link,
        "keyId": record.key_id,
        "keyFieldValue": record.key_field_value,
        "day": record.day,
        "dataSubjects": list(record.subjects),
        "wrappedKey": base64.b64encode(record.wrapped_key).decode("ascii"),
        "kekUri": record.kek_uri,
        "policyId": record.policy_id,
        "createdAt": record.created_at,
        "expiresAt": record.expires_at,
    }


def _path_value(event: dict, path: list[str]):
    value = event
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    return value


class _EncryptFn(beam.DoFn):
    def __init__(self, contracts: dict[str, Contract], keys: KeyRingSpec, batch_size: int):
        self.contracts = contracts
        self.keys = keys
        self.batch_size = batch_size
        self.encrypted = Metrics.counter("pipeline", "encrypted")
        self.keys_created = Metrics.counter("pipeline", "keys_created")
        self.rejected = Metrics.counter("pipeline", "dead_letter_encrypt")

    def setup(self):
        self.ring = self.keys.open()
        self.plans = {
            ref: (FieldPlan(c), c.key_field.split("/"), c.data_subject_field.split("/") if c.data_subject_field else None)
            for ref, c in self.contracts.items()
        }

    def start_bundle(self):
        self.buffer = []

    def process(self, event, timestamp=beam.DoFn.TimestampParam, window=beam.DoFn.WindowParam):
        self.buffer.append((event, timestamp, window))
        if len(self.buffer) >= self.batch_size:
            yield from self._flush()

    def finish_bundle(self):
        yield from self._flush()

    def _flush(self):
        batch, self.buffer = self.buffer, []
        wanted: dict[tuple[str, str], set[str]] = {}
        pairs = []
        for event, _, _ in batch:
            meta = event["strmMeta"]
            plan = self.plans.get(meta["eventContractRef"])
            if plan is None:
                pairs.append(None)
                continue
            pair = (_path_value(event, plan[1]), utc_day(meta["timestamp"]))
            subject = _path_value(event, plan[2]) if plan[2] else None
            wanted.setdefault(pair, set())
            if subject:
                wanted[pair].add(subject)
            pairs.append(pair)
        keys, created = self.ring.keys_for(wanted) if wanted else ({}, [])
        first_seen = {}
        for (event, timestamp, window), pair in zip(batch, pairs):
            if pair is None:
                self.rejected.inc()
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, WindowedValue(
                    dead_letter(f"nonce:{event['strmMeta'].get('nonce')}", "encrypt", "no contract for this event",
                                event["strmMeta"].get("eventContractRef")), timestamp, [window]))
                continue
            key_link, key = keys[pair]
            first_seen.setdefault(pair, (timestamp, window))
            meta = event["strmMeta"]
            encrypted = self.plans[meta["eventContractRef"]][0].encrypt(event, key)
            encrypted["strmMeta"] = {**meta, "keyLink": key_link}
            self.encrypted.inc()
            yield WindowedValue(encrypted, timestamp, [window])
        for record in created:
            timestamp, window = first_seen[record.pair]
            self.keys_created.inc()
            yield beam.pvalue.TaggedOutput(EncryptPii.KEYS, WindowedValue(key_row(record), timestamp, [window]))


class EncryptPii(beam.PTransform):
    """Encrypts the PII of valid events; see the module docstring."""

    ENCRYPTED = "encrypted"
    KEYS = "keys"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, contracts: dict[str, Contract], keys: KeyRingSpec, batch_size: int = 2000):
        super().__init__()
        self.contracts = contracts
        self.keys = keys
        self.batch_size = batch_size

    def expand(self, events):
        return events | "EncryptFields" >> beam.ParDo(
            _EncryptFn(self.contracts, self.keys, self.batch_size)).with_outputs(
            self.KEYS, DEAD_LETTER, main=self.ENCRYPTED)
