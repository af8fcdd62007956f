"""Issue 12 parts 1 and 2: contracts as managed resources (DRAFT -> ... -> ARCHIVED, review by
another user, only ACTIVE/DEPRECATED accept events in the gateway and in batch runs) and the
tamper-evident audit log (`pstream audit verify` finds edited, deleted and reordered entries)."""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from cli.main import main
from controlplane.audit import AuditLog
from controlplane.contracts import ContractRegistry
from gateway_helpers import SIMULATOR, GatewayProcess, make_project, read_spool, simulator_event
from pipelines.run import run

SHIPPED = Path(__file__).resolve().parent.parent / "src" / "contracts"
REF = "acme/Sim/1.0.0"


def contract_file(tmp_path: Path, ref: str = REF, drop: str | None = None, add: str | None = None,
                  state: str = "ACTIVE") -> Path:
    """The simulator's contract under another reference, as a user's file (optionally changed)."""
    data = yaml.safe_load((SHIPPED / f"{SIMULATOR}.yaml").read_text())
    data["ref"], data["state"] = ref, state
    if drop:
        data["schema"]["nodes"] = [n for n in data["schema"]["nodes"] if n["name"] != drop]
        data["fieldMetadata"] = [m for m in data.get("fieldMetadata", []) if m["fieldName"] != drop]
    if add:
        data["schema"]["nodes"].append({"name": add, "type": "STRING"})
    path = tmp_path / f"{ref.replace('/', '-')}.yaml"
    path.write_text("# a user's contract, with a comment that create keeps\n" + yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def pstream(capsys, tmp_path, monkeypatch):
    """`pstream ...` in this process against one project: (exit code, stdout, stderr)."""
    project = tmp_path / "project"
    monkeypatch.delenv("PSTREAM_USER", raising=False)
    monkeypatch.delenv("PSTREAM_AUDIT_LOG", raising=False)

    def call(*argv, project_dir=True):
        args = [*argv, "--project-dir", str(project)] if project_dir else list(argv)
        try:
            code = main(args)
        except SystemExit as exc:   # argparse: usage errors
            code = exc.code
        out = capsys.readouterr()
        return code, out.out, out.err
    call.project = project
    return call


def test_a_contract_walks_its_lifecycle_and_the_gateway_follows_each_state(pstream, tmp_path):
    make_project(pstream.project, "demo")
    event = simulator_event(3)
    event["strmMeta"]["eventContractRef"] = REF
    log = AuditLog(pstream.project / "audit.jsonl")
    with GatewayProcess(pstream.project, extra=("--contract-cache-seconds", "0.2")) as gateway:
        token = gateway.token("demo")

        def post():
            time.sleep(0.3)   # past --contract-cache-seconds: the gateway re-checks the file and its record
            return gateway.post_event(token, event, ref=REF)

        code, out, err = pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")
        assert code == 0 and f"created {REF} as DRAFT (author ann)" in out, err
        stored = pstream.project / "contracts" / "acme" / "Sim" / "1.0.0.yaml"
        assert stored.read_text().startswith("# a user's contract") and "state: DRAFT" in stored.read_text()
        assert stat.S_IMODE(stored.stat().st_mode) == 0o600
        assert (post().status_code, post().text) == (400, f"Schema '{REF}' is not active (state DRAFT)")
        steps = [("submit", "ann", "IN_REVIEW", 400), ("approve", "bob", "APPROVED", 400),
                 ("activate", "ann", "ACTIVE", 204), ("deprecate", "carol", "DEPRECATED", 204),
                 ("archive", "carol", "ARCHIVED", 400)]
        for action, user, state, status in steps:
            code, out, err = pstream("contracts", action, REF, "--user", user)
            assert code == 0 and f"-> {state} ({action} by {user})" in out, err
            assert ContractRegistry(pstream.project).get(REF).state == state
            assert f"state: {state}" in stored.read_text()          # the file says it too, for readers by path
            answer = post()
            assert answer.status_code == status, (state, answer.text)
            if status == 400:
                assert answer.text == f"Schema '{REF}' is not active (state {state})"
            else:
                assert answer.headers.get("strm-contract-state") == ("DEPRECATED" if state == "DEPRECATED" else None)
        log_text = gateway.stop_and_log()
    assert len(read_spool(pstream.project, "demo")) == 2               # ACTIVE and DEPRECATED only
    assert f"contract {REF} is DEPRECATED" in log_text
    code, out, _ = pstream("contracts", "show", REF)
    assert code == 0 and "ARCHIVED" in out and "approve   IN_REVIEW -> APPROVED  by bob" in out
    code, out, _ = pstream("contracts", "list", "--state", "ARCHIVED")
    assert out.split("\t")[:4] == [REF, "ARCHIVED", "project", "ann"]
    entries = log.entries(kind="contract")
    assert [(e["action"], e["user"], e.get("details", {}).get("to")) for e in entries] == [
        ("create", "ann", "DRAFT"), ("submit", "ann", "IN_REVIEW"), ("approve", "bob", "APPROVED"),
        ("activate", "ann", "ACTIVE"), ("deprecate", "carol", "DEPRECATED"), ("archive", "carol", "ARCHIVED")]
    assert log.verify() == [] and pstream("audit", "verify")[0] == 0
    assert stat.S_IMODE(log.path.stat().st_mode) == 0o600


def test_self_approval_and_illegal_transitions_are_refused_and_change_nothing(pstream, tmp_path, monkeypatch):
    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    monkeypatch.setenv("PSTREAM_USER", "ann")                             # the author, from the environment
    assert pstream("contracts", "submit", REF)[0] == 0
    stored = pstream.project / "contracts" / "acme" / "Sim" / "1.0.0.yaml"
    record = stored.with_name("1.0.0.lifecycle.json")
    before = (stored.read_bytes(), record.read_bytes(), (pstream.project / "audit.jsonl").read_bytes())
    code, _, err = pstream("contracts", "approve", REF)
    assert code == 2 and "ann is the author of acme/Sim/1.0.0 and cannot approve it" in err
    code, _, err = pstream("contracts", "approve", REF, "--user", "ann")
    assert code == 2 and "cannot approve" in err
    code, _, err = pstream("contracts", "reject", REF, "--user", "bob")    # a reject needs a reason
    assert code == 2 and "--reason" in err
    code, _, err = pstream("contracts", "activate", REF, "--user", "bob")
    assert code == 2 and "cannot activate a contract in state IN_REVIEW: activate needs APPROVED" in err
    code, _, err = pstream("contracts", "archive", REF)
    assert code == 2 and "cannot archive a contract in state IN_REVIEW" in err
    assert (stored.read_bytes(), record.read_bytes(), (pstream.project / "audit.jsonl").read_bytes()) == before
    code, out, _ = pstream("contracts", "reject", REF, "--user", "bob", "--reason", "consistentValue needs a doc")
    assert code == 0 and "IN_REVIEW -> DRAFT" in out
    assert AuditLog(pstream.project / "audit.jsonl").entries()[-1]["reason"] == "consistentValue needs a doc"
    code, _, err = pstream("contracts", "approve", SIMULATOR, "--user", "bob")    # shipped: read-only
    assert code == 2 and "shipped contract" in err and "read-only" in err
    code, _, err = pstream("contracts", "submit", "acme/Nope/1.0.0")
    assert code == 2 and "not found" in err
    code, _, err = pstream("contracts", "submit", "../../etc/passwd")
    assert code == 2 and "not a contract reference" in err


def test_create_checks_the_version_number_against_the_latest_earlier_version(pstream, tmp_path):
    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    code, _, err = pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")
    assert code == 2 and "exists" in err
    smaller = contract_file(tmp_path, "acme/Sim/1.1.0", drop="notSensitiveValue")
    code, _, err = pstream("contracts", "create", str(smaller), "--user", "ann")
    assert code == 2 and "notSensitiveValue" in err and "major" in err and "nothing stored" in err
    assert not (pstream.project / "contracts" / "acme" / "Sim" / "1.1.0.yaml").exists()
    minor = contract_file(tmp_path, "acme/Sim/1.1.0", add="comment")
    code, out, err = pstream("contracts", "create", str(minor), "--user", "ann")
    assert code == 0 and "comment" in err and "minor" in err, err
    assert ContractRegistry(pstream.project).get("acme/Sim/1.1.0").state == "DRAFT"
    broken = tmp_path / "broken.yaml"
    broken.write_text("ref: acme/Sim/2.0.0\nschema: {nodes: [{name: id, type: STRNG}]}\nkeyField: id\n")
    code, _, err = pstream("contracts", "create", str(broken), "--user", "ann")
    assert code == 2 and "STRNG" in err


def test_a_contract_edited_after_create_is_refused(pstream, tmp_path):
    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    stored = pstream.project / "contracts" / "acme" / "Sim" / "1.0.0.yaml"
    stored.write_text(stored.read_text().replace("purposeLevel: 1", "purposeLevel: 0"))
    code, _, err = pstream("contracts", "submit", REF, "--user", "ann")
    assert code == 2 and "edited after `pstream contracts create`" in err
    code, out, _ = pstream("contracts", "list")
    assert f"{REF}\tINVALID" in out


def test_a_batch_run_on_a_draft_contract_needs_the_flag(tmp_path):
    contract = tmp_path / "draft.yaml"
    contract.write_text("ref: acme/Plain/1.0.0\nstate: DRAFT\nschema:\n  nodes:\n"
                        "    - {name: id, type: STRING, required: true}\n    - {name: email, type: STRING}\n"
                        "keyField: id\nfieldMetadata:\n  - fieldName: email\n"
                        "    personalDataConfig: {isPii: true, purposeLevel: 1}\n")
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "a1", "email": "a@example.com"}\n{"id": "a2", "email": "b@example.com"}\n')
    lines: list[str] = []
    argv = ["--input", str(data), "--contract", str(contract), "--output", str(tmp_path / "out")]
    assert run(argv, echo=lines.append) == 2
    assert any("contract acme/Plain/1.0.0 is not active (state DRAFT)" in line and "--allow_draft_contract" in line
               for line in lines), lines
    assert not (tmp_path / "out").exists()
    lines.clear()
    assert run([*argv, "--allow_draft_contract"], echo=lines.append) == 0, lines
    assert any("is DRAFT, used as ACTIVE for this run" in line for line in lines)
    encrypted = "".join(p.read_text() for p in (tmp_path / "out" / "encrypted").rglob("*.jsonl"))
    assert encrypted.count("\n") == 2 and "a@example.com" not in encrypted
    contract.write_text(contract.read_text().replace("state: DRAFT", "state: ARCHIVED"))
    lines.clear()
    assert run([*argv, "--allow_draft_contract"], echo=lines.append) == 2
    assert any("ARCHIVED" in line for line in lines)


# ------------------------------------------------------------------------------------ audit log
def write_log(path: Path, count: int) -> AuditLog:
    log = AuditLog(path)
    for index in range(count):
        log.append("contract" if index % 2 else "subjects", "forget" if index % 2 == 0 else "submit",
                   user=f"user{index}", target=f"acme/X/1.0.{index}", counts={"keysDeleted": index})
    return log


def test_audit_verify_names_an_edited_a_deleted_and_a_reordered_entry(pstream, tmp_path):
    path = tmp_path / "audit.jsonl"
    write_log(path, 6)
    original = path.read_text().splitlines()
    assert pstream("audit", "verify", "--log", str(path), project_dir=False)[0] == 0

    def verify_with(lines):
        path.write_text("\n".join(lines) + "\n")
        return pstream("audit", "verify", "--log", str(path), project_dir=False)

    edited = list(original)
    entry = json.loads(edited[2])
    entry["user"] = "mallory"
    edited[2] = json.dumps(entry)
    code, _, err = verify_with(edited)
    assert code == 1 and "entry 3 (line 3) was edited" in err
    deleted = original[:3] + original[4:]
    code, _, err = verify_with(deleted)
    assert code == 1 and "entry 5 (line 4): expected entry 4 here" in err
    code, _, err = verify_with(original[:-1])                            # the last one: the head file knows
    assert code == 1 and "the head file names entry 6" in err
    reordered = original[:2] + [original[3], original[2]] + original[4:]
    code, _, err = verify_with(reordered)
    assert code == 1 and "entry 4 (line 3): expected entry 3 here" in err
    code, out, _ = verify_with(original)
    assert code == 0 and "6 entries, intact" in out
    head = out.rsplit("head ", 1)[1].strip()
    assert pstream("audit", "verify", "--log", str(path), "--expect-head", head, project_dir=False)[0] == 0
    assert pstream("audit", "verify", "--log", str(path), "--expect-head", "0" * 64, project_dir=False)[0] == 1
    code, out, _ = pstream("audit", "list", "--log", str(path), "--kind", "subjects", project_dir=False)
    assert code == 0 and len(out.splitlines()) == 3 and all("\tsubjects\tforget\t" in line for line in out.splitlines())
    code, out, _ = pstream("audit", "list", "--log", str(path), "--since", "2999-01-01", project_dir=False)
    assert code == 0 and out == ""
    path.write_text("\n".join(original[:-1]) + "\n")
    with pytest.raises(ValueError, match="does not end with the entry its head file names"):
        AuditLog(path).append("contract", "submit", user="x")            # no appending to a damaged log


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(2, 8), data=st.data())
def test_every_single_edit_delete_or_swap_is_detected(tmp_path_factory, count, data):
    path = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    write_log(path, count)
    lines = path.read_text().splitlines()
    what = data.draw(st.sampled_from(["edit", "delete", "swap"]))
    index = data.draw(st.integers(0, count - 1))
    if what == "edit":
        entry = json.loads(lines[index])
        key = data.draw(st.sampled_from(["user", "action", "target", "at", "counts", "seq"]))
        entry[key] = {"counts": {"keysDeleted": -1}, "seq": entry["seq"] + 100}.get(key, "changed")
        if data.draw(st.booleans()):   # the editor also recomputes the entry's own hash
            from controlplane.audit import entry_hash
            entry["hash"] = entry_hash(entry)
        lines[index] = json.dumps(entry)
    elif what == "delete":
        del lines[index]
    else:
        other = data.draw(st.integers(0, count - 1).filter(lambda i: i != index))
        lines[index], lines[other] = lines[other], lines[index]
    path.write_text("".join(line + "\n" for line in lines))
    problems = AuditLog(path).verify()
    assert problems, (what, index)
    assert all("entry" in problem for problem in problems)


def test_data_subject_requests_are_audited_with_counts_only(subjects_run, tmp_path, pstream, monkeypatch):
    from pipeline_runs import copy_run, read_csv

    out = copy_run(subjects_run, tmp_path) / "out"
    subject = read_csv(subjects_run / "in.csv")[0]["userId"]
    monkeypatch.setenv("PSTREAM_USER", "dpo")
    code, _, err = pstream("subjects", "export", subject, "--output", str(out), "-o", str(tmp_path / "dsar.json"),
                           project_dir=False)
    assert code == 0, err
    code, out_text, err = pstream("subjects", "forget", subject, "--output", str(out), project_dir=False)
    assert code == 0 and out_text.startswith("deleted "), err
    deleted = int(out_text.split()[1])
    assert pstream("keys", "purge", "--output", str(out), "--now", "2999-01-01", project_dir=False)[0] == 0
    log = AuditLog(out / "audit.jsonl")                     # next to the run's SQLite key store
    entries = log.entries()
    assert [(e["kind"], e["action"], e["user"]) for e in entries] == [
        ("subjects", "export", "dpo"), ("subjects", "forget", "dpo"), ("keys", "purge", "dpo")]
    assert entries[0]["counts"]["records"] > 0 and entries[0]["details"]["to"] == "file"
    assert entries[1]["counts"]["keysDeleted"] == deleted > 0 and entries[1]["counts"]["subjects"] == 1
    assert entries[2]["counts"]["keysPurged"] > 0
    text = log.path.read_text()
    assert subject not in text and "@" not in text           # no id, no e-mail address
    from privacy.kek import LocalKek
    from privacy.keystore import open_key_store
    from privacy.lookup import lookup_key
    store = open_key_store("sqlite://" + str(out / "keystore.sqlite"))
    assert lookup_key(store, LocalKek(out / "kek.json")).subject_hash(subject) not in text   # nor its hash
    assert log.verify() == []
    code, listed, _ = pstream("audit", "list", "--log", str(log.path), "--kind", "subjects", project_dir=False)
    assert code == 0 and len(listed.splitlines()) == 2
    # a log that cannot take the entry refuses the request before anything is deleted
    log.head_path.write_text(json.dumps({"seq": 99, "hash": "0" * 64}))
    other = read_csv(subjects_run / "in.csv")[-1]["userId"]
    code, out_text, err = pstream("subjects", "forget", other, "--output", str(out), project_dir=False)
    assert code == 2 and "does not end with the entry its head file names" in err and out_text == ""


# ------------------------------------------------------------------------------- purpose names
def test_purposes_are_named_per_project_and_used_by_name(pstream, tmp_path):
    import sqlglot

    from controlplane.project import Project
    from gateway_helpers import WEBSHOP

    make_project(pstream.project, "demo")
    assert pstream("purposes", "create", "1", "analytics", "--description", "product analytics", "--user", "ann")[0] == 0
    assert pstream("purposes", "create", "2", "marketing", "--user", "ann")[0] == 0
    code, _, err = pstream("purposes", "create", "2", "ads")
    assert code == 2 and "level 2 is named 'marketing' already" in err
    code, _, err = pstream("purposes", "create", "3", "Bad Name")
    assert code == 2 and "lowercase" in err
    code, out, _ = pstream("purposes", "list")
    assert out.splitlines() == ["1\tanalytics\tproduct analytics", "2\tmarketing\t"]
    code, out, err = pstream("create", "stream", "--derived-from", "demo", "--purposes", "analytics,marketing")
    assert code == 0, err
    view = json.loads(out)
    assert view["consentLevels"] == [1, 2] and view["purposes"] == ["1 (analytics)", "2 (marketing)"]
    assert Project.open(pstream.project).privacy_streams["demo-1-2"].levels == [1, 2]     # levels on the wire
    code, _, err = pstream("create", "stream", "--derived-from", "demo", "--purposes", "sales")
    assert code == 2 and "no purpose named 'sales' (known: analytics (1), marketing (2))" in err
    code, _, err = pstream("create", "stream", "--derived-from", "demo", "--purposes", "analytics", "--levels", "1")
    assert code == 2 and "not both" in err
    code, out, _ = pstream("list", "streams")
    assert "PURPOSES" in out and "analytics,marketing" in out
    code, out, _ = pstream("ddl", "athena", WEBSHOP, "--location", "s3://b/p/", "--table", "events")
    assert code == 0 and "--   email: PII, purpose 2 (marketing)" in out and "purpose 1 (analytics)" in out
    sqlglot.parse_one(out, read="athena", error_level=sqlglot.ErrorLevel.RAISE)
    code, out, _ = pstream("ddl", "duckdb", WEBSHOP, "--location", str(tmp_path / "none"), "--table", "events")
    assert "(marketing)" in out
    code, help_text, _ = pstream("create", "stream", "--help", project_dir=False)
    assert "--purposes" in help_text and "pstream purposes" in " ".join(help_text.split())
    kinds = [(e["kind"], e["action"], e["target"]) for e in AuditLog(pstream.project / "audit.jsonl").entries()]
    assert kinds == [("purpose", "create", "analytics"), ("purpose", "create", "marketing")]


def test_the_lifecycle_record_decides_the_state_for_the_gateways_cache_too(pstream, tmp_path):
    import asyncio

    from gateway.registry import ContractCache, Refused

    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    stored = pstream.project / "contracts" / "acme" / "Sim" / "1.0.0.yaml"
    stored.write_text(stored.read_text().replace("state: DRAFT", "state: ACTIVE"))   # by hand, past the review
    registry = ContractRegistry(pstream.project, contracts_path=False)
    assert registry.get(REF).state == "DRAFT"
    cache = ContractCache(registry, build=lambda contract: contract)
    with pytest.raises(Refused) as info:
        asyncio.run(cache.resolve(REF.encode()))
    assert (info.value.status, info.value.message) == (400, f"Schema '{REF}' is not active (state DRAFT)")
    assert asyncio.run(cache.resolve(SIMULATOR.encode())).state == "ACTIVE"            # shipped: ACTIVE
    cache.close()


def test_where_the_audit_log_of_a_request_lives(tmp_path, monkeypatch):
    from controlplane.audit import log_for_store, store_label

    monkeypatch.delenv("PSTREAM_AUDIT_LOG", raising=False)
    project = tmp_path / "p"
    make_project(project, "demo")
    run_out = project / "out" / "demo-abc"
    run_out.mkdir(parents=True)
    assert log_for_store(str(run_out), f"sqlite://{run_out}/keystore.sqlite").path == project / "audit.jsonl"
    plain = tmp_path / "out"
    plain.mkdir()
    keys = tmp_path / "keys"
    assert log_for_store(str(plain), f"sqlite://{keys}/keystore.sqlite").path == keys / "audit.jsonl"
    assert log_for_store(str(plain), "postgresql://u:secret@db/keys").path == plain.resolve() / "audit.jsonl"
    assert log_for_store("gs://b/out", "postgresql://db/k", given=str(tmp_path / "a.jsonl")).path == tmp_path / "a.jsonl"
    monkeypatch.setenv("PSTREAM_AUDIT_LOG", str(tmp_path / "env.jsonl"))
    assert log_for_store(str(plain), None).path == tmp_path / "env.jsonl"
    assert store_label("postgresql://u:secret@db:5432/keys?sslmode=require") == "postgresql://db:5432/keys"


def test_a_batch_run_by_reference_follows_the_projects_lifecycle_record(tmp_path, monkeypatch):
    """``--contract REF`` finds the default project's own contract, in the state its record says
    (the YAML's ``state:`` line is not what decides)."""
    project = tmp_path / "project"
    monkeypatch.setenv("PSTREAM_PROJECT_DIR", str(project))
    contract = tmp_path / "plain.yaml"
    contract.write_text("ref: acme/Plain/1.0.0\nschema:\n  nodes:\n"
                        "    - {name: id, type: STRING, required: true}\n    - {name: email, type: STRING}\n"
                        "keyField: id\nfieldMetadata:\n  - fieldName: email\n"
                        "    personalDataConfig: {isPii: true, purposeLevel: 1}\n")
    registry = ContractRegistry(project)
    registry.create(contract, "ann")
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "a1", "email": "a@example.com"}\n')
    argv = ["--input", str(data), "--contract", "acme/Plain/1.0.0", "--output", str(tmp_path / "out")]
    lines: list[str] = []
    assert run(argv, echo=lines.append) == 2
    assert any("is not active (state DRAFT)" in line for line in lines), lines
    yaml_file = registry.path("acme/Plain/1.0.0")
    assert yaml_file is not None and yaml_file.is_relative_to(project)
    for action, user in (("submit", "ann"), ("approve", "bob"), ("activate", "bob")):
        registry.transition("acme/Plain/1.0.0", action, user)
    lines.clear()
    assert run(argv, echo=lines.append) == 0, lines
    registry.transition("acme/Plain/1.0.0", "deprecate", "bob")
    registry.transition("acme/Plain/1.0.0", "archive", "bob")
    lines.clear()
    assert run([*argv, "--allow_draft_contract"], echo=lines.append) == 2
    assert any("ARCHIVED" in line for line in lines), lines


# ------------------------------------------------------------------- adversarial review (fixes)
@pytest.mark.parametrize("reviewer", ["Ann", " ann ", "ＡＮＮ", "ánn", "a.nn", "ANN-"])
def test_self_approval_is_refused_for_names_that_differ_only_in_case_width_accents_or_punctuation(reviewer):
    from controlplane.lifecycle import LifecycleError, Record

    record = Record.new(REF, author="ann", content_sha256="0" * 64)
    record.apply("submit", "ann")
    with pytest.raises(LifecycleError, match="is the author"):
        record.apply("approve", reviewer)
    with pytest.raises(LifecycleError, match="is the author"):
        record.apply("reject", reviewer, reason="no")
    assert record.state == "IN_REVIEW"
    record.apply("approve", "bob")
    assert record.state == "APPROVED"


@pytest.mark.parametrize("name", ["ann\u200b", "ann\u202e", "ann\u2028x", "an\u00adn", "ann\ttab", "\u200b", "...",
                                  "x" * 101])
def test_user_names_with_invisible_control_or_separator_characters_are_refused(name, pstream, tmp_path):
    from controlplane.lifecycle import LifecycleError, current_user

    with pytest.raises(LifecycleError, match="the user name must be"):
        current_user(name)
    assert current_user("José Müller") == "José Müller"
    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    assert pstream("contracts", "submit", REF, "--user", "ann")[0] == 0
    code, _, err = pstream("contracts", "approve", REF, "--user", name)
    assert code == 2 and "the user name must be" in err
    code, _, err = pstream("contracts", "approve", REF, "--user", "Ann")
    assert code == 2 and "is the author" in err


def test_a_hand_edited_state_line_or_a_copy_activates_nothing_for_a_batch_run(tmp_path, monkeypatch):
    """``--contract FILE`` of a project's contract (or a copy of it elsewhere) gets the lifecycle
    record's state, not the ``state:`` line; a project contract whose file is gone is not stood in
    for by a CONTRACTS_PATH copy."""
    from contracts import ContractError
    from controlplane.contracts import load_for_running as _load_contract   # what pipelines.config calls

    project = tmp_path / "project"
    monkeypatch.setenv("PSTREAM_PROJECT_DIR", str(project))
    registry = ContractRegistry(project)
    registry.create(contract_file(tmp_path), "ann")
    stored = registry.path(REF)
    stored.write_text(stored.read_text().replace("state: DRAFT", "state: ACTIVE"))      # past the review, by hand
    copy = tmp_path / "elsewhere" / "shop.yaml"
    copy.parent.mkdir()
    copy.write_text(stored.read_text())
    assert _load_contract(str(stored)).state == "DRAFT"
    assert _load_contract(str(copy)).state == "DRAFT"
    link = tmp_path / "link.yaml"
    link.symlink_to(stored)
    assert _load_contract(str(link)).state == "DRAFT"
    pair = tmp_path / "pair"                                                  # the file and its record, copied
    pair.mkdir()
    (pair / "1.0.0.yaml").write_text(stored.read_text())
    (pair / "1.0.0.lifecycle.json").write_text(stored.with_name("1.0.0.lifecycle.json").read_text())
    monkeypatch.setenv("PSTREAM_PROJECT_DIR", str(tmp_path / "empty-project"))
    assert _load_contract(str(pair / "1.0.0.yaml")).state == "DRAFT"
    monkeypatch.setenv("PSTREAM_PROJECT_DIR", str(project))
    other = ContractRegistry(tmp_path / "other-project")                      # another project's file, by path
    other.create(contract_file(tmp_path, "acme/Other/1.0.0"), "ann")
    other_file = other.path("acme/Other/1.0.0")
    other_file.write_text(other_file.read_text().replace("state: DRAFT", "state: ACTIVE"))
    assert _load_contract(str(other_file)).state == "DRAFT"
    copy.write_text(copy.read_text().replace("purposeLevel: 1", "purposeLevel: 0"))
    with pytest.raises(ContractError, match="with other content"):
        _load_contract(str(copy))
    lines: list[str] = []
    data = tmp_path / "in.jsonl"
    data.write_text(json.dumps({k: v for k, v in simulator_event(1).items() if k != "strmMeta"}) + "\n")
    assert run(["--input", str(data), "--contract", str(stored), "--output", str(tmp_path / "out")],
               echo=lines.append) == 2
    assert any("is not active (state DRAFT)" in line for line in lines), lines
    shadow = tmp_path / "shadow" / "acme" / "Sim"                              # a second copy, ACTIVE
    shadow.mkdir(parents=True)
    (shadow / "1.0.0.yaml").write_text(stored.read_text())
    monkeypatch.setenv("CONTRACTS_PATH", str(tmp_path / "shadow"))
    stored.rename(tmp_path / "moved.yaml")
    with pytest.raises(ContractError, match="the project manages acme/Sim/1.0.0 .* but its file .* is missing"):
        _load_contract(REF)


def test_audit_entries_with_line_separators_or_bad_bytes_are_reported_not_misread(pstream, tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append("contract", "reject", user="bob", target=REF, reason="see\u2028line\u2029two\x85three")
    log.append("contract", "submit", user="ann", target=REF)
    assert log.verify() == [] and len(log.entries()) == 2
    assert log.entries()[0]["reason"] == "see\u2028line\u2029two\x85three"
    with open(log.path, "ab") as handle:
        handle.write(b'{"seq": 3, "user": "\xff"}\n')                          # not UTF-8: a problem, no traceback
    code, _, err = pstream("audit", "verify", "--log", str(log.path), project_dir=False)
    assert code == 1 and "line 3" in err and "Traceback" not in err


def test_an_audit_log_without_its_head_file_is_not_appended_to(tmp_path):
    from controlplane.audit import AuditError

    log = write_log(tmp_path / "audit.jsonl", 3)
    lines = log.path.read_text().splitlines(keepends=True)
    log.path.write_text("".join(lines[:2]))                                  # cut the last entry off ...
    log.head_path.unlink()                                                   # ... and the head that knew it
    assert any("is missing" in problem for problem in log.verify())
    with pytest.raises(AuditError, match="is missing but .* has entries"):
        log.append("contract", "submit", user="ann")
    assert any("is missing" in problem for problem in log.verify())          # not written anew: still found


def test_an_append_stopped_before_its_head_was_written_is_completed_by_the_next(tmp_path):
    log = write_log(tmp_path / "audit.jsonl", 2)
    head_before = log.head_path.read_bytes()
    log.append("contract", "approve", user="bob", target=REF)
    log.head_path.write_bytes(head_before)                                   # the crash: line written, head not
    problems = log.verify()
    assert len(problems) == 1 and "an append was interrupted" in problems[0]
    log.check()
    log.append("contract", "activate", user="bob", target=REF)
    assert log.verify() == [] and [e["seq"] for e in log.entries()] == [1, 2, 3, 4]


def test_an_entry_too_long_to_read_back_is_refused(tmp_path):
    from controlplane.audit import AuditError
    from controlplane.lifecycle import LifecycleError, Record

    log = write_log(tmp_path / "audit.jsonl", 1)
    with pytest.raises(AuditError, match="too long"):
        log.append("contract", "reject", user="bob", reason="x" * (2 << 20))
    log.append("contract", "submit", user="ann")
    assert log.verify() == []
    record = Record.new(REF, author="ann", content_sha256="0" * 64)
    record.apply("submit", "ann")
    with pytest.raises(LifecycleError, match="at most"):
        record.apply("reject", "bob", reason="x" * 5000)


def test_a_lifecycle_record_edited_by_hand_is_refused_not_obeyed(pstream, tmp_path):
    import asyncio

    from gateway.registry import ContractCache, Refused

    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    assert pstream("contracts", "submit", REF, "--user", "ann")[0] == 0
    record_file = pstream.project / "contracts" / "acme" / "Sim" / "1.0.0.lifecycle.json"
    original = json.loads(record_file.read_text())
    registry = ContractRegistry(pstream.project, contracts_path=False)
    skipped = dict(original, state="ACTIVE")                                          # the state alone
    by_author = dict(original, state="APPROVED", history=[*original["history"], {     # a self-approval
        "action": "approve", "from": "IN_REVIEW", "to": "APPROVED", "user": "ANN", "at": 1}])
    for edited, why in ((skipped, "leads to IN_REVIEW, not to its state ACTIVE"), (by_author, "is by the author")):
        record_file.write_text(json.dumps(edited))
        with pytest.raises(ValueError, match=why):
            registry.get(REF)
        cache = ContractCache(registry, build=lambda contract: contract)
        with pytest.raises(Refused) as info:
            asyncio.run(cache.resolve(REF.encode()))
        assert (info.value.status, info.value.message) == (400, f"Schema '{REF}' could not be loaded")
        cache.close()
    record_file.write_text(json.dumps(original))
    assert registry.get(REF).state == "IN_REVIEW"


def test_two_reviewers_at_the_same_moment_do_not_both_decide(tmp_path):
    """An approve and a reject at once: one of them happens, the other is refused by the state the
    first left (they both passed the state check and both wrote, the audit log claiming both)."""
    import threading

    from controlplane.lifecycle import LifecycleError

    registry = ContractRegistry(tmp_path / "project")
    registry.create(contract_file(tmp_path), "ann")
    registry.transition(REF, "submit", "ann")
    logged, refused = [], []

    def decide(action, user):
        def slow_audit(record, entry, contract):   # the audit log's append, taking its time
            logged.append(action)
            time.sleep(0.3)
        try:
            ContractRegistry(tmp_path / "project").transition(REF, action, user, reason="no", before_write=slow_audit)
        except LifecycleError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=decide, args=("approve", "bob")),
               threading.Thread(target=decide, args=("reject", "carol"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(logged) == 1 and len(refused) == 1 and "cannot" in refused[0], (logged, refused)
    record = registry.record(REF)
    assert [e["action"] for e in record.history] == ["create", "submit", logged[0]]
    assert registry.get(REF).state == {"approve": "APPROVED", "reject": "DRAFT"}[logged[0]]


def test_a_project_audit_log_deleted_with_its_head_is_found_through_the_records(pstream, tmp_path):
    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    assert pstream("contracts", "submit", REF, "--user", "ann")[0] == 0
    assert pstream("audit", "verify")[0] == 0
    log = AuditLog(pstream.project / "audit.jsonl")
    kept = log.path.read_text().splitlines(keepends=True)
    log.path.unlink()
    log.head_path.unlink()                                     # the whole log and its head: the chain cannot tell
    code, _, err = pstream("audit", "verify")
    assert code == 1 and f"{REF}: its lifecycle record has 2 transition(s) the audit log lacks" in err, err
    log.path.write_text(kept[0])                               # rewritten without the submit, with a matching head
    log.head_path.write_text(json.dumps({"seq": 1, "hash": json.loads(kept[0])["hash"]}) + "\n")
    code, _, err = pstream("audit", "verify")
    assert code == 1 and "1 transition(s) the audit log lacks (the first: submit by ann)" in err, err
    log.path.write_text("".join(kept))
    log.head_path.write_text(json.dumps({"seq": 2, "hash": json.loads(kept[1])["hash"]}) + "\n")
    assert pstream("audit", "verify")[0] == 0
    (pstream.project / "contracts" / "acme" / "Sim" / "1.0.0.lifecycle.json").unlink()   # the file's state decides now
    code, _, err = pstream("audit", "verify")
    assert code == 1 and f"{REF}: the audit log has its create, but its lifecycle record" in err, err


def test_names_and_reasons_cannot_drive_the_terminal(pstream, tmp_path):
    """A reason with ESC or a bidi override is refused; a record or log entry written by hand with
    them is shown escaped by `contracts show`, `contracts list` and `audit list`."""
    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    assert pstream("contracts", "submit", REF, "--user", "ann")[0] == 0
    for reason in ("fine\x1b[2K\rapproved by alice", "ok\u202egnp.exe"):
        code, _, err = pstream("contracts", "reject", REF, "--user", "bob", "--reason", reason)
        assert code == 2 and "--reason holds control" in err
    assert pstream("contracts", "reject", REF, "--user", "bob", "--reason", "two\nlines")[0] == 0
    record_file = pstream.project / "contracts" / "acme" / "Sim" / "1.0.0.lifecycle.json"
    record = json.loads(record_file.read_text())
    record["author"] = record["history"][0]["user"] = "ann\x1b[31m"
    record_file.write_text(json.dumps(record))
    log = AuditLog(pstream.project / "audit.jsonl")
    log.append("contract", "approve", user="eve\x1b]0;pwned\x07", target=REF)
    for command in (("contracts", "show", REF), ("contracts", "list"), ("audit", "list")):
        code, out, err = pstream(*command)
        assert code == 0 and "\x1b" not in out and "\x07" not in out, (command, out)
    assert "ann\\x1b[31m" in pstream("contracts", "show", REF)[1]


def test_events_of_a_project_contract_can_be_decrypted_and_exported_for_their_subject(pstream, tmp_path, monkeypatch):
    """decrypt and subjects export find a project's own contract by reference (they looked only at
    CONTRACTS_PATH and the shipped ones: decrypt crashed, the access report left the records out as
    undecryptable)."""
    monkeypatch.setenv("PSTREAM_PROJECT_DIR", str(pstream.project))
    contract = tmp_path / "plain.yaml"
    contract.write_text("ref: acme/Plain/1.0.0\nschema:\n  nodes:\n"
                        "    - {name: id, type: STRING, required: true}\n    - {name: email, type: STRING}\n"
                        "keyField: id\ndataSubjectField: id\nfieldMetadata:\n  - fieldName: email\n"
                        "    personalDataConfig: {isPii: true, purposeLevel: 1}\n")
    registry = ContractRegistry(pstream.project)
    registry.create(contract, "ann")
    for action, user in (("submit", "ann"), ("approve", "bob"), ("activate", "bob")):
        registry.transition("acme/Plain/1.0.0", action, user)
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "a1", "email": "a@example.com"}\n{"id": "a2", "email": "b@example.com"}\n')
    out = tmp_path / "out"
    lines: list[str] = []
    assert run(["--input", str(data), "--contract", "acme/Plain/1.0.0", "--output", str(out)], echo=lines.append) == 0
    keys = tmp_path / "keys.csv"
    assert pstream("keys", "export", str(out / "keys"), "--kek", f"local://{out / 'kek.json'}", "-o", str(keys),
                   project_dir=False)[0] == 0
    code, stdout, err = pstream("decrypt", str(out / "encrypted"), "--keys", str(keys), project_dir=False)
    assert code == 0 and "a@example.com" in stdout and "decrypted 2 events" in err, err
    report = tmp_path / "access.json"
    code, _, err = pstream("subjects", "export", "a1", "--output", str(out), "-o", str(report), "--user", "ann",
                           project_dir=False)
    assert code == 0, err
    access = json.loads(report.read_text())
    assert (access["recordCount"], access["undecryptable"]) == (1, 0)
    assert access["records"][0]["email"] == "a@example.com"


def test_a_create_stopped_between_its_two_files_can_be_done_again(pstream, tmp_path):
    """create writes the lifecycle record, then the YAML: stopped in between, the reference has a
    record and no file; no reader uses it and the next create completes it."""
    from contracts import ContractError

    assert pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")[0] == 0
    stored = pstream.project / "contracts" / "acme" / "Sim" / "1.0.0.yaml"
    stored.unlink()                                                           # the state the stop leaves
    registry = ContractRegistry(pstream.project, contracts_path=False)
    with pytest.raises(ContractError, match="not found"):
        registry.get(REF)
    code, out, err = pstream("contracts", "create", str(contract_file(tmp_path)), "--user", "ann")
    assert code == 0 and "created acme/Sim/1.0.0 as DRAFT" in out, err
    assert registry.get(REF).state == "DRAFT" and len(registry.record(REF).history) == 1
