"""Key-encryption keys (KEKs): data keys are stored and exported only wrapped by one.

A KEK is chosen by URI, as KMS drivers are in Tink and the Confluent schema registry::

    from privacy.kek import kek_from_uri
    kek = kek_from_uri("local://out/kek.json")     # created on first use, mode 0600
    wrapped = kek.wrap(material, associated_data=b"<keyLink>")
    kek.unwrap(wrapped, associated_data=b"<keyLink>")

``local://PATH`` keeps an AES-256-GCM key as a Tink JSON keyset; a wrapped key is Tink's AEAD
wire format (``0x01 || key id || 12-byte IV || ciphertext || tag``), so Google's ``tink`` can
unwrap it with that keyset too. The associated data binds a wrapped key to its keyLink: a
wrapped key copied onto another key's row does not unwrap. More drivers register themselves in
``KEK_DRIVERS`` under their URI scheme.
"""
from __future__ import annotations

import importlib
import json
import os
import secrets
from pathlib import Path
from typing import Callable, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.daead import new_key_id
from privacy.keyset import key_proto, primary_key_material, tink_keyset_dict

AES_GCM_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmKey"


class KekError(RuntimeError):
    """A KEK that cannot be opened, or a wrapped key that does not unwrap."""


class Kek(Protocol):
    uri: str

    def wrap(self, plaintext: bytes, associated_data: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes: ...


class LocalKek:
    """A KEK kept in a local Tink JSON keyset file (created on first use, mode 0600)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.uri = f"local://{self.path}"
        self.key_id, key = self._load_or_create()
        self._aead = AESGCM(key)
        self._prefix = b"\x01" + self.key_id.to_bytes(4, "big")

    def _load_or_create(self) -> tuple[int, bytes]:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            key_id, key = new_key_id(), secrets.token_bytes(32)
            text = json.dumps(tink_keyset_dict(AES_GCM_TYPE_URL, key_id, key_proto(key, 3)))
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process created it first: use theirs
            else:
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                return key_id, key
        try:
            return primary_key_material(json.loads(self.path.read_text()), AES_GCM_TYPE_URL, 3)
        except (OSError, ValueError, KeyError) as exc:
            raise KekError(f"KEK file {self.path} cannot be read: {exc}") from None

    def wrap(self, plaintext: bytes, associated_data: bytes) -> bytes:
        iv = secrets.token_bytes(12)
        return self._prefix + iv + self._aead.encrypt(iv, plaintext, associated_data)

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes:
        if wrapped[:5] != self._prefix:
            raise KekError(f"wrapped key was not made with the KEK {self.uri}")
        try:
            return self._aead.decrypt(wrapped[5:17], wrapped[17:], associated_data)
        except InvalidTag:
            raise KekError(f"wrapped key does not unwrap with the KEK {self.uri}") from None


KEK_DRIVERS: dict[str, Callable[[str], Kek]] = {
    "local": lambda rest: LocalKek(rest),
}
# Drivers that live in other modules (and need cloud clients) register themselves on import.
DRIVER_MODULES = {"aws-kms": "privacy.kms", "gcp-kms": "privacy.kms"}


def kek_from_uri(uri: str) -> Kek:
    """Open the KEK a URI names: ``local://path``, ``aws-kms://arn...``, ``gcp-kms://projects/...``."""
    scheme, sep, rest = uri.partition("://")
    if sep and scheme not in KEK_DRIVERS and scheme in DRIVER_MODULES:
        importlib.import_module(DRIVER_MODULES[scheme])
    if not sep or scheme not in KEK_DRIVERS:
        known = ", ".join(f"{s}://" for s in KEK_DRIVERS)
        raise KekError(f"unknown KEK URI '{uri}': use one of {known}")
    return KEK_DRIVERS[scheme](rest)
