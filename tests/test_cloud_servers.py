"""The local cloud servers work with Beam's own file systems, configured only by Beam's options.

Each test writes a few lines with ``WriteToText`` to s3://, gs:// or azfs:// and reads the object
back with the cloud's own client. Nothing is patched: Beam's S3 file system is pointed at moto by
``--s3_endpoint_url``, its GCS file system at the emulator by ``STORAGE_EMULATOR_HOST``, and its
Azure file system at Azurite by ``--azure_connection_string``.
"""
from __future__ import annotations

import apache_beam as beam
import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.testing.test_pipeline import TestPipeline

from cloud_servers import unique_name

LINES = ["first line", "second line", "third line"]


def write_lines(prefix: str, flags: list[str]) -> None:
    with TestPipeline(runner="FnApiRunner", options=PipelineOptions(flags)) as p:
        _ = p | beam.Create(LINES) | beam.io.WriteToText(prefix, file_name_suffix=".txt", num_shards=1)


def only_text(objects: dict[str, bytes]) -> list[str]:
    assert len(objects) == 1, sorted(objects)
    return sorted(next(iter(objects.values())).decode().splitlines())


def test_beam_writes_to_moto_s3(s3_server):
    bucket = s3_server.create_bucket(unique_name("smoke"))
    write_lines(f"s3://{bucket}/smoke/lines", s3_server.beam_flags())
    objects = s3_server.objects(bucket)
    assert list(objects) == ["smoke/lines-00000-of-00001.txt"]
    assert only_text(objects) == sorted(LINES)


def test_moto_rejects_a_wrong_secret(s3_server):
    bucket = s3_server.create_bucket(unique_name("smoke"))
    FileSystems.set_options(PipelineOptions(s3_server.beam_flags(secret="not-the-secret")))
    with pytest.raises(Exception, match="SignatureDoesNotMatch"):
        handle = FileSystems.create(f"s3://{bucket}/x.txt")
        handle.write(b"x\n")
        handle.close()
    assert s3_server.objects(bucket) == {}


def test_beam_writes_to_the_gcs_emulator(gcs_server, tmp_path, monkeypatch):
    for name, value in gcs_server.beam_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    bucket = gcs_server.create_bucket(unique_name("smoke"))
    write_lines(f"gs://{bucket}/smoke/lines", ["--project=demo-project"])
    objects = gcs_server.objects(bucket)
    assert list(objects) == ["smoke/lines-00000-of-00001.txt"]
    assert only_text(objects) == sorted(LINES)


def test_beam_writes_to_azurite(azurite_server):
    container = azurite_server.create_container(unique_name("smoke"))
    uri = f"azfs://{azurite_server.account}/{container}/smoke/lines"
    write_lines(uri, [f"--azure_connection_string={azurite_server.connection_string()}"])
    objects = azurite_server.objects(container)
    assert list(objects) == ["smoke/lines-00000-of-00001.txt"]
    assert only_text(objects) == sorted(LINES)


def test_azurite_rejects_a_wrong_key(azurite_server):
    import base64
    container = azurite_server.create_container(unique_name("smoke"))
    wrong = base64.b64encode(b"\x00" * 64).decode()
    FileSystems.set_options(PipelineOptions([f"--azure_connection_string={azurite_server.connection_string(wrong)}"]))
    with pytest.raises(Exception, match="AuthorizationFailure|failed to authenticate"):
        handle = FileSystems.create(f"azfs://{azurite_server.account}/{container}/x.txt")
        handle.write(b"x\n")
        handle.close()
    assert azurite_server.objects(container) == {}
