"""EncryptPii: encrypt every PII field with the key of (key-field value, UTC day of the event).

    from transforms.encrypt import EncryptPii, KeyRingSpec
    spec = KeyRingSpec("sqlite:///out/keystore.sqlite", "local://out/kek.json")
    out = valid_batches | EncryptPii({contract.ref: contract}, spec)   # batches of (position, event)
    out[EncryptPii.ENCRYPTED]     # batches of (position, event): PII encrypted, strmMeta.keyLink set
    out[EncryptPii.KEYS]          # a row for every key the events use, wrapped by the KEK
    out[EncryptPii.DEAD_LETTER]   # events that could not be encrypted: position, reason
    out[EncryptPii.KEYS] | DistinctKeyRows()   # batch: each keyLink once

Input and ENCRYPTED elements are batches (``transforms.event_batches``): each input batch gives
at most one ENCRYPTED batch (its encrypted events in order, never empty) with the input batch's
timestamp, windows and pane; the encrypted batches keep their positions, so they are also what
the privacy streams read. Key rows and dead letters are one element per row, with the timestamp
and windows of the batch their event came in.

Batches are buffered per bundle until they hold ``batch_size`` events (default 10,000: big
batches are what keep a key store's writes cheap) so that keys are resolved in one key-store
round trip per buffer: cached keys first, then a look-up, then new keys inserted under the
store's unique constraint (another writer's key is adopted). Only kept keys encrypt anything.
All PII fields of one event share one key, so their ciphertexts share the first bytes. Keys of
a contract with a retention policy are that policy's keys (``KeyRingSpec.policies``;
``privacy.keyring``): they expire after its days and carry its id as ``policyId``.

**keys output: a row on first use.** Each DoFn instance emits a key's row the first time it
uses the key in a run, whether the key was created now or reused from the store (made by an
earlier run, a killed run, another worker): so the keys output of a run holds every keyLink its
encrypted output uses, and ``keys export`` + ``decrypt`` of one run's outputs recover every
event. A key whose data subjects grow in a later batch gets its row again with them. Rows of
reused keys are read with one ``store.by_links`` call per batch (only for keys new to the
instance). Instances (workers, bundles in parallel) emit the same key each: a batch job
dedupes with ``DistinctKeyRows`` (one row per keyLink, data subjects merged); the instance
remembers ``ANNOUNCED_KEYS`` keyLinks (least recently used forgotten first, then announced
again), so memory stays flat in a long streaming job.

An event this stage cannot encrypt (no timestamp, no key-field value, or a failure no check
foresaw: the catch-all) is a dead letter with its position (``file:line``); a failure of the key
store or KEK is not a row's fault and fails the run.
"""
from __future__ import annotations

import base64
from collections import OrderedDict
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics

from contracts.model import Contract
from contracts.strm_meta import TIMESTAMP_MS
from privacy.fields import FieldPlan
from privacy.keyring import DEFAULT_RETENTION_DAYS, KeyRing, utc_day
from privacy.keystore import KeyRecord
from transforms.dead_letters import DEAD_LETTER, FailureLog, contract_label, dead_letter
from transforms.worker_tuning import tune_worker


DEFAULT_BATCH_SIZE = 10_000
ANNOUNCED_KEYS = 100_000


@dataclass(frozen=True)
class KeyRingSpec:
    """Where keys live: the key store URI, the KEK URI and the retention: ``retention_days`` for
    keys of contracts without a policy, ``policies`` ((contract ref, privacy.policies.Policy), ...)
    for contracts with one (``retention: {policy: ID}``, resolved at run start by
    ``PipelineConfig.retention_policies``)."""

    store_uri: str
    kek_uri: str
    retention_days: int = DEFAULT_RETENTION_DAYS
    policies: tuple = ()

    def open(self) -> KeyRing:
        return KeyRing.shared(self.store_uri, self.kek_uri, self.retention_days)

    def policy_of(self, contract_ref: str):
        """The retention policy of a contract's keys, or None for the ring's retention."""
        return dict(self.policies).get(contract_ref)


def key_row(record: KeyRecord) -> dict:
    """The ``keys`` output row of a new key: wrapped material, and keyed hashes (``privacy.lookup``)
    of the key-field value and the data subjects, never the values themselves."""
    return {
        "keyLink": record.key_link,
        "keyId": record.key_id,
        "keyFieldHash": record.value_hash,
        "day": record.day,
        "dataSubjectHashes": list(record.subject_hashes),
        "wrappedKey": base64.b64encode(record.wrapped_key).decode("ascii"),
        "kekUri": record.kek_uri,
        "policyId": record.policy_id,
        "createdAt": record.created_at,
        "expiresAt": record.expires_at,
    }


def _ref(event) -> object:
    meta = event.get("strmMeta") if event.__class__ is dict else None
    return meta.get("eventContractRef") if meta.__class__ is dict else None


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
        self.keys_reused = Metrics.counter("pipeline", "keys_reused")
        self.rejected = Metrics.counter("pipeline", "dead_letter_encrypt")

    def setup(self):
        tune_worker()
        self.failures = FailureLog("encrypt")
        self.ring = self.keys.open()
        self.plans = {
            ref: (FieldPlan(c), c.key_field.split("/"), c.data_subject_field.split("/") if c.data_subject_field else None,
                  self.keys.policy_of(ref))
            for ref, c in self.contracts.items()
        }

    def start_bundle(self):
        self.buffer, self.buffered = [], 0
        if not hasattr(self, "announced"):  # once per instance: Beam's old DirectRunner calls setup per bundle
            self.announced: OrderedDict[str, frozenset] = OrderedDict()  # keyLink -> data subjects in its row

    def process(self, batch, element=beam.DoFn.WindowedValueParam):
        # The whole WindowedValue is kept: outputs are emitted with its timestamp, windows and pane.
        self.buffer.append(element)
        self.buffered += len(batch)
        if self.buffered >= self.batch_size:
            yield from self._flush()

    def finish_bundle(self):
        yield from self._flush()

    def _reject(self, element, position: str, reason: str, ref):
        self.rejected.inc()
        return beam.pvalue.TaggedOutput(DEAD_LETTER, element.with_value(
            dead_letter(position, "encrypt", reason, contract_label(ref, self.contracts))))

    def _key_pair(self, event: dict):
        """(key-field value, UTC day[, retention policy of the contract]) and the data subject of one
        event, or a problem (a text)."""
        meta = event["strmMeta"]
        plan = self.plans.get(meta.get("eventContractRef"))
        if plan is None:
            return "no contract for this event"
        stamp = meta.get("timestamp")
        if stamp.__class__ is not int or not TIMESTAMP_MS[0] <= stamp <= TIMESTAMP_MS[1]:
            return "field 'strmMeta/timestamp': is missing or not a time (epoch milliseconds)"
        value = _path_value(event, plan[1])
        if value.__class__ is not str or not value:
            return f"field '{'/'.join(plan[1])}': the key field is missing"
        subject = _path_value(event, plan[2]) if plan[2] else None
        pair = (value, utc_day(stamp)) if plan[3] is None else (value, utc_day(stamp), plan[3])
        return pair, subject if subject.__class__ is str else None

    def _flush(self):
        elements, self.buffer, self.buffered = self.buffer, [], 0
        if not elements:
            return
        wanted: dict[tuple[str, str], set[str]] = {}
        pairs = []
        key_pair, failures = self._key_pair, self.failures
        for element in elements:
            for position, event in element.value:
                try:
                    planned = key_pair(event)
                except Exception as exc:  # the catch-all: class and stage, never the text
                    planned = failures.record(exc, position)
                if planned.__class__ is str:  # a problem
                    pairs.append(planned)
                    continue
                pair, subject = planned
                subjects = wanted.get(pair)
                if subjects is None:
                    subjects = wanted[pair] = set()
                if subject:
                    subjects.add(subject)
                pairs.append(pair)
        keys, created = self.ring.keys_for(wanted) if wanted else ({}, [])
        first_seen = {}
        encrypted_count = 0
        plans = self.plans
        planned = iter(pairs)
        for element in elements:
            out = []
            for (position, event), pair in zip(element.value, planned):
                if pair.__class__ is str:
                    yield self._reject(element, position, pair, _ref(event))
                    continue
                key_link, key = keys[pair]
                if key_link not in first_seen:  # the key row goes out even if this event then fails
                    first_seen[key_link] = element
                try:
                    meta = event["strmMeta"]
                    encrypted = plans[meta["eventContractRef"]][0].encrypt(event, key)
                    encrypted["strmMeta"] = {**meta, "keyLink": key_link}
                except Exception as exc:  # the catch-all: class and stage, never the text
                    yield self._reject(element, position, failures.record(exc, position), _ref(event))
                    continue
                out.append((position, encrypted))
            if out:
                encrypted_count += len(out)
                yield element.with_value(out)
        self.encrypted.inc(encrypted_count)
        yield from self._key_rows(keys, created, wanted, first_seen)

    def _key_rows(self, keys, created, wanted, first_seen):
        """A row for each key this instance has not announced yet (or whose subjects grew)."""
        announced = self.announced
        records = {record.key_link: record for record in created}
        self.keys_created.inc(len(created))
        pair_of = {link: pair for pair, (link, _) in keys.items()}
        due = []
        for link in first_seen:  # keyLinks of this batch, each with its first element
            pair = pair_of[link]
            known = announced.get(link)
            if known is None or not wanted[pair] <= known:
                due.append((link, pair))
            else:
                announced.move_to_end(link)
        reused = [link for link, _ in due if link not in records]
        if reused:  # made earlier (another run, a killed run, another worker): read once for its row
            found = self.ring.store.by_links(reused)
            self.keys_reused.inc(len(found))
            records.update(found)
        for link, pair in due:
            record = records.get(link)
            if record is None:
                continue  # deleted since it was looked up (forgotten): nothing left to export
            announced[link] = frozenset(wanted[pair]) | announced.get(link, frozenset())
            announced.move_to_end(link)
            yield beam.pvalue.TaggedOutput(EncryptPii.KEYS, first_seen[link].with_value(key_row(record)))
        while len(announced) > ANNOUNCED_KEYS:
            announced.popitem(last=False)


def merge_key_rows(rows) -> dict:
    """One key row from rows of the same keyLink: the first, with every row's data subjects."""
    rows = list(rows)
    merged = dict(rows[0])
    for name in ("dataSubjectHashes", "dataSubjects"):
        if name in merged:
            merged[name] = sorted({s for row in rows for s in row.get(name) or ()})
    return merged


class DistinctKeyRows(beam.PTransform):
    """Key rows -> one row per keyLink (``merge_key_rows``); for batch runs (global window).
    A GroupByKey, not a combiner: key rows are few and small, and a lifted combiner would keep
    the graph from round-tripping through the runner API (Flink)."""

    def expand(self, rows):
        return (rows
                | "ByKeyLink" >> beam.Map(lambda row: (row["keyLink"], row))
                | "GroupByKeyLink" >> beam.GroupByKey()
                | "OnePerKeyLink" >> beam.MapTuple(lambda _, same: merge_key_rows(same)))


class EncryptPii(beam.PTransform):
    """Encrypts the PII of batches of valid (position, event) pairs; see the module docstring."""

    ENCRYPTED = "encrypted"
    KEYS = "keys"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, contracts: dict[str, Contract], keys: KeyRingSpec, batch_size: int = DEFAULT_BATCH_SIZE):
        super().__init__()
        self.contracts = contracts
        self.keys = keys
        self.batch_size = batch_size

    def expand(self, pairs):
        return pairs | "EncryptFields" >> beam.ParDo(
            _EncryptFn(self.contracts, self.keys, self.batch_size)).with_outputs(
            self.KEYS, DEAD_LETTER, main=self.ENCRYPTED)
