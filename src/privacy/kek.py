"""Key-encryption keys (KEKs): data keys are stored and exported only wrapped by one.

A KEK is chosen by URI, as KMS drivers are in Tink and the Confluent schema registry::

    from privacy.kek import kek_from_uri, prepare_kek
    prepare_kek("local://out/kek.json")            # the pipeline's launcher: create it if absent, 0600
    kek = kek_from_uri("local://out/kek.json")     # everyone else: open it; KekError if it is not there
    wrapped = kek.wrap(material, associated_data=b"<keyLink>")
    kek.unwrap(wrapped, associated_data=b"<keyLink>")

``local://PATH`` keeps an AES-256-GCM key as a Tink JSON keyset; a wrapped key is Tink's AEAD
wire format (``0x01 || key id || 12-byte IV || ciphertext || tag``), so Google's ``tink`` can
unwrap it with that keyset too. A keyset with more keys (rotated with Tink's keyset manager)
wraps with its primary key and unwraps with whichever key the wrapped key names. The associated
data binds a wrapped key to its keyLink: a wrapped key copied onto another key's row does not
unwrap. More drivers register themselves in ``KEK_DRIVERS`` under their URI scheme.

Reading a KEK never creates one: a typo in ``--kek`` must fail ("KEK file not found"), not make
a new key under which nothing unwraps (or, on a worker, under which new keys get wrapped that no
one else can read). Only the pipeline's launcher creates a local KEK, on the first run into an
output (``prepare_kek``, called while the graph is built), so every worker process opens the same one.
"""
from __future__ import annotations

import importlib
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Callable, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from privacy.daead import new_key_id
from privacy.keyset import key_proto, keyset_keys, tink_keyset_dict
from privacy.private_files import private_dirs

AES_GCM_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesGcmKey"


class KekError(RuntimeError):
    """A KEK that cannot be opened, or a wrapped key that does not unwrap."""


class Kek(Protocol):
    uri: str

    def wrap(self, plaintext: bytes, associated_data: bytes) -> bytes: ...

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes: ...


class LocalKek:
    """A KEK kept in a local Tink JSON keyset file; ``LocalKek(path)`` opens an existing one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.uri = f"local://{self.path}"
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            raise KekError(f"KEK file not found: {self.path} (a run creates it under its output; "
                           "give the --kek the run used)") from None
        except OSError as exc:
            raise KekError(f"KEK file {self.path} cannot be read: {exc.strerror}") from None
        try:
            primary, keys = keyset_keys(json.loads(text), AES_GCM_TYPE_URL, 3)
        except (ValueError, KeyError, TypeError) as exc:
            raise KekError(f"KEK file {self.path} is not an AES-GCM Tink keyset: {exc}") from None
        self._keys = [(key.prefix, AESGCM(key.material)) for key in keys]
        self.key_id = primary
        self._prefix, self._aead = self._keys[[key.key_id for key in keys].index(primary)]

    @classmethod
    def create(cls, path: str | Path) -> "LocalKek":
        """Create a new KEK file (mode 0600, written whole, then linked into place), or open the
        one that is already there (another process may have made it first)."""
        path = Path(path)
        if not path.exists():
            private_dirs(path.parent)
            key_id, key = new_key_id(), secrets.token_bytes(32)
            text = json.dumps(tink_keyset_dict(AES_GCM_TYPE_URL, key_id, key_proto(key, 3)))
            fd, temp = tempfile.mkstemp(prefix=".kek-", dir=path.parent)  # 0600
            try:
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                try:
                    os.link(temp, path)  # atomic, and never replaces a KEK another process made
                except FileExistsError:
                    pass
            finally:
                os.unlink(temp)
        return cls(path)

    def wrap(self, plaintext: bytes, associated_data: bytes) -> bytes:
        iv = secrets.token_bytes(12)
        return self._prefix + iv + self._aead.encrypt(iv, plaintext, associated_data)

    def unwrap(self, wrapped: bytes, associated_data: bytes) -> bytes:
        matching = [(prefix, aead) for prefix, aead in self._keys if wrapped[: len(prefix)] == prefix]
        if not matching:
            raise KekError(f"wrapped key was not made with the KEK {self.uri}")
        for prefix, aead in matching:
            body = wrapped[len(prefix):]
            try:
                return aead.decrypt(body[:12], body[12:], associated_data)
            except InvalidTag:
                continue
        raise KekError(f"wrapped key does not unwrap with the KEK {self.uri}")


KEK_DRIVERS: dict[str, Callable[[str], Kek]] = {
    "local": lambda rest: LocalKek(rest),
}
# Drivers that live in other modules (and need cloud clients) register themselves on import.
DRIVER_MODULES = {"aws-kms": "privacy.kms", "gcp-kms": "privacy.kms"}


def prepare_kek(uri: str) -> None:
    """Create the local KEK a run will use if it does not exist yet (the launcher, once per run).

    KMS KEKs are made in the KMS, never here; for them this does nothing.
    """
    scheme, sep, rest = uri.partition("://")
    if sep and scheme == "local":
        LocalKek.create(rest)


def kek_from_uri(uri: str) -> Kek:
    """Open the KEK a URI names: ``local://path``, ``aws-kms://arn...``, ``gcp-kms://projects/...``.

    Never creates one: a local path that does not exist is a KekError ("KEK file not found").
    """
    scheme, sep, rest = uri.partition("://")
    if sep and scheme not in KEK_DRIVERS and scheme in DRIVER_MODULES:
        importlib.import_module(DRIVER_MODULES[scheme])
    if not sep or scheme not in KEK_DRIVERS:
        known = ", ".join(f"{s}://" for s in KEK_DRIVERS)
        raise KekError(f"unknown KEK URI '{uri}': use one of {known}")
    return KEK_DRIVERS[scheme](rest)
