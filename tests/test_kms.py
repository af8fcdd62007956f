"""Cloud KMS KEKs: aws-kms:// against moto's KMS server, gcp-kms:// against a local Cloud KMS REST server.

Both must read and write Google Tink's KmsEnvelopeAead format (checked with ``tink`` itself).
"""
from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time

import boto3
import pytest
from tink import aead
from tink.integration import awskms
from tink.integration.gcpkms import _gcp_kms_client as tink_gcp

from fake_gcp_kms import FakeGcpKms
from privacy.kek import KekError, kek_from_uri
from privacy.keyring import KeyRing
from privacy.keyset import material_from_proto
from privacy.keystore import open_key_store
from privacy.kms import MAX_WRAPS_PER_DEK, gcp_kms_client

aead.register()
GCP_KEY = "projects/acme/locations/europe-west4/keyRings/pstream/cryptoKeys/kek"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def moto_endpoint():
    """moto's server (``moto_server``) in its own process, on a free port."""
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.time() > deadline or server.poll() is not None:
                server.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture
def aws_key(moto_endpoint, monkeypatch):
    """A fresh KMS key in moto; boto3 clients made in this test talk to moto."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_KMS", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    client = boto3.client("kms", region_name="eu-west-1")
    return client, client.create_key(Description="pstream test KEK")["KeyMetadata"]["Arn"]


def test_aws_kms_kek_wraps_with_one_kms_call_and_another_process_unwraps(aws_key):
    client, arn = aws_key
    kek = kek_from_uri(f"aws-kms://{arn}")
    materials = [os.urandom(64) for _ in range(200)]
    wrapped = [kek.wrap(m, f"link-{i}".encode()) for i, m in enumerate(materials)]
    assert kek.remote_calls == 1  # one DEK encrypted by KMS, then local AES-GCM
    reader = kek_from_uri(f"aws-kms://{arn}")  # as a fresh worker would
    assert [reader.unwrap(w, f"link-{i}".encode()) for i, w in enumerate(wrapped)] == materials
    assert reader.remote_calls == 1  # the DEK is decrypted once, then cached
    with pytest.raises(KekError, match="does not unwrap"):
        reader.unwrap(wrapped[0], b"link-1")  # bound to its keyLink
    other_arn = client.create_key()["KeyMetadata"]["Arn"]
    with pytest.raises(KekError, match="KMS decrypt .* failed"):
        kek_from_uri(f"aws-kms://{other_arn}").unwrap(wrapped[0], b"link-0")  # another KMS key cannot open it


def test_aws_kms_kek_speaks_tinks_kms_envelope_format(aws_key):
    client, arn = aws_key
    tink_envelope = aead.KmsEnvelopeAead(
        aead.aead_key_templates.AES256_GCM,
        awskms.new_client(boto3_client=client, key_uri=f"aws-kms://{arn}").get_aead(f"aws-kms://{arn}"))
    kek = kek_from_uri(f"aws-kms://{arn}")
    material = os.urandom(64)
    assert tink_envelope.decrypt(kek.wrap(material, b"link-x"), b"link-x") == material
    assert kek.unwrap(tink_envelope.encrypt(material, b"link-y"), b"link-y") == material


def test_aws_kms_key_ring_stores_only_wrapped_keys(aws_key, tmp_path):
    client, arn = aws_key
    ring = KeyRing(open_key_store(tmp_path / "keystore.sqlite"), kek_from_uri(f"aws-kms://{arn}"))
    keys, created = ring.keys_for({(f"user-{i}", "2024-03-01"): {f"user-{i}"} for i in range(20)})
    assert created and all(r.kek_uri == f"aws-kms://{arn}" for r in created)
    wrapped = created[0].wrapped_key
    encrypted_dek = wrapped[4 : 4 + int.from_bytes(wrapped[:4], "big")]
    dek = material_from_proto(client.decrypt(CiphertextBlob=encrypted_dek)["Plaintext"], 3)
    secrets_ = [key.material for _, key in keys.values()] + [dek]
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    for secret in secrets_:
        assert secret not in on_disk and base64.b64encode(secret) not in on_disk
    fresh = KeyRing(open_key_store(tmp_path / "keystore.sqlite"), kek_from_uri(f"aws-kms://{arn}"))
    link, key = keys[("user-3", "2024-03-01")]
    assert fresh.key_for_link(link) == key


def test_aws_kms_uri_must_be_a_key_arn():
    with pytest.raises(KekError, match="not an AWS KMS key ARN"):
        kek_from_uri("aws-kms://my-key")


@pytest.fixture
def gcp_kms(monkeypatch):
    with FakeGcpKms() as kms:
        monkeypatch.setenv("PSTREAM_GCP_KMS_ENDPOINT", kms.endpoint)
        yield kms


def test_gcp_kms_kek_request_shape_and_round_trip(gcp_kms):
    import google_crc32c

    kek = kek_from_uri(f"gcp-kms://{GCP_KEY}")
    materials = [os.urandom(64) for _ in range(50)]
    wrapped = [kek.wrap(m, f"link-{i}".encode()) for i, m in enumerate(materials)]
    assert len(gcp_kms.requests) == 1
    method, path, body = gcp_kms.requests[0]
    assert (method, path.split("?")[0]) == ("POST", f"/v1/{GCP_KEY}:encrypt")
    sent = base64.b64decode(body["plaintext"])
    assert len(material_from_proto(sent, 3)) == 32  # the DEK as Tink's AesGcmKey proto, never a data key
    assert body["plaintextCrc32c"] == str(google_crc32c.value(sent))
    assert body.get("additionalAuthenticatedData", "") == ""  # Tink's envelope: empty AD at the KMS
    assert not any(base64.b64encode(m).decode() in str(body) for m in materials)

    reader = kek_from_uri(f"gcp-kms://{GCP_KEY}")
    assert [reader.unwrap(w, f"link-{i}".encode()) for i, w in enumerate(wrapped)] == materials
    method, path, body = gcp_kms.requests[1]
    assert path.split("?")[0] == f"/v1/{GCP_KEY}:decrypt" and len(gcp_kms.requests) == 2
    assert body["ciphertextCrc32c"] == str(google_crc32c.value(base64.b64decode(body["ciphertext"])))

    tink_envelope = aead.KmsEnvelopeAead(aead.aead_key_templates.AES256_GCM,
                                         tink_gcp._GcpKmsAead(gcp_kms_client(), GCP_KEY))  # noqa: SLF001
    assert tink_envelope.decrypt(wrapped[3], b"link-3") == materials[3]
    assert reader.unwrap(tink_envelope.encrypt(materials[4], b"link-4"), b"link-4") == materials[4]


def test_gcp_kms_kek_refuses_a_response_that_fails_its_checksum(gcp_kms):
    gcp_kms.fail_checksums = True
    with pytest.raises(KekError, match="failed its checksum"):
        kek_from_uri(f"gcp-kms://{GCP_KEY}").wrap(os.urandom(64), b"link")


def test_gcp_kms_uri_must_name_a_crypto_key():
    with pytest.raises(KekError, match="not a Cloud KMS key name"):
        kek_from_uri("gcp-kms://projects/p/locations/l/keyRings/r")


def test_a_new_dek_after_max_wraps(aws_key, monkeypatch):
    import privacy.kms as kms

    _, arn = aws_key
    monkeypatch.setattr(kms, "MAX_WRAPS_PER_DEK", 3)
    kek = kek_from_uri(f"aws-kms://{arn}")
    wrapped = [kek.wrap(b"k" * 64, b"l") for _ in range(7)]
    assert kek.remote_calls == 3 and len({w[: 4 + int.from_bytes(w[:4], "big")] for w in wrapped}) == 3
    assert MAX_WRAPS_PER_DEK == 1 << 20
