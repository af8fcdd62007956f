"""The batch commit protocol (transforms.run_commit, transforms.write_jsonl), locally and on S3, GCS, Azure.

- A reader (``committed_files``) never sees a mix of two runs: polled while a ``replace`` run
  commits (one rename at a time), it sees the old run whole, then the new run whole.
- Write modes: ``replace`` shows the last run only, ``append`` adds, ``fail`` refuses.
- Leftovers: a dead run's temp files, renamed files and record are removed by the next run; a
  live run's (this process), another host's and a job service's are never touched, and are
  reported; temp files of the old naming without a record go; one without a run id is kept.
- The same through Beam's FileSystems on moto S3, the GCS emulator and Azurite.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from cloud_servers import unique_name
from privacy.private_files import open_private
from transforms.run_commit import (OutputRun, RUN_FILE, TempFile, _exists, _process_start, committed_files, recover,
                                   temp_dir)
from transforms.write_jsonl import WriteJsonlBatches


def events(tag: str, count: int) -> list[dict]:
    return [{"strmMeta": {"timestamp": 1_700_000_000_000}, "run": tag, "n": i} for i in range(count)]


def write(directory: str, tag: str, count: int = 50, mode: str = "replace", flags=(), max_bytes: int = 1500):
    with TestPipeline(runner="FnApiRunner", options=PipelineOptions(list(flags))) as p:
        _ = p | beam.Create(events(tag, count)) | WriteJsonlBatches(directory, max_bytes=max_bytes, write_mode=mode)


def seen(directory: str) -> list[tuple[str, int]]:
    """(run tag, n) of every line a reader sees."""
    rows = []
    for path in committed_files([directory]):
        with FileSystems.open(path) as handle:
            rows += [(e["run"], e["n"]) for e in map(json.loads, handle.read().decode().splitlines())]
    return sorted(rows)


def test_a_reader_sees_the_old_run_or_the_new_run_never_a_mix(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    write(out, "old", 60)
    assert seen(out) == [("old", i) for i in range(60)]
    # the new run writes by hand through the same protocol, then commits one rename per 50 ms
    run = OutputRun.create(out, [""], "replace")
    run.begin()
    temps = []
    for shard in range(6):
        path = f"{temp_dir(run.directory(out), run.run_id)}/{shard}.jsonl.tmp"
        with open_private(path, "wb") as handle:
            handle.write(b"".join(json.dumps(e).encode() + b"\n" for e in events("new", 80)[shard::6]))
        temps.append(TempFile(run.directory(out), "", "2024-01-01T00:00:00", "stream", path))
    monkeypatch.setenv("PSTREAM_COMMIT_STEP_DELAY", "0.05")
    committer = threading.Thread(target=run.commit, args=(temps,))
    committer.start()
    views = []
    while committer.is_alive():
        views.append({tag for tag, _ in seen(out)})
        assert sorted(seen(out)) in ([("old", i) for i in range(60)], [("new", i) for i in range(80)])
    committer.join()
    assert {"old"} in views and seen(out) == [("new", i) for i in range(80)]
    assert not [p for p in (tmp_path / "out").rglob("*") if ".temp-" in str(p)]   # temp directory gone
    assert len(views) > 5    # the reader really looked during the commit


def test_write_modes(tmp_path):
    out = str(tmp_path / "out")
    write(out, "a", 10, "append")
    write(out, "b", 10, "append")
    assert {t for t, _ in seen(out)} == {"a", "b"}
    with pytest.raises(Exception, match="write_mode=fail"):
        write(out, "c", 10, "fail")
    assert {t for t, _ in seen(out)} == {"a", "b"}                   # refused: nothing added
    assert not list((tmp_path / "out").glob(".temp-*"))
    write(out, "d", 10, "replace")
    assert {t for t, _ in seen(out)} == {"d"}
    write(out, "e", 10, "append")                                     # appended after a replace: both
    assert {t for t, _ in seen(out)} == {"d", "e"}
    write(str(tmp_path / "empty"), "f", 10, "fail")                  # fail: fine on an empty output
    assert {t for t, _ in seen(str(tmp_path / "empty"))} == {"f"}
    write(out, "g", 0, "replace")                                     # an empty replace run: empty output
    assert seen(out) == []
    names = [p.name for p in (tmp_path / "out").iterdir()]
    assert names == [".pstream"]                                      # old runs' files deleted


def dead_owner() -> dict:
    """The owner of a run whose process ended (a real process that has exited)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    started = _process_start(proc.pid)
    proc.wait()
    return {"host": socket.gethostname(), "pid": proc.pid, "process": started, "runner": "FnApiRunner",
            "checkable": True}


def leftover_run(root: str, owner: dict, state: str = "committing") -> tuple[str, list[str]]:
    """A run that wrote temp files, renamed one of them, and stopped: its record says ``state``."""
    run = OutputRun.create(root, ["encrypted"], "replace")
    run.owner = owner
    directory = run.directory(f"{root}/encrypted")
    temp = f"{temp_dir(directory, run.run_id)}/part.jsonl.tmp"
    renamed_temp = f"{temp_dir(directory, run.run_id)}/renamed.jsonl.tmp"
    for path in (temp, renamed_temp):
        with FileSystems.create(path) as handle:
            handle.write(b'{"run": "dead", "n": 0}\n')
    final = f"{directory}/2024-01-01T00:00:00-stream-{run.run_id}---0.jsonl"
    FileSystems.rename([renamed_temp], [final])
    record = {**run._record(root, state, files=[]), "owner": owner}
    path = f"{root}/.pstream/runs/{run.run_id}.json"
    with FileSystems.create(path) as handle:
        handle.write(json.dumps(record).encode())
    return run.run_id, [temp, final, path]


def test_leftovers_of_dead_runs_go_and_those_of_runs_that_may_live_stay(tmp_path):
    root = str(tmp_path / "out")
    dead, dead_files = leftover_run(root, dead_owner())
    live, live_files = leftover_run(root, {**dead_owner(), "pid": os.getpid(),
                                           "process": _process_start(os.getpid())})
    remote, remote_files = leftover_run(root, {**dead_owner(), "runner": "DataflowRunner", "checkable": False})
    other_host, other_files = leftover_run(root, {**dead_owner(), "host": "another-host"})
    old_format = tmp_path / "out" / "encrypted" / f".temp-{'0' * 8}-0000-0000-0000-{'0' * 12}-{'a' * 32}.jsonl.tmp"
    old_format.write_text('{"n": 1}\n')                               # main's naming, no record: dead
    no_run_id = tmp_path / "out" / "encrypted" / f".temp-{'b' * 32}.jsonl.tmp"
    no_run_id.write_text('{"n": 2}\n')                                # no run id: cannot be proven dead
    assert committed_files([f"{root}/encrypted"]) == []               # none of them committed

    report = recover(root)
    exists = _exists
    assert report.rolled_back == [dead] and not any(exists(p) for p in dead_files)
    for files in (live_files, remote_files, other_files):
        assert all(exists(p) for p in files)
    assert len(report.kept) == 4 and any("DataflowRunner" in k for k in report.kept)
    assert not old_format.exists() and no_run_id.exists()

    write(f"{root}/encrypted", "next", 5)                             # another root: its own records
    assert {t for t, _ in seen(f"{root}/encrypted")} == {"next"}


def test_a_run_killed_after_its_commit_is_finished_by_the_next(tmp_path):
    root = str(tmp_path / "out")
    write(root, "first", 20)
    first = {RUN_FILE.match(p.name)["run"] for p in (tmp_path / "out").glob("*.jsonl")}
    run = OutputRun.create(root, [""], "replace")
    run.owner = dead_owner()
    run.begin()
    path = f"{temp_dir(run.directory(root), run.run_id)}/x.jsonl.tmp"
    with FileSystems.create(path) as handle:
        handle.write(b'{"run": "second", "n": 0}\n')
    # what commit() does up to its done record; then it is "killed": recover() does the rest
    final = f"{root}/2024-01-01T00:00:00-stream-{run.run_id}---0.jsonl"
    FileSystems.rename([path], [final])
    with FileSystems.create(f"{root}/.pstream/runs/{run.run_id}.json") as handle:
        handle.write(json.dumps(run._record(root, "done", committed_at=time.time())).encode())
    assert seen(root) == [("second", 0)]                              # committed: the first run is hidden
    report = recover(root)
    assert report.replaced_runs == sorted(first) and seen(root) == [("second", 0)]
    assert not (tmp_path / "out" / f".pstream/runs/{first.pop()}.json").exists()


def test_fail_mode_refuses_before_the_job_starts(tmp_path):
    from pipelines.run import run
    from pipeline_runs import webshop_csv
    data = webshop_csv(tmp_path / "in.csv", records=30, customers=5)
    out = tmp_path / "out"
    assert run(["--input", str(data), "--output", str(out)], echo=lambda *_: None) == 0
    lines = []
    assert run(["--input", str(data), "--output", str(out), "--write_mode", "fail"], echo=lines.append) == 2
    assert "--write_mode=fail" in lines[-1] and "already holds the output of run" in lines[-1]
    assert len(list(out.glob(".pstream/runs/*.json"))) == 1          # the refused run left no record


# -- on the cloud servers ----------------------------------------------------------------------
def cloud_cycle(root: str, flags: list[str]) -> None:
    FileSystems.set_options(PipelineOptions(flags))
    write(root, "one", 40, flags=flags, max_bytes=600)
    assert seen(root) == [("one", i) for i in range(40)]
    write(root, "two", 30, flags=flags, max_bytes=600)               # replace: one run visible
    assert seen(root) == [("two", i) for i in range(30)]
    write(root, "three", 5, "append", flags=flags)
    assert {t for t, _ in seen(root)} == {"two", "three"}
    dead, files = leftover_run(root, dead_owner())
    assert {t for t, _ in seen(root)} == {"two", "three"}            # the dead run's renamed file is unseen
    write(root, "four", 10, flags=flags)
    assert seen(root) == [("four", i) for i in range(10)]
    FileSystems.set_options(PipelineOptions(flags))
    assert not any(_exists(p) for p in files)                        # rolled back
    listed = [m.path for m in FileSystems.match([f"{root}/**"])[0].metadata_list]
    assert not [p for p in listed if ".temp-" in p]
    assert len([p for p in listed if "/.pstream/runs/" in p]) == 1   # the last run's record only


def test_the_protocol_on_s3(s3_server):
    bucket = s3_server.create_bucket(unique_name("commit"))
    cloud_cycle(f"s3://{bucket}/out", s3_server.beam_flags())


def test_the_protocol_on_gcs(gcs_server, tmp_path, monkeypatch):
    for name, value in gcs_server.beam_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    bucket = gcs_server.create_bucket(unique_name("commit"))
    cloud_cycle(f"gs://{bucket}/out", ["--project=demo-project"])


def test_the_protocol_on_azure(azurite_server):
    container = azurite_server.create_container(unique_name("commit"))
    cloud_cycle(f"azfs://{azurite_server.account}/{container}/out",
                [f"--azure_connection_string={azurite_server.connection_string()}"])

