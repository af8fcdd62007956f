"""Data subjects: who a key belongs to, forgetting them (crypto-shredding), and access requests.

    from privacy.subjects import check_subject_id, row_matches, access_report
    check_subject_id("477049")                       # ValueError unless 4-100 printable characters
    row_matches(b'{"strmMeta":{"keyLink":"c4b9..."}}', links={"c4b9..."})   # True, without parsing
    report = access_report("477049", key_records, keys, events, plan_for)  # the DSAR, as a dict

Forgetting a data subject deletes every key that lists them from the key store; every copy of
their data that those keys encrypted (exports, warehouse tables) becomes unreadable at once.
What was written in plaintext or as a wrapped key (privacy streams, ``keys/`` rows, key-export
files) is found through the same keyLinks and removed by ``cli.export_files``. An access request
finds the subject's records through their keyLinks: only events whose ``strmMeta.keyLink`` is
one of theirs are parsed and decrypted, and only day partitions of their keys' days are read.
Pure functions; the shells (``pstream subjects ...``) do the I/O.
"""
from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Callable, Iterable

from privacy.daead import DecryptError, SivKey
from privacy.fields import FieldPlan
from privacy.keystore import KeyRecord

SUBJECT_ID = re.compile(r"^[\x20-\x7e]{4,100}$")
_KEY_LINK = re.compile(rb'"keyLink"\s*:\s*"([^"]+)"')


def check_subject_id(subject: str) -> str:
    """The id unchanged, or ValueError: data subject ids are 4-100 printable characters."""
    if not SUBJECT_ID.match(subject or ""):
        raise ValueError(f"data subject id of {len(subject or '')} characters: use 4-100 printable ASCII characters")
    return subject


def key_link_of_line(line: bytes) -> str | None:
    """The first keyLink in a JSON line (strmMeta.keyLink of an event, keyLink of a key row)."""
    match = _KEY_LINK.search(line)
    return match.group(1).decode() if match else None


def row_matches(line: bytes, links: set[str], subjects: set[str] = frozenset()) -> bool:
    """True if a JSON line belongs to one of the keyLinks, or (key rows) lists one of the subjects."""
    if key_link_of_line(line) in links:
        return True
    if subjects and b'"dataSubjects"' in line:
        return bool(set(json.loads(line).get("dataSubjects") or ()) & subjects)
    return False


def key_days(records: Iterable[KeyRecord]) -> set[str]:
    return {r.day for r in records}


def path_value(event: dict, path: str):
    value = event
    for part in path.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


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
        if key is None:
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
