"""Deterministic AEAD in Google Tink's wire format: AES-256-SIV with a TINK output prefix.

    from privacy.daead import SivKey
    key = SivKey.generate()
    token = key.encrypt("alice@example.com")     # base64 text, same input -> same token
    key.decrypt(token)                           # 'alice@example.com'

Wire format: ``0x01 || key_id (4 bytes, big endian) || SIV (16) || ciphertext``, then standard
base64 with padding. Tink's "empty associated data" is ONE empty AD component, so we call
``AESSIV.encrypt(plaintext, [b""])``; ``None`` or ``[]`` would give incompatible ciphertexts.
Compatibility is tested against Google's ``tink`` package (tests/test_tink_interop.py).
"""
from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

TINK_PREFIX = 0x01
KEY_SIZE = 64  # AES-256-SIV: two 256-bit keys
_EMPTY_AD = [b""]


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
    """One AES-SIV data key with its Tink key id."""

    key_id: int
    material: bytes = field(repr=False)

    def __post_init__(self):
        if len(self.material) != KEY_SIZE:
            raise ValueError(f"an AES-SIV key has {KEY_SIZE} bytes, not {len(self.material)}")
        object.__setattr__(self, "_siv", AESSIV(self.material))
        object.__setattr__(self, "_prefix", bytes([TINK_PREFIX]) + self.key_id.to_bytes(4, "big"))

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
        if ciphertext[:5] != self._prefix:
            raise DecryptError("ciphertext was not made with this key (key id differs)")
        try:
            return self._siv.decrypt(ciphertext[5:], _EMPTY_AD)
        except InvalidTag:
            raise DecryptError("ciphertext failed authentication") from None

    def encrypt(self, plaintext: str) -> str:
        sealed = self._prefix + self._siv.encrypt(plaintext.encode("utf-8"), _EMPTY_AD)
        return binascii.b2a_base64(sealed, newline=False).decode("ascii")  # = base64.b64encode

    def decrypt(self, token: str) -> str:
        try:
            raw = binascii.a2b_base64(token, strict_mode=True)  # = base64.b64decode(validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise DecryptError("not a base64 ciphertext") from None
        return self.decrypt_bytes(raw).decode("utf-8")


def key_id_of(token: str) -> int | None:
    """The Tink key id a token was made with, or None if it is not a Tink-prefixed token."""
    try:
        raw = base64.b64decode(token[:8] + "==", validate=False)
    except (binascii.Error, ValueError):
        return None
    if len(raw) < 5 or raw[0] != TINK_PREFIX:
        return None
    return int.from_bytes(raw[1:5], "big")
