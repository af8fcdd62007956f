"""Encrypt, decrypt and mask the PII fields of one event, nested and repeated fields included.

    from privacy.fields import FieldPlan
    plan = FieldPlan(contract)                       # once per contract
    encrypted = plan.encrypt(event, key)             # every PII value, one key for the event
    stream_event = plan.reveal(encrypted, key, spec, mask)  # decrypt permitted levels, generalise, mask
                                                     # (mask: privacy.masking.masker(...), if spec masks)
    plaintext = plan.decrypt_all(encrypted, key)     # every PII value (exports, DSAR)

Events are never changed in place (Beam elements are immutable): containers on a changed path
are copied. A PII value that is null stays null.

A stream's generalisation rules (``privacy.generalise``) are bound to the types of this
contract's fields once per stream; a rule on a path the contract lacks does nothing (the config
check refuses it before a run), one on a PII field the stream leaves encrypted is skipped, as a
mask is.
"""
from __future__ import annotations

import fnmatch
from typing import Callable

from contracts.model import Contract
from privacy.daead import SivKey
from privacy.streams import StreamSpec


def _apply(container: dict, parts: list[str], fn: Callable) -> None:
    """Replace the value(s) at ``parts`` inside ``container`` (which the caller owns) by fn(value)."""
    name = parts[0]
    value = container.get(name)
    if value is None:
        return
    if len(parts) == 1:
        if isinstance(value, list):
            container[name] = [None if v is None else fn(v) for v in value]
        elif isinstance(value, dict):
            copy = dict(value)
            for key in list(copy):
                _apply(copy, [key], fn)
            container[name] = copy
        else:
            container[name] = fn(value)
    elif isinstance(value, list):
        items = []
        for item in value:
            if isinstance(item, dict):
                item = dict(item)
                _apply(item, parts[1:], fn)
            items.append(item)
        container[name] = items
    elif isinstance(value, dict):
        copy = dict(value)
        _apply(copy, parts[1:], fn)
        container[name] = copy


def _apply_each(out: dict, steps: list, fn: Callable) -> None:
    """_apply for every (name, parts) step; a top-level text value is replaced directly (fast path)."""
    for name, parts in steps:
        value = out.get(name)
        if value is None:
            continue
        if value.__class__ is str and len(parts) == 1:
            out[name] = fn(value)
        else:
            _apply(out, parts, fn)


class FieldPlan:
    """The PII paths of one contract, split once, applied to many events."""

    def __init__(self, contract: Contract):
        self.contract = contract
        self.pii = [(path.split("/"), level) for path, level in contract.pii.items()]
        self._steps = [(parts[0], parts) for parts, _ in self.pii]
        self._all_paths = contract.field_paths()
        self._mask_cache: dict[tuple[str, ...], list[str]] = {}
        self._reveal_cache: dict[StreamSpec, tuple[list, list, list]] = {}

    def encrypt(self, event: dict, key: SivKey) -> dict:
        out = dict(event)
        _apply_each(out, self._steps, key.encrypt)
        return out

    def decrypt_all(self, event: dict, key: SivKey) -> dict:
        out = dict(event)
        _apply_each(out, self._steps, key.decrypt)
        return out

    def nullify(self, event: dict) -> dict:
        """The event with every PII value replaced by null (no key to decrypt it)."""
        out = dict(event)
        for parts, _ in self.pii:
            _apply(out, parts, lambda value: None)
        return out

    def masked_paths(self, patterns: tuple[str, ...]) -> list[str]:
        """Contract paths matching the mask patterns (shell-style, '/' for nesting)."""
        paths = self._mask_cache.get(patterns)
        if paths is None:
            paths = self._mask_cache[patterns] = [
                p for p in self._all_paths if any(fnmatch.fnmatchcase(p, pattern) for pattern in patterns)
            ]
        return paths

    def _reveal_steps(self, spec: StreamSpec) -> tuple[list, list, list]:
        """What a stream does, worked out once: the PII paths it decrypts, the paths it generalises
        (each with its rule's function for the field's type), then the paths it masks."""
        steps = self._reveal_cache.get(spec)
        if steps is None:
            decrypted, still_encrypted = [], set()
            for parts, level in self.pii:
                if spec.decrypts(level):
                    decrypted.append((parts[0], parts))
                else:
                    still_encrypted.add("/".join(parts))

            def readable(path: str) -> bool:  # never hash or generalise what the consent leaves encrypted
                return path not in still_encrypted and not any(path.startswith(p + "/") for p in still_encrypted)

            generalised = []
            for path, rule in spec.generalised:
                node = self.contract.node(path)
                if node is not None and readable(path):
                    parts = path.split("/")
                    generalised.append(((parts[0], parts), rule.function(node.type)))
            masked = []
            for path in self.masked_paths(spec.masked_fields) if spec.masked_fields else ():
                if readable(path):
                    parts = path.split("/")
                    masked.append((parts[0], parts))
            steps = self._reveal_cache[spec] = (decrypted, generalised, masked)
        return steps

    def reveal(self, event: dict, key: SivKey, spec: StreamSpec, mask: Callable | None = None) -> dict:
        """The event as a privacy stream shows it (the caller checked ``spec.admits``); ``mask`` is
        the stream's masking function (``privacy.masking.masker``), needed when it masks fields."""
        decrypted, generalised, masked = self._reveal_steps(spec)
        out = dict(event)
        _apply_each(out, decrypted, key.decrypt)
        for step, generalise in generalised:
            _apply_each(out, [step], generalise)
        if masked:
            if mask is None:
                raise ValueError(f"stream '{spec.name}' masks fields: give its masking function")
            _apply_each(out, masked, mask)
        return out
