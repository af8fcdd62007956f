"""A leak scan: read every file under a root, hidden ones included, for what could reveal data subjects.

    from leak_scan import key_forms, value_forms, scan
    needles = key_forms(records, kek) | value_forms(["ann@example.com"])
    found = scan("out", needles)       # {relative path: [labels found]}; {} means nothing leaks

``key_forms`` are every byte form a data key of the subjects could take on disk: the wrapped key
(raw, as the key store holds it, and base64, as ``keys/`` rows do) and the plaintext key (raw,
base64, hex, and the base64 Tink proto of a key-export keyset). With any of these and the KEK
(which lies under a local output root) their encrypted records decrypt. ``value_forms`` are the
JSON forms of plaintext values (quoted, ASCII-escaped or not). Files are read whole and as they
are (a compressed file is also read decompressed), whatever their names.
"""
from __future__ import annotations

import base64
import gzip
import json
import os

from privacy.keyset import key_proto


def key_forms(records, kek) -> dict[bytes, str]:
    """{byte form: label} of the wrapped and plaintext keys of KeyRecords."""
    forms = {}
    for record in records:
        label = f"key {record.key_link}"
        material = kek.unwrap(record.wrapped_key, record.key_link.encode())
        forms[record.wrapped_key] = f"{label} (wrapped)"
        forms[base64.b64encode(record.wrapped_key)] = f"{label} (wrapped, base64)"
        for form in (material, base64.b64encode(material), material.hex().encode(), base64.b64encode(key_proto(material))):
            forms[form] = f"{label} (plaintext)"
    return forms


def value_forms(values) -> dict[bytes, str]:
    """{byte form: label} of plaintext values as JSON writes them."""
    forms = {}
    for value in values:
        for text in (json.dumps(value, ensure_ascii=False), json.dumps(value)):
            forms[text.encode("utf-8")] = f"value {value[:12]!r}"
    return forms


def files_under(root) -> list[str]:
    return sorted(os.path.join(d, name) for d, _, names in os.walk(root) for name in names)


def scan(root, needles: dict[bytes, str]) -> dict[str, list[str]]:
    """{path relative to root: labels of the needles found in it}, for every file under root."""
    found = {}
    for path in files_under(root):
        with open(path, "rb") as handle:
            data = handle.read()
        if data[:2] == b"\x1f\x8b":
            try:
                data += gzip.decompress(data)
            except OSError:
                pass
        hits = sorted({label for needle, label in needles.items() if needle in data})
        if hits:
            found[os.path.relpath(path, root)] = hits
    return found
