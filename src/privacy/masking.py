"""Masking: a privacy stream's chosen fields replaced by a hash of their plaintext.

    from privacy.masking import HMAC_SHA256, MURMUR3, masker
    mask = masker(HMAC_SHA256, key=ring.masking_key("webshop-1"))   # the default: keyed
    mask("477049")            # 64 lowercase hex characters: HMAC-SHA-256(masking key, UTF-8 text)
    mask = masker(MURMUR3, seed=1673808342)                         # the reference's, by name
    mask("477049")            # 32 lowercase hex characters: MurmurHash3 x64 128-bit

``hmac-sha256`` (the default) is keyed: without the stream's masking key, trying every id of an
id space finds nothing. The key is one per privacy stream, named ``mask/<stream>`` in the key
store, made on first use and stored wrapped by the KEK like the data keys
(``KeyRing.masking_key``, ``privacy.lookup`` store keys). So one stream masks a value the same
way in every run that shares its key store, while two streams never share masked values: a
masked id cannot join a stream of one consent level to a stream of another.

``murmur3`` is the reference's masking (``mask_hash: murmur3`` in a config, ``--mask-hash
murmur3`` for ``pstream create stream``). It is not keyed: its seed is a 32-bit number kept in
the config, and an id space of a million is reversed in about a second. Choose it only where the
reference's masked values must be reproduced.

A value that is not text is masked as its ``str()`` (an INTEGER 42 as "42").
"""
from __future__ import annotations

import hmac
from typing import Callable

import mmh3

HMAC_SHA256 = "hmac-sha256"
MURMUR3 = "murmur3"
MASK_HASHES = (HMAC_SHA256, MURMUR3)
DEFAULT_MASK_HASH = HMAC_SHA256


def _text(value) -> bytes:
    return (value if isinstance(value, str) else str(value)).encode("utf-8", "surrogatepass")


def murmur3_mask(value, seed: int) -> str:
    """MurmurHash3 (x64, 128 bit) of the value's text, lowercase hex, 32 characters (the reference's)."""
    return format(mmh3.hash128(_text(value), seed, x64arch=True, signed=False), "032x")


def hmac_mask(value, key: bytes) -> str:
    """HMAC-SHA-256 of the value's text under a masking key, lowercase hex, 64 characters."""
    return hmac.digest(key, _text(value), "sha256").hex()


def masking_key_name(stream: str) -> str:
    """The key store's name for a privacy stream's masking key."""
    return f"mask/{stream}"


def masker(mask_hash: str, key: bytes | None = None, seed: int | None = None) -> Callable[[object], str]:
    """The masking function of a stream: keyed HMAC-SHA-256 (needs ``key``) or MurmurHash3 (``seed``)."""
    if mask_hash == HMAC_SHA256:
        if not key or len(key) < 16:
            raise ValueError("hmac-sha256 masking needs the stream's masking key (16 bytes or more)")
        keyed = hmac.new(key, digestmod="sha256")

        def mask(value) -> str:
            mac = keyed.copy()
            mac.update(_text(value))
            return mac.hexdigest()

        return mask
    if mask_hash == MURMUR3:
        if seed is None:
            raise ValueError("murmur3 masking needs a seed")
        return lambda value: murmur3_mask(value, seed)
    raise ValueError(f"mask hash '{mask_hash}': use one of {', '.join(MASK_HASHES)}")


def stream_masker(spec, ring) -> Callable[[object], str] | None:
    """The masking function of a privacy stream (``StreamSpec``), its key from the key ring; None if
    the stream masks nothing."""
    if not spec.masked_fields:
        return None
    key = ring.masking_key(spec.name) if spec.mask_hash == HMAC_SHA256 else None
    return masker(spec.mask_hash, key, spec.mask_seed)
