"""The state of incremental database reads: the watermark a run read up to, under the output root.

    from pipelines.incremental import load_watermark, save_watermark
    since = load_watermark(config)        # None on the first run
    ...                                   # the run reads rows with since < column <= until
    save_watermark(config)                # only after the run finished and its counts add up

``<output>/state/incremental.json`` holds the source (connector, table or query), the column
and the value, as PostgreSQL's text of it. A state written for another source or column is
refused (``SourceConfigError``): reading from the wrong watermark would skip or repeat rows;
use another output root, or delete the file to read everything again. The file is written to a
temp name and renamed, through Beam's FileSystems (local, gs://, s3://, azfs://).
"""
from __future__ import annotations

import json
import os
import time
import uuid

from apache_beam.io.filesystems import FileSystems

from pipelines.sources import SourceConfigError

STATE_FILE = "incremental.json"


def state_path(config) -> str:
    return config.output_dir("state", STATE_FILE)


def _identity(config) -> dict:
    database = config.database
    return {"connector": database.connector.name, "table": database.table, "query": database.query,
            "column": database.incremental}


def load_watermark(config) -> str | None:
    """The previous run's upper bound, or None when no run has committed yet."""
    path = state_path(config)
    if not FileSystems.exists(path):
        return None
    try:
        with FileSystems.open(path) as handle:
            state = json.loads(handle.read().decode("utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceConfigError(f"{path}: the incremental state cannot be read ({type(exc).__name__}); delete it to "
                                "read every row again") from None
    ours = _identity(config)
    theirs = {key: state.get(key) for key in ours}
    if theirs != ours:
        raise SourceConfigError(f"{path}: the incremental state belongs to {theirs}, not to this input {ours}; use "
                                "another output root or delete the file to read every row again")
    return state.get("value")


def save_watermark(config) -> str | None:
    """Record ``config.database.until`` as the next run's lower bound; returns the path written."""
    database = config.database
    if database is None or not database.incremental or database.until is None:
        return None
    path = state_path(config)
    directory = path.rsplit("/", 1)[0]
    if "://" not in path:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    temp = f"{directory}/.{STATE_FILE}.{uuid.uuid4().hex}.tmp"
    state = {**_identity(config), "value": database.until, "writtenAt": int(time.time() * 1000)}
    handle = FileSystems.create(temp, mime_type="application/json")
    handle.write(json.dumps(state, indent=2).encode("utf-8"))
    handle.close()
    if FileSystems.exists(path):
        FileSystems.delete([path])
    FileSystems.rename([temp], [path])
    return path
