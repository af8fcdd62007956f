"""Read JSON lines from files, directories or globs, local or remote (Beam FileSystems).

    from cli.jsonl_files import read_jsonl
    for path, line_number, obj in read_jsonl(["out/encrypted"]):
        ...
"""
from __future__ import annotations

import glob
import io
import json
import os
from typing import Iterator


def expand_paths(paths: list[str]) -> list[str]:
    """Files named by paths, directories (every *.jsonl under them, recursively) and globs, sorted.

    Hidden files (Beam's and our temp files) are skipped.
    """
    from apache_beam.io.filesystems import FileSystems   # Beam: only when files are read, not for --help

    files = []
    for path in paths:
        if "://" in path:
            pattern = path if "*" in path or path.endswith(".jsonl") else path.rstrip("/") + "/**.jsonl"
            for result in FileSystems.match([pattern]):
                files += [m.path for m in result.metadata_list]
        elif os.path.isdir(path):
            files += glob.glob(os.path.join(path, "**", "*.jsonl"), recursive=True)
        else:
            files += glob.glob(path, recursive=True) or [path]
    return sorted({f for f in files if not f.rsplit("/", 1)[-1].startswith(".")})


def read_jsonl(paths: list[str]) -> Iterator[tuple[str, int, dict]]:
    from apache_beam.io.filesystems import FileSystems

    for path in expand_paths(paths):
        with FileSystems.open(path) as raw:
            for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), start=1):
                if line.strip():
                    yield path, number, json.loads(line)
