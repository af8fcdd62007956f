"""Credentials with a life cycle, over a real socket: a token is bound to the client id and the
credential generation, so rotating, or deleting and re-creating, a pipeline refuses every
earlier token; secrets are stored hashed, checked in constant time and never logged."""
from __future__ import annotations

import json
import time

import orjson
import pytest
from hypothesis import given, settings, strategies as st

from cli.main import main
from controlplane.project import Project, hash_secret
from gateway.auth import TokenError, TokenIssuer
from gateway_helpers import GatewayProcess, make_project, read_spool, simulator_event


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def token_with(gw, client_id: str, secret: str, within: float = 10.0) -> str:
    """A token for these credentials; the gateway re-reads the project when it does not know them yet."""
    deadline = time.monotonic() + within
    while True:
        response = gw.client.post("/auth/token", data={"grant_type": "client_credentials",
                                                       "client_id": client_id, "client_secret": secret})
        if response.status_code == 200:
            return response.json()["access_token"]
        assert response.status_code == 401 and time.monotonic() < deadline, response.text
        time.sleep(0.2)


def test_rotation_refuses_every_earlier_token(tmp_path, capsys):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path) as gw:
        first, second = gw.token("demo"), gw.token("demo")
        old_id, old_secret = gw.credentials("demo")
        assert gw.post_event(first, simulator_event(1)).status_code == 204
        code, out, err = cli(capsys, "rotate-credentials", "demo", "--project-dir", str(tmp_path))
        assert code == 0 and "shown only now" in err
        (rotated,) = json.loads(out)["credentials"]
        assert rotated["clientId"] == old_id and rotated["clientSecret"] != old_secret
        assert json.loads(out)["credentialGeneration"] == 2
        new = token_with(gw, rotated["clientId"], rotated["clientSecret"])   # the gateway read the change
        for replayed in (first, second):
            response = gw.post_event(replayed, simulator_event(2))
            assert response.status_code == 401 and "rotated" in response.text
        response = gw.client.post("/auth/token", data={"client_id": old_id, "client_secret": old_secret})
        assert response.status_code == 401                                  # the old secret is gone too
        assert gw.post_event(new, simulator_event(3)).status_code == 204
        gw.stop()
        log = gw.process.stderr.read().decode()
    assert len(read_spool(tmp_path, "demo")) == 2
    for secret in (old_secret, rotated["clientSecret"]):
        assert secret not in log and secret not in (tmp_path / "project.yaml").read_text()


def test_delete_and_create_again_refuses_the_old_token_and_inherits_nothing(tmp_path, capsys):
    make_project(tmp_path, "demo")
    p = ["--project-dir", str(tmp_path)]
    with GatewayProcess(tmp_path) as gw:
        old = gw.token("demo")
        assert gw.post_event(old, simulator_event(1)).status_code == 204
        old_spool, old_out = Project.open(tmp_path).spool_dir("demo"), Project.open(tmp_path).output_dir("demo")
        assert cli(capsys, "delete", "stream", "demo", *p)[0] == 0
        code, out, _ = cli(capsys, "create", "stream", "demo", *p)
        assert code == 0
        (created,) = json.loads(out)["credentials"]
        new = token_with(gw, created["clientId"], created["clientSecret"])
        response = gw.post_event(old, simulator_event(2))
        assert response.status_code == 401 and "deleted" in response.text
        assert gw.post_event(new, simulator_event(3)).status_code == 204
    project = Project.open(tmp_path)
    assert project.spool_dir("demo") != old_spool and project.output_dir("demo") != old_out
    assert [orjson.loads(line)["uniqueIdentifier"] for line in read_spool(tmp_path, "demo")] == ["unique-3"]
    assert old_spool.is_dir()                                   # the old pipeline's events are its own
    assert cli(capsys, "delete", "stream", "demo", "--purge", *p)[0] == 0
    assert not project.spool_dir("demo").exists()


MALFORMED = ["Bearer tökén".encode("utf-8"), b"Bearer \xff\xfe", b"Bearer " + b"A" * 5000, b"Bearer a.b.c",
             b"Bearer .", b"Bearer eyJjIjoxfQ.xxx", b"bearer"]


def test_malformed_tokens_are_401_without_a_traceback(tmp_path):
    make_project(tmp_path, "demo")
    with GatewayProcess(tmp_path) as gw:
        for header in MALFORMED:
            response = gw.client.post("/event", content=orjson.dumps(simulator_event()), headers={
                "Authorization": header, "Strm-Schema-Ref": "strmprivacy/example/1.5.0",
                "Strm-Serialization-Type": "application/json"})
            assert response.status_code == 401, header
        gw.stop()
        assert "Traceback" not in gw.process.stderr.read().decode()


def test_minted_tokens_follow_the_generation(tmp_path):
    project = make_project(tmp_path, "demo")
    issuer = TokenIssuer.for_project(tmp_path)
    token, _ = issuer.issue(project.pipelines["demo"])
    assert issuer.verify(token, Project.open(tmp_path)).name == "demo"
    project.rotate_credentials("demo")
    project.save()
    with pytest.raises(TokenError, match="rotated"):
        issuer.verify(token, Project.open(tmp_path))         # the cache holds the signature, not the answer
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with pytest.raises(TokenError, match="invalid"):
        issuer.verify(forged, Project.open(tmp_path))
    for junk in ("", "é.x", None, 7, "x" * 10_000):
        with pytest.raises(TokenError):
            issuer.verify(junk, Project.open(tmp_path))


@settings(max_examples=200, deadline=None)
@given(secret=st.text(min_size=1, max_size=80), other=st.text(max_size=80))
def test_a_secret_checks_against_its_hash_only(secret, other):
    project = Project("/nonexistent")
    pipeline = project.create_pipeline("demo")
    pipeline.client_secret_hash = hash_secret(secret)
    assert pipeline.check_secret(secret)
    assert pipeline.check_secret(other) == (other == secret)


def test_legacy_plaintext_secrets_are_hashed_on_the_next_save(tmp_path):
    (tmp_path / "project.yaml").write_text("pipelines:\n- {name: old, client_id: old-1, client_secret: s3cr3t-value}\n")
    project = Project.open(tmp_path)
    assert project.pipelines["old"].check_secret("s3cr3t-value") and project.pipelines["old"].id == "old"
    project.save()
    assert "s3cr3t-value" not in (tmp_path / "project.yaml").read_text()
    assert Project.open(tmp_path).pipelines["old"].check_secret("s3cr3t-value")


def test_get_stream_never_shows_the_secret(tmp_path, capsys):
    p = ["--project-dir", str(tmp_path)]
    code, out, _ = cli(capsys, "create", "stream", "demo", *p)
    secret = json.loads(out)["credentials"][0]["clientSecret"]
    for output in ("json", "table"):
        code, out, _ = cli(capsys, "get", "stream", "demo", "-o", output, *p)
        assert code == 0 and secret not in out and "clientSecret" not in out
