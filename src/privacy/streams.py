"""Privacy streams: which events a stream admits, which purpose levels it decrypts, masking.

    from privacy.streams import StreamSpec
    spec = StreamSpec.cumulative("demo-2", 2, masked_fields=("userId",))   # keyed masking (HMAC-SHA-256)
    spec.admits([0, 1, 2])        # True: highest consented level >= 2
    spec.decrypts(1)              # True: cumulative N decrypts levels 0..N
    StreamSpec.granular("demo-0-1", [0, 1]).admits([0, 2])   # False: needs every level
    StreamSpec.cumulative("demo-1", 1, ("userId",), mask_seed=7, mask_hash="murmur3")  # the reference's
    StreamSpec.create("demo-1", "CUMULATIVE", [1], generalise={"age": {"bucket": [0, 18, 30, 45, 65]}})

GRANULAR {a, b}: an event passes only if its consent contains every requested level; fields of
requested levels are decrypted. CUMULATIVE N: an event passes if its highest consented level is
at least N; fields of levels 0..N are decrypted. Masked fields (PII or not, never strmMeta) are
replaced by the hash of their plaintext after decryption; a PII field that stays encrypted in a
stream is left encrypted, never hashed, so a mask never reveals data the consent does not cover.
The hash is ``mask_hash`` (``privacy.masking``): keyed HMAC-SHA-256 by default, MurmurHash3 with
``mask_seed`` by name.

Generalised fields (``generalise``: field path -> ``privacy.generalise.Rule``) get their rule's
output instead of their plaintext: an age group for an age, a month for a date. Like masks, rules
apply after the consent filter and decryption, and a PII field the stream does not decrypt stays
encrypted (a rule on its ciphertext would show nothing and could only mislead); a field is either
masked or generalised, not both. Rules name exact paths (no patterns: a rule fits one type);
a repeated field has each of its values generalised.

``StreamSpec.create(name, mode, levels, ...)`` is how a stream given by a user (config, project,
``pstream create stream``) is built: the checks (one level for CUMULATIVE, names, strmMeta, the
mask hash and seed, the rules' shapes) are in one place; ``unknown_masks(contract.field_paths())``
lists masks that name no field and ``rule_problems(contract)`` rules that do not fit the contract.
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
    generalised: tuple[tuple[str, "Rule"], ...] = ()  # (field path, privacy.generalise.Rule), by path

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
        if self.generalised:
            from privacy.generalise import Rule  # imported when a stream has rules: light CLI start-up
        for path, rule in self.generalised:
            if not isinstance(rule, Rule):
                raise ValueError(f"stream '{self.name}': generalise '{path}': not a rule")
            masks = [p for p in self.masked_fields if fnmatch.fnmatchcase(path, p)]
            if masks:
                raise ValueError(f"stream '{self.name}': field '{path}' is both masked ('{masks[0]}') and "
                                 "generalised: choose one")

    @classmethod
    def create(cls, name: str, mode: str, levels, masked_fields=(), mask_seed: int | None = None,
               mask_hash: str = DEFAULT_MASK_HASH, generalise: dict | None = None) -> "StreamSpec":
        """A stream of either mode from its parts as a user gives them (config, project, CLI):
        ValueError names the stream and what is wrong, e.g. a CUMULATIVE stream with two levels.
        ``generalise``: field path -> rule, in the config's form or as ``Rule``s."""
        levels = [levels] if isinstance(levels, int) else list(levels)
        if mode == GRANULAR:
            return cls.granular(name, levels, masked_fields, mask_seed, mask_hash, generalise)
        return cls(name, mode, tuple(levels), tuple(masked_fields), _seed(mask_seed, mask_hash), mask_hash,
                   _rules(name, generalise))

    @classmethod
    def cumulative(cls, name: str, level: int, masked_fields=(), mask_seed: int | None = None,
                   mask_hash: str = DEFAULT_MASK_HASH, generalise: dict | None = None) -> "StreamSpec":
        return cls(name, CUMULATIVE, (level,), tuple(masked_fields), _seed(mask_seed, mask_hash), mask_hash,
                   _rules(name, generalise))

    @classmethod
    def granular(cls, name: str, levels, masked_fields=(), mask_seed: int | None = None,
                 mask_hash: str = DEFAULT_MASK_HASH, generalise: dict | None = None) -> "StreamSpec":
        return cls(name, GRANULAR, tuple(sorted(set(levels))), tuple(masked_fields), _seed(mask_seed, mask_hash),
                   mask_hash, _rules(name, generalise))

    @property
    def rules(self) -> dict[str, "Rule"]:
        """field path -> rule."""
        return dict(self.generalised)

    def rule_problems(self, contract, missing: bool = True) -> list[str]:
        """What keeps the rules from applying to ``contract`` (``contracts.model.Contract``): a path
        that names no field (unless ``missing`` is False: a project stream sees events of several
        contracts, and a rule without its field does nothing to them), a rule that does not fit the
        field's type; each message names the field."""
        problems = []
        for path, rule in self.generalised:
            node = contract.node(path)
            if node is None:
                if missing:
                    problems.append(f"generalise '{path}' names no field of contract {contract.ref}")
                continue
            problem = rule.problem(node.type)
            if problem:
                problems.append(f"generalise '{path}': {problem}")
        return problems

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
        rules = "".join(f", {path}: {r.describe()}" for path, r in self.generalised)
        return f"{rule}{masks}{rules}"


def _rules(name: str, generalise) -> tuple:
    """((path, Rule), ...) by path from a ``generalise`` mapping; ValueError names the stream."""
    if not generalise:
        return ()
    from privacy.generalise import parse_rules

    try:
        return tuple(sorted(parse_rules(generalise).items()))
    except ValueError as exc:
        raise ValueError(f"stream '{name}': {exc}") from None


def _seed(seed: int | None, mask_hash: str) -> int | None:
    """The murmur3 seed: as given, or a random one; None for keyed masking (a seed given there is refused)."""
    if seed is None:
        return secrets.randbits(31) if mask_hash == MURMUR3 else None
    return int(seed)
