"""The reference's key-export format: plaintext keys for warehouses and the decrypt command.

    from privacy.key_export import export_keys, write_key_export, read_key_export
    rows = export_keys(key_rows, kek)            # key rows of a run (keys/*.jsonl), unwrapped
    write_key_export(rows, "keys.csv")           # keyLink, encryptionKey, policyId, expiresAt
    keys = read_key_export("keys.csv")           # {keyLink: SivKey}

``encryptionKey`` is a Tink JSON keyset (``privacy.keyset``). CSV is the reference's format;
a ``.jsonl`` path gives one JSON object per line with the same fields. This is one of the two
places plaintext keys leave the process (the other is ``decrypt``'s use of such a file).
"""
from __future__ import annotations

import base64
import csv
import io
import json
from typing import Iterable, Iterator

from privacy.daead import SivKey
from privacy.kek import Kek
from privacy.keyset import key_from_keyset_json, keyset_json
from privacy.private_files import open_private

EXPORT_FIELDS = ["keyLink", "encryptionKey", "policyId", "expiresAt"]


def export_keys(key_rows: Iterable[dict], kek: Kek) -> Iterator[dict]:
    """Unwrap key rows (the pipeline's keys output) into key-export rows, each keyLink once
    (appended runs' keys/ each list the keys they used)."""
    seen = set()
    for row in key_rows:
        if row["keyLink"] in seen:
            continue
        seen.add(row["keyLink"])
        material = kek.unwrap(base64.b64decode(row["wrappedKey"]), row["keyLink"].encode())
        yield {
            "keyLink": row["keyLink"],
            "encryptionKey": keyset_json(SivKey(int(row["keyId"]), material)),
            "policyId": row.get("policyId") or "",
            "expiresAt": row["expiresAt"],
        }


def format_key_export(rows: Iterable[dict], jsonl: bool) -> str:
    out = io.StringIO()
    if jsonl:
        for row in rows:
            out.write(json.dumps(row, separators=(",", ":")) + "\n")
    else:
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def write_key_export(rows: Iterable[dict], path: str) -> int:
    rows = list(rows)
    with open_private(path, "w", newline="") as handle:  # plaintext keys: owner-only
        handle.write(format_key_export(rows, path.endswith(".jsonl")))
    return len(rows)


def parse_key_export(text: str, jsonl: bool) -> dict[str, SivKey]:
    rows = ([json.loads(line) for line in text.splitlines() if line.strip()] if jsonl
            else list(csv.DictReader(io.StringIO(text))))
    return {row["keyLink"]: key_from_keyset_json(row["encryptionKey"]) for row in rows}


def read_key_export(path: str) -> dict[str, SivKey]:
    """{keyLink: SivKey} from a key-export file (CSV, or JSONL by suffix)."""
    with open(path, newline="") as handle:
        return parse_key_export(handle.read(), path.endswith(".jsonl"))
