"""Helpers for the gateway, driver and CLI tests: a real gateway process on a free port.

    from gateway_helpers import GatewayProcess, make_project
    project = make_project(tmp_path, "demo", "other")
    with GatewayProcess(tmp_path, token_ttl=1) as gw:
        token = gw.token("demo"); gw.post_event(token, event)
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from controlplane.project import Project

REPO = Path(__file__).resolve().parent.parent
WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
SIMULATOR = "strmprivacy/example/1.5.0"


def repo_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.pop("PSTREAM_GATEWAY_URL", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


_SECRETS: dict[tuple[str, str], str] = {}   # (project dir, client id) -> secret: only the hash is saved


def remember_secret(project_dir: Path, pipeline) -> None:
    """Keep a secret that ``create_pipeline`` or ``rotate_credentials`` showed, for ``credentials``."""
    _SECRETS[(str(Path(project_dir).resolve()), pipeline.client_id)] = pipeline.client_secret


def make_project(directory: Path, *pipelines: str) -> Project:
    project = Project.open(directory)
    for name in pipelines:
        remember_secret(directory, project.create_pipeline(name))
    project.save()
    return project


def pipeline_credentials(project_dir: Path, pipeline: str) -> tuple[str, str]:
    """Client id and secret of a pipeline. The project keeps only the secret's hash: a secret not
    seen by ``remember_secret`` (a pipeline created by the CLI) is rotated once to learn one."""
    project = Project.open(project_dir)
    entry = project.pipelines[pipeline]
    secret = _SECRETS.get((str(Path(project_dir).resolve()), entry.client_id))
    if secret is None or not entry.check_secret(secret):
        entry = project.rotate_credentials(pipeline)
        project.save()
        remember_secret(project_dir, entry)
        secret = entry.client_secret
    return entry.client_id, secret


def simulator_event(session: int = 1, consent=(0, 1)) -> dict:
    return {
        "strmMeta": {"eventContractRef": SIMULATOR, "consentLevels": list(consent)},
        "uniqueIdentifier": f"unique-{session}",
        "consistentValue": f"session-{session}",
        "someSensitiveValue": f"sensitive-{session}",
        "notSensitiveValue": f"not-sensitive-{session}",
    }


def read_spool(project_dir: Path, pipeline: str) -> list[bytes]:
    from gateway.spool import all_segments

    lines = []
    for segment in all_segments(Project.open(project_dir).spool_dir(pipeline)):
        lines += [line for line in segment.read_bytes().splitlines() if line.strip()]
    return lines


class GatewayProcess:
    """``python -m gateway`` on a free loopback port, stopped on exit (SIGTERM, then SIGKILL)."""

    def __init__(self, project_dir: Path, token_ttl: int = 3600, max_event_bytes: int = 1024 * 1024,
                 segment_max_age: float = 60.0, segment_max_bytes: int = 64 << 20, publish: str | None = None,
                 env: dict | None = None, extra: tuple[str, ...] = (), umask: int = -1):
        self.project_dir = Path(project_dir)
        self.args = ["--token-ttl", str(token_ttl), "--max-event-bytes", str(max_event_bytes),
                     "--segment-seconds", str(segment_max_age), "--segment-bytes", str(segment_max_bytes), *extra]
        if publish:
            self.args += ["--publish", publish]
        self.env = env or {}
        self.umask = umask
        self.process: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "GatewayProcess":
        ready = self.project_dir / f".port-{os.getpid()}-{time.monotonic_ns()}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--project-dir", str(self.project_dir), "--port", "0",
             "--ready-file", str(ready), *self.args],
            env=repo_env(**self.env), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, umask=self.umask)
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.process.poll() is not None:
                raise RuntimeError("gateway exited: " + self.process.stderr.read().decode()[-2000:])
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("gateway did not start within 30 s")
            time.sleep(0.02)
        self.port = int(ready.read_text())
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = httpx.Client(base_url=self.url, timeout=10)
        return self

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if getattr(self, "client", None) is not None:
            self.client.close()

    def stop_and_log(self, sig=signal.SIGTERM) -> str:
        """Stop the gateway and return what it wrote to stderr."""
        self.stop(sig)
        return self.process.stderr.read().decode(errors="replace")

    def __enter__(self) -> "GatewayProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def credentials(self, pipeline: str) -> tuple[str, str]:
        return pipeline_credentials(self.project_dir, pipeline)

    def token(self, pipeline: str) -> str:
        client_id, secret = self.credentials(pipeline)
        response = self.client.post("/auth/token", data={"grant_type": "client_credentials",
                                                         "client_id": client_id, "client_secret": secret})
        assert response.status_code == 200, response.text
        return response.json()["access_token"]

    def post_event(self, token: str | None, body, ref: str = SIMULATOR, kind: str = "application/json",
                   path: str = "/event") -> httpx.Response:
        headers = {"Strm-Schema-Ref": ref, "Strm-Serialization-Type": kind}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if not isinstance(body, (bytes, str)):
            import orjson

            body = orjson.dumps(body)
        return self.client.post(path, content=body, headers=headers)
