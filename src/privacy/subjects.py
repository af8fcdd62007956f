"""Data subjects: who a key belongs to, forgetting them (crypto-shredding), and access requests.

    from privacy.subjects import check_subject_id, row_matches, access_report, recover_subject_ids
    check_subject_id("477049")                       # the id, or ValueError (empty, over 1000 characters)
    row_matches(b'{"strmMeta":{"keyLink":"c4b9..."}}', links={"c4b9..."})   # True, without parsing
    report = access_report("477049", key_records, keys, events, plan_for)  # the DSAR, as a dict
    recover_subject_ids(events, plan_for, key_of_link, ids, wanted_hashes)  # {subject hash: id}

Every id the pipeline accepts can be named here: any non-empty text of at most
``MAX_ID_CHARS`` characters (the validator's bound for key-field values and data-subject ids).
The key store knows subjects only by their keyed hash (``privacy.lookup``); the shells hash the
ids they are given with the store's look-up key.

Forgetting a data subject deletes every key that lists them from the key store; every copy of
their data that those keys encrypted (exports, warehouse tables) becomes unreadable at once.
What was written in plaintext or as a wrapped key (privacy streams, ``keys/`` rows, key-export
files, temp leftovers) is found through the same keyLinks and removed by ``cli.export_files``.
An access request finds the subject's records through their keyLinks: only events whose
``strmMeta.keyLink`` is one of theirs are parsed and decrypted, and only day partitions of their
keys' days are read. Pure functions; the shells (``pstream subjects ...``) do the I/O.
"""
from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

from contracts.events import MAX_ID_CHARS
from privacy.daead import DecryptError, SivKey
from privacy.fields import FieldPlan
from privacy.keystore import KeyRecord

_KEY_LINK = re.compile(rb'"keyLink"\s*:\s*"([^"]+)"')


def check_subject_id(subject: str) -> str:
    """The id unchanged, or ValueError: any non-empty text of at most MAX_ID_CHARS characters, as the
    pipeline accepts for a data-subject field (the message never repeats the id)."""
    if not isinstance(subject, str) or not subject:
        raise ValueError("a data subject id must not be empty")
    if len(subject) > MAX_ID_CHARS:
        raise ValueError(f"a data subject id of {len(subject)} characters: the pipeline accepts at most {MAX_ID_CHARS}")
    return subject


def key_link_of_line(line: bytes) -> str | None:
    """The first keyLink in a JSON line (strmMeta.keyLink of an event, keyLink of a key row)."""
    match = _KEY_LINK.search(line)
    return match.group(1).decode() if match else None


def row_matches(line: bytes, links: set[str], subject_hashes: set[str] = frozenset()) -> bool:
    """True if a JSON line belongs to one of the keyLinks, or (key rows) names one of the subject
    hashes. Read without parsing, so half a line (a write cut short) is judged the same way."""
    if key_link_of_line(line) in links:
        return True
    return any(h.encode() in line for h in subject_hashes)


def key_days(records: Iterable[KeyRecord]) -> set[str]:
    return {r.day for r in records}


def path_value(event: dict, path: str):
    value = event
    for part in path.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def recover_subject_ids(events: Iterable[dict], plan_for: Callable[[str], FieldPlan],
                        key_of_link: Callable[[str], SivKey | None], ids, wanted: set[str]) -> dict[str, str]:
    """{subject hash: id} for the hashes in ``wanted``, read from encrypted events: each event's
    data-subject field, decrypted with its key where it is PII, hashed with the store's look-up
    key ``ids``. Stops reading once every wanted hash is found; events without a key are skipped."""
    found: dict[str, str] = {}
    for event in events:
        if len(found) == len(wanted):
            break
        meta = event.get("strmMeta") or {}
        plan = plan_for(meta.get("eventContractRef"))
        field = plan.contract.data_subject_field if plan is not None else None
        value = path_value(event, field) if field else None
        if value is None:
            continue
        if field in plan.contract.pii:
            key = key_of_link(meta.get("keyLink"))
            if key is None:
                continue
            try:
                value = key.decrypt(value)
            except (DecryptError, TypeError, ValueError):
                continue
        hashed = ids.subject_hash(value)
        if hashed in wanted:
            found.setdefault(hashed, str(value))
    return found


def _iso(millis: int) -> str:
    return datetime.fromtimestamp(millis / 1000, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def access_report(
    subject: str,
    records: list[KeyRecord],
    keys: dict[str, SivKey],
    events: Iterable[dict],
    plan_for: Callable[[str], FieldPlan],
    policies: dict | None = None,
    clock: Callable[[], float] = time.time,
) -> dict:
    """A data-subject access report: the subject's keys and every event of theirs, decrypted.

    ``events`` are encrypted events (callers may pre-filter them by keyLink); ``keys`` holds the
    unwrapped keys of ``records``. An event whose key is shared with another subject is included
    only if its data-subject field decrypts to this subject. Events that fail to decrypt are
    counted, never shown.
    """
    policies = policies or {}
    links = {r.key_link for r in records}
    found, undecryptable = [], 0
    for event in events:
        meta = event.get("strmMeta") or {}
        link = meta.get("keyLink")
        if link not in links:
            continue
        key = keys.get(link)
        plan = plan_for(meta.get("eventContractRef"))
        if key is None or plan is None:  # no key, or a contract this installation does not know
            undecryptable += 1
            continue
        try:
            plain = plan.decrypt_all(event, key)
        except DecryptError:
            undecryptable += 1
            continue
        field = plan.contract.data_subject_field
        if field and path_value(plain, field) is not None and str(path_value(plain, field)) != subject:
            continue  # a key shared by several subjects: this event is someone else's
        found.append(plain)
    found.sort(key=lambda e: ((e.get("strmMeta") or {}).get("timestamp") or 0))
    return {
        "dataSubject": subject,
        "generatedAt": _iso(int(clock() * 1000)),
        "keys": [
            {
                "keyLink": r.key_link,
                "day": r.day,
                "createdAt": _iso(r.created_at),
                "expiresAt": _iso(r.expires_at),
                "policy": _policy_view(policies.get(r.policy_id), r.policy_id),
            }
            for r in records
        ],
        "recordCount": len(found),
        "undecryptable": undecryptable,
        "records": found,
    }


def _policy_view(policy, policy_id: str) -> dict:
    if policy is None:
        from privacy.policies import DEFAULT_POLICY

        policy = DEFAULT_POLICY if not policy_id else None
    if policy is None:
        return {"policyId": policy_id}
    return policy.to_dict()
