"""Data connectors and exporters: parsing, validation messages, Beam access, and the start probe.

The probe tests run against the local cloud servers (moto S3 with authentication on, the GCS
emulator, Azurite): a good connector leaves no file behind, a wrong key fails at once with a
message naming the exporter and the connector, and never showing the secret.
"""
from __future__ import annotations

import json
import os
import stat
import time

import pytest
from apache_beam.options.pipeline_options import PipelineOptions, S3Options

from cloud_servers import unique_name
from pipelines.connectors import (ConnectorError, connector_access, load_exports, parse_connectors,
                                  probe_exporters)

OUTPUTS = ["encrypted", "keys", "webshop-1"]


def exports_for(connectors: list[dict], exporters: list[dict]):
    return load_exports({"connectors": connectors, "exporters": exporters}, OUTPUTS, "shop.yaml")


def error_of(connectors, exporters) -> str:
    with pytest.raises(ConnectorError) as caught:
        exports_for(connectors, exporters)
    return str(caught.value)


LAKE = {"name": "lake", "kind": "s3", "bucket": "acme-lake"}


# -- parsing ------------------------------------------------------------------------------------
def test_each_kind_has_its_base_uri_and_exporters_their_directory(tmp_path):
    exports = exports_for(
        [LAKE, {"name": "wh", "kind": "gcs", "bucket": "acme_exports"},
         {"name": "blob", "kind": "azure", "account": "acmeexports", "container": "events"},
         {"name": "disk", "kind": "local", "path": str(tmp_path / "exports")}],
        [{"output": "encrypted", "connector": "lake", "path_prefix": "shop/encrypted"},
         {"output": "keys", "connector": "wh", "interval": 3600, "include_existing_events": True},
         {"output": "webshop-1", "connector": "blob", "path_prefix": "s/webshop-1", "interval": 30},
         {"name": "local-copy", "output": "encrypted", "connector": "disk", "path_prefix": "enc"}])
    by_name = {e.name: e for e in exports.exporters}
    assert sorted(by_name) == ["encrypted-to-lake", "keys-to-wh", "local-copy", "webshop-1-to-blob"]
    assert by_name["encrypted-to-lake"].directory == "s3://acme-lake/shop/encrypted"
    assert by_name["encrypted-to-lake"].interval == 60 and not by_name["encrypted-to-lake"].include_existing_events
    assert by_name["keys-to-wh"].directory == "gs://acme_exports"
    assert (by_name["keys-to-wh"].interval, by_name["keys-to-wh"].file_kind) == (3600, "keys")
    assert by_name["keys-to-wh"].include_existing_events is True
    assert by_name["webshop-1-to-blob"].directory == "azfs://acmeexports/events/s/webshop-1"
    assert by_name["local-copy"].directory == str(tmp_path / "exports" / "enc")
    assert exports.access.options == {"blob_service_endpoint": "https://acmeexports.blob.core.windows.net"}


@pytest.mark.parametrize("interval, expected", [
    (29, "interval 29 s is outside 30-3600 s"), (3601, "interval 3601 s is outside 30-3600 s"),
    (60.5, "interval must be whole seconds"), (True, "interval must be whole seconds"),
    ("60", "interval must be whole seconds")])
def test_interval_is_whole_seconds_between_30_and_3600(interval, expected):
    message = error_of([LAKE], [{"output": "encrypted", "connector": "lake", "interval": interval}])
    assert message.startswith("shop.yaml: exporter 'encrypted-to-lake': ") and expected in message


@pytest.mark.parametrize("prefix, expected", [
    ("shop/", "must not end with '/'"), ("x" * 901, "901 characters, at most 900"),
    ("/abs", "must be relative"), ("a//b", "must be relative"), ("a/../b", "must be relative")])
def test_path_prefix_rules(prefix, expected):
    message = error_of([LAKE], [{"name": "e1", "output": "encrypted", "connector": "lake", "path_prefix": prefix}])
    assert "exporter 'e1'" in message and expected in message


def test_a_prefix_of_900_characters_is_fine():
    exports = exports_for([LAKE], [{"output": "encrypted", "connector": "lake", "path_prefix": "p" * 900}])
    assert exports.exporters[0].directory.endswith("/" + "p" * 900)


@pytest.mark.parametrize("connector, expected", [
    ({"name": "x", "kind": "ftp"}, "connector 'x': kind 'ftp' is not one of s3, gcs, azure, local"),
    ({"name": "x", "kind": "s3"}, "connector 'x': 'bucket' is missing"),
    ({"name": "x", "kind": "s3", "bucket": "Bad_Bucket"}, "bucket 'Bad_Bucket' is not a valid S3 bucket name"),
    ({"name": "x", "kind": "azure", "account": "Acme", "container": "c1c"}, "storage account 'Acme'"),
    ({"name": "x", "kind": "azure", "account": "acme", "container": "a--b"}, "container 'a--b' is not valid"),
    ({"name": "x", "kind": "gcs", "bucket": "b-1", "container": "c"}, "unknown key(s) for kind gcs: container"),
    ({"name": "x", "kind": "s3", "bucket": "b-1", "endpoint": "localhost:9000"}, "must be an http(s):// URL"),
    ({"name": "x", "kind": "s3", "bucket": "b-1", "credentials": {"secret_access_key": "abc"}},
     "credentials must be 'default', {file: PATH} or {env: VARIABLE}"),
    ({"name": "x", "kind": "local", "path": "/tmp/x", "credentials": {"env": "HOME"}}, "takes no credentials"),
])
def test_connector_validation_names_the_connector(connector, expected):
    message = error_of([connector], [])
    assert message.startswith("shop.yaml: "), message
    assert expected.replace("is not valid", "is not a valid Azure container name") in message, message
    assert "abc" not in message


def test_exporter_references_are_checked():
    assert "output 'webshop-9' is not one of encrypted, keys, webshop-1" in error_of(
        [LAKE], [{"output": "webshop-9", "connector": "lake"}])
    assert "exporter 'encrypted-to-pond': connector 'pond' is not defined (connectors: lake)" in error_of(
        [LAKE], [{"output": "encrypted", "connector": "pond"}])
    assert "as exporter 'encrypted-to-lake' does" in error_of(
        [LAKE], [{"output": "encrypted", "connector": "lake"}, {"name": "two", "output": "keys", "connector": "lake"}])
    assert "connector 'lake' is defined twice" in error_of([LAKE, LAKE], [])
    assert "include_existing_events must be true or false" in error_of(
        [LAKE], [{"output": "keys", "connector": "lake", "include_existing_events": "yes"}])


# -- credentials and Beam access ---------------------------------------------------------------
def test_s3_access_key_json_from_a_file_or_a_variable(tmp_path, monkeypatch):
    nested = tmp_path / "key.json"
    nested.write_text(json.dumps({"AccessKey": {"AccessKeyId": "AKIA1", "SecretAccessKey": "s3cr3t"}}))
    monkeypatch.setenv("LAKE_KEY", json.dumps({"AccessKeyId": "AKIA1", "SecretAccessKey": "s3cr3t"}))
    for credentials in ({"file": str(nested)}, {"env": "LAKE_KEY"}):
        connector = parse_connectors([{**LAKE, "endpoint": "http://127.0.0.1:9", "region": "eu-west-1",
                                       "credentials": credentials}], "shop.yaml")["lake"]
        access = connector_access(connector)
        assert access.options == {"s3_endpoint_url": "http://127.0.0.1:9", "s3_region_name": "eu-west-1",
                                  "s3_access_key_id": "AKIA1", "s3_secret_access_key": "s3cr3t"}
        assert access.secret == {"s3_access_key_id", "s3_secret_access_key"}


def test_missing_or_malformed_credentials_name_the_connector(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    message = error_of([{**LAKE, "credentials": {"env": "NOT_SET_ANYWHERE"}}], [{"output": "keys", "connector": "lake"}])
    assert "connector 'lake' (s3, s3://acme-lake): credentials variable $NOT_SET_ANYWHERE is not set" in message
    bad = tmp_path / "bad.json"
    bad.write_text('{"AccessKeyId": "AKIA1", "Secret": "hunter2"}')
    message = error_of([{**LAKE, "credentials": {"file": str(bad)}}], [{"output": "keys", "connector": "lake"}])
    assert "connector 'lake'" in message and "needs AccessKeyId and SecretAccessKey" in message
    assert "hunter2" not in message
    message = error_of([{**LAKE, "credentials": {"file": str(tmp_path / "absent.json")}}],
                       [{"output": "keys", "connector": "lake"}])
    assert "credentials file" in message and "cannot be read" in message


def test_two_connectors_of_one_kind_must_share_endpoint_and_keys():
    message = error_of(
        [{**LAKE, "endpoint": "http://127.0.0.1:1"}, {"name": "pond", "kind": "s3", "bucket": "acme-pond",
                                                      "endpoint": "http://127.0.0.1:2"}],
        [{"output": "encrypted", "connector": "lake"}, {"output": "keys", "connector": "pond"}])
    assert "connectors 'lake' and 'pond' need different values of s3_endpoint_url" in message
    # two buckets behind one endpoint are fine
    exports = exports_for(
        [{**LAKE, "endpoint": "http://127.0.0.1:1"}, {"name": "pond", "kind": "s3", "bucket": "acme-pond",
                                                      "endpoint": "http://127.0.0.1:1"}],
        [{"output": "encrypted", "connector": "lake"}, {"output": "keys", "connector": "pond"}])
    assert exports.access.options == {"s3_endpoint_url": "http://127.0.0.1:1"}


def test_gcs_key_from_a_variable_goes_to_a_private_file(monkeypatch):
    monkeypatch.setenv("WH_KEY", json.dumps({"type": "service_account", "project_id": "demo-project"}))
    connector = parse_connectors([{"name": "wh", "kind": "gcs", "bucket": "acme-wh", "endpoint": "http://127.0.0.1:7",
                                   "credentials": {"env": "WH_KEY"}}], "shop.yaml")["wh"]
    access = connector_access(connector)
    path = access.env["GOOGLE_APPLICATION_CREDENTIALS"]
    try:
        assert access.env["STORAGE_EMULATOR_HOST"] == "http://127.0.0.1:7"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert json.loads(open(path).read())["project_id"] == "demo-project"
    finally:
        os.unlink(path)


def test_azure_connection_string_or_service_principal(monkeypatch):
    blob = {"name": "blob", "kind": "azure", "account": "acmeexports", "container": "events"}
    monkeypatch.setenv("BLOB_CS", "DefaultEndpointsProtocol=https;AccountName=acmeexports;AccountKey=a2V5")
    access = connector_access(parse_connectors([{**blob, "credentials": {"env": "BLOB_CS"}}], "x")["blob"])
    assert access.options == {"azure_connection_string": os.environ["BLOB_CS"]} and access.env == {}
    monkeypatch.setenv("BLOB_SP", json.dumps({"tenant_id": "t", "client_id": "c", "client_secret": "s"}))
    access = connector_access(parse_connectors([{**blob, "credentials": {"env": "BLOB_SP"}}], "x")["blob"])
    assert access.options == {"blob_service_endpoint": "https://acmeexports.blob.core.windows.net"}
    assert access.env == {"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"}
    monkeypatch.setenv("BLOB_HALF", json.dumps({"tenant_id": "t"}))
    with pytest.raises(ConnectorError, match="missing: client_id, client_secret"):
        connector_access(parse_connectors([{**blob, "credentials": {"env": "BLOB_HALF"}}], "x")["blob"])


def test_apply_sets_beam_options_and_refuses_a_contradicting_flag(monkeypatch):
    monkeypatch.setenv("LAKE_KEY", json.dumps({"AccessKeyId": "AKIA1", "SecretAccessKey": "s3cr3t"}))
    exports = exports_for([{**LAKE, "endpoint": "http://127.0.0.1:9", "credentials": {"env": "LAKE_KEY"}}],
                          [{"output": "encrypted", "connector": "lake"}])
    options = PipelineOptions(["--s3_region_name=eu-west-1"])
    environ = {}
    exports.apply(options, environ)
    s3 = options.view_as(S3Options)
    assert (s3.s3_endpoint_url, s3.s3_access_key_id, s3.s3_secret_access_key, s3.s3_region_name) == (
        "http://127.0.0.1:9", "AKIA1", "s3cr3t", "eu-west-1")
    with pytest.raises(ConnectorError, match="--s3_endpoint_url on the command line differs from what connector 'lake'"):
        exports.apply(PipelineOptions(["--s3_endpoint_url=http://elsewhere:1"]), {})


# -- the probe, against real servers ----------------------------------------------------------
def _key_file(tmp_path, key_id, secret):
    path = tmp_path / f"key-{key_id[-4:]}-{len(secret)}.json"
    path.write_text(json.dumps({"AccessKey": {"AccessKeyId": key_id, "SecretAccessKey": secret}}))
    return str(path)


def _s3_exports(s3_server, bucket, key_file):
    return exports_for([{**LAKE, "bucket": bucket, "endpoint": s3_server.endpoint, "region": "us-east-1",
                         "credentials": {"file": key_file}}],
                       [{"output": "encrypted", "connector": "lake", "path_prefix": "shop/encrypted"}])


def _probe(exports, environ=None):
    options = PipelineOptions([])
    exports.apply(options, environ if environ is not None else {})
    return probe_exporters(exports.exporters, options)


def test_probe_writes_and_removes_its_file_on_s3(s3_server, tmp_path):
    bucket = s3_server.create_bucket(unique_name("probe"))
    paths = _probe(_s3_exports(s3_server, bucket, _key_file(tmp_path, s3_server.access_key_id,
                                                            s3_server.secret_access_key)))
    assert len(paths) == 1 and paths[0].startswith(f"s3://{bucket}/shop/encrypted/.strm_test_")
    assert paths[0].endswith(".jsonl")
    assert s3_server.objects(bucket) == {}


@pytest.mark.parametrize("which", ["wrong secret", "unknown key id"])
def test_probe_fails_fast_on_wrong_s3_credentials(s3_server, tmp_path, which):
    bucket = s3_server.create_bucket(unique_name("probe"))
    key_id, secret = ((s3_server.access_key_id, "wrong-secret-value") if which == "wrong secret"
                      else ("AKIAUNKNOWNUNKNOWN00", s3_server.secret_access_key))
    exports = _s3_exports(s3_server, bucket, _key_file(tmp_path, key_id, secret))
    started = time.monotonic()
    with pytest.raises(ConnectorError) as caught:
        _probe(exports)
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith(f"exporter 'encrypted-to-lake': connector 'lake' (s3, s3://{bucket}) cannot be written")
    assert ("SignatureDoesNotMatch" if which == "wrong secret" else "InvalidAccessKeyId") in message
    assert secret not in message
    assert s3_server.objects(bucket) == {}


def test_probe_on_the_gcs_emulator_and_a_missing_bucket(gcs_server, tmp_path, monkeypatch):
    bucket = gcs_server.create_bucket(unique_name("probe"))
    credentials = gcs_server.write_credentials_file(tmp_path)

    def exports(bucket_name):
        return exports_for([{"name": "wh", "kind": "gcs", "bucket": bucket_name, "endpoint": gcs_server.endpoint,
                             "credentials": {"file": credentials}}],
                           [{"output": "keys", "connector": "wh", "path_prefix": "keys"}])
    good = exports(bucket)
    environ = {}
    good.apply(PipelineOptions([]), environ)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert environ == {"STORAGE_EMULATOR_HOST": gcs_server.endpoint, "GOOGLE_APPLICATION_CREDENTIALS": credentials}
    assert _probe(good)[0].startswith(f"gs://{bucket}/keys/.strm_test_")
    assert gcs_server.objects(bucket) == {}
    with pytest.raises(ConnectorError, match=r"exporter 'keys-to-wh': connector 'wh' \(gcs, gs://no-such-bucket-1\) "
                                             r"cannot be written: .*404"):
        _probe(exports("no-such-bucket-1"))


def test_probe_on_azurite_and_a_wrong_key(azurite_server, tmp_path, monkeypatch):
    import base64
    container = azurite_server.create_container(unique_name("probe"))
    monkeypatch.setenv("BLOB_GOOD", azurite_server.connection_string())
    wrong_key = base64.b64encode(b"\x01" * 64).decode()
    monkeypatch.setenv("BLOB_WRONG", azurite_server.connection_string(wrong_key))

    def exports(variable):
        return exports_for([{"name": "blob", "kind": "azure", "account": azurite_server.account,
                             "container": container, "credentials": {"env": variable}}],
                           [{"output": "webshop-1", "connector": "blob", "path_prefix": "streams/webshop-1"}])
    assert _probe(exports("BLOB_GOOD"))[0].startswith(
        f"azfs://{azurite_server.account}/{container}/streams/webshop-1/.strm_test_")
    assert azurite_server.objects(container) == {}
    started = time.monotonic()
    with pytest.raises(ConnectorError) as caught:
        _probe(exports("BLOB_WRONG"))
    assert time.monotonic() - started < 10
    message = str(caught.value)
    assert message.startswith(f"exporter 'webshop-1-to-blob': connector 'blob' (azure, azfs://{azurite_server.account}/"
                              f"{container}) cannot be written")
    assert "AuthorizationFailure" in message or "authenticate" in message
    assert wrong_key not in message and azurite_server.account_key not in message


def test_probe_on_a_local_folder(tmp_path):
    exports = exports_for([{"name": "disk", "kind": "local", "path": str(tmp_path / "exports")}],
                          [{"output": "encrypted", "connector": "disk", "path_prefix": "enc"}])
    path = _probe(exports)[0]
    assert path.startswith(str(tmp_path / "exports" / "enc" / ".strm_test_"))
    assert (tmp_path / "exports" / "enc").is_dir() and list((tmp_path / "exports" / "enc").iterdir()) == []
