"""Follow a directory of JSONL files as the pipeline writes them: yield each new line once.

    async for line in tail_jsonl(Path("out/demo/encrypted"), from_start=False, poll_seconds=0.2, stop=event):
        print(line)

The pipeline renames finished files into place and commits a run as a whole
(``transforms.write_jsonl``): only committed runs' ``*.jsonl`` files are followed
(``transforms.run_commit.committed_files``); hidden temp files are never read. Sub-directories
(``date=YYYY-MM-DD/`` partitions) are followed too. Files present at the start are skipped
unless ``from_start``.
"""
from __future__ import annotations

import asyncio
from pathlib import Path


def visible_jsonl(directory: Path) -> list[Path]:
    from transforms.run_commit import committed_files

    if not directory.is_dir():
        return []
    return sorted(Path(p) for p in committed_files([str(directory)]))


async def tail_jsonl(directory: Path, from_start: bool, poll_seconds: float, stop: asyncio.Event | None = None,
                     skip: set | None = None):
    """``skip``: files to leave out (taken by the caller at the moment it promised "from now on")."""
    seen = set(skip) if skip is not None else set() if from_start else set(visible_jsonl(directory))
    while stop is None or not stop.is_set():
        for path in visible_jsonl(directory):
            if path in seen:
                continue
            seen.add(path)
            try:
                text = path.read_text()
            except OSError:
                continue
            for line in text.splitlines():
                if line.strip():
                    yield line
        try:
            await asyncio.wait_for(stop.wait(), poll_seconds) if stop else await asyncio.sleep(poll_seconds)
        except asyncio.TimeoutError:
            pass
