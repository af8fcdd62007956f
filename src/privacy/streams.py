"""Privacy streams: which events a stream admits, which purpose levels it decrypts, masking.

    from privacy.streams import StreamSpec
    spec = StreamSpec.cumulative("demo-2", 2, masked_fields=("userId",))   # keyed masking (HMAC-SHA-256)
    spec.admits([0, 1, 2])        # True: highest consented level >= 2
    spec.decrypts(1)              # True: cumulative N decrypts levels 0..N
    StreamSpec.granular("demo-0-1", [0, 1]).admits([0, 2])   # False: needs every level
    StreamSpec.cumulative("demo-1", 1, ("userId",), mask_seed=7, mask_hash="murmur3")  # the reference's

GRANULAR {a, b}: an event passes only if its consent contains every requested level; fields of
requested levels are decrypted. CUMULATIVE N: an event passes if its highest consented level is
at least N; fields of levels 0..N are decrypted. Masked fields (PII or not, never strmMeta) are
replaced by the hash of their plaintext after decryption; a PII field that stays encrypted in a
stream is left encrypted, never hashed, so a mask never reveals data the consent does not cover.
The hash is ``mask_hash`` (``privacy.masking``): keyed HMAC-SHA-256 by default, MurmurHash3 with
``mask_seed`` by name.

``StreamSpec.create(name, mode, levels, ...)`` is how a stream given by a user (config, project,
``pstream create stream``) is built: the checks (one level for CUMULATIVE, names, strmMeta, the
mask hash and seed) are in one place, and ``unknown_masks(contract.field_paths())`` lists masks
that name no field.
"""
from __future__ import annotations

import fnmatch
import re
import secrets
from dataclasses import dataclass

from privacy.masking import DEFAULT_MASK_HASH, MASK_HASHES, MURMUR3

GRANULAR = "GRANULAR"
CUMULATIVE = "CUMULATIVE"
MAX_GRANULAR_LEVELS = 50
STREAM_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


def default_stream_name(source: str, levels) -> str:
    return "-".join([source] + [str(level) for level in levels])


@dataclass(frozen=True)
class StreamSpec:
    """One privacy stream's rules."""

    name: str
    mode: str
    levels: tuple[int, ...]
    masked_fields: tuple[str, ...] = ()
    mask_seed: int | None = None  # murmur3 only
    mask_hash: str = DEFAULT_MASK_HASH

    def __post_init__(self):
        if not STREAM_NAME.match(self.name):
            raise ValueError(f"stream name '{self.name}': use 1-63 lowercase letters, digits and '-'")
        if self.mode not in (GRANULAR, CUMULATIVE):
            raise ValueError(f"stream '{self.name}': mode must be {GRANULAR} or {CUMULATIVE}")
        if not self.levels or any(not isinstance(v, int) or v < 0 for v in self.levels):
            raise ValueError(f"stream '{self.name}': levels must be non-negative integers")
        if self.mode == CUMULATIVE and len(self.levels) != 1:
            raise ValueError(f"stream '{self.name}': a CUMULATIVE stream has exactly one level N (it decrypts "
                             f"levels 0..N), got {', '.join(map(str, self.levels))}; for several levels use a "
                             "GRANULAR stream")
        if len(self.levels) > MAX_GRANULAR_LEVELS:
            raise ValueError(f"stream '{self.name}': at most {MAX_GRANULAR_LEVELS} levels")
        if any(f == "strmMeta" or f.startswith("strmMeta/") for f in self.masked_fields):
            raise ValueError(f"stream '{self.name}': strmMeta cannot be masked")
        if self.mask_hash not in MASK_HASHES:
            raise ValueError(f"stream '{self.name}': mask hash '{self.mask_hash}' is not one of {', '.join(MASK_HASHES)}")
        if self.mask_hash != MURMUR3 and self.mask_seed is not None:
            raise ValueError(f"stream '{self.name}': mask_seed is the seed of murmur3 masking; the default "
                             f"{DEFAULT_MASK_HASH} masks with the stream's key: drop mask_seed or give mask_hash: murmur3")
        if self.mask_hash == MURMUR3 and self.masked_fields and not (
                isinstance(self.mask_seed, int) and 0 <= self.mask_seed < 2**32):
            raise ValueError(f"stream '{self.name}': murmur3 masking needs a mask_seed from 0 to 4294967295")

    @classmethod
    def create(cls, name: str, mode: str, levels, masked_fields=(), mask_seed: int | None = None,
               mask_hash: str = DEFAULT_MASK_HASH) -> "StreamSpec":
        """A stream of either mode from its parts as a user gives them (config, project, CLI):
        ValueError names the stream and what is wrong, e.g. a CUMULATIVE stream with two levels."""
        levels = [levels] if isinstance(levels, int) else list(levels)
        if mode == GRANULAR:
            return cls.granular(name, levels, masked_fields, mask_seed, mask_hash)
        return cls(name, mode, tuple(levels), tuple(masked_fields), _seed(mask_seed, mask_hash), mask_hash)

    @classmethod
    def cumulative(cls, name: str, level: int, masked_fields=(), mask_seed: int | None = None,
                   mask_hash: str = DEFAULT_MASK_HASH) -> "StreamSpec":
        return cls(name, CUMULATIVE, (level,), tuple(masked_fields), _seed(mask_seed, mask_hash), mask_hash)

    @classmethod
    def granular(cls, name: str, levels, masked_fields=(), mask_seed: int | None = None,
                 mask_hash: str = DEFAULT_MASK_HASH) -> "StreamSpec":
        return cls(name, GRANULAR, tuple(sorted(set(levels))), tuple(masked_fields), _seed(mask_seed, mask_hash),
                   mask_hash)

    def unknown_masks(self, field_paths) -> list[str]:
        """The mask patterns that name no field of ``field_paths`` (a contract's ``field_paths()``:
        nested paths as the contract spells them, ``address/street``; shell patterns allowed)."""
        return [pattern for pattern in self.masked_fields
                if not any(fnmatch.fnmatchcase(path, pattern) for path in field_paths)]

    def admits(self, consent_levels) -> bool:
        if self.mode == CUMULATIVE:
            return bool(consent_levels) and max(consent_levels) >= self.levels[0]
        return all(level in consent_levels for level in self.levels)

    def decrypts(self, purpose_level: int) -> bool:
        if self.mode == CUMULATIVE:
            return purpose_level <= self.levels[0]
        return purpose_level in self.levels

    def describe(self) -> str:
        rule = f"cumulative {self.levels[0]}" if self.mode == CUMULATIVE else f"granular {list(self.levels)}"
        masks = f", masks {', '.join(self.masked_fields)} ({self.mask_hash})" if self.masked_fields else ""
        return f"{rule}{masks}"


def _seed(seed: int | None, mask_hash: str) -> int | None:
    """The murmur3 seed: as given, or a random one; None for keyed masking (a seed given there is refused)."""
    if seed is None:
        return secrets.randbits(31) if mask_hash == MURMUR3 else None
    return int(seed)
