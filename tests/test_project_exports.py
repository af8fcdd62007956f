"""The project's data connectors and batch exporters are pipelines.connectors' connectors and
exporters: `pstream create data-connector` checks with parse_connector, and the local loop reaches
a connector with its credentials and endpoint, probes it once, and writes the documented file names.
"""
from __future__ import annotations

import json
import os
import re

import pytest

from cli.main import main
from cloud_servers import unique_name
from controlplane.project import Project
from controlplane.realtime import LocalLoop

EXPORT_FILE = re.compile(r"^events/(?P<label>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)-stream-(?P<id>[0-9a-f-]{36})---0\.jsonl$")
EVENTS = [{"strmMeta": {"keyLink": f"k{i}"}, "n": i} for i in range(5)]


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def s3_project(tmp_path, capsys, s3_server, secret: str) -> tuple[list[str], str]:
    """A project with pipeline demo, S3 connector 'lake' (key by file, moto's endpoint) and its exporter."""
    p = ["--project_dir", str(tmp_path / "project")]
    bucket = s3_server.create_bucket(unique_name("loop"))
    key_file = tmp_path / "aws-key.json"
    key_file.write_text(json.dumps({"AccessKey": {"AccessKeyId": s3_server.access_key_id, "SecretAccessKey": secret}}))
    assert cli(capsys, "create", "stream", "demo", *p)[0] == 0
    code, out, err = cli(capsys, "create", "data-connector", "s3", "lake", "--bucket-name", bucket, "--region",
                         s3_server.region, "--endpoint", s3_server.endpoint, "--credentials-file", str(key_file),
                         *([] if secret == s3_server.secret_access_key else ["--no-probe"]), *p)
    assert code == 0, err
    assert json.loads(out)["credentials"] == {"file": str(key_file)}          # by reference
    assert secret not in (tmp_path / "project" / "project.yaml").read_text()
    assert cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "lake", "--path-prefix", "events",
               "--include-existing-events", *p)[0] == 0
    encrypted = Project.open(tmp_path / "project").output_dir("demo") / "encrypted"
    encrypted.mkdir(parents=True)
    (encrypted / "part-0.jsonl").write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    return p, bucket


def test_the_local_loop_exports_to_an_s3_connector_with_its_key_file_and_endpoint(tmp_path, capsys, s3_server):
    _, bucket = s3_project(tmp_path, capsys, s3_server, s3_server.secret_access_key)
    messages = []
    loop = LocalLoop(tmp_path / "project", echo=messages.append, clock=lambda: 1_700_000_000)
    assert loop.start_exporters() == []
    assert loop.step() == 0                                   # no spool: only the export runs
    objects = s3_server.objects(bucket)
    records = [name for name in objects if name.startswith("events/.pstream/runs/")]
    assert len(records) == 1, objects                         # the pass's run, committed there
    objects = {name: body for name, body in objects.items() if name not in records}
    assert len(objects) == 1, objects                         # the probe file is gone
    (name, body), = objects.items()
    match = EXPORT_FILE.match(name)
    assert match and match["label"] == "2023-11-14T22:13:20", name
    assert records == [f"events/.pstream/runs/{match['id']}.json"]   # the file carries its run's id
    assert json.loads(s3_server.objects(bucket)[records[0]])["state"] == "done"
    assert [json.loads(line) for line in body.decode().splitlines()] == EVENTS
    assert any(f"s3://{bucket}/events" in m for m in messages)
    loop.step()
    assert len(s3_server.objects(bucket)) == 2                # nothing new: no second file, no second run


def test_wrong_credentials_refuse_the_exporter_with_the_connector_name(tmp_path, capsys, s3_server):
    p, bucket = s3_project(tmp_path, capsys, s3_server, "not-the-secret")
    # a second exporter, on a local connector, is not held up by the broken one
    assert cli(capsys, "create", "data-connector", "local", "disk", "--path", str(tmp_path / "disk"), *p)[0] == 0
    assert cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "disk", "--path-prefix", "events",
               "--include-existing-events", *p)[0] == 0
    messages = []
    loop = LocalLoop(tmp_path / "project", echo=messages.append, clock=lambda: 1_700_000_000)
    refused = loop.start_exporters()
    assert len(refused) == 1, refused
    assert refused[0].startswith(f"exporter 'demo-lake': connector 'lake' (s3, s3://{bucket}) cannot be written:")
    assert "SignatureDoesNotMatch" in refused[0] and refused[0].endswith("exporter not started")
    assert "not-the-secret" not in " ".join(messages)
    loop.step()
    loop.step()
    assert messages.count(refused[0]) == 1                    # said once, not on every pass
    assert s3_server.objects(bucket) == {}
    assert len(list((tmp_path / "disk" / "events").glob("*-stream-*---0.jsonl"))) == 1


def test_create_data_connector_checks_with_parse_connector(tmp_path, capsys):
    p = ["--project_dir", str(tmp_path)]
    code, _, err = cli(capsys, "create", "data-connector", "s3", "lake", "--bucket-name", "Bad_Bucket", *p)
    assert code == 2 and "connector 'lake': bucket 'Bad_Bucket' is not a valid S3 bucket name" in err
    code, _, err = cli(capsys, "create", "data-connector", "gcs", "w", "--bucket-name", "b-1", "--endpoint", "ftp://x", *p)
    assert code == 2 and "connector 'w': endpoint 'ftp://x' must be an http(s):// URL" in err
    code, _, err = cli(capsys, "create", "data-connector", "s3", "lake", "--bucket-name", "b-1", "--credentials-env",
                       "1BAD", *p)
    assert code == 2 and "credentials must be 'default', {file: PATH} or {env: VARIABLE}" in err
    code, _, err = cli(capsys, "create", "data-connector", "s3", "lake", "--bucket-name", "b-1",
                       "--assume-role-arn", "arn:aws:iam::1:role/x", *p)
    assert code == 2 and "--assume-role-arn is not supported" in err
    assert Project.open(tmp_path).data_connectors == {}


def test_azure_blob_storage_is_the_azure_kind_and_a_service_principal_is_kept_by_file(tmp_path, capsys):
    p = ["--project_dir", str(tmp_path)]
    code, out, err = cli(capsys, "create", "data-connector", "azure-blob-storage", "blob", "--storage-account-uri",
                         "https://acmeexports.blob.core.windows.net", "--container-name", "events",
                         "--tenant-id", "t-1", "--client-id", "c-1", "--client-secret", "s3cr3t", "--no-probe", *p)
    assert code == 0, err
    entry = Project.open(tmp_path).data_connectors["blob"].entry
    kept = tmp_path / "credentials" / "blob.json"
    assert entry == {"name": "blob", "kind": "azure", "account": "acmeexports", "container": "events",
                     "credentials": {"file": str(kept)}}
    assert json.loads(kept.read_text()) == {"tenant_id": "t-1", "client_id": "c-1", "client_secret": "s3cr3t"}
    assert oct(os.stat(kept).st_mode & 0o777) == "0o600"
    assert "s3cr3t" not in out + (tmp_path / "project.yaml").read_text()
    # the connector is pipelines.connectors' own: connector_access turns the file into AZURE_* variables
    from pipelines.connectors import connector_access
    access = connector_access(Project.open(tmp_path).data_connectors["blob"].connector("project"))
    assert access.env["AZURE_CLIENT_SECRET"] == "s3cr3t"
    assert access.options["blob_service_endpoint"] == "https://acmeexports.blob.core.windows.net"
    code, _, _ = cli(capsys, "create", "data-connector", "azure", "blob2", "--storage-account-uri",
                     "http://127.0.0.1:10000/devstoreaccount1", "--container-name", "events", "--no-probe", *p)
    assert code == 0
    assert Project.open(tmp_path).data_connectors["blob2"].entry == {
        "name": "blob2", "kind": "azure", "account": "devstoreaccount1", "container": "events",
        "endpoint": "http://127.0.0.1:10000/devstoreaccount1"}
    assert cli(capsys, "delete", "data-connector", "blob", *p)[0] == 0
    assert not kept.exists()


def test_a_database_connector_cannot_be_an_exporter_target(tmp_path, capsys):
    """The reference's jdbc connector is the pipeline config's postgresql connector: one model."""
    p = ["--project_dir", str(tmp_path)]
    assert cli(capsys, "create", "stream", "demo", *p)[0] == 0
    code, out, err = cli(capsys, "create", "data-connector", "jdbc", "db", "--uri",
                         "jdbc:postgresql://127.0.0.1/test?user=u&password=pw", "--database-type", "postgres", *p)
    assert code == 2 and "--uri holds a password" in err and "pw" not in (out + err).replace("password", "")
    code, out, _ = cli(capsys, "create", "data-connector", "jdbc", "db", "--uri", "jdbc:postgresql://127.0.0.1/test?user=u",
                       "--database-type", "postgres", "--credentials-env", "DB_PASSWORD", *p)
    assert code == 0
    assert Project.open(tmp_path).data_connectors["db"].entry == {
        "name": "db", "kind": "postgresql", "uri": "postgresql://u@127.0.0.1/test", "credentials": {"env": "DB_PASSWORD"}}
    code, _, err = cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "db", *p)
    assert code == 2 and "connector 'db' is a postgresql connector, a source of batch jobs" in err
    code, _, err = cli(capsys, "create", "data-connector", "jdbc", "db2", "--uri", "postgres://x", *p)
    assert code == 2 and "PostgreSQL JDBC URI" in err
    code, _, err = cli(capsys, "create", "data-connector", "jdbc", "db3", "--uri", "jdbc:postgresql://h/d",
                       "--database-type", "mysql", *p)
    assert code == 2 and "only POSTGRES" in err
    assert cli(capsys, "create", "data-connector", "bigquery", "wh", "--project", "demo-project", *p)[0] == 0
    assert cli(capsys, "create", "data-connector", "postgresql", "pg", "--uri", "postgresql://r@db/shop", *p)[0] == 0


def test_exporters_of_a_pipeline_are_checked_together(tmp_path, capsys):
    p = ["--project_dir", str(tmp_path)]
    assert cli(capsys, "create", "stream", "demo", *p)[0] == 0
    assert cli(capsys, "create", "data-connector", "local", "disk", *p)[0] == 0
    assert Project.open(tmp_path).data_connectors["disk"].entry["path"] == str(tmp_path / "exports" / "disk")
    assert cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "disk", "--path-prefix", "a", *p)[0] == 0
    code, _, err = cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "disk", "--name", "again",
                       "--path-prefix", "a", *p)
    assert code == 2 and "writes to" in err and "as exporter 'demo-disk' does" in err
    code, _, err = cli(capsys, "create", "batch-exporter", "demo", "--data-connector", "disk", "--name", "x",
                       "--path-prefix", "../up", *p)
    assert code == 2 and "must be relative" in err
    (record, exporter), = Project.open(tmp_path).pipeline_exporters("demo")
    assert (exporter.output, exporter.directory, exporter.file_kind) == ("encrypted", str(tmp_path / "exports/disk/a"),
                                                                         "stream")


def test_an_old_style_connector_entry_says_how_to_fix_it(tmp_path):
    (tmp_path / "project.yaml").write_text("data_connectors:\n- {name: d, type: local, settings: {path: /tmp}}\n")
    with pytest.raises(ValueError, match="old form"):
        Project.open(tmp_path)
