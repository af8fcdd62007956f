"""Cloud KMS key-encryption keys: ``aws-kms://`` and ``gcp-kms://`` by envelope encryption.

    from privacy.kek import kek_from_uri
    kek = kek_from_uri("aws-kms://arn:aws:kms:eu-west-1:111122223333:key/1234abcd-...")
    kek = kek_from_uri("gcp-kms://projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k")
    wrapped = kek.wrap(material, associated_data=b"<keyLink>")   # no KMS call after the first
    kek.unwrap(wrapped, associated_data=b"<keyLink>")

Importing this module registers both schemes in ``privacy.kek.KEK_DRIVERS`` (``kek_from_uri``
imports it on first use of either scheme).

Envelope: each KEK object asks the KMS once to encrypt a fresh AES-256-GCM data-encryption key
(DEK) and wraps every data key locally with that DEK, the keyLink as associated data. A wrapped
key is Tink's ``KmsEnvelopeAead`` format, so Google's ``tink`` reads it with the same KMS key::

    len(encrypted DEK) (4 bytes, big endian) || encrypted DEK || IV (12) || ciphertext || tag

where the KMS encrypted the DEK's ``AesGcmKey`` proto with empty associated data. Unwrapping
asks the KMS to decrypt each distinct DEK once per process (cached), so a worker makes a
handful of KMS calls per run, not one per key. A DEK is replaced after ``MAX_WRAPS_PER_DEK``
wraps. Plaintext DEKs live only in memory.

Endpoints and credentials come from the clients' usual configuration: boto3's credential chain
and region (from the key ARN), ``AWS_ENDPOINT_URL_KMS`` or ``AWS_ENDPOINT_URL`` for another
endpoint (moto in the tests); Google's application default credentials, and
``PSTREAM_GCP_KMS_ENDPOINT`` for another endpoint (an ``http://`` endpoint is a local emulator:
REST transport, anonymous credentials). GCP requests carry CRC32C checksums both ways, as
Google recommends, and a response that fails them is refused.
"""
from __future__ import annotations

import os
import re
import secrets
import struct
import threading
from collections import OrderedDict
from typing import Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.kek import KEK_DRIVERS, KekError
from privacy.keyset import key_proto, material_from_proto

MAX_WRAPS_PER_DEK = 1 << 20  # far below AES-GCM's 2**32 random-IV bound
_DEK_CACHE_SIZE = 4096
_MAX_ENCRYPTED_DEK = 4096  # as Tink's KmsEnvelopeAead
GCP_ENDPOINT_ENV = "PSTREAM_GCP_KMS_ENDPOINT"

AWS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:([a-z0-9-]+):\d{12}:(key|alias)/[A-Za-z0-9/_+=.@-]+$")
GCP_KEY_NAME = re.compile(
    r"^projects/[^/]+/locations/[a-zA-Z0-9_-]{1,63}/keyRings/[a-zA-Z0-9_-]{1,63}/cryptoKeys/[a-zA-Z0-9_-]{1,63}$"
)


class RemoteAead(Protocol):
    """A KMS key: encrypts and decrypts small blobs remotely."""

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes: ...

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes: ...


class EnvelopeKek:
    """A KEK whose data-encryption keys are wrapped by a remote KMS key (see the module docstring)."""

    def __init__(self, uri: str, remote: RemoteAead):
        self.uri = uri
        self.remote = remote
        self._lock = threading.Lock()
        self._dek: tuple[bytes, AESGCM] | None = None  # (length-prefixed encrypted DEK, cipher)
        self._wraps = 0
        self._opened: OrderedDict[bytes, AESGCM] = OrderedDict()
        self.remote_calls = 0  # KMS round trips made by this object (for tests and benchmarks)

    def _current_dek(self) -> tuple[bytes, AESGCM]:
        with self._lock:
            if self._dek is None or self._wraps >= MAX_WRAPS_PER_DEK:
                dek = secrets.token_bytes(32)
                encrypted = self._remote("encrypt", key_proto(dek, 3))
                if len(encrypted) > _MAX_ENCRYPTED_DEK:
                    raise KekError(f"the KMS of {self.uri} returned an encrypted DEK that is too long")
                header = struct.pack(">I", len(encrypted)) + encrypted
                self._dek, self._wraps = (header, AESGCM(dek)), 0
                self._remember(encrypted, self._dek[1])
            self._wraps += 1
            return self._dek

    def _remote(self, operation: str, data: bytes) -> bytes:
        self.remote_calls += 1
        try:
            return getattr(self.remote, operation)(data, b"")
        except KekError:
            raise
        except Exception as exc:  # the clients' own error types; their messages hold no key material
            raise KekError(f"KMS {operation} with {self.uri} failed: {type(exc).__name__}: {exc}") from None

    def _remember(self, encrypted: bytes, cipher: AESGCM) -> None:
        self._opened[encrypted] = cipher
        self._opened.move_to_end(encrypted)
        while len(self._opened) > _DEK_CACHE_SIZE:
            self._opened.popitem(last=False)

    def wrap(self, plaintext: bytes, associated_data: bytes) -> bytes:
        header, cipher = self._current_dek()
        iv = secrets.token_bytes(12)
        return header + iv + cipher.encrypt(iv, plaintext, associated_data)

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes:
        if len(wrapped) < 4:
            raise KekError(f"wrapped key is not in the envelope format of {self.uri}")
        (length,) = struct.unpack(">I", wrapped[:4])
        if length > _MAX_ENCRYPTED_DEK or len(wrapped) < 4 + length + 12 + 16:
            raise KekError(f"wrapped key is not in the envelope format of {self.uri}")
        encrypted, payload = wrapped[4 : 4 + length], wrapped[4 + length :]
        with self._lock:
            cipher = self._opened.get(encrypted)
            if cipher is None:
                proto = self._remote("decrypt", encrypted)
                try:
                    cipher = AESGCM(material_from_proto(proto, 3))
                except ValueError:
                    raise KekError(f"the KMS of {self.uri} returned a DEK that is not an AES-GCM key") from None
            self._remember(encrypted, cipher)
        try:
            return cipher.decrypt(payload[:12], payload[12:], associated_data)
        except InvalidTag:
            raise KekError(f"wrapped key does not unwrap with the KEK {self.uri}") from None


class AwsKmsAead:
    """An AWS KMS key as a RemoteAead (associated data as Tink puts it in the encryption context)."""

    def __init__(self, key_arn: str, client=None):
        match = AWS_KEY_ARN.match(key_arn)
        if not match:
            raise KekError(f"'{key_arn}' is not an AWS KMS key ARN (arn:aws:kms:<region>:<account>:key/<id>)")
        if client is None:
            import boto3  # installed with apache-beam[aws]

            client = boto3.client("kms", region_name=match.group(1))
        self.key_arn = key_arn
        self.client = client

    @staticmethod
    def _context(associated_data: bytes) -> dict:
        return {"associatedData": associated_data.hex()} if associated_data else {}

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        response = self.client.encrypt(KeyId=self.key_arn, Plaintext=plaintext,
                                       EncryptionContext=self._context(associated_data))
        return response["CiphertextBlob"]

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        response = self.client.decrypt(KeyId=self.key_arn, CiphertextBlob=ciphertext,
                                       EncryptionContext=self._context(associated_data))
        return response["Plaintext"]


def _crc32c(data: bytes) -> int:
    import google_crc32c  # installed with google-cloud-kms

    return google_crc32c.value(data)


def gcp_kms_client(endpoint: str | None = None):
    """A Cloud KMS client; ``endpoint`` (or $PSTREAM_GCP_KMS_ENDPOINT) overrides Google's."""
    from google.cloud import kms_v1

    endpoint = endpoint or os.environ.get(GCP_ENDPOINT_ENV)
    if not endpoint:
        return kms_v1.KeyManagementServiceClient()
    if endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        return kms_v1.KeyManagementServiceClient(
            transport="rest", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint})
    return kms_v1.KeyManagementServiceClient(client_options={"api_endpoint": endpoint})


class GcpKmsAead:
    """A Cloud KMS CryptoKey as a RemoteAead, with CRC32C integrity checks on every call."""

    def __init__(self, key_name: str, client=None):
        if not GCP_KEY_NAME.match(key_name):
            raise KekError(f"'{key_name}' is not a Cloud KMS key name "
                           "(projects/<p>/locations/<l>/keyRings/<r>/cryptoKeys/<k>)")
        self.key_name = key_name
        self.client = client if client is not None else gcp_kms_client()

    def encrypt(self, plaintext: bytes, associated_data: bytes) -> bytes:
        response = self.client.encrypt(request={
            "name": self.key_name,
            "plaintext": plaintext,
            "additional_authenticated_data": associated_data,
            "plaintext_crc32c": _crc32c(plaintext),
            "additional_authenticated_data_crc32c": _crc32c(associated_data),
        })
        if not response.verified_plaintext_crc32c or not response.verified_additional_authenticated_data_crc32c:
            raise KekError(f"Cloud KMS did not verify the request checksums for {self.key_name}")
        if response.ciphertext_crc32c != _crc32c(response.ciphertext):
            raise KekError(f"Cloud KMS response for {self.key_name} failed its checksum")
        return response.ciphertext

    def decrypt(self, ciphertext: bytes, associated_data: bytes) -> bytes:
        response = self.client.decrypt(request={
            "name": self.key_name,
            "ciphertext": ciphertext,
            "additional_authenticated_data": associated_data,
            "ciphertext_crc32c": _crc32c(ciphertext),
            "additional_authenticated_data_crc32c": _crc32c(associated_data),
        })
        if response.plaintext_crc32c != _crc32c(response.plaintext):
            raise KekError(f"Cloud KMS response for {self.key_name} failed its checksum")
        return response.plaintext


def aws_kms_kek(rest: str, client=None) -> EnvelopeKek:
    return EnvelopeKek(f"aws-kms://{rest}", AwsKmsAead(rest, client))


def gcp_kms_kek(rest: str, client=None) -> EnvelopeKek:
    return EnvelopeKek(f"gcp-kms://{rest}", GcpKmsAead(rest, client))


KEK_DRIVERS["aws-kms"] = aws_kms_kek
KEK_DRIVERS["gcp-kms"] = gcp_kms_kek
