"""Contract regexes in linear time: RE2, as BigQuery and Confluent's data-contract rules use.

    from contracts.regex import compile_regex, RegexError
    pattern = compile_regex("^(XS|S|M|L|XL)$")      # RegexError if RE2 cannot compile it
    pattern.fullmatch("XL")                          # True
    pattern.fullmatch("XXL")                         # None
    pattern.pattern                                  # '^(XS|S|M|L|XL)$'

A validation passes when the regex matches the whole value (``fullmatch``), as before with
Python's ``re``: the reference's 400 text says the value "doesn't match regex". RE2 guarantees
time linear in the length of the value, so a pattern like ``^(X+)+$`` cannot stall a worker or
the gateway on a long hostile value. The price is RE2's syntax: no backreferences (``\\1``), no
lookaround (``(?=...)``), and ``\\d``, ``\\w``, ``\\s`` are ASCII classes (``\\pN``, ``\\pL`` for
Unicode); such patterns are refused when the contract loads, never at the first event.

Why not ``re2.compile`` itself: its ``fullmatch`` builds a match object and maps byte offsets
back to characters on every call (about 6 µs for a short value); a validation needs only
yes or no, which the binding's ``Match`` gives in about 1 µs. Values that are not valid UTF-8
(lone surrogates) are passed through with ``surrogatepass``, so they match ``.`` as ``re`` does.
"""
from __future__ import annotations

import functools

import re2
from re2 import _re2

MAX_PATTERN = 4096            # characters; also in contract.schema.json
MAX_PROGRAM_BYTES = 8 << 20   # RE2's default memory budget for one compiled pattern
_BOTH = _re2.RE2.Anchor.ANCHOR_BOTH
_NO_MATCH = (-1, -1)


class RegexError(ValueError):
    """A pattern RE2 cannot compile (the message says why, from RE2)."""


def _options() -> "re2.Options":
    options = re2.Options()
    options.log_errors = False   # RE2 would print every refused pattern to stderr
    options.never_capture = True  # only yes or no is needed: faster, less memory
    options.max_mem = MAX_PROGRAM_BYTES
    return options


class LinearRegex:
    """One compiled contract regex; ``fullmatch(text)`` is True or None (like ``re``'s match or None)."""

    __slots__ = ("pattern", "_match")

    def __init__(self, pattern: str):
        if not isinstance(pattern, str):
            raise RegexError("a regex must be text")
        if len(pattern) > MAX_PATTERN:
            raise RegexError(f"the pattern is longer than {MAX_PATTERN} characters")
        compiled = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _options())
        if not compiled.ok():
            error = compiled.error()
            error = error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error)
            raise RegexError(f"RE2 cannot compile it: {error}")
        self.pattern = pattern
        self._match = compiled.Match

    def fullmatch(self, text: str):
        data = text.encode("utf-8", "surrogatepass")
        return True if self._match(_BOTH, data, 0, len(data))[0] != _NO_MATCH else None

    def __reduce__(self):  # Beam pickles contracts: compile again on the worker
        return compile_regex, (self.pattern,)

    def __eq__(self, other):
        return isinstance(other, LinearRegex) and other.pattern == self.pattern

    def __hash__(self):
        return hash(self.pattern)

    def __repr__(self):
        return f"LinearRegex({self.pattern!r})"


@functools.lru_cache(maxsize=1024)
def compile_regex(pattern: str) -> LinearRegex:
    """THE way a contract (or config) regex is compiled; RegexError if RE2 refuses it."""
    return LinearRegex(pattern)
