"""Deterministic AEAD in Google Tink's wire format: AES-256-SIV with a TINK output prefix.

    from privacy.daead import SivKey
    key = SivKey.generate()
    token = key.encrypt("alice@example.com")     # base64 text, same input -> same token
    key.decrypt(token)                           # 'alice@example.com'

Wire format: ``0x01 || key_id (4 bytes, big endian) || SIV (16) || ciphertext``, then standard
base64 with padding. Tink's "empty associated data" is ONE empty AD component, so we call
``AESSIV.encrypt(plaintext, [b""])``; ``None`` or ``[]`` would give incompatible ciphertexts.
Compatibility is tested against Google's ``tink`` package (tests/test_crypto.py).

A Tink keyset can hold several keys (rotation): ``SivKeyset`` (``privacy.keyset.key_from_keyset_json``)
encrypts with the primary key and decrypts with whichever key the ciphertext's prefix names
(``0x01 || key id`` for TINK keys, ``0x00 || key id`` for LEGACY and CRUNCHY), then tries the
keys without a prefix (RAW), as Tink's own primitive set does::

    keyset = SivKeyset([old_key, new_key], primary_id=new_key.key_id)
    keyset.decrypt(old_key.encrypt("alice"))    # 'alice'
"""
from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

TINK_PREFIX = 0x01
LEGACY_PREFIX = 0x00  # LEGACY and CRUNCHY output prefixes
KEY_SIZE = 64  # AES-256-SIV: two 256-bit keys
_EMPTY_AD = [b""]
PREFIX_TYPES = ("TINK", "LEGACY", "CRUNCHY", "RAW")


def output_prefix(prefix_type: str, key_id: int) -> bytes:
    """The bytes Tink puts before a ciphertext of a key with this output prefix type."""
    if prefix_type == "TINK":
        return bytes([TINK_PREFIX]) + key_id.to_bytes(4, "big")
    if prefix_type in ("LEGACY", "CRUNCHY"):
        return bytes([LEGACY_PREFIX]) + key_id.to_bytes(4, "big")
    if prefix_type == "RAW":
        return b""
    raise ValueError(f"output prefix type '{prefix_type}' is not one of {', '.join(PREFIX_TYPES)}")


class DecryptError(ValueError):
    """A token that is not ours, not for this key, or tampered with."""


def new_key_id() -> int:
    """A random, non-zero 32-bit key id, as Tink assigns them."""
    while True:
        key_id = secrets.randbits(32)
        if key_id:
            return key_id


@dataclass(frozen=True)
class SivKey:
    """One AES-SIV data key with its Tink key id (and output prefix type: ours are all TINK)."""

    key_id: int
    material: bytes = field(repr=False)
    prefix_type: str = "TINK"

    def __post_init__(self):
        if len(self.material) != KEY_SIZE:
            raise ValueError(f"an AES-SIV key has {KEY_SIZE} bytes, not {len(self.material)}")
        object.__setattr__(self, "_siv", AESSIV(self.material))
        object.__setattr__(self, "_prefix", output_prefix(self.prefix_type, self.key_id))

    @classmethod
    def of_checked(cls, key_id: int, material: bytes, prefix: bytes) -> "SivKey":
        """The key of a SivKey made before (its key id, material and ``prefix``), without the checks
        and prefix computation of the constructor: a key cache's way to rebuild an evicted key's
        OpenSSL state in microseconds (``privacy.keyring``). TINK output prefix only."""
        key = object.__new__(cls)
        # One update of the instance's dict: what the five frozen-dataclass assignments do, at half the cost.
        key.__dict__.update(key_id=key_id, material=material, prefix_type="TINK", _siv=AESSIV(material),
                            _prefix=prefix)
        return key

    @classmethod
    def generate(cls) -> "SivKey":
        raw = secrets.token_bytes(4 + KEY_SIZE)  # key id and key material from one read of the OS's CSPRNG
        return cls(int.from_bytes(raw[:4], "big") or new_key_id(), raw[4:])

    @property
    def prefix(self) -> bytes:
        return self._prefix

    def encrypt_bytes(self, plaintext: bytes) -> bytes:
        return self._prefix + self._siv.encrypt(plaintext, _EMPTY_AD)

    def decrypt_bytes(self, ciphertext: bytes) -> bytes:
        prefix = self._prefix
        if ciphertext[: len(prefix)] != prefix:
            raise DecryptError("ciphertext was not made with this key (key id differs)")
        try:
            return self._siv.decrypt(ciphertext[len(prefix):], _EMPTY_AD)
        except InvalidTag:
            raise DecryptError("ciphertext failed authentication") from None

    def encrypt(self, plaintext: str) -> str:
        sealed = self._prefix + self._siv.encrypt(plaintext.encode("utf-8"), _EMPTY_AD)
        return binascii.b2a_base64(sealed, newline=False).decode("ascii")  # = base64.b64encode

    def decrypt(self, token: str) -> str:
        return self.decrypt_bytes(_from_base64(token)).decode("utf-8")


def _from_base64(token: str) -> bytes:
    try:
        return binascii.a2b_base64(token, strict_mode=True)  # = base64.b64decode(validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise DecryptError("not a base64 ciphertext") from None


class SivKeyset:
    """The enabled AES-SIV keys of one Tink keyset, used as one key (see the module docstring)."""

    def __init__(self, keys, primary_id: int):
        self.keys = tuple(keys)
        primary = [key for key in self.keys if key.key_id == primary_id]
        if not primary:
            raise ValueError("the keyset has no enabled key with the primary key id")
        self.primary = primary[0]
        self._by_prefix: dict[bytes, list[SivKey]] = {}
        for key in self.keys:
            if key.prefix:
                self._by_prefix.setdefault(key.prefix, []).append(key)
        self._raw = [key for key in self.keys if not key.prefix]

    @property
    def key_id(self) -> int:
        return self.primary.key_id

    @property
    def prefix(self) -> bytes:
        return self.primary.prefix

    def encrypt_bytes(self, plaintext: bytes) -> bytes:
        return self.primary.encrypt_bytes(plaintext)

    def encrypt(self, plaintext: str) -> str:
        return self.primary.encrypt(plaintext)

    def decrypt_bytes(self, ciphertext: bytes) -> bytes:
        """With the keys whose prefix the ciphertext starts with, then the RAW keys (as Tink does)."""
        failed = False
        for key in self._by_prefix.get(bytes(ciphertext[:5]), []) + self._raw:
            try:
                return key.decrypt_bytes(ciphertext)
            except DecryptError:
                failed = True
        if failed:
            raise DecryptError("ciphertext failed authentication with every matching key of the keyset")
        raise DecryptError("ciphertext was not made with a key of this keyset (no key id matches)")

    def decrypt(self, token: str) -> str:
        return self.decrypt_bytes(_from_base64(token)).decode("utf-8")


def key_id_of(token: str) -> int | None:
    """The Tink key id a token was made with, or None if it is not a Tink-prefixed token."""
    try:
        raw = base64.b64decode(token[:8] + "==", validate=False)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 5 or raw[0] != TINK_PREFIX:
        return None
    return int.from_bytes(raw[1:5], "big")
