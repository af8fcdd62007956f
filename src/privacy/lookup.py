"""Keyed hashes of identifiers, and the key store's own keys (the look-up key, masking keys).

The key store and the pipeline's ``keys/`` rows never hold a key-field value or a data-subject
id: they hold HMAC-SHA-256 hashes of them under the store's **look-up key**::

    from privacy.lookup import lookup_key
    ids = lookup_key(store, kek)          # the store's look-up key, unwrapped (made on first use)
    ids.value_hash("477049")              # 64 lowercase hex characters: what data_keys holds
    ids.value_hash("477049", "marketing") # the same value's hash for keys of a retention policy
    ids.subject_hash("477049")            # another hash of the same text: what key_subjects holds
    ids.subject_hashes(["477049", "a"])   # {"477049": "...", "a": "..."}

A key-field value and a subject id are hashed under different labels (domain separation), so
the two columns cannot be joined even where one field is both (the web shop's ``userId``).
Keys of a retention policy (``privacy.policies``) hash the value with the policy's id under a
label of their own, so one value and day has one key per policy: events whose contracts keep
data for different times never share a key, and purging one policy's keys leaves the others'.
Without the look-up key the hashes say nothing: brute force over an id space needs the key,
and the key is stored only wrapped by the KEK, like the data keys.

Store keys: each store holds a few keys of its own, made once per store, 32 random bytes wrapped
by the KEK with associated data ``pstream store key <name>`` (so a wrapped key copied onto
another name does not unwrap): ``lookup`` (the look-up key) and ``mask/<stream>`` (a privacy
stream's masking key, ``privacy.masking``). Backends keep them in their ``store_keys`` table and
call ``new_store_key`` / ``open_store_key`` here; callers use ``store.store_key(name, kek)``.
"""
from __future__ import annotations

import hmac
import secrets
from typing import Iterable

from privacy.kek import KekError

LOOKUP_KEY = "lookup"
STORE_KEY_BYTES = 32
_VALUE_LABEL = b"pstream key-field value\x00"
_SUBJECT_LABEL = b"pstream data subject\x00"
_POLICY_VALUE_LABEL = b"pstream key-field value of policy\x00"  # then the policy id, 0, the value
HASH_HEX_CHARS = 64


def _utf8(text) -> bytes:
    """UTF-8 of an identifier's text; lone surrogates (JSON allows them) are kept, never an error."""
    return (text if isinstance(text, str) else str(text)).encode("utf-8", "surrogatepass")


class LookupKey:
    """HMAC-SHA-256 under one store's look-up key (see the module docstring)."""

    __slots__ = ("_value", "_subject", "_policy_value")

    def __init__(self, material: bytes):
        if len(material) < 16:
            raise ValueError("a look-up key has at least 16 bytes")
        # Keyed once, with the label already absorbed; each hash copies the state (cheaper than re-keying).
        self._value = hmac.new(bytes(material), _VALUE_LABEL, "sha256")
        self._subject = hmac.new(bytes(material), _SUBJECT_LABEL, "sha256")
        self._policy_value = hmac.new(bytes(material), _POLICY_VALUE_LABEL, "sha256")

    def __repr__(self) -> str:
        return "LookupKey(...)"

    def value_hash(self, value, policy_id: str = "") -> str:
        """The hash of a key-field value, as ``data_keys.value_hash`` and ``keyFieldHash`` hold it;
        for the keys of a retention policy other than the default (``policy_id``), another hash."""
        if policy_id:
            mac = self._policy_value.copy()
            mac.update(policy_id.encode("ascii") + b"\x00")  # policy ids are ASCII without 0 bytes
        else:
            mac = self._value.copy()
        mac.update(_utf8(value))
        return mac.hexdigest()

    def subject_hash(self, subject) -> str:
        """The hash of a data-subject id, as ``key_subjects.subject_hash`` and ``dataSubjectHashes`` hold it."""
        mac = self._subject.copy()
        mac.update(_utf8(subject))
        return mac.hexdigest()

    def subject_hashes(self, subjects: Iterable) -> dict:
        return {subject: self.subject_hash(subject) for subject in subjects}


def is_hash(text: str) -> bool:
    """True for 64 lowercase hex characters (the form of every hash here)."""
    return len(text) == HASH_HEX_CHARS and all(c in "0123456789abcdef" for c in text)


def _associated_data(name: str) -> bytes:
    return b"pstream store key " + name.encode("utf-8")


def new_store_key(kek, name: str) -> bytes:
    """A new store key for ``name``, wrapped by the KEK (the backend stores it if it has none)."""
    return kek.wrap(secrets.token_bytes(STORE_KEY_BYTES), _associated_data(name))


def open_store_key(kek, name: str, wrapped: bytes, store_uri: str) -> bytes:
    """The store key's material; KekError naming the store if this KEK did not wrap it."""
    try:
        return kek.unwrap(bytes(wrapped), _associated_data(name))
    except KekError as exc:
        raise KekError(f"the key store {store_uri} was set up with another KEK: its '{name}' key does not "
                       f"unwrap with {kek.uri} ({exc})") from None


def lookup_key(store, kek) -> LookupKey:
    """The store's look-up key (created, wrapped and stored on first use)."""
    return LookupKey(store.store_key(LOOKUP_KEY, kek))
