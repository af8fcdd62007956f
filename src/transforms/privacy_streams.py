"""PrivacyStreams: one output per privacy stream, holding only the events whose consent allows it.

    from transforms.privacy_streams import PrivacyStreams
    specs = [StreamSpec.cumulative("webshop-1", 1, masked_fields=("userId",))]
    streams = encrypted_batches | PrivacyStreams({contract.ref: contract}, specs, key_ring_spec)
    streams["webshop-1"]       # batches of (position, event): levels 0..1 decrypted, userId masked
    streams[PrivacyStreams.DEAD_LETTER]   # events a stream could not be made of: position, reason

Input and stream elements are batches of (position, event) pairs (``transforms.event_batches``;
EncryptPii's ENCRYPTED output): each input batch gives at most one batch per stream (never empty),
with the input batch's timestamp and windows; dead letters are one element per row.

Each stream decrypts the purpose levels it permits and masks its chosen fields (see
``privacy.streams``; masking keys from the key store, ``privacy.masking``). The key comes from
the key ring's in-process cache, filled by EncryptPii in the same fused stage; a key the cache
lacks is read from the key store and unwrapped. An event whose key is gone (forgotten subject)
is counted and left out, never emitted with ciphertext.
An event that fails in a way no check foresaw (the catch-all) goes to no stream and is a dead
letter (stage ``streams``) with its position; it is still in the encrypted output.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from contracts.model import Contract
from privacy.fields import FieldPlan
from privacy.masking import stream_masker
from privacy.streams import StreamSpec
from transforms.dead_letters import DEAD_LETTER, FailureLog, contract_label, dead_letter
from transforms.encrypt import KeyRingSpec
from transforms.worker_tuning import tune_worker


class _RevealFn(beam.DoFn):
    def __init__(self, contracts: dict[str, Contract], specs: list[StreamSpec], keys: KeyRingSpec):
        self.contracts = contracts
        self.specs = specs
        self.keys = keys
        self.counters = {s.name: Metrics.counter("privacy_streams", s.name) for s in specs}
        self.keys_missing = Metrics.counter("pipeline", "stream_key_missing")
        self.rejected = Metrics.counter("pipeline", "dead_letter_streams")

    def setup(self):
        tune_worker()
        self.failures = FailureLog("streams")
        self.ring = self.keys.open()
        self.plans = {ref: FieldPlan(c) for ref, c in self.contracts.items()}
        self.masks = {s.name: stream_masker(s, self.ring) for s in self.specs}

    def process(self, batch):
        specs, plans, masks, ring = self.specs, self.plans, self.masks, self.ring
        out = {spec.name: [] for spec in specs}
        for position, event in batch:
            try:
                meta = event["strmMeta"]
                consent = meta.get("consentLevels") or ()
                admitted = [s for s in specs if s.admits(consent)]
                if not admitted:
                    continue
                key = ring.key_for_link(meta["keyLink"])
                if key is None:
                    self.keys_missing.inc()
                    continue
                plan = plans[meta["eventContractRef"]]
                revealed = [(spec.name, plan.reveal(event, key, spec, masks[spec.name])) for spec in admitted]
            except Exception as exc:  # the catch-all: class and stage, never the text; no stream gets the event
                self.rejected.inc()
                meta = event.get("strmMeta") if event.__class__ is dict else None
                ref = meta.get("eventContractRef") if meta.__class__ is dict else None
                yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(
                    position, "streams", self.failures.record(exc, position), contract_label(ref, self.contracts)))
                continue
            for name, stream_event in revealed:
                out[name].append((position, stream_event))
        for name, stream_batch in out.items():
            if stream_batch:
                self.counters[name].inc(len(stream_batch))
                yield beam.pvalue.TaggedOutput(name, stream_batch)


class PrivacyStreams(beam.PTransform):
    """Fans batches of encrypted (position, event) pairs out to one tagged output (of batches) per stream name."""

    DEAD_LETTER = DEAD_LETTER

    def __init__(self, contracts: dict[str, Contract], specs: list[StreamSpec], keys: KeyRingSpec):
        super().__init__()
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"privacy stream names must be unique: {names}")
        self.contracts = contracts
        self.specs = list(specs)
        self.keys = keys

    def expand(self, encrypted):
        return encrypted | "ConsentAndDecrypt" >> beam.ParDo(
            _RevealFn(self.contracts, self.specs, self.keys)).with_outputs(DEAD_LETTER, *[s.name for s in self.specs])
