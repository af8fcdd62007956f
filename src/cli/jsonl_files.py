"""Read JSON lines from files, directories or globs, local or remote (Beam FileSystems).

    from cli.jsonl_files import read_jsonl
    for path, line_number, obj in read_jsonl(["out/encrypted"]):
        ...
"""
from __future__ import annotations

import io
import json
from typing import Iterator


def expand_paths(paths: list[str]) -> list[str]:
    """Files named by paths, directories (every *.jsonl under them, recursively) and globs, sorted.

    Only committed runs' files (``transforms.run_commit.committed_files``): never temp files, a
    run that is still writing or was killed, or a run that a later ``replace`` run superseded.
    """
    from transforms.run_commit import committed_files   # Beam: only when files are read, not for --help

    return committed_files(paths)


def read_jsonl(paths: list[str]) -> Iterator[tuple[str, int, dict]]:
    from apache_beam.io.filesystems import FileSystems

    for path in expand_paths(paths):
        with FileSystems.open(path) as raw:
            for number, line in enumerate(io.TextIOWrapper(raw, encoding="utf-8"), start=1):
                if line.strip():
                    yield path, number, json.loads(line)
