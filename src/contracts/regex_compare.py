"""Does one contract regex accept every value another accepts? A sound, fast, partial answer.

    from contracts.regex_compare import accepts_all_of, same_values, anchored
    accepts_all_of("^(XS|S|M|L|XL|XXL)$", "^(XS|S|M|L|XL)$")  # True: the new one is a proven widening
    accepts_all_of("^(S|M)$", "^(S|M|L)$")                     # False: 'L' is refused now
    accepts_all_of("[a-z]+", "(?i)[a-z]+")                     # False: not proven (flags are not reasoned about)
    same_values("^(S|M)$", "M|S")                              # True: the same values, written differently
    anchored("^(S|M)$"), anchored("S|M")                       # True, False (for ODCS, where patterns search)

Contract regexes are RE2 patterns matched against the whole value (``contracts.regex``). The
compatibility check (``contracts.compat``) needs to know whether a changed regex is a widening
(every value the old one accepted is still accepted: a minor change) or not (a major one).
``True`` here is a proof; ``False`` means "not proven", and the caller treats it as tightening.

How: both patterns are parsed (Python's ``re`` parser, inside a guard for the places where its
syntax and RE2's disagree) into a small tree of character sets, sequences, alternations and
repetitions, then compared with rules that each state a true inclusion of languages:

- a set is inside a set that contains all its characters (``[a-c]`` in ``[a-z]``, ``\\d`` in ``\\w``)
- an alternation is inside X when each branch is; X is inside an alternation when it is inside a
  branch (a set: when each of its characters is a one-character branch)
- ``x{a,b}`` is inside ``y{c,d}`` when x is inside y and c <= a, b <= d (``x`` is ``x{1,1}``);
  a run of pieces inside y, counted together, fits y's bounds (``ab`` in ``[a-z]+``)
- a sequence is inside another when its parts line up with the other's in order, each inside
  its partner, and the other's parts left over can match nothing (``ab`` in ``ab?``, ``a-b`` in ``a-?b``)
- ``^`` at the start and ``$`` at the end change nothing for a whole-value match; anywhere else
  they, flags (``(?i)``), word boundaries, POSIX classes and whatever else is outside these
  rules make the answer "not proven".

``\\d``, ``\\w``, ``\\s`` and ``.`` are read as RE2 reads them (ASCII classes; ``.`` is anything
but a newline). Why not a library: ``greenery`` (regular expressions as automata) decides
inclusion exactly, but builds automata whose size, and its time, grows without bound: 16 s for
``[a-z]{1,64}`` against ``[a-z]{1,100}`` and minutes for ``(a|b)*a(a|b){8}``; a check a
``contracts create`` runs must answer at once. These rules never expand a repetition, so the
work is polynomial in the patterns' sizes (bounded by MAX_NODES).
"""
from __future__ import annotations

import re
import warnings

from contracts.regex import RegexError, compile_regex

try:  # the stdlib parser of `re` (Python 3.11+: re._parser; sre_parse before)
    from re import _constants as _C, _parser as _P
except ImportError:  # pragma: no cover
    import sre_constants as _C
    import sre_parse as _P

MAX_NODES = 400              # a larger pattern is "not proven" (keeps the comparison instant)
_TOP = 0x10FFFF
_DIGIT = ((0x30, 0x39),)
_WORD = ((0x30, 0x39), (0x41, 0x5A), (0x5F, 0x5F), (0x61, 0x7A))
_SPACE = ((0x09, 0x0A), (0x0C, 0x0D), (0x20, 0x20))   # RE2's \s: [\t\n\f\r ]
# Text where Python's parser reads a pattern differently from RE2, or that these rules leave out:
# POSIX classes [[:alpha:]] (a nested set to Python), {,n} (a repetition to Python, literal to
# RE2), \b and \B, back-references and octal escapes.
_GUARD = re.compile(r"\[:|\{,|\\[bB0-9]")


class _Unsupported(Exception):
    pass


def _ranges(pairs) -> tuple:
    """Sorted, merged, disjoint (lo, hi) code point ranges."""
    out = []
    for lo, hi in sorted(pairs):
        if out and lo <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    return tuple(out)


def _complement(ranges: tuple) -> tuple:
    out, start = [], 0
    for lo, hi in ranges:
        if lo > start:
            out.append((start, lo - 1))
        start = hi + 1
    if start <= _TOP:
        out.append((start, _TOP))
    return tuple(out)


_CATEGORIES = {
    _C.CATEGORY_DIGIT: _DIGIT, _C.CATEGORY_NOT_DIGIT: _complement(_DIGIT),
    _C.CATEGORY_WORD: _WORD, _C.CATEGORY_NOT_WORD: _complement(_WORD),
    _C.CATEGORY_SPACE: _SPACE, _C.CATEGORY_NOT_SPACE: _complement(_SPACE),
}
_STARTS = (_C.AT_BEGINNING, _C.AT_BEGINNING_STRING)
_ENDS = (_C.AT_END,)


# -- the tree: ("set", ranges) | ("seq", items) | ("alt", options) | ("rep", lo, hi|None, item) --
def _set(ranges) -> tuple:
    return ("set", _ranges(ranges))


def _class(items) -> tuple:
    negate, pairs = False, []
    for op, av in items:
        if op is _C.NEGATE:
            negate = True
        elif op is _C.LITERAL:
            pairs.append((av, av))
        elif op is _C.RANGE:
            pairs.append(av)
        elif op is _C.CATEGORY and av in _CATEGORIES:
            pairs.extend(_CATEGORIES[av])
        else:
            raise _Unsupported(op)
    ranges = _ranges(pairs)
    return ("set", _complement(ranges) if negate else ranges)


def _sequence(items, at_start: bool, at_end: bool) -> tuple:
    items = list(items)
    consuming = [i for i, (op, _) in enumerate(items) if op is not _C.AT]
    first, last = (consuming[0], consuming[-1]) if consuming else (len(items), -1)
    out = []
    for i, (op, av) in enumerate(items):
        start, end = at_start and i <= first, at_end and i >= last
        if op is _C.AT:
            # a no-op for a whole-value match only where nothing can come before (after) it
            if not ((av in _STARTS and start) or (av in _ENDS and end)):
                raise _Unsupported(av)
        elif op is _C.LITERAL:
            out.append(("set", ((av, av),)))
        elif op is _C.NOT_LITERAL:
            out.append(("set", _complement(((av, av),))))
        elif op is _C.ANY:
            out.append(("set", _complement(((0x0A, 0x0A),))))
        elif op is _C.IN:
            out.append(_class(av))
        elif op is _C.BRANCH:
            out.append(("alt", tuple(_sequence(alt, start, end) for alt in av[1])))
        elif op is _C.SUBPATTERN:
            _group, add_flags, del_flags, inner = av
            if add_flags or del_flags:
                raise _Unsupported("flags")
            out.append(_sequence(inner, start, end))
        elif op in (_C.MAX_REPEAT, _C.MIN_REPEAT):  # lazy or greedy: the same values
            lo, hi, inner = av
            out.append(("rep", lo, None if hi == _C.MAXREPEAT else hi, _sequence(inner, False, False)))
        else:
            raise _Unsupported(op)
    flat = []
    for node in out:
        flat.extend(node[1] if node[0] == "seq" else (node,))
    return flat[0] if len(flat) == 1 else ("seq", tuple(flat))


def _size(node) -> int:
    kind = node[0]
    if kind == "set":
        return 1
    if kind == "rep":
        return 1 + _size(node[3])
    return 1 + sum(_size(child) for child in node[1])


def parse(pattern: str):
    """The tree of a contract regex, or None when it is outside what these rules reason about
    (or RE2 refuses it)."""
    try:
        compile_regex(pattern)
    except RegexError:
        return None
    if _GUARD.search(pattern):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            parsed = _P.parse(pattern)
        if parsed.state.flags & ~re.UNICODE:
            return None   # (?i), (?s), (?m), (?x): not reasoned about
        tree = _sequence(parsed, True, True)
    except (_Unsupported, re.error, OverflowError, RecursionError, ValueError, TypeError):
        return None
    return tree if _size(tree) <= MAX_NODES else None


def anchored(pattern: str) -> bool:
    """True when the pattern is ``^...$`` around one sequence (no top-level ``|``): searching
    for it (ODCS, JSON Schema) then means the same as matching the whole value."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            items = list(_P.parse(pattern))
    except (re.error, OverflowError, RecursionError, ValueError, TypeError):
        return False
    return (len(items) >= 2 and items[0][0] is _C.AT and items[0][1] in _STARTS
            and items[-1][0] is _C.AT and items[-1][1] in _ENDS and _GUARD.search(pattern) is None)


class _Compare:
    """L(a) <= L(b) by the rules of the module docstring, memoised for one comparison."""

    def __init__(self):
        self._memo: dict = {}

    def nullable(self, node) -> bool:
        kind = node[0]
        if kind == "set":
            return False
        if kind == "rep":
            return node[1] == 0 or self.nullable(node[3])
        if kind == "seq":
            return all(self.nullable(child) for child in node[1])
        return any(self.nullable(child) for child in node[1])

    def sub(self, a, b) -> bool:
        key = (a, b)
        if key not in self._memo:
            self._memo[key] = False   # a cycle (none is expected) answers "not proven"
            self._memo[key] = self._sub(a, b)
        return self._memo[key]

    def _sub(self, a, b) -> bool:
        if a == b:
            return True
        items_a = a[1] if a[0] == "seq" else (a,)
        items_b = b[1] if b[0] == "seq" else (b,)
        if len(items_a) == 1 and len(items_b) == 1:
            return self.atom(items_a[0], items_b[0])
        if len(items_b) == 1 and items_b[0][0] == "alt" and any(self.sub(a, y) for y in items_b[0][1]):
            return True
        if len(items_b) == 1 and items_b[0][0] == "rep":   # ab inside (ab)*: one repetition
            _, lo, hi, item = items_b[0]
            if lo <= 1 and (hi is None or hi >= 1) and self.sub(a, item):
                return True
        if len(items_a) == 1 and items_a[0][0] == "alt":
            return all(self.sub(x, b) for x in items_a[0][1])
        return self.sequence(items_a, items_b)

    def atom(self, a, b) -> bool:
        """Inclusion of two nodes that are not sequences."""
        if a == b:
            return True
        if a[0] == "alt":
            return all(self.sub(x, b) for x in a[1])
        if b[0] == "alt":
            if a[0] == "set" and _within(a[1], _ranges(_single_characters(b))):
                return True   # [LMS] inside S|M|L|XL: each character is a branch of its own
            return any(self.sub(a, y) for y in b[1])
        if a[0] == "set" and b[0] == "set":
            return _within(a[1], b[1])
        if b[0] == "rep":
            _, lo, hi, item = b
            if a[0] == "rep" and lo <= a[1] and (hi is None or (a[2] is not None and a[2] <= hi)) \
                    and self.sub(a[3], item):
                return True
            return lo <= 1 and (hi is None or hi >= 1) and self.sub(a, item)
        if a[0] == "rep" and a[2] is not None and a[2] <= 1:
            if a[2] == 0:
                return self.nullable(b)
            return (a[1] == 1 or self.nullable(b)) and self.sub(a[3], b)
        return False

    def sequence(self, items_a: tuple, items_b: tuple) -> bool:
        memo: dict = {}
        na, nb = len(items_a), len(items_b)

        def fits(i: int, j: int) -> bool:   # items_a[i:] inside items_b[j:]
            if (i, j) in memo:
                return memo[i, j]
            memo[i, j] = False
            if j == nb:
                result = i == na
            elif i == na:
                result = all(self.nullable(node) for node in items_b[j:])
            else:
                target = items_b[j]
                result = ((self.nullable(target) and fits(i, j + 1))
                          or (self.atom(items_a[i], target) and fits(i + 1, j + 1))
                          or (target[0] == "rep" and self._run(items_a, i, target, fits, j))
                          or (target[0] == "alt" and any(
                              ((i, k) != (0, na) or nb > 1)
                              and any(self.sub(("seq", items_a[i:k]), y) for y in target[1]) and fits(k, j + 1)
                              for k in range(i + 2, na + 1))))
            memo[i, j] = result
            return result

        return fits(0, 0)

    def _run(self, items_a: tuple, i: int, target, fits, j: int) -> bool:
        """items_a[i:k] as repetitions of target's item, counted together within its bounds."""
        _, lo, hi, item = target
        low = high = 0
        for k in range(i, len(items_a)):
            piece = items_a[k]
            if self.atom(piece, item):
                low, high = low + 1, (None if high is None else high + 1)
            elif piece[0] == "rep" and self.sub(piece[3], item):
                low = low + piece[1]
                high = None if high is None or piece[2] is None else high + piece[2]
            else:
                return False
            if lo <= low and (hi is None or (high is not None and high <= hi)) and fits(k + 1, j + 1):
                return True
        return False


def _single_characters(node) -> list:
    """The ranges of the one-character branches of an alternation (nested ones too)."""
    if node[0] == "set":
        return list(node[1])
    if node[0] == "alt":
        return [r for branch in node[1] for r in _single_characters(branch)]
    return []


def _within(inner: tuple, outer: tuple) -> bool:
    """Every range of ``inner`` lies inside one range of ``outer`` (both merged and sorted)."""
    k = 0
    for lo, hi in inner:
        while k < len(outer) and outer[k][1] < lo:
            k += 1
        if k == len(outer) or outer[k][0] > lo or outer[k][1] < hi:
            return False
    return True


_EVERYTHING = ("rep", 0, None, ("set", ((0, _TOP),)))


def accepts_all_of(new: str, old: str) -> bool:
    """True when every value ``old`` accepts is proven to be accepted by ``new``."""
    old_tree, new_tree = parse(old), parse(new)
    return old_tree is not None and new_tree is not None and _Compare().sub(old_tree, new_tree)


def same_values(a: str, b: str) -> bool:
    """True when both patterns are proven to accept exactly the same values."""
    return a == b or (accepts_all_of(a, b) and accepts_all_of(b, a))


def all_accept_all_of(new: list[str], old: list[str]) -> bool:
    """For a field checked by several regexes (a value must match each): True when every value
    the ``old`` list accepts is proven to pass the ``new`` list: each new regex accepts all that
    some old one accepts (no old regex: the new one must accept everything)."""
    old_trees = [parse(p) for p in old] or [_EVERYTHING]
    if any(tree is None for tree in old_trees):
        return False
    for pattern in new:
        tree = parse(pattern)
        if tree is None or not any(_Compare().sub(o, tree) for o in old_trees):
            return False
    return True
