"""Rewrite what runs left under an output root: remove every copy of forgotten or expired keys.

    from cli.export_files import scrub_output, encrypted_files
    report = scrub_output("out", links={"c4b9..."}, subject_hashes={"9f2c..."}, subjects={"477049"},
                          extra=["keys.csv"], skip=["out/keystore.sqlite"])
    report.removed       # {"key rows": 3, "event rows": 41, "key exports": 3, "reports": 1}
    report.files, report.bytes, report.left      # files and bytes read; files it could not clean
    encrypted_files("out", days={"2022-09-16"})  # the files an access request must read

Every file under the root is read, whatever its name: hidden files, temp files of killed runs,
copies a user exported there, compressed files (``.gz`` and the like, through Beam's
FileSystems). Only two kinds are passed over: the committed encrypted output (``encrypted/``
files without a hidden name anywhere on their path: ciphertext that no key opens any more,
crypto-shredding) and the files given in ``skip`` (the key store's own files, which it cleans
itself). A file that mentions a forgotten keyLink (or, for key rows, a forgotten subject hash)
is cleaned by what it holds, not by its name:

- JSON lines (event rows of privacy streams and of temp files, ``keys/`` rows, JSONL key
  exports): the lines of those keyLinks go, and key rows listing a forgotten subject hash;
- key-export CSV (recognised by its header): the rows of those keyLinks go;
- an access report (``pstream subjects export``: a JSON document with ``dataSubject`` and
  ``records``) of a forgotten subject, or holding their keyLinks: deleted.

A file that still mentions a forgotten keyLink afterwards, or that is none of these (a copied
SQLite file, a document of another shape), is left as it is and listed in ``report.left``: the
caller reports it, never pretends it was cleaned. A file is rewritten to a hidden temp name
beside it and renamed over the original, so a reader sees the old or the new file; a file left
without rows is deleted. Local paths and gs://, s3://, azfs:// alike. Run it while no pipeline
is writing to the same output, or run it again afterwards.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from apache_beam.io.filesystems import FileSystems

from cli.jsonl_files import expand_paths
from privacy.key_export import EXPORT_FIELDS
from privacy.private_files import private_file
from privacy.subjects import key_link_of_line, row_matches

_DAY_PARTITION = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/")
_EXPORT_HEADER = ",".join(EXPORT_FIELDS).encode()
# A UUID's tail: starting with a literal '-' lets the regex engine jump from dash to dash (30x faster
# than a pattern starting with a character class); the 8 characters before the match complete it.
_UUID_TAIL = re.compile(rb"-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_KEY_ROW_SUBJECTS = "dataSubjectHashes"


@dataclass
class ScrubReport:
    """What ``scrub_output`` did: rows removed by kind, files and bytes read, files it could not clean."""

    removed: dict = field(default_factory=lambda: {"key rows": 0, "event rows": 0, "key exports": 0, "reports": 0})
    files: int = 0
    bytes: int = 0
    left: list = field(default_factory=list)

    def summary(self) -> str:
        rows = ", ".join(f"{kind} {count}" for kind, count in self.removed.items())
        return f"removed {rows}; read {self.files} files ({self.bytes / 1e6:.1f} MB)"


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name


def _read(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def _replace(path: str, data: bytes) -> None:
    """Atomically replace a file's content (delete it when empty)."""
    if not data:
        FileSystems.delete([path])
        return
    directory, name = path.rsplit("/", 1) if "/" in path else (".", path)
    temp = f"{directory}/.scrub-tmp.{name}"  # same suffix, so FileSystems compresses it as the original
    if "://" not in path:
        private_file(temp)  # owner-only from the start; FileSystems then writes (and compresses) into it
    with FileSystems.create(temp) as handle:
        handle.write(data)
    if "://" not in path:  # local: one atomic rename over the original, keeping its mode
        os.chmod(temp, os.stat(path).st_mode & 0o777)
        os.replace(temp, path)
    else:
        FileSystems.delete([path])
        FileSystems.rename([temp], [path])


def all_files(root: str) -> list[str]:
    """Every file under a root, hidden ones and those in hidden directories included, sorted."""
    if "://" in root:
        found = []
        for result in FileSystems.match([root.rstrip("/") + "/**"]):
            found += [m.path for m in result.metadata_list]
        return sorted(found)
    return sorted(os.path.join(directory, name) for directory, _, names in os.walk(root) for name in names)


def _is_committed_encrypted(root: str, path: str) -> bool:
    relative = path[len(root.rstrip("/")) + 1:] if path.startswith(root.rstrip("/") + "/") else path
    parts = relative.replace(os.sep, "/").split("/")
    return parts[0] == "encrypted" and not any(part.startswith((".", "_")) for part in parts[1:])


def _mentions(data: bytes, links: set[str], subject_hashes: set[str]) -> bool:
    if any(h.encode() in data for h in subject_hashes):
        return True
    for match in _UUID_TAIL.finditer(data):
        start = match.start() - 8
        if start >= 0 and data[start : match.end()].decode("latin-1").lower() in links:
            return True
    return False


def scrub_jsonl(data: bytes, links: set[str], subject_hashes: set[str] = frozenset()) -> tuple[bytes, dict]:
    """JSON lines without the rows (objects on one line) of the keyLinks or subject hashes, and how
    many of each kind went ({"key rows": n, "event rows": m}); other lines are kept as they are."""
    kept, removed = [], {"key rows": 0, "event rows": 0}
    for line in data.splitlines(keepends=True):
        stripped = line.strip()
        if stripped.startswith(b"{") and row_matches(stripped, links, subject_hashes):
            removed["key rows" if b'"wrappedKey"' in stripped else "event rows"] += 1
            continue
        kept.append(line)
    return b"".join(kept), removed


def _scrub_csv(data: bytes, links: set[str]) -> tuple[bytes, int]:
    """A key-export CSV without the rows of the keyLinks. Its rows are one line each (the keyset JSON
    holds no newline) and start with the keyLink, so lines are kept or dropped whole, unparsed."""
    lines = data.splitlines(keepends=True)
    kept = lines[:1] + [line for line in lines[1:] if line.split(b",", 1)[0].decode("latin-1").lower() not in links]
    removed = len(lines) - len(kept)
    if not removed:
        return data, 0
    return (b"".join(kept) if len(kept) > 1 else b""), removed


def _access_report_of(data: bytes, links: set[str], subjects: set[str]) -> bool | None:
    """True: an access report of a forgotten subject (or holding their keyLinks); False: another
    subject's; None: not an access report."""
    if b'"dataSubject"' not in data or b'"records"' not in data or not data.lstrip().startswith(b"{"):
        return None
    try:
        report = json.loads(data)
    except ValueError:
        return None
    if not isinstance(report, dict) or "dataSubject" not in report or "records" not in report:
        return None
    held = {k.get("keyLink") for k in report.get("keys") or () if isinstance(k, dict)}
    held |= {(r.get("strmMeta") or {}).get("keyLink") for r in report.get("records") or () if isinstance(r, dict)}
    return report["dataSubject"] in subjects or bool(held & links)


def _clean(path: str, data: bytes, links: set[str], subject_hashes: set[str], subjects: set[str],
           report: ScrubReport) -> None:
    """Clean one file that mentions what is forgotten (see the module docstring)."""
    if data.split(b"\n", 1)[0].strip() == _EXPORT_HEADER:
        cleaned, count = _scrub_csv(data, links)
        removed = {"key exports": count}
    else:
        is_report = _access_report_of(data, links, subjects)
        if is_report is not None:
            if is_report:
                FileSystems.delete([path])
                report.removed["reports"] += 1
            return
        cleaned, removed = scrub_jsonl(data, links, subject_hashes)
    if _mentions(cleaned, links, subject_hashes):
        report.left.append(path)  # not a shape we can clean: say so, never half-clean it silently
        return
    if any(removed.values()):
        _replace(path, cleaned)
        for kind, count in removed.items():
            report.removed[kind] += count


def key_rows_links(files: list[str], subject_hashes: set[str]) -> set[str]:
    """keyLinks of key rows (anywhere in the files) that list one of the subject hashes."""
    links: set[str] = set()
    if not subject_hashes:
        return links
    needles = [h.encode() for h in subject_hashes]
    for path in files:
        data = _read(path)
        if not any(needle in data for needle in needles):
            continue
        for line in data.splitlines():
            if f'"{_KEY_ROW_SUBJECTS}"'.encode() in line and any(needle in line for needle in needles):
                link = key_link_of_line(line)  # a key row's first field; read unparsed (half rows too)
                if link:
                    links.add(link)
    return links


def scrub_output(root: str | None, links: set[str], subject_hashes: set[str] = frozenset(),
                 subjects: set[str] = frozenset(), extra: list[str] = (), skip: list[str] = ()) -> ScrubReport:
    """Remove every copy of the keyLinks (and of key rows listing the subject hashes) under root and
    from the ``extra`` key-export files; see the module docstring."""
    report = ScrubReport()
    links = {link.lower() for link in links}
    skipped = {os.path.abspath(p) if "://" not in p else p for p in skip}
    files = []
    if root:
        for path in all_files(root):
            if _is_committed_encrypted(root, path) or (os.path.abspath(path) if "://" not in path else path) in skipped:
                continue
            files.append(path)
    files += [p for p in sorted(set(extra)) if p not in files]
    links |= {link.lower() for link in key_rows_links(files, set(subject_hashes))}  # keys deleted earlier
    for path in files:
        try:
            data = _read(path)
        except Exception as exc:  # noqa: BLE001 - any store's error: the file is reported, not skipped silently
            report.left.append(f"{path} ({type(exc).__name__})")
            continue
        report.files += 1
        report.bytes += len(data)
        if _mentions(data, links, set(subject_hashes)) or (subjects and b'"dataSubject"' in data):
            _clean(path, data, links, set(subject_hashes), set(subjects), report)
    return report


def encrypted_files(root_or_paths, days: set[str] | None = None) -> list[str]:
    """Encrypted JSONL files to read: of ``<root>/encrypted`` (or given paths); with ``days``,
    files in Hive-style ``date=YYYY-MM-DD/`` partitions of other days are skipped."""
    paths = [_join(root_or_paths, "encrypted")] if isinstance(root_or_paths, str) else list(root_or_paths)
    files = expand_paths(paths)
    if days is None:
        return files
    chosen = []
    for path in files:
        match = _DAY_PARTITION.search(path)
        if match is None or match.group(1) in days:
            chosen.append(path)
    return chosen


def rewrite_key_rows(root: str, rewrite) -> int:
    """Apply ``rewrite(row) -> row`` to every key row (a JSON line with ``wrappedKey``) of every file
    under root (hidden ones included) except the committed encrypted output; rows rewritten."""
    count = 0
    for path in all_files(root):
        if _is_committed_encrypted(root, path):
            continue
        try:
            data = _read(path)
        except Exception:  # noqa: BLE001 - not a file of ours (a database, a binary): left as it is
            continue
        if b'"wrappedKey"' not in data:
            continue
        lines, changed = [], 0
        for line in data.splitlines(keepends=True):
            stripped = line.strip()
            if stripped.startswith(b"{") and b'"wrappedKey"' in stripped:
                try:
                    row = json.loads(stripped)
                except ValueError:
                    lines.append(line)
                    continue
                new = rewrite(row)
                if new != row:
                    line = json.dumps(new, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                    changed += 1
            lines.append(line)
        if changed:
            _replace(path, b"".join(lines))
            count += changed
    return count


