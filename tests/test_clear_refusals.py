"""Issue 10, points 1 and 8 on the command line and in the crypto core: unknown options of
``pipelines.run`` exit 2 (Beam's own options still pass), a contract without PII is reported,
a CSV without the consent column stops the start, reading a KEK never creates one, a rotated
Tink keyset decrypts with whichever key the ciphertext names, and a user's ``contracts/`` or
``pipelines/`` folder cannot shadow the packages."""
from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tink
from apache_beam.options.pipeline_options import (DirectOptions, FlinkRunnerOptions, GoogleCloudOptions,
                                                  StandardOptions, WorkerOptions)
from tink import aead, daead, secret_key_access
from tink.testing import keyset_builder

from pipelines.run import parse_args, run
from privacy.daead import DecryptError, SivKey
from privacy.kek import KekError, LocalKek, kek_from_uri, prepare_kek
from privacy.key_export import parse_key_export
from privacy.keyset import key_from_keyset_json
from tests.conftest import REPO, repo_env

daead.register()
aead.register()
HEADER = ("transactionId,userId,email,age,tshirtSize,fullName,phoneNumber,address,transactionAmount,"
          "items,totalItems,date,purposeConsent")
ROW = '1001,100001,a@example.com,31,M,Ann,555-0100,1 Lane,12,"[1, 2]",2,2023-01-05 10:00:00,2'


# -- unknown options ----------------------------------------------------------------------------
def test_an_unknown_option_exits_2_naming_it_and_never_runs_the_default(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "pipelines.run", "--inptu", "x.csv"], cwd=tmp_path,
                          env=repo_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "error: unrecognized arguments: --inptu (did you mean --input?)" in proc.stderr
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []  # no example input, no out/


@pytest.mark.parametrize("argv, shown", [
    (["--inp=x.csv"], "--inp (did you mean --input?)"),          # no abbreviations: Beam takes none either
    (["--s3_secret_acces_key=SECRET"], "--s3_secret_acces_key (did you mean --s3_secret_access_key?)"),
    (["data.csv"], "1 value(s) without an option"),
    (["-x", "1"], "-x"),
])
def test_unknown_arguments_are_named_without_their_values(argv, shown, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"error: unrecognized arguments: {shown}" in err
    assert "SECRET" not in err


def test_beam_options_of_every_runner_still_pass():
    options, ours = parse_args([
        "--input", "in.csv", "--runner=DataflowRunner", "--project", "p", "--region", "europe-west4",
        "--temp_location", "gs://b/tmp", "--staging_location=gs://b/staging", "--job_name", "shop",
        "--service_account_email", "sa@p.iam.gserviceaccount.com", "--sdk_container_image", "img",
        "--experiments=use_runner_v2", "--experiments", "enable_stackdriver_agent_metrics",
        "--dataflow_service_options=enable_prime", "--max_num_workers", "4", "--no_use_public_ips",
        "--setup_file", "./setup.py", "--streaming", "--direct_num_workers", "2",
        "--direct_running_mode", "multi_processing", "--flink_master", "flink:8081", "--parallelism", "3",
        "--environment_type", "EXTERNAL", "--environment_config", "localhost:50000",
        "--pubsub_subscription", "projects/p/subscriptions/s", "--kafka_topics", "events"])
    assert ours.input == "in.csv"
    assert options.view_as(StandardOptions).runner == "DataflowRunner" and options.view_as(StandardOptions).streaming
    cloud = options.view_as(GoogleCloudOptions)
    assert (cloud.project, cloud.region, cloud.job_name) == ("p", "europe-west4", "shop")
    assert options.view_as(WorkerOptions).max_num_workers == 4
    assert options.view_as(DirectOptions).direct_num_workers == 2
    assert options.view_as(FlinkRunnerOptions).flink_master == "flink:8081"
    assert "use_runner_v2" in options.get_all_options()["experiments"]


# -- the run summary ----------------------------------------------------------------------------
def test_a_contract_without_pii_is_a_warning_and_a_summary_line(tmp_path, caplog):
    contract = tmp_path / "plain.yaml"
    contract.write_text("ref: acme/Plain/1.0.0\nschema:\n  nodes:\n    - {name: id, type: STRING, required: true}\n"
                        "    - {name: note, type: STRING}\nkeyField: id\n")
    data = tmp_path / "in.jsonl"
    data.write_text('{"id": "a1", "note": "x"}\n{"id": "a2", "note": "y"}\n')
    lines = []
    with caplog.at_level(logging.WARNING, logger="pipelines.run"):
        code = run(["--input", str(data), "--contract", str(contract), "--output", str(tmp_path / "out")],
                   echo=lines.append)
    assert code == 0, lines
    expected = "contract acme/Plain/1.0.0 declares no PII field: nothing is encrypted"
    assert any(line.startswith(f"warning: {expected}") for line in lines), lines
    assert any(expected in record.getMessage() for record in caplog.records)
    # a contract with PII says nothing of the kind
    lines.clear()
    rows = tmp_path / "shop.csv"
    rows.write_text(f"{HEADER}\n{ROW}\n")
    assert run(["--input", str(rows), "--output", str(tmp_path / "out2")], echo=lines.append) == 0
    assert not any("declares no PII" in line for line in lines)


@pytest.mark.parametrize("drop", ["purposeConsent", "date"])
def test_a_csv_header_without_the_consent_or_time_column_stops_the_start(tmp_path, drop):
    columns = HEADER.split(",")
    values = ROW.replace('"[1, 2]"', "[1]").split(",")
    index = columns.index(drop)
    good, bad = tmp_path / "a.csv", tmp_path / "b.csv"
    good.write_text(f"\ufeff{HEADER}\n{ROW}\n")  # a BOM does not hide a column
    bad.write_text(",".join(c for i, c in enumerate(columns) if i != index) + "\n"
                   + ",".join(v for i, v in enumerate(values) if i != index) + "\n")
    lines = []
    assert run(["--input", str(tmp_path / "*.csv"), "--output", str(tmp_path / "out")], echo=lines.append) == 2
    key = "input.consent.field" if drop == "purposeConsent" else "input.timestamp.field"
    assert lines[-1].startswith(f"error: {bad}: the CSV header has no column '{drop}' ({key} of "), lines
    assert not (tmp_path / "out").exists()


# -- KEKs ---------------------------------------------------------------------------------------
def test_reading_a_kek_never_creates_one(tmp_path):
    keys = tmp_path / "keys.jsonl"
    keys.write_text("")
    proc = subprocess.run([sys.executable, "-m", "cli", "keys", "export", str(keys), "--kek", "local://nope/kek.json"],
                          cwd=tmp_path, env=repo_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "KEK file not found: nope/kek.json" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.jsonl"]
    with pytest.raises(KekError, match="KEK file not found"):
        kek_from_uri(f"local://{tmp_path / 'x' / 'kek.json'}")
    assert not (tmp_path / "x").exists()


def test_only_the_run_creates_the_local_kek_once(tmp_path):
    uri = f"local://{tmp_path / 'out' / 'kek.json'}"
    prepare_kek(uri)
    first = (tmp_path / "out" / "kek.json").read_text()
    assert oct((tmp_path / "out" / "kek.json").stat().st_mode & 0o777) == "0o600"
    prepare_kek(uri)  # a second run keeps the first run's KEK
    assert (tmp_path / "out" / "kek.json").read_text() == first
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["kek.json"]  # no temp file left
    prepare_kek("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/k")  # KMS keys are never made here
    wrapped = kek_from_uri(uri).wrap(b"k" * 64, b"link")
    assert LocalKek(tmp_path / "out" / "kek.json").unwrap(wrapped, b"link") == b"k" * 64


def test_a_rotated_kek_keyset_unwraps_with_the_key_that_wrapped(tmp_path):
    builder = keyset_builder.new_keyset_builder()
    first = builder.add_new_key(aead.aead_key_templates.AES256_GCM)
    builder.set_primary_key(first)
    old = builder.keyset_handle().primitive(aead.Aead).encrypt(b"old key material", b"link-1")
    builder.set_primary_key(builder.add_new_key(aead.aead_key_templates.AES256_GCM))
    path = tmp_path / "kek.json"
    path.write_text(tink.json_proto_keyset_format.serialize(builder.keyset_handle(), secret_key_access.TOKEN))
    kek = LocalKek(path)
    assert kek.unwrap(old, b"link-1") == b"old key material"
    new = kek.wrap(b"new key material", b"link-2")
    assert builder.keyset_handle().primitive(aead.Aead).decrypt(new, b"link-2") == b"new key material"


# -- Tink keysets with several keys -------------------------------------------------------------
def test_a_rotated_tink_keyset_decrypts_with_whichever_key_the_ciphertext_names():
    template = daead.deterministic_aead_key_templates.AES256_SIV
    builder = keyset_builder.new_keyset_builder()

    def encrypt_with(key_id: int, text: str) -> str:
        builder.set_primary_key(key_id)
        primitive = builder.keyset_handle().primitive(daead.DeterministicAead)
        return base64.b64encode(primitive.encrypt_deterministically(text.encode(), b"")).decode()

    first = builder.add_new_key(template)
    raw = builder.add_new_key(keyset_builder.raw_template(template))
    legacy = builder.add_new_key(keyset_builder.legacy_template(template))
    second = builder.add_new_key(template)
    tokens = {encrypt_with(first, "alice"): "alice", encrypt_with(raw, "bob"): "bob",
              encrypt_with(legacy, "carol"): "carol", encrypt_with(second, "dave"): "dave"}
    exported = tink.json_proto_keyset_format.serialize(builder.keyset_handle(), secret_key_access.TOKEN)
    assert json.loads(exported)["primaryKeyId"] == second and len(json.loads(exported)["key"]) == 4
    ours = key_from_keyset_json(exported)
    for token, text in tokens.items():
        assert ours.decrypt(token) == text
    assert ours.encrypt("dave") == encrypt_with(second, "dave")  # the primary encrypts, byte for byte
    # a key-export row (what `pstream decrypt` and the on-the-fly decryptors read) holds such a keyset
    keys = parse_key_export(json.dumps({"keyLink": "l1", "encryptionKey": exported}) + "\n", jsonl=True)
    assert keys["l1"].decrypt(next(iter(tokens))) == "alice"
    # a disabled key no longer decrypts, as in Tink; a foreign token is refused
    builder.disable_key(first)
    reduced = key_from_keyset_json(tink.json_proto_keyset_format.serialize(builder.keyset_handle(),
                                                                           secret_key_access.TOKEN))
    with pytest.raises(DecryptError):
        reduced.decrypt(next(iter(tokens)))
    with pytest.raises(DecryptError):
        ours.decrypt(SivKey.generate().encrypt("eve"))


# -- shadowing ----------------------------------------------------------------------------------
def test_a_users_contracts_or_pipelines_folder_cannot_shadow_the_packages(tmp_path):
    (tmp_path / "contracts" / "acme").mkdir(parents=True)
    (tmp_path / "contracts" / "acme" / "x.yaml").write_text("ref: acme/x/1.0.0\n")
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "shop.yaml").write_text("name: shop\n")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))  # a normal install: only src/ on the path
    proc = subprocess.run([sys.executable, "-m", "pipelines.run", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--contract" in proc.stdout and "Traceback" not in proc.stderr
    probe = subprocess.run([sys.executable, "-c", "import contracts, pipelines; print(contracts.__file__, pipelines.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert probe.stdout.split() == [str(REPO / "src" / "contracts" / "__init__.py"),
                                    str(REPO / "src" / "pipelines" / "__init__.py")]
