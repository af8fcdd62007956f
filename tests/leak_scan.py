"""Leak scans: read every file under a root, hidden ones included, for what could reveal data subjects.

Two scans share this module: ``scan`` looks for given byte forms (keys of forgotten subjects,
values), ``scan_output`` checks modes and where plaintext PII may be.

    from leak_scan import key_forms, value_forms, scan
    needles = key_forms(records, kek) | value_forms(["ann@example.com"])
    found = scan("out", needles)       # {relative path: [labels found]}; {} means nothing leaks

``key_forms`` are every byte form a data key of the subjects could take on disk: the wrapped key
(raw, as the key store holds it, and base64, as ``keys/`` rows do) and the plaintext key (raw,
base64, hex, and the base64 Tink proto of a key-export keyset). With any of these and the KEK
(which lies under a local output root) their encrypted records decrypt. ``value_forms`` are the
JSON forms of plaintext values (quoted, ASCII-escaped or not). Files are read whole and as they
are (a compressed file is also read decompressed), whatever their names.

    from leak_scan import input_pii, scan_output
    values = input_pii(csv_rows, contract)          # {plaintext PII value of the input: field name}
    report = scan_output(out, values, allowed={"streams/webshop-2/": consented_values})
    assert report.clean, report.describe()
    report.files_scanned, report.bytes_scanned      # figures for a closing note

Three kinds of finding (``Finding.kind``):

- ``mode``: a file that holds personal data or key material and that group or others may read,
  or a directory on the way to one (below the root, the root included) that they may enter.
  Personal data or key material means: a PII value of the input, or ``"keyLink"`` (encrypted
  events, key rows), ``"wrappedKey"``, ``"encryptionKey"``, Tink key data (``"keyData"``), or an
  SQLite database (the key store; its ``-wal``/``-shm`` files by name).
- ``plaintext``: a PII value of the input in a file outside the places allowed to hold it.
  ``allowed`` maps a path prefix relative to the root (``"streams/webshop-2/"``, ``"keys/"``,
  ``"keystore.sqlite"``) to the values that may appear under it; elsewhere none may. A value
  counts only as a whole token (not inside a longer run of letters and digits), so a 6-digit
  id is not found inside a timestamp or a base64 ciphertext.
- ``temp``: a temp file left behind (a path part starting with ``.temp-``, or a name ending
  ``.tmp``).

Every file is read in full (RE2 matches all values in one pass, in linear time), so the scan
also covers what no reader of ours opens: temp files, run records, the key store's pages.
"""
from __future__ import annotations

import base64
import gzip
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import re2

from privacy.keyset import key_proto

KEY_MARKERS = (b'"keyLink"', b'"wrappedKey"', b'"encryptionKey"', b'"keyData"', b"SQLite format 3\x00")
_BOUNDARY = rb"[^0-9A-Za-z]"


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


@dataclass
class Finding:
    kind: str        # mode | plaintext | temp
    path: str        # relative to the root
    detail: str


@dataclass
class Report:
    root: str
    files_scanned: int = 0
    bytes_scanned: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.findings

    def of(self, kind: str) -> list[Finding]:
        return [f for f in self.findings if f.kind == kind]

    def describe(self) -> str:
        lines = [f"{self.root}: {self.files_scanned} files, {self.bytes_scanned:,} bytes, "
                 f"{len(self.findings)} findings"]
        lines += [f"  {f.kind}: {f.path}: {f.detail}" for f in self.findings[:50]]
        return "\n".join(lines)


def input_pii(rows, contract, fields=None) -> dict[str, str]:
    """{value: field} of the PII fields of input rows (dicts of top-level fields), as text.
    ``fields`` narrows the set (default: every field the contract marks as PII)."""
    names = list(fields) if fields is not None else [path for path in contract.pii if "/" not in path]
    values = {}
    for row in rows:
        for name in names:
            value = row.get(name)
            if value not in (None, ""):
                values[str(value)] = name
    return values


def _forms(value: str) -> set[bytes]:
    """The bytes a value may be stored as: raw UTF-8 and as a JSON string body."""
    return {value.encode("utf-8"), json.dumps(value, ensure_ascii=False)[1:-1].encode("utf-8"),
            json.dumps(value)[1:-1].encode("ascii")}


class _Matcher:
    def __init__(self, values: dict[str, str]):
        self.value_of: dict[bytes, str] = {}
        for value in values:
            for form in _forms(value):
                self.value_of[form] = value
        self.pattern = None
        if self.value_of:
            options = re2.Options()
            options.max_mem = 1 << 30
            alternatives = b"|".join(re2.escape(form) for form in sorted(self.value_of, key=len, reverse=True))
            self.pattern = re2.compile(rb"(?:^|" + _BOUNDARY + rb")(" + alternatives + rb")(?:$|" + _BOUNDARY + rb")",
                                       options)

    def found(self, data: bytes) -> set[str]:
        if self.pattern is None:
            return set()
        return {self.value_of[match] for match in self.pattern.findall(data)}


def _sensitive(rel: str, data: bytes, values_found: set[str]) -> str | None:
    if values_found:
        return f"{len(values_found)} PII values"
    if rel.endswith(("-wal", "-shm")):
        return "key store journal"
    for marker in KEY_MARKERS:
        if marker in data:
            return f"holds {marker.decode('ascii', 'replace').strip(chr(0))}"
    return None


def _allowed(rel: str, allowed: dict[str, set[str]]) -> set[str]:
    permitted: set[str] = set()
    for prefix, values in allowed.items():
        if rel == prefix.rstrip("/") or rel.startswith(prefix):
            permitted |= set(values)
    return permitted


def scan_output(root, values: dict[str, str], allowed: dict[str, set[str]] | None = None) -> Report:
    """Scan every file under ``root`` (a local directory); see the module docstring."""
    root = Path(root)
    allowed = allowed or {}
    matcher = _Matcher(values)
    report = Report(str(root))
    sensitive_dirs: set[Path] = set()
    for name in files_under(root):
        path = Path(name)
        rel = path.relative_to(root).as_posix()
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        report.files_scanned += 1
        report.bytes_scanned += len(data)
        if any(part.startswith(".temp-") for part in rel.split("/")) or path.name.endswith(".tmp"):
            report.findings.append(Finding("temp", rel, f"{len(data)} bytes"))
        found = matcher.found(data)
        leaked = found - _allowed(rel, allowed)
        if leaked:
            sample = sorted(leaked)[:3]
            report.findings.append(Finding("plaintext", rel, f"{len(leaked)} PII values, e.g. fields "
                                           f"{sorted({values[v] for v in sample})}"))
        reason = _sensitive(rel, data, found)
        if reason:
            sensitive_dirs.update([path.parent, *path.parent.parents])
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                report.findings.append(Finding("mode", rel, f"{oct(mode)}: {reason}"))
    for directory in sorted(sensitive_dirs):
        if directory == root or root in directory.parents:
            mode = stat.S_IMODE(directory.stat().st_mode)
            if mode & 0o077:
                rel = directory.relative_to(root).as_posix()
                report.findings.append(Finding("mode", rel + "/", f"{oct(mode)}: directory of sensitive files"))
    return report
