"""The limit: the batch job's work as one plain Python loop, no Beam.

    from benchmarks.plain_loop import run_plain_loop
    counts = run_plain_loop(config)      # a pipelines.config.PipelineConfig; returns output counts

Exactly the work of ``pipelines.graph.build_batch_graph`` on a CSV input, with the same core
functions (they are plain Python; making them fast makes both sides fast, so the benchmark's
ratio measures what Beam costs): read the CSV with the reader of ``transforms.read_input``,
convert and check each row (``BatchInput.to_event``, ``EventValidator.check``), resolve the keys
of 10,000 events at a time (EncryptPii's batch) through the same ``KeyRing`` and SQLite key store (wrapped by the same
local KEK), encrypt every PII field (``FieldPlan.encrypt``), decrypt and mask each privacy
stream's copy (``FieldPlan.reveal``) and write JSONL with orjson: one file per output under
``config.output`` (encrypted/, streams/<name>/, keys/, dead_letter/).
"""
from __future__ import annotations

import io
import os

import orjson

from contracts.batch_input import BatchInput
from contracts.events import EventError, EventValidator
from pipelines.config import PipelineConfig
from privacy.fields import FieldPlan
from privacy.kek import kek_from_uri, prepare_kek
from privacy.keyring import KeyRing, utc_day
from privacy.masking import stream_masker
from privacy.keystore import open_key_store
from transforms.dead_letters import dead_letter
from transforms.encrypt import DEFAULT_BATCH_SIZE, key_row
from transforms.read_input import csv_rows
from transforms.worker_tuning import tune_worker

BATCH = DEFAULT_BATCH_SIZE  # events per key-store round trip, as EncryptPii does


def _open(config: PipelineConfig, name: str):
    directory = config.output_dir(name)
    os.makedirs(directory, exist_ok=True)
    return open(os.path.join(directory, "part-0.jsonl"), "wb")


def _value(event: dict, path: list[str]):
    for part in path:
        event = event.get(part) if isinstance(event, dict) else None
    return event


def run_plain_loop(config: PipelineConfig) -> dict[str, int]:
    """Run the job on ``config.input_path`` (one CSV file); returns {output name: events written}."""
    tune_worker()  # the same garbage-collector thresholds as the pipeline's workers
    contract = config.contract
    ref = contract.ref
    batch_input = BatchInput(contract, config.consent, config.timestamp)
    validator = EventValidator(contract) if contract.is_active else None
    plan = FieldPlan(contract)
    prepare_kek(config.kek)
    ring = KeyRing(open_key_store(config.key_store), kek_from_uri(config.kek), config.retention_days)
    key_path = contract.key_field.split("/")
    subject_path = contract.data_subject_field.split("/") if contract.data_subject_field else None
    streams = [(spec, _open(config, f"streams/{spec.name}"), stream_masker(spec, ring)) for spec in config.streams]
    encrypted_out, keys_out, dead_out = _open(config, "encrypted"), _open(config, "keys"), _open(config, "dead_letter")
    counts = {"rows_read": 0, "valid": 0, "encrypted": 0, "keys": 0, "dead_letter": 0}
    counts.update({f"streams/{spec.name}": 0 for spec, _, _ in streams})
    dumps = orjson.dumps

    def reject(position: str, stage: str, reason: str) -> None:
        dead_out.write(dumps(dead_letter(position, stage, reason, ref)) + b"\n")
        counts["dead_letter"] += 1

    def flush(events: list[dict]) -> None:
        wanted: dict[tuple[str, str], set[str]] = {}
        pairs = []
        for event in events:
            pair = (_value(event, key_path), utc_day(event["strmMeta"]["timestamp"]))
            subjects = wanted.setdefault(pair, set())
            subject = _value(event, subject_path) if subject_path else None
            if subject:
                subjects.add(subject)
            pairs.append(pair)
        keys, created = ring.keys_for(wanted)
        for event, pair in zip(events, pairs):
            key_link, key = keys[pair]
            encrypted = plan.encrypt(event, key)
            meta = encrypted["strmMeta"] = {**event["strmMeta"], "keyLink": key_link}
            encrypted_out.write(dumps(encrypted) + b"\n")
            consent = meta["consentLevels"] or ()
            for spec, out, mask in streams:
                if spec.admits(consent):
                    out.write(dumps(plan.reveal(encrypted, key, spec, mask)) + b"\n")
                    counts[f"streams/{spec.name}"] += 1
        for record in created:
            keys_out.write(dumps(key_row(record)) + b"\n")
        counts["encrypted"] += len(events)
        counts["keys"] += len(created)

    pending: list[dict] = []
    with open(config.input_path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="")
        for position, row, problem in csv_rows(text, config.input_path):
            counts["rows_read"] += 1
            if problem:
                reject(position, "read", problem)
                continue
            try:
                event = batch_input.to_event(row)
            except EventError as err:
                reject(position, "read", err.reason)
                continue
            if validator is None:
                reject(position, "validate", f"contract '{ref}' is not ACTIVE")
                continue
            try:
                event = validator.check(event)
            except EventError as err:
                reject(position, "validate", err.reason)
                continue
            counts["valid"] += 1
            pending.append(event)
            if len(pending) >= BATCH:
                flush(pending)
                pending = []
    if pending:
        flush(pending)
    for handle in (encrypted_out, keys_out, dead_out, *(out for _, out, _ in streams)):
        handle.close()
    return counts
