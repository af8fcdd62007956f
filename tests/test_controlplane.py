"""The control plane: the schema-checked project file, names and paths checked at creation,
connector probes, the contract registry, and the spool's life cycle in the local loop
(segments deleted once committed, held when their contract is gone, forget in the spool)."""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import orjson
import pytest
import yaml

from cli.main import main
from contracts import ContractError
from controlplane.contracts import ContractRegistry
from controlplane.project import Project, ProjectError
from controlplane.realtime import LocalLoop
from controlplane.spool_lifecycle import forget_in_spool, held_files
from gateway.spool import all_segments, closed_segments
from gateway_helpers import SIMULATOR, make_project, simulator_event

THING = "acme/Thing/1.0.0"
THING_CONTRACT = {"ref": THING, "schema": {"name": "Thing", "nodes": [
    {"name": "owner", "type": "STRING", "required": True}, {"name": "note", "type": "STRING"}]},
    "keyField": "owner", "dataSubjectField": "owner",
    "fieldMetadata": [{"fieldName": "note", "personalDataConfig": {"isPii": True, "purposeLevel": 1}}]}


def cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def accepted(event: dict, ref: str = SIMULATOR, n: int = 1) -> bytes:
    """A spool line as the gateway writes it."""
    meta = {"eventContractRef": ref, "consentLevels": [0, 1, 2, 3], "nonce": n, "timestamp": 1_700_000_000_000 + n,
            "keyLink": None, "billingId": None}
    return orjson.dumps({**event, "strmMeta": meta}, option=orjson.OPT_APPEND_NEWLINE)


def write_segment(spool: Path, sequence: int, lines: list[bytes]) -> Path:
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{sequence:010d}-{1_700_000_000_000 + sequence}.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def encrypted_events(project: Project, pipeline: str = "demo") -> list[dict]:
    folder = project.output_dir(pipeline) / "encrypted"
    return [orjson.loads(line) for f in sorted(folder.rglob("*.jsonl")) for line in f.read_bytes().splitlines()]


# -- the project file ---------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("pipelines:\n- {name: demo, client_id: demo-1, enabeld: true}\n",
     "pipelines[0]: unknown key 'enabeld' (did you mean 'enabled'?)"),
    ("batch_exporter: []\n", "unknown key 'batch_exporter' (did you mean 'batch_exporters'?)"),
    ("data_connectors:\n- {name: lake, kind: s3, bucket: acme, regoin: eu}\n",
     "data_connectors[0]: unknown key 'regoin' (did you mean 'region'?)"),
    ("privacy_streams:\n- {name: d-1, source: demo, mode: CUMULATIVE, levels: [1], masked_field: [x]}\n",
     "privacy_streams[0]: unknown key 'masked_field' (did you mean 'masked_fields'?)"),
    ("batch_exporters:\n- {name: 'x/../../../../escaped', stream: demo, data_connector: d}\n",
     "batch_exporters[0].name"),
    ("pipelines:\n- {name: demo, client_id: a}\n- {name: demo, client_id: b}\n", "'demo' is defined twice"),
    ("a: &x 1\nb: *x\n", "anchors"),
])
def test_the_project_file_is_checked_against_its_published_schema(tmp_path, text, message):
    (tmp_path / "project.yaml").write_text(text)
    with pytest.raises(ProjectError) as err:
        Project.open(tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'project.yaml'}: ") and message in str(err.value)


def test_a_saved_project_follows_the_schema_and_reads_back_the_same(tmp_path):
    project = make_project(tmp_path, "demo")
    project.create_privacy_stream(None, "demo", "CUMULATIVE", [1], ["userId"])
    project.create_data_connector({"name": "disk", "kind": "local", "path": str(tmp_path / "x")})
    project.create_data_connector({"name": "db", "kind": "postgresql", "uri": "postgresql://h/d"})
    project.create_batch_exporter("demo-1", "disk", path_prefix="a/b")
    project.save()
    from schemas import check, schema_path
    assert schema_path("project").is_file()
    check(yaml.safe_load((tmp_path / "project.yaml").read_text()), "project", "project.yaml")
    again = Project.open(tmp_path)
    assert again.pipelines == project.pipelines and again.batch_exporters == project.batch_exporters
    assert again.data_connectors == project.data_connectors and again.privacy_streams == project.privacy_streams


# -- names and paths at creation ----------------------------------------------------------------
def test_names_and_prefixes_are_checked_at_creation(tmp_path, capsys):
    p = ["--project-dir", str(tmp_path)]
    assert cli(capsys, "create", "stream", "demo", *p)[0] == 0
    assert cli(capsys, "create", "data-connector", "local", "disk", "--path", str(tmp_path / "d"), *p)[0] == 0
    for name in ("x/../../../../escaped", "x" * 300, "Upper", "_under", "a.b"):
        code, _, err = cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "disk", f"--name={name}", *p)
        assert code == 2 and "batch exporter name" in err and len(err) < 300, err
        assert "Traceback" not in err
        code, _, err = cli(capsys, "create", "data-connector", "local", name, "--path", str(tmp_path / "e"), *p)
        assert code == 2 and "data connector name" in err and len(err) < 300, err
    code, _, err = cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "disk",
                       "--path-prefix", "x/../../../../escaped", *p)
    assert code == 2 and "must be relative, without empty, '.' or '..' parts" in err
    code, _, err = cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "disk",
                       "--path-prefix", "p" * 901, *p)
    assert code == 2 and "at most 900" in err
    assert Project.open(tmp_path).batch_exporters == {}
    assert not any(tmp_path.parent.glob("escaped*")) and not (tmp_path / "escaped").exists()


def test_a_data_connector_is_probed_when_created(tmp_path, capsys):
    p = ["--project-dir", str(tmp_path)]
    unreadable = tmp_path / "missing-key.json"
    code, _, err = cli(capsys, "create", "data-connector", "s3", "lake", "--bucket-name", "acme-lake",
                       "--credentials-file", str(unreadable), *p)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert f"credentials file '{unreadable}' cannot be read" in err and "--no-probe" in err
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    code, _, err = cli(capsys, "create", "data-connector", "local", "disk", "--path", str(blocker / "sub"), *p)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "cannot be written" in err
    assert Project.open(tmp_path).data_connectors == {}
    code, _, _ = cli(capsys, "create", "data-connector", "s3", "lake", "--bucket-name", "acme-lake",
                     "--credentials-file", str(unreadable), "--no-probe", *p)
    assert code == 0 and "lake" in Project.open(tmp_path).data_connectors
    assert cli(capsys, "create", "data-connector", "local", "ok", "--path", str(tmp_path / "ok"), *p)[0] == 0
    assert (tmp_path / "ok").is_dir() and list((tmp_path / "ok").iterdir()) == []   # probe file deleted


def test_a_connector_probe_against_a_real_bucket(tmp_path, capsys, s3_server):
    bucket = s3_server.create_bucket("probe-" + os.urandom(4).hex())
    key = tmp_path / "key.json"
    p = ["--project-dir", str(tmp_path / "project")]
    common = ["--bucket-name", bucket, "--region", s3_server.region, "--endpoint", s3_server.endpoint,
              "--credentials-file", str(key)]
    key.write_text(json.dumps({"AccessKeyId": s3_server.access_key_id, "SecretAccessKey": "wrong"}))
    code, _, err = cli(capsys, "create", "data-connector", "s3", "lake", *common, *p)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "SignatureDoesNotMatch" in err and "wrong" not in err
    key.write_text(json.dumps({"AccessKeyId": s3_server.access_key_id, "SecretAccessKey": s3_server.secret_access_key}))
    assert cli(capsys, "create", "data-connector", "s3", "lake", *common, *p)[0] == 0
    assert s3_server.objects(bucket) == {}


# -- the contract registry ----------------------------------------------------------------------
def test_the_registry_resolves_references_only_and_sees_new_contracts_at_once(tmp_path):
    registry = ContractRegistry(tmp_path)
    outside = tmp_path / "evil.yaml"
    outside.write_text(yaml.safe_dump({**THING_CONTRACT, "ref": "evil/evil/1.0.0"}))
    for ref in (str(outside), "../../1.0.0", "a/../../evil/1.0.0", "/etc/passwd", "x" * 1000, "a/b/1.0.0\n",
                "./b/1.0.0", "a/b/1.0.0/..", ""):
        with pytest.raises(ContractError, match="not a contract reference"):
            registry.get(ref)
    with pytest.raises(ContractError, match="not found .*contracts/<handle>/<name>/<version>.yaml"):
        registry.get(THING)
    target = tmp_path / "contracts" / "acme" / "Thing" / "1.0.0.yaml"
    target.parent.mkdir(parents=True)
    target.write_text(yaml.safe_dump(THING_CONTRACT))
    assert registry.get(THING).key_field == "owner" and THING in registry.refs()   # no restart, no cache
    assert registry.get(SIMULATOR).ref == SIMULATOR                                 # shipped ones too
    target.write_text("a: &x [1, 2]\nb: [*x, *x]\n")
    with pytest.raises(ContractError, match="anchors"):
        registry.get(THING)
    target.write_text(yaml.safe_dump({**THING_CONTRACT, "ref": "acme/Other/1.0.0"}))
    with pytest.raises(ContractError, match="declares ref"):
        registry.get(THING)
    target.write_bytes(b"#" * (1100 * 1024))
    with pytest.raises(ContractError, match="larger than"):
        registry.get(THING)


# -- the spool's life cycle in the local loop ---------------------------------------------------
def test_segments_are_deleted_once_committed_and_a_retention_keeps_them(tmp_path):
    project = make_project(tmp_path, "demo", "kept")
    for name in ("demo", "kept"):
        write_segment(project.spool_dir(name), 1, [accepted(simulator_event(i), n=i) for i in range(5)])
        write_segment(project.spool_dir(name), 2, [accepted(simulator_event(i), n=i) for i in range(5, 8)])
    open_segment = project.spool_dir("demo") / "0000000003-1700000000003.jsonl.open"
    open_segment.write_bytes(accepted(simulator_event(9), n=9))
    loop = LocalLoop(tmp_path, echo=lambda _: None)
    assert loop.step() == 16
    assert closed_segments(project.spool_dir("demo")) == [] and open_segment.exists()   # the open one is the gateway's
    assert len(encrypted_events(project)) == 8
    retaining = LocalLoop(tmp_path, echo=lambda _: None, spool_retention=3600)
    write_segment(project.spool_dir("kept"), 3, [accepted(simulator_event(20), n=20)])
    assert retaining.step() == 1
    assert [s.name[:10] for s in closed_segments(project.spool_dir("kept"))] == ["0000000003"]
    assert retaining.step() == 0                       # kept for a replay, not processed twice
    later = LocalLoop(tmp_path, echo=lambda _: None, spool_retention=3600, clock=lambda: time.time() + 3601)
    assert later.step() == 0 and closed_segments(project.spool_dir("kept")) == []
    assert len(encrypted_events(project, "kept")) == 9


def test_events_of_a_contract_that_is_gone_are_held_not_lost(tmp_path):
    project = make_project(tmp_path, "demo")
    contract_file = tmp_path / "contracts" / "acme" / "Thing" / "1.0.0.yaml"
    write_segment(project.spool_dir("demo"), 1, [accepted({"owner": f"owner-{i}", "note": "n"}, THING, i)
                                                 for i in range(3)] + [accepted(simulator_event(1), n=9)])
    messages = []
    loop = LocalLoop(tmp_path, echo=messages.append)
    assert loop.step() == 1                            # the simulator event; the Thing events wait
    held = held_files(project.spool_dir("demo"))
    assert len(held) == 1 and len(held[0].read_bytes().splitlines()) == 3
    assert oct(held[0].stat().st_mode & 0o777) == "0o600"
    assert closed_segments(project.spool_dir("demo")) == []
    assert sum("held" in m for m in messages) == 1
    assert loop.step() == 0 and sum("held" in m for m in messages) == 1          # said once
    contract_file.parent.mkdir(parents=True)
    contract_file.write_text(yaml.safe_dump(THING_CONTRACT))
    assert loop.step() == 3 and held_files(project.spool_dir("demo")) == []
    things = [e for e in encrypted_events(project) if e["strmMeta"]["eventContractRef"] == THING]
    assert sorted(e["owner"] for e in things) == ["owner-0", "owner-1", "owner-2"]
    assert all(e["note"] != "n" and e["strmMeta"]["keyLink"] for e in things)   # the PII field encrypted


def test_forget_removes_a_subjects_events_from_the_spool(tmp_path, capsys):
    project = make_project(tmp_path, "demo")
    spool = project.spool_dir("demo")
    write_segment(spool, 1, [accepted(simulator_event(i), n=i) for i in range(3)])
    assert LocalLoop(tmp_path, echo=lambda _: None).step() == 3     # a key store now exists
    mine, theirs = simulator_event(7), simulator_event(8)          # consistentValue: the subject
    write_segment(spool, 2, [accepted(mine, n=10), accepted(theirs, n=11), accepted(mine, n=12)])
    write_segment(spool, 3, [accepted(mine, n=13)])
    decoy = dict(theirs, notSensitiveValue="session-7")            # the id, but not as key or subject field
    write_segment(spool, 4, [accepted(decoy, n=14)])
    code, out, err = cli(capsys, "subjects", "forget", "session-7", "--output", str(project.output_dir("demo")))
    assert code == 0, err
    assert "spool: removed 3 events from 2 of 3 segments" in err
    left = [orjson.loads(line) for s in all_segments(spool) for line in s.read_bytes().splitlines()]
    assert [e["consistentValue"] for e in left] == ["session-8", "session-8"]
    assert [s.name[:10] for s in closed_segments(spool)] == ["0000000002", "0000000004"]   # 3 emptied: gone
    assert oct(closed_segments(spool)[0].stat().st_mode & 0o777) == "0o600"                 # rewritten owner-only
    assert LocalLoop(tmp_path, echo=lambda _: None).step() == 2


def test_forget_reports_what_it_could_not_check(tmp_path):
    project = make_project(tmp_path, "demo")
    spool = project.spool_dir("demo")
    write_segment(spool, 1, [accepted({"owner": "someone-1"}, "acme/Gone/1.0.0", 1)])
    (spool / "0000000002-1.jsonl.open").write_bytes(accepted(simulator_event(1)))
    report = forget_in_spool(tmp_path, spool, {"someone-1"})
    assert report.events_removed == 0 and report.unchecked_lines == 1 and len(report.open_segments) == 1
    assert "run forget again" in report.summary() and "contract is unknown" in report.summary()


def test_one_failing_exporter_never_stops_the_next(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PSTREAM_ALLOW_SHORT_INTERVALS", "1")
    p = ["--project-dir", str(tmp_path)]
    assert cli(capsys, "create", "stream", "demo", *p)[0] == 0
    for name in ("first", "second"):
        assert cli(capsys, "create", "data-connector", "local", name, "--path", str(tmp_path / name), *p)[0] == 0
        assert cli(capsys, "create", "batch-exporter", "demo", "--data-connector", name, "--name", f"to-{name}",
                   "--interval", "1", "--include-existing-events", *p)[0] == 0
    project = Project.open(tmp_path)
    write_segment(project.spool_dir("demo"), 1, [accepted(simulator_event(i), n=i) for i in range(4)])
    messages = []
    loop = LocalLoop(tmp_path, echo=messages.append, clock=lambda: 1_700_000_000)
    assert loop.start_exporters() == []
    shutil.rmtree(tmp_path / "first")
    (tmp_path / "first").write_text("a file where the exporter's directory was")   # its writes fail now
    assert loop.step() == 4
    exported = [f for f in (tmp_path / "second").iterdir() if not f.name.startswith(".")]
    assert len(exported) == 1 and len(exported[0].read_bytes().splitlines()) == 4
    # each export pass is a run of its own (append mode): the file carries that run's id
    assert re.fullmatch(r"2023-11-14T22:13:20-stream-[0-9a-f-]{36}---0\.jsonl", exported[0].name), exported[0].name
    assert sum("exporter to-first: export failed" in m for m in messages) == 1
