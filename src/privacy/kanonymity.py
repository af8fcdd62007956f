"""k-anonymity by micro-aggregation: MDAV groups for numeric quasi-identifiers, generalisation for
categorical ones, each quasi-identifier replaced by its group's aggregate (no Beam here).

    from privacy.kanonymity import MicroAggregationSpec, microaggregate
    spec = MicroAggregationSpec.for_contract(contract, k=5, quasi_identifiers=["age", "zip"])
    published, report = microaggregate(events, spec)      # events: dicts with strmMeta
    report["groups"], report["smallest_group"], report["information_loss"]["total"]

What happens, in order:

1. **Consent** (as privacy streams do): a record without the required consent is absent from
   the output: with ``consent_levels`` it must consent to each of them (a granular privacy
   stream's rule), without them it must consent to something (``consentLevels`` not empty).
   Its values take no part in any aggregate. Counted under ``suppressed`` with the reason.
2. **Missing values**: a record without a value for a numeric quasi-identifier cannot be placed
   and is suppressed (reason named). A missing categorical value is a category of its own.
3. **Categorical quasi-identifiers** (text, booleans) are generalised by global recoding, as
   Datafly does: while some combination of (generalised) categorical values is shared by fewer
   than k records, the quasi-identifier with the most distinct values goes one level up its
   hierarchy (text: one more trailing character masked, ``12345 -> 1234* -> 123** -> ... -> *``;
   booleans: ``true -> null``). When the records in too-small classes are at most
   ``max_suppressed`` of all, they are suppressed instead (reason named).
4. **Numeric quasi-identifiers** (INTEGER, LONG, FLOAT) are grouped within each categorical
   class by MDAV (maximum distance to average vector; Domingo-Ferrer and Torra, 2005) on values
   standardised to unit variance: groups of k to 2k-1 records. Each value is replaced by its
   group's mean, rounded half to even for INTEGER and LONG fields, so the output keeps the
   contract's types. MDAV's loop is vectorised with numpy: each step is a few passes over the
   remaining records, with no Python loop over records. MDAV's O(n^2 / k) would take minutes
   for 100,000 records, so a class of more than ``BLOCK_SIZE`` records is first cut into
   blocks by median splits on its widest quasi-identifier (a k-d tree) and MDAV runs in each
   block: O(n * BLOCK_SIZE / k).
5. **Report**: k, the quasi-identifiers, records in and out, the number of groups (distinct
   quasi-identifier combinations in the output), the smallest group, the generalisation level of
   each categorical quasi-identifier, records suppressed by reason, and the information loss of
   each numeric quasi-identifier: SSE/SST, the squared distance of the published values to the
   original ones over the squared distance of the originals to their mean (0 = no loss, 1 = all
   values replaced by the overall mean); ``total`` is the SSE/SST of the standardised values,
   which is the mean of the per-field figures.

Errors (``MicroAggregationError``): k < 2, a quasi-identifier that is not a top-level scalar
field of the contract, a PII field as quasi-identifier (it is encrypted, there is nothing to
aggregate), no quasi-identifiers, and fewer records left than k.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from contracts.model import Contract

NUMERIC_TYPES = ("INTEGER", "LONG", "FLOAT")
CATEGORICAL_TYPES = ("STRING", "BOOLEAN")
STRING_TOP = "*"


class MicroAggregationError(ValueError):
    """A micro-aggregation that cannot be done as asked; the message says why."""


@dataclass(frozen=True)
class MicroAggregationSpec:
    """k, the quasi-identifiers by kind, and the consent and suppression rules.

    Args:
        k: the least number of records that share each published quasi-identifier combination (>= 2).
        numeric: numeric quasi-identifiers (MDAV, group means).
        categorical: text and boolean quasi-identifiers (generalised).
        integers: the numeric ones whose means are rounded (INTEGER, LONG fields).
        consent_levels: purpose levels a record must consent to; empty = any consent.
        max_suppressed: the share of records that may be suppressed instead of generalising further.
    """

    k: int
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    integers: frozenset = frozenset()
    consent_levels: tuple[int, ...] = ()
    max_suppressed: float = 0.0

    def __post_init__(self):
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 2:
            raise MicroAggregationError(f"k must be an integer of at least 2, got {self.k!r}")
        if not self.numeric and not self.categorical:
            raise MicroAggregationError("no quasi-identifiers: give them, or mark fields isQuasiId in the contract")
        if not 0.0 <= self.max_suppressed < 1.0:
            raise MicroAggregationError(f"max_suppressed must be a share from 0 to below 1, got {self.max_suppressed}")

    @property
    def quasi_identifiers(self) -> tuple[str, ...]:
        return self.numeric + self.categorical

    @classmethod
    def for_contract(cls, contract: Contract, k: int, quasi_identifiers=None, consent_levels=(),
                     max_suppressed: float = 0.0) -> "MicroAggregationSpec":
        """The spec for a contract: ``quasi_identifiers`` default to its ``isQuasiId`` fields."""
        names = list(quasi_identifiers) if quasi_identifiers else list(contract.quasi_ids)
        if not names:
            raise MicroAggregationError(f"contract {contract.ref} marks no field isQuasiId: give quasi_identifiers")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise MicroAggregationError(f"quasi-identifier(s) given twice: {', '.join(repeated)}")
        numeric, categorical, integers = [], [], set()
        for name in names:
            node = contract.node(name) if "/" not in name else None
            if node is None:
                fields = ", ".join(n.name for n in contract.nodes)
                raise MicroAggregationError(f"quasi-identifier '{name}' is not a top-level field of contract "
                                            f"{contract.ref} ({fields})")
            if node.repeated or node.type not in NUMERIC_TYPES + CATEGORICAL_TYPES:
                raise MicroAggregationError(f"quasi-identifier '{name}' is {'a list' if node.repeated else node.type}: "
                                            "it must be a single number, text or boolean")
            if name in contract.pii:
                raise MicroAggregationError(f"quasi-identifier '{name}' is PII: it is encrypted, so it cannot be "
                                            "aggregated; choose fields that are not PII")
            if node.type in NUMERIC_TYPES:
                numeric.append(name)
                if node.type != "FLOAT":
                    integers.add(name)
            else:
                categorical.append(name)
        return cls(k, tuple(numeric), tuple(categorical), frozenset(integers), tuple(int(v) for v in consent_levels),
                   float(max_suppressed))

    def consents(self, event: dict) -> bool:
        levels = (event.get("strmMeta") or {}).get("consentLevels") or ()
        if self.consent_levels:
            return all(level in levels for level in self.consent_levels)
        return bool(levels)


# -- MDAV --------------------------------------------------------------------------------------
BLOCK_SIZE = 4096


def _squared_distances(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    difference = points - centre
    return np.einsum("ij,ij->i", difference, difference)


def _mdav_block(points: np.ndarray, k: int) -> np.ndarray:
    """MDAV on one block: group labels 0..g-1, every group of k to 2k-1 rows (len(points) >= k)."""
    n = len(points)
    labels = np.full(n, -1, dtype=np.int64)
    remaining = np.arange(n)
    current = points
    group = 0
    while len(remaining) >= 3 * k:
        r = int(np.argmax(_squared_distances(current, current.mean(axis=0))))
        to_r = _squared_distances(current, current[r])
        near_r = np.argpartition(to_r, k - 1)[:k]
        to_r[near_r] = -np.inf
        s = int(np.argmax(to_r))
        to_s = _squared_distances(current, current[s])
        to_s[near_r] = np.inf
        near_s = np.argpartition(to_s, k - 1)[:k]
        labels[remaining[near_r]] = group
        labels[remaining[near_s]] = group + 1
        group += 2
        keep = np.ones(len(remaining), dtype=bool)
        keep[near_r] = False
        keep[near_s] = False
        remaining, current = remaining[keep], current[keep]
    if len(remaining) >= 2 * k:
        r = int(np.argmax(_squared_distances(current, current.mean(axis=0))))
        near_r = np.argpartition(_squared_distances(current, current[r]), k - 1)[:k]
        labels[remaining[near_r]] = group
        group += 1
        keep = np.ones(len(remaining), dtype=bool)
        keep[near_r] = False
        remaining = remaining[keep]
    if len(remaining):
        labels[remaining] = group
    return labels


def blocks(points: np.ndarray, size: int) -> list[np.ndarray]:
    """Row indices cut into blocks of at most ``size`` (and at least size // 2) rows by median
    splits on the widest column, as a k-d tree does."""
    pending, done = [np.arange(len(points))], []
    while pending:
        rows = pending.pop()
        if len(rows) <= size:
            done.append(rows)
            continue
        subset = points[rows]
        widest = int(np.argmax(subset.max(axis=0) - subset.min(axis=0)))
        order = np.argpartition(subset[:, widest], len(rows) // 2)
        pending += [rows[order[: len(rows) // 2]], rows[order[len(rows) // 2:]]]
    return done


def mdav(points: np.ndarray, k: int, block_size: int = BLOCK_SIZE) -> np.ndarray:
    """Group labels 0..g-1 for the rows of ``points`` (n x d, n >= k): every group has k to 2k-1 rows.

    MDAV costs O(n^2 / k): above ``block_size`` rows the points are first cut into blocks
    (``blocks``) and MDAV runs in each, O(n * block_size / k) in all. Groups never span blocks;
    the cost in information loss is small (benchmarks/microaggregation.py measures it).
    """
    points = np.asarray(points, dtype=float)
    n = len(points)
    if n < k:
        raise MicroAggregationError(f"k = {k} is larger than the {n} records to group")
    labels = np.empty(n, dtype=np.int64)
    offset = 0
    for rows in blocks(points, max(block_size, 2 * k)):
        block_labels = _mdav_block(points[rows], k)
        labels[rows] = block_labels + offset
        offset += int(block_labels.max()) + 1
    return labels


# -- generalisation ----------------------------------------------------------------------------
def generalise(value, level: int, top: int):
    """A categorical value ``level`` steps up its hierarchy (``top``: fully generalised)."""
    if level <= 0:
        return value
    if isinstance(value, str):
        if level >= top:
            return STRING_TOP
        keep = max(len(value) - level, 0)
        return value[:keep] + "*" * (len(value) - keep)
    return None   # booleans (and missing values) at their top: withheld


def _hierarchy_top(values: list) -> int:
    texts = [v for v in values if isinstance(v, str)]
    return max([len(v) for v in texts] + [1]) if texts else 1


def _recode(columns: dict[str, list], n: int, k: int, budget: int) -> tuple[dict[str, int], list[tuple], set[int]]:
    """Datafly-style global recoding: (level per field, class key per record, suppressed record indices)."""
    names = list(columns)
    tops = {name: _hierarchy_top(values) for name, values in columns.items()}
    levels = {name: 0 for name in names}
    while True:
        generalised = {name: [generalise(v, levels[name], tops[name]) for v in columns[name]] for name in names}
        keys = list(zip(*(generalised[name] for name in names))) if names else [()] * n
        sizes = Counter(keys)
        small = [i for i, key in enumerate(keys) if sizes[key] < k]
        if not small:
            return levels, keys, set()
        if len(small) <= budget:
            return levels, keys, set(small)
        open_fields = [name for name in names if levels[name] < tops[name]]
        if not open_fields:   # everything at the top: one class, smaller than k (the caller checked n >= k)
            return levels, keys, set(small)
        widest = max(open_fields, key=lambda name: (len(set(generalised[name])), -names.index(name)))
        levels[widest] += 1


# -- the whole job -----------------------------------------------------------------------------
def information_loss(original: np.ndarray, published: np.ndarray) -> tuple[float, list[float]]:
    """(total, per column) SSE/SST: squared error of ``published`` over the spread of ``original``."""
    original = np.asarray(original, dtype=float)
    published = np.asarray(published, dtype=float)
    if original.size == 0:
        return 0.0, [0.0] * (original.shape[1] if original.ndim == 2 else 0)
    sse = ((original - published) ** 2).sum(axis=0)
    sst = ((original - original.mean(axis=0)) ** 2).sum(axis=0)
    per = [float(e / t) if t > 0 else 0.0 for e, t in zip(sse, sst)]
    return (float(np.mean(per)) if per else 0.0), per


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def microaggregate(events: list[dict], spec: MicroAggregationSpec) -> tuple[list[dict], dict]:
    """The published records (quasi-identifiers replaced; other fields as given) and the report."""
    suppressed: Counter = Counter()
    usable = []
    for event in events:
        if not spec.consents(event):
            suppressed["no consent" if not spec.consent_levels else f"no consent to levels {list(spec.consent_levels)}"] += 1
            continue
        absent = next((name for name in spec.numeric if _missing(event.get(name))), None)
        if absent is not None:
            suppressed[f"quasi-identifier '{absent}' is missing"] += 1
            continue
        usable.append(event)
    report = {"k": spec.k, "quasi_identifiers": {"numeric": list(spec.numeric), "categorical": list(spec.categorical)},
              "records_in": len(events)}
    if len(usable) < spec.k:
        raise MicroAggregationError(f"k = {spec.k} is larger than the {len(usable)} records that can be grouped "
                                    f"(of {len(events)} read{_listing(suppressed)})")
    budget = int(spec.max_suppressed * len(usable))
    levels, classes, small = _recode({name: [e.get(name) for e in usable] for name in spec.categorical},
                                     len(usable), spec.k, budget)
    if small:
        suppressed[f"in a combination of categorical quasi-identifiers shared by fewer than {spec.k} records"] += len(small)
    kept = [i for i in range(len(usable)) if i not in small]
    values = np.array([[float(usable[i][name]) for name in spec.numeric] for i in kept], dtype=float).reshape(
        len(kept), len(spec.numeric))
    published_values = values.copy()
    if spec.numeric and len(kept):
        scale = values.std(axis=0)
        scale[scale == 0] = 1.0
        standardised = (values - values.mean(axis=0)) / scale
        by_class: dict[tuple, list[int]] = {}
        for row, i in enumerate(kept):
            by_class.setdefault(classes[i], []).append(row)
        rounded = np.array([name in spec.integers for name in spec.numeric])
        for rows in by_class.values():
            rows = np.asarray(rows)
            labels = mdav(standardised[rows], spec.k)
            sums = np.zeros((labels.max() + 1, len(spec.numeric)))
            np.add.at(sums, labels, values[rows])
            means = sums / np.bincount(labels)[:, None]
            means[:, rounded] = np.rint(means[:, rounded])
            published_values[rows] = means[labels]
    tops = {name: _hierarchy_top([e.get(name) for e in usable]) for name in spec.categorical}
    published = []
    for row, i in enumerate(kept):
        event = dict(usable[i])
        for column, name in enumerate(spec.numeric):
            value = published_values[row, column]
            event[name] = int(value) if name in spec.integers else float(value)
        for name in spec.categorical:
            event[name] = generalise(event.get(name), levels[name], tops[name])
        published.append(event)
    combinations = Counter(tuple(_hashable(e.get(name)) for name in spec.quasi_identifiers) for e in published)
    total, per_field = information_loss(values, published_values)
    report.update({
        "records_out": len(published),
        "groups": len(combinations),
        "smallest_group": min(combinations.values()) if combinations else 0,
        "largest_group": max(combinations.values()) if combinations else 0,
        "information_loss": {"measure": "SSE/SST", "total": round(total, 6),
                             "per_field": {name: round(v, 6) for name, v in zip(spec.numeric, per_field)}},
        "generalisation": {name: {"level": levels[name], "top": tops[name]} for name in spec.categorical},
        "suppressed": {"records": sum(suppressed.values()), "reasons": dict(suppressed)},
        "consent": {"levels": list(spec.consent_levels)} if spec.consent_levels else {"levels": "any"},
    })
    return published, report


def _hashable(value):
    return value if not isinstance(value, float) or value == value else "nan"


def _listing(suppressed: Counter) -> str:
    return "".join(f"; {count} suppressed: {reason}" for reason, count in suppressed.items())
