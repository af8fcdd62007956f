"""Exporters write pipeline outputs to moto S3, the GCS emulator and Azurite, batch and streaming.

The batch runs are ``python -m pipelines.run --config ...`` in a child process, with connectors
that point at the local servers; the streaming run is the streaming graph under TestStream. Each
checks the documented file names, one JSON event per line, the same events as the local output,
and that the probe file is gone. Wrong credentials stop the run before any event is read, with
a message naming the connector.
"""
from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import yaml

from cli.jsonl_files import read_jsonl
from cloud_servers import unique_name
from conftest import repo_env
from pipelines.config import DEFAULT_CONFIG
from pipelines.connectors import load_exports
from pipelines.example_data import write_webshop_csv
from stream_events import EVENTS, at, in_windows, run_streaming

EXPORT_FILE = re.compile(r"^(?P<prefix>.+)/(?P<label>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)-(?P<kind>stream|keys)-"
                         r"[0-9a-f-]{36}---(?P<shard>\d+)(_\d+)?\.jsonl$")


def connectors_and_exporters(s3_server, gcs_server, azurite_server, tmp_path, s3_secret=None, azure_key=None):
    """Config entries for one connector per cloud; returns (entries, env, bucket names)."""
    lake, warehouse, blob = unique_name("lake"), unique_name("warehouse"), unique_name("blob")
    s3_server.create_bucket(lake)
    gcs_server.create_bucket(warehouse)
    azurite_server.create_container(blob)
    key_file = tmp_path / "aws-key.json"
    key_file.write_text(json.dumps({"AccessKey": {"AccessKeyId": s3_server.access_key_id,
                                                  "SecretAccessKey": s3_secret or s3_server.secret_access_key}}))
    entries = {
        "connectors": [
            {"name": "lake", "kind": "s3", "bucket": lake, "endpoint": s3_server.endpoint, "region": "us-east-1",
             "credentials": {"file": str(key_file)}},
            {"name": "warehouse", "kind": "gcs", "bucket": warehouse, "endpoint": gcs_server.endpoint,
             "credentials": {"file": gcs_server.write_credentials_file(tmp_path)}},
            {"name": "blob", "kind": "azure", "account": azurite_server.account, "container": blob,
             "credentials": {"env": "TEST_BLOB_CONNECTION"}},
        ],
        "exporters": [
            {"output": "encrypted", "connector": "lake", "path_prefix": "shop/encrypted"},
            {"output": "webshop-1", "connector": "warehouse", "path_prefix": "streams/webshop-1", "interval": 30},
            {"output": "keys", "connector": "blob", "path_prefix": "keys", "interval": 120},
        ],
    }
    env = {"TEST_BLOB_CONNECTION": azurite_server.connection_string(azure_key)}
    return entries, env, (lake, warehouse, blob)


def exported(objects: dict[str, bytes], prefix: str, kind: str) -> tuple[list[dict], set[str]]:
    """Events of the export files under a prefix, and their window labels; checks every name.
    A batch run's record (``<prefix>/.pstream/runs/<run>.json``) must say ``done``."""
    events, labels = [], set()
    for name, body in objects.items():
        if name.startswith(f"{prefix}/.pstream/runs/"):
            assert json.loads(body)["state"] == "done", name
            continue
        match = EXPORT_FILE.match(name)
        assert match and match["prefix"] == prefix and match["kind"] == kind, name
        labels.add(match["label"])
        events += [json.loads(line) for line in body.decode().splitlines()]
    return events, labels


def run_cli(args: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipelines.run", *args], cwd=cwd, env={**repo_env(), **env},
                          capture_output=True, text=True, timeout=600)


def write_config(tmp_path: Path, entries: dict) -> Path:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    config.update(entries)
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def local(out: Path, folder: str) -> list[dict]:
    return [event for _, _, event in read_jsonl([str(out / folder)])]


def by_id(events: list[dict], field: str = "transactionId") -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in sorted(events, key=lambda e: str(e.get(field))))


def test_a_batch_run_exports_to_s3_gcs_and_azure(s3_server, gcs_server, azurite_server, tmp_path):
    entries, env, (lake, warehouse, blob) = connectors_and_exporters(s3_server, gcs_server, azurite_server, tmp_path)
    write_webshop_csv(tmp_path / "shop.csv", records=120, customers=15, products=10, seed=3)
    out = tmp_path / "out"
    # the config itself is read from S3, as a flex template reads it from its bucket
    s3_server.client().put_object(Bucket=lake, Key="config/pipeline.yaml",
                                  Body=write_config(tmp_path, entries).read_bytes())
    proc = run_cli(["--config", f"s3://{lake}/config/pipeline.yaml", *s3_server.beam_flags(),
                    "--input", str(tmp_path / "shop.csv"), "--output", str(out)], env, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"s3://{lake}/shop/encrypted/ (encrypted-to-lake)" in proc.stdout

    encrypted, labels = exported(s3_server.objects(lake, "shop/"), "shop/encrypted", "stream")
    assert len(labels) == 1                                   # batch: one file set per run
    assert by_id(encrypted) == by_id(local(out, "encrypted")) and len(encrypted) == 120
    stream, _ = exported(gcs_server.objects(warehouse), "streams/webshop-1", "stream")
    assert by_id(stream) == by_id(local(out, "streams/webshop-1")) and stream
    keys, _ = exported(azurite_server.objects(blob), "keys", "keys")
    assert by_id(keys, "keyLink") == by_id(local(out, "keys"), "keyLink") and keys
    assert all("wrappedKey" in k and "encryptionKey" not in k for k in keys)   # wrapped keys only


def test_wrong_credentials_stop_the_run_before_any_event_is_read(s3_server, gcs_server, azurite_server, tmp_path):
    write_webshop_csv(tmp_path / "shop.csv", records=20, customers=5, products=5, seed=3)
    wrong_key = base64.b64encode(b"\x02" * 64).decode()
    cases = [("s3", {"s3_secret": "not-the-secret"}, "exporter 'encrypted-to-lake': connector 'lake' (s3, s3://",
              "SignatureDoesNotMatch"),
             ("azure", {"azure_key": wrong_key}, "exporter 'keys-to-blob': connector 'blob' (azure, azfs://",
              "AuthorizationFailure")]
    for name, wrong, expected, code in cases:
        case_dir = tmp_path / name
        case_dir.mkdir()
        entries, env, _ = connectors_and_exporters(s3_server, gcs_server, azurite_server, case_dir, **wrong)
        out = case_dir / "out"
        started = time.monotonic()
        proc = run_cli(["--config", str(write_config(case_dir, entries)), "--input", str(tmp_path / "shop.csv"),
                        "--output", str(out)], env, case_dir)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"error: {expected}" in proc.stdout and code in proc.stdout, proc.stdout
        assert "cannot be written" in proc.stdout and "running" not in proc.stdout  # the job never started
        assert not (out / "encrypted").exists()
        assert "not-the-secret" not in proc.stdout + proc.stderr and wrong_key not in proc.stdout + proc.stderr
        assert time.monotonic() - started < 60


def test_a_streaming_run_exports_each_window_to_s3_gcs_and_azure(s3_server, gcs_server, azurite_server, tmp_path,
                                                                  monkeypatch):
    entries, env, (lake, warehouse, blob) = connectors_and_exporters(s3_server, gcs_server, azurite_server, tmp_path)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    exports = load_exports(entries, ["encrypted", "keys", "webshop-1", "webshop-2"], "pipeline.yaml")
    for name, value in exports.access.env.items():     # the GCS emulator's address and credentials file
        monkeypatch.setenv(name, value)
    positions = [(f"m:{i}", event) for i, event in enumerate(EVENTS, start=1)]
    started = time.time()
    out = run_streaming(tmp_path, in_windows(positions, [at("2024-03-10 00:01:00") / 1000]), exports=exports)

    encrypted, labels = exported(s3_server.objects(lake), "shop/encrypted", "stream")
    assert labels == {"2024-03-09T23:57:00", "2024-03-09T23:59:00", "2024-03-10T00:00:00", "2024-03-10T00:02:00"}
    assert by_id(encrypted) == by_id(local(out, "encrypted")) and len(encrypted) == 6
    stream, labels = exported(gcs_server.objects(warehouse), "streams/webshop-1", "stream")
    assert labels == {"2024-03-09T23:57:00", "2024-03-09T23:57:30", "2024-03-09T23:59:30",   # 30 s windows
                      "2024-03-10T00:00:00", "2024-03-10T00:00:30"}
    assert by_id(stream) == by_id(local(out, "streams/webshop-1"))
    keys, labels = exported(azurite_server.objects(blob), "keys", "keys")
    # keys are not subject to export lateness: one batch per 120 s of processing time (wall clock)
    [label] = labels
    assert datetime.strptime(label, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp() % 120 == 0
    assert label >= datetime.fromtimestamp(started - 120, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    # a key's row comes from each writer instance that first used it (transforms.encrypt): 4 keys
    assert by_id(keys, "keyLink") == by_id(local(out, "keys"), "keyLink") and len({k["keyLink"] for k in keys}) == 4
