"""Compatibility of contract versions: what changed, and the version bump each change needs.

    from contracts import load_contract
    from contracts.compat import check_version_bump, diff_contracts, latest_earlier
    report = diff_contracts(load_contract("acme/Shop/1.0.0"), load_contract("acme/Shop/1.1.0"))
    report.required              # 'major' | 'minor' | 'patch' | 'none'
    report.changes               # (Change(field='email', what='removed', bump='major'), ...)
    print(report.text())         # one line per change, then the verdict
    report = check_version_bump(previous, new)    # the same, plus: is new's version number enough?
    report.ok                    # False: the version is too small (report.text() says which change needs more)
    previous = latest_earlier([c1, c2, c3], new)  # the highest version below new's, same handle/name

The rules (a change that can refuse an event an earlier producer sends, or that protects a
person's data less, needs a major version; one that only accepts more needs a minor one; one
that changes neither a minor or patch one):

| change | bump |
|---|---|
| a field removed; a field's type changed (also INTEGER to LONG: typed outputs, Avro and DDL, change) | major |
| a field made repeated or no longer repeated | major |
| a field made required; a required field added; DROP_RECORD null handling added | major |
| a regex added to a field, or changed without proof that it accepts every value the old one did | major |
| the key field or the data subject field changed (added, removed or another field) | major |
| a PII field no longer PII, or its purpose level lowered (decrypted for less consent) | major |
| a quasi-identifier no longer one (k-anonymity would stop generalising it) | major |
| an optional field added; a field made optional; a regex removed or proven wider | minor |
| null handling removed, or a default value added or changed | minor |
| a field made PII, its purpose level raised, a quasi-identifier added | patch |
| a doc, the schema name, the order of fields, a regex rewritten to accept exactly the same values | patch |
| the lifecycle state | none (not a change of the contract's content) |

A regex counts as a widening only when ``contracts.regex_compare`` proves that it accepts every
value the old one accepted; any other change of a regex counts as tightening. The version
needed is semantic versioning's: a major change needs a higher major number, a minor one a
higher minor (or major) number, a patch one any higher version; 0.x versions follow the same
rule. A new version must be higher than the previous one even with no changes.
"""
from __future__ import annotations

from dataclasses import dataclass

from contracts.loader import ContractError
from contracts.model import Contract, Node
from contracts.regex_compare import all_accept_all_of

BUMPS = ("none", "patch", "minor", "major")


def _rank(bump: str) -> int:
    return BUMPS.index(bump)


@dataclass(frozen=True)
class Change:
    """One difference between two versions: the field (None: the contract), what, and the bump."""

    field: str | None
    what: str
    bump: str

    def text(self) -> str:
        where = f"field '{self.field}'" if self.field else "contract"
        return f"{self.bump:<5}  {where}: {self.what}"


@dataclass(frozen=True)
class CompatibilityReport:
    """The changes from ``previous`` to ``new`` and the version bump they need."""

    previous: str
    new: str
    changes: tuple[Change, ...]
    checked_version: bool = False     # check_version_bump: compare with the versions' difference

    @property
    def required(self) -> str:
        """The largest bump any change needs ('none' without changes)."""
        return max((c.bump for c in self.changes), key=_rank, default="none")

    @property
    def actual(self) -> str:
        """The bump from previous's version number to new's: major/minor/patch, 'none' when equal,
        'lower' when new's is smaller."""
        old, new = _version(self.previous), _version(self.new)
        if new == old:
            return "none"
        if new < old:
            return "lower"
        return "major" if new[0] > old[0] else "minor" if new[1] > old[1] else "patch"

    @property
    def ok(self) -> bool:
        """New's version number is higher than previous's and at least the bump the changes need."""
        return self.actual not in ("none", "lower") and _rank(self.actual) >= _rank(self.required)

    def blocking(self) -> list[Change]:
        """The changes that need more than the version number gives."""
        given = _rank(self.actual) if self.actual != "lower" else -1
        return [c for c in self.changes if _rank(c.bump) > given]

    def text(self) -> str:
        lines = [f"{self.previous} -> {self.new}"]
        lines += [f"  {change.text()}" for change in self.changes] or ["  no changes"]
        lines.append(f"needs: {self.required} version" if self.changes else "needs: no new version")
        if self.checked_version:
            old, new = _version_text(self.previous), _version_text(self.new)
            if self.ok:
                lines.append(f"ok: {new} is a {self.actual} version after {old}")
            elif self.actual in ("none", "lower"):
                lines.append(f"refused: {new} is not higher than {old}")
            else:
                names = ", ".join(sorted({f"'{c.field}'" if c.field else "the contract" for c in self.blocking()}))
                lines.append(f"refused: {new} is a {self.actual} version after {old}, but the changes to {names} "
                             f"need a {self.required} version ({_next(self.previous, self.required)} or higher)")
        return "\n".join(lines)


def _version(ref: str) -> tuple[int, int, int]:
    return tuple(int(part) for part in ref.rsplit("/", 1)[-1].split("."))


def _version_text(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


def _next(ref: str, bump: str) -> str:
    major, minor, patch = _version(ref)
    if bump == "major":
        return f"{major + 1}.0.0"
    if bump == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


def _fields(nodes: tuple[Node, ...], parent: str = "") -> dict[str, Node]:
    out = {}
    for node in nodes:
        path = f"{parent}{node.name}"
        out[path] = node
        out.update(_fields(node.nodes, f"{path}/"))
    return out


def diff_contracts(previous: Contract, new: Contract) -> CompatibilityReport:
    """Every change from ``previous`` to ``new``, with the bump each needs (the module's table)."""
    changes: list[Change] = []

    def change(path, what, bump):
        changes.append(Change(path, what, bump))

    old_fields, new_fields = _fields(previous.nodes), _fields(new.nodes)
    retyped = set()
    for path, old in old_fields.items():
        if any(path.startswith(f"{p}/") for p in retyped):
            continue   # inside a field already reported as retyped or removed
        node = new_fields.get(path)
        if node is None:
            change(path, "removed", "major")
            retyped.add(path)
            continue
        if node.type != old.type:
            change(path, f"type {old.type} -> {node.type}", "major")
            retyped.add(path)
            continue
        if node.repeated != old.repeated:
            change(path, "now repeated" if node.repeated else "no longer repeated", "major")
        if node.required != old.required:
            change(path, *(("now required", "major") if node.required else ("now optional", "minor")))
        if node.doc != old.doc:
            change(path, "doc changed", "patch")
    for path, node in new_fields.items():
        if path not in old_fields and not any(path.startswith(f"{p}/") for p in new_fields if p not in old_fields
                                              and p != path):
            change(path, *(("added, required", "major") if node.required else ("added, optional", "minor")))
    common = [p for p in old_fields if p in new_fields]
    old_order = [p for p in common if "/" not in p]
    new_order = sorted(old_order, key=list(new_fields).index)
    if old_order != new_order:
        change(None, "order of fields changed", "patch")
    if (previous.schema_name or previous.name) != (new.schema_name or new.name):
        change(None, f"schema name {previous.schema_name!r} -> {new.schema_name!r}", "patch")

    if previous.retention_policy != new.retention_policy:
        # keys made from now on expire by the new policy; keys already made keep their expiry
        change(None, f"retention policy {previous.retention_policy!r} -> {new.retention_policy!r}", "minor")
    if previous.key_field != new.key_field:
        change(new.key_field, f"key field {previous.key_field} -> {new.key_field}", "major")
    if previous.data_subject_field != new.data_subject_field:
        change(new.data_subject_field or previous.data_subject_field,
               f"data subject field {previous.data_subject_field} -> {new.data_subject_field}", "major")

    for path in sorted(set(previous.pii) | set(new.pii), key=_order(old_fields, new_fields)):
        old, now = previous.pii.get(path), new.pii.get(path)
        if old == now or (now is None and path not in new_fields):
            continue
        if now is None:
            change(path, "no longer PII (its values would be in plain text)", "major")
        elif old is None:
            change(path, f"now PII (purpose level {now})", "patch")
        elif now < old:
            change(path, f"purpose level lowered {old} -> {now} (decrypted for less consent)", "major")
        else:
            change(path, f"purpose level raised {old} -> {now}", "patch")
    for path in previous.quasi_ids:
        if path not in new.quasi_ids and path in new_fields:
            change(path, "no longer a quasi-identifier", "major")
    for path in new.quasi_ids:
        if path not in previous.quasi_ids:
            change(path, "now a quasi-identifier", "patch")

    old_nulls = {n.field: n for n in previous.null_handling}
    new_nulls = {n.field: n for n in new.null_handling}
    for path in sorted(set(old_nulls) | set(new_nulls), key=_order(old_fields, new_fields)):
        old, now = old_nulls.get(path), new_nulls.get(path)
        if old == now or path not in new_fields:
            continue
        if now is not None and now.action == "DROP_RECORD" and (old is None or old.action != "DROP_RECORD"):
            change(path, "null handling DROP_RECORD added: events without the field are refused", "major")
        elif now is None:
            change(path, f"null handling {old.action} removed", "minor")
        elif old is not None and old.action == now.action:
            change(path, f"null handling {now.action}: default value changed", "minor")
        else:
            change(path, f"null handling {old.action if old else 'none'} -> {now.action}", "minor")

    old_regexes, new_regexes = _regexes(previous), _regexes(new)
    for path in sorted(set(old_regexes) | set(new_regexes), key=_order(old_fields, new_fields)):
        old, now = old_regexes.get(path, []), new_regexes.get(path, [])
        if sorted(old) == sorted(now) or path not in new_fields or path in retyped:
            continue
        wider = all_accept_all_of(now, old)
        narrower = all_accept_all_of(old, now)
        if wider and narrower:
            change(path, "regex rewritten, accepting exactly the same values", "patch")
        elif wider:
            change(path, "regex removed" if not now else "regex widened (proven to accept every value it did)",
                   "minor")
        elif not old:
            change(path, "regex added", "major")
        else:
            change(path, "regex tightened or changed (not proven to accept every value it did)", "major")
    return CompatibilityReport(previous.ref, new.ref, tuple(changes))


def _regexes(contract: Contract) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for validation in contract.validations:
        out.setdefault(validation.field, []).append(validation.regex)
    return out


def _order(old_fields: dict, new_fields: dict):
    positions = {path: i for i, path in enumerate([*new_fields, *(p for p in old_fields if p not in new_fields)])}
    return lambda path: positions.get(path, len(positions))


def check_version_bump(previous: Contract, new: Contract) -> CompatibilityReport:
    """``diff_contracts`` for two versions of one contract, judged against new's version number:
    ``report.ok`` is False (and ``report.text()`` names each change that needs more) when the
    version is not higher than previous's or smaller than the changes need. ContractError when
    they are not versions of the same contract."""
    if (previous.handle, previous.name) != (new.handle, new.name):
        raise ContractError(f"{new.ref} is not a version of {previous.handle}/{previous.name}")
    report = diff_contracts(previous, new)
    return CompatibilityReport(report.previous, report.new, report.changes, checked_version=True)


def latest_earlier(contracts, new: Contract) -> Contract | None:
    """The contract with new's handle and name and the highest version below new's, or None."""
    earlier = [c for c in contracts if (c.handle, c.name) == (new.handle, new.name)
               and _version(c.ref) < _version(new.ref)]
    return max(earlier, key=lambda c: _version(c.ref), default=None)
