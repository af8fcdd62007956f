"""The workshop's command line: project resources, simulate, listen, and `pstream local` end to end."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from cli.main import main
from cli.simulate import CONSENT_CYCLE, random_event
from controlplane.project import Project
from gateway_helpers import SIMULATOR, GatewayProcess, read_spool, repo_env


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_streams_connectors_and_exporters(tmp_path, capsys):
    p = ["--project-dir", str(tmp_path)]
    code, out, err = run(capsys, "create", "stream", "demo", *p)
    created = json.loads(out)["credentials"][0]          # the secret is shown this once
    assert code == 0 and "shown only now" in err
    code, out, _ = run(capsys, "create", "stream", "--derived-from", "demo", "--levels", "1", "--cumulative",
                       "--masked-fields", "userId", *p)
    assert code == 0 and json.loads(out)["ref"]["name"] == "demo-1"
    code, out, _ = run(capsys, "create", "stream", "--derived-from", "demo", "--levels", "2,1", *p)
    assert json.loads(out)["consentLevelType"] == "GRANULAR" and json.loads(out)["consentLevels"] == [1, 2]
    code, out, _ = run(capsys, "get", "stream", "demo", "-o", "json", *p)
    view = json.loads(out)
    project = Project.open(tmp_path)
    assert view["credentials"] == [{"clientId": project.pipelines["demo"].client_id}]   # never the secret again
    assert created["clientId"] == project.pipelines["demo"].client_id
    assert project.pipelines["demo"].check_secret(created["clientSecret"])
    assert created["clientSecret"] not in (tmp_path / "project.yaml").read_text()       # only its hash is kept
    assert view["outputDir"] == str(tmp_path / "out" / project.pipelines["demo"].id)
    assert sorted(view["derived"]) == ["demo-1", "demo-1-2"]
    assert oct(os.stat(tmp_path / "project.yaml").st_mode & 0o777) == "0o600"
    code, out, _ = run(capsys, "list", "streams", *p)
    assert code == 0 and "demo-1-2" in out and "CUMULATIVE" in out
    assert run(capsys, "create", "data-connector", "local", "dir", "--path", str(tmp_path / "x"), *p)[0] == 0
    code, _, err = run(capsys, "create", "data-connector", "s3", "bucket", *p)
    assert code == 2 and "--bucket-name" in err
    code, _, err = run(capsys, "create", "data-connector", "s3", "bucket", "--bucket-name", "b", *p)
    assert code == 2 and "bucket 'b' is not a valid S3 bucket name" in err   # pipelines.connectors' check
    code, _, err = run(capsys, "create", "data-connector", "s3", "bucket", "--bucket-name", "acme-b", *p)
    assert code == 2 and "cannot be written" in err                        # probed: no credentials here
    assert run(capsys, "create", "data-connector", "s3", "bucket", "--bucket-name", "acme-b", "--no-probe", *p)[0] == 0
    code, _, err = run(capsys, "create", "batch-exporter", "demo-1", "--data-connector", "dir", "--interval", "5", *p)
    assert code == 2 and "30-3600" in err
    assert run(capsys, "create", "batch-exporter", "demo-1", "--data-connector", "dir", "--path-prefix", "ev", *p)[0] == 0
    code, out, _ = run(capsys, "list", "batch-exporters", "-o", "json", *p)
    assert json.loads(out)[0]["stream"] == "demo-1"
    # deletes refuse to orphan things, and say why
    code, _, err = run(capsys, "delete", "data-connector", "dir", *p)
    assert code == 2 and "batch exporters" in err
    code, _, err = run(capsys, "delete", "stream", "demo", *p)
    assert code == 2 and "--recursive" in err
    assert run(capsys, "delete", "batch-exporter", "demo-1-dir", *p)[0] == 0
    assert run(capsys, "delete", "stream", "demo", "--recursive", *p)[0] == 0
    assert Project.open(tmp_path).pipelines == {} and Project.open(tmp_path).privacy_streams == {}
    code, _, err = run(capsys, "create", "stream", "Bad_Name", *p)
    assert code == 2 and "lowercase" in err
    code, _, err = run(capsys, "get", "stream", "nope", *p)
    assert code == 2


def test_every_command_has_help(capsys):
    for argv in (["create", "stream"], ["list", "streams"], ["get", "schema-code"], ["simulate", "random-events"],
                 ["listen", "web-socket"], ["ddl"], ["local"], ["gateway"], ["create", "batch-exporter"],
                 ["create", "data-connector", "s3"], ["delete", "stream"]):
        with pytest.raises(SystemExit) as info:
            main([*argv, "--help"])
        assert info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_simulator_events_follow_the_reference():
    import random

    rng = random.Random(1)
    events = [random_event(i, rng) for i in range(10)]
    assert [e["strmMeta"]["consentLevels"] for e in events[:5]] == [list(c) for c in CONSENT_CYCLE]
    assert all(e["strmMeta"]["eventContractRef"] == SIMULATOR for e in events)
    assert all(e["consistentValue"].startswith("session-") and int(e["consistentValue"][8:]) < 1000 for e in events)


def test_simulate_sends_through_the_gateway_with_the_pipeline_credentials(tmp_path, capsys):
    assert main(["create", "stream", "demo", "--project_dir", str(tmp_path)]) == 0
    with GatewayProcess(tmp_path) as gw:
        code = main(["simulate", "random-events", "demo", "--interval", "1", "--count", "12", "--gateway", gw.url,
                     "--project_dir", str(tmp_path)])
        assert code == 0
        assert "12 events sent, 0 not accepted" in capsys.readouterr().err
    events = [orjson.loads(line) for line in read_spool(tmp_path, "demo")]
    assert len(events) == 12
    assert [e["strmMeta"]["consentLevels"] for e in events[:5]] == [list(c) for c in CONSENT_CYCLE]
    assert main(["simulate", "random-events", "nope", "--count", "1", "--project_dir", str(tmp_path)]) == 2


def _start_local(project_dir: Path, *extra) -> tuple[subprocess.Popen, str]:
    ready = project_dir / "port"
    env = repo_env(PSTREAM_ALLOW_SHORT_INTERVALS=1)
    process = subprocess.Popen([sys.executable, "-m", "cli", "local", "--project_dir", str(project_dir), "--port", "0",
                                "--ready-file", str(ready), "--batch-seconds", "0.5", "--segment-seconds", "0.5", *extra],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not ready.exists():
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return process, f"http://127.0.0.1:{ready.read_text().strip()}"


def test_local_loop_simulate_listen_and_export(tmp_path, capsys):
    p = ["--project_dir", str(tmp_path)]
    os.environ["PSTREAM_ALLOW_SHORT_INTERVALS"] = "1"
    try:
        assert main(["create", "stream", "demo", *p]) == 0
        assert main(["create", "stream", "--derived-from", "demo", "--levels", "2", "--cumulative", *p]) == 0
        assert main(["create", "data-connector", "local", "dir", "--path", str(tmp_path / "exports"), *p]) == 0
        assert main(["create", "batch-exporter", "demo-2", "--data-connector", "dir", "--interval", "1",
                     "--path-prefix", "events", *p]) == 0
    finally:
        del os.environ["PSTREAM_ALLOW_SHORT_INTERVALS"]
    capsys.readouterr()
    local, url = _start_local(tmp_path)
    try:
        env = repo_env(PSTREAM_GATEWAY_URL=url)
        listen_pipeline = subprocess.Popen([sys.executable, "-m", "cli", "listen", "web-socket", "demo", "--count", "20",
                                            "--timeout", "60", *p], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        listen_stream = subprocess.Popen([sys.executable, "-m", "cli", "listen", "web-socket", "demo-2", "--count", "8",
                                          "--timeout", "60", *p], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for listener in (listen_pipeline, listen_stream):  # both are connected before events flow
            assert listener.stderr.readline().startswith(b"listening to ")
        started = time.monotonic()
        code = main(["simulate", "random-events", "demo", "--interval", "20", "--count", "20", "--quiet",
                     "--gateway", url, *p])
        assert code == 0
        out, err = listen_pipeline.communicate(timeout=90)
        assert listen_pipeline.returncode == 0, err.decode()[-2000:]
        latency = time.monotonic() - started
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert len(lines) == 20
        assert all(e["strmMeta"]["keyLink"] for e in lines)
        assert all(not e["consistentValue"].startswith("session-") for e in lines)  # encrypted
        assert latency < 30
        out, err = listen_stream.communicate(timeout=90)
        stream_lines = [json.loads(line) for line in out.decode().splitlines()]
        assert len(stream_lines) == 8  # cumulative 2: consent [0,1,2] and [0,1,2,3], 2 of every 5
        assert all(e["consistentValue"].startswith("session-") for e in stream_lines)  # level 2 decrypted
        assert all(not e["someSensitiveValue"].startswith("sensitive-") for e in stream_lines)  # level 3 not
        deadline = time.monotonic() + 30
        exported = []
        while time.monotonic() < deadline and sum(len(f.read_bytes().splitlines()) for f in exported) < 8:
            time.sleep(0.5)
            exported = list((tmp_path / "exports" / "events").glob("*-stream-*---0.jsonl"))
        assert sum(len(f.read_bytes().splitlines()) for f in exported) == 8
    finally:
        local.send_signal(signal.SIGTERM)
        local.wait(30)
    assert local.returncode == 0


def test_listen_refuses_a_token_of_another_pipeline(tmp_path):
    import asyncio

    from websockets.asyncio.client import connect as ws_connect
    from websockets.exceptions import InvalidStatus

    for name in ("demo", "other"):
        assert main(["create", "stream", name, "--project_dir", str(tmp_path)]) == 0
    with GatewayProcess(tmp_path) as gw:
        token = gw.token("other")

        async def connect(path, token):
            async with ws_connect(gw.url.replace("http", "ws") + path,
                                          additional_headers={"Authorization": f"Bearer {token}"}):
                return 101

        with pytest.raises(InvalidStatus) as info:
            asyncio.run(connect("/ws/demo", token))
        assert info.value.response.status_code == 403
        with pytest.raises(InvalidStatus) as info:
            asyncio.run(connect("/ws/demo", "bad"))
        assert info.value.response.status_code == 401
        assert asyncio.run(connect("/ws/other", token)) == 101
