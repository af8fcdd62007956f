"""Find and rewrite a run's export files: remove the rows of forgotten or expired keys.

    from cli.export_files import scrub_output, encrypted_files
    removed = scrub_output("out", links={"c4b9..."}, subjects={"477049"}, extra=["keys.csv"])
    removed      # {"keys": 3, "streams": 41, "key exports": 3}: rows removed, by kind
    encrypted_files("out", days={"2022-09-16"})      # the files an access request must read

Under an output root: ``keys/`` rows (wrapped keys, which the KEK would still open) are removed
by keyLink or by data subject; ``streams/`` rows (decrypted events) by ``strmMeta.keyLink``;
key-export files (``pstream keys export`` output, plaintext keys) by keyLink, both those given
in ``extra`` and ``*.csv`` files under the root whose header is the key-export header.
``encrypted/`` is left as it is: without the keys it cannot be read (crypto-shredding).

A file is rewritten to a hidden temp name beside it and renamed over the original, so a reader
sees the old or the new file, never half of one; a file left without rows is deleted. Local
paths and gs://, s3://, azfs:// alike (Beam's FileSystems). Run it while no pipeline is writing
to the same output, or run it again afterwards.
"""
from __future__ import annotations

import csv
import glob
import io
import os
import re

from apache_beam.io.filesystems import FileSystems

from cli.jsonl_files import expand_paths
from privacy.key_export import EXPORT_FIELDS
from privacy.subjects import row_matches

_DAY_PARTITION = re.compile(r"(?:^|/)date=(\d{4}-\d{2}-\d{2})/")
_EXPORT_HEADER = ",".join(EXPORT_FIELDS).encode()


def _join(root: str, name: str) -> str:
    return root.rstrip("/") + "/" + name


def _exists(path: str) -> bool:
    return FileSystems.exists(path)


def _read(path: str) -> bytes:
    with FileSystems.open(path) as handle:
        return handle.read()


def _replace(path: str, data: bytes) -> None:
    """Atomically replace a file's content (delete it when empty)."""
    if not data:
        FileSystems.delete([path])
        return
    directory, name = path.rsplit("/", 1) if "/" in path else (".", path)
    temp = f"{directory}/.{name}.scrub.tmp"
    with FileSystems.create(temp) as handle:
        handle.write(data)
    if "://" not in path:  # local: one atomic rename over the original
        os.replace(temp, path)
    else:
        FileSystems.delete([path])
        FileSystems.rename([temp], [path])


def scrub_jsonl(path: str, links: set[str], subjects: set[str] = frozenset()) -> int:
    """Remove the lines of a JSONL file that belong to the keyLinks or subjects; rows removed."""
    data = _read(path)
    lines = data.splitlines(keepends=True)
    kept = [line for line in lines if not (line.strip() and row_matches(line, links, subjects))]
    if len(kept) != len(lines):
        _replace(path, b"".join(kept))
    return len(lines) - len(kept)


def scrub_key_export(path: str, links: set[str]) -> int:
    """Remove the rows of a key-export file (CSV with a header, or JSONL) whose keyLink is given."""
    if path.endswith(".jsonl"):
        return scrub_jsonl(path, links)
    text = _read(path).decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    kept = [row for row in rows if row.get("keyLink") not in links]
    if len(kept) != len(rows):
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=EXPORT_FIELDS, lineterminator="\n", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(kept)
        _replace(path, out.getvalue().encode() if kept else b"")
    return len(rows) - len(kept)


def key_export_files(root: str) -> list[str]:
    """Key-export CSV files anywhere under a local output root (recognised by their header)."""
    if "://" in root or not os.path.isdir(root):
        return []
    found = []
    for path in sorted(glob.glob(os.path.join(root, "**", "*.csv"), recursive=True)):
        with open(path, "rb") as handle:
            if handle.readline().strip() == _EXPORT_HEADER:
                found.append(path)
    return found


def _jsonl_under(root: str, name: str) -> list[str]:
    directory = _join(root, name)
    if "://" not in directory and not os.path.isdir(directory):
        return []
    return expand_paths([directory])


def key_rows_links(root: str, subjects: set[str]) -> set[str]:
    """keyLinks of the ``keys/`` rows under root that list one of the subjects."""
    import json

    links = set()
    for path in _jsonl_under(root, "keys"):
        for line in _read(path).splitlines():
            if b'"dataSubjects"' in line and set(json.loads(line).get("dataSubjects") or ()) & subjects:
                links.add(json.loads(line)["keyLink"])
    return links


def scrub_output(root: str | None, links: set[str], subjects: set[str] = frozenset(),
                 extra: list[str] = ()) -> dict[str, int]:
    """Remove every exported row of the keyLinks (and, in ``keys/``, of the subjects); counts by kind."""
    removed = {"keys": 0, "streams": 0, "key exports": 0}
    links = set(links)
    if root:
        links |= key_rows_links(root, set(subjects))  # keys deleted earlier whose rows are still on disk
        for path in _jsonl_under(root, "keys"):
            removed["keys"] += scrub_jsonl(path, links, set(subjects))
        for path in _jsonl_under(root, "streams"):
            removed["streams"] += scrub_jsonl(path, links)
    for path in sorted(set(extra) | set(key_export_files(root) if root else [])):
        removed["key exports"] += scrub_key_export(path, links)
    return removed


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
