"""Rows of database tables as batch input: which column is which contract field, and text values.

    from contracts.table_rows import ColumnMap, text_form
    columns = ColumnMap.of(contract, ["transactionid", "userId", "age", "id"], ignore=["id"], source="db orders")
    columns.selected        # [('transactionid', 'transactionId'), ('userId', 'userId'), ('age', 'age')]
    row = columns.row(("1", "477049", "30"))     # {'transactionId': '1', 'userId': '477049', 'age': '30'}
    text_form(datetime(2024, 1, 1, tzinfo=timezone.utc))   # '2024-01-01 00:00:00+00:00'

A database row goes through exactly what a CSV row goes through (``contracts.batch_input``):
its values are handed over as the text a CSV export of the table would hold, so the consent
map, the timestamp format and the contract's type conversion are the same. Only NULL differs
from CSV, where it cannot be written: it stays ``None`` (a missing value), so a NULL in a
required field is a dead letter rather than an empty string.

A column maps to the contract field of the same name; because PostgreSQL folds unquoted names
to lower case (``CREATE TABLE t (userId text)`` makes a column ``userid``), a column whose name
matches no field exactly maps to the one field that equals it ignoring case. A column that
maps to no field (and is not one the reader uses itself, such as a split or watermark column)
is refused at start-up with ``ColumnError``: a table of extra columns would otherwise make
every row a dead letter. Select the columns you want with a ``query:`` instead.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass
from decimal import Decimal

from contracts.model import NODE, Contract


class ColumnError(ValueError):
    """A table whose columns do not fit the contract; the message names the source and columns."""


@dataclass(frozen=True)
class ColumnMap:
    """The columns a reader selects, each with the contract field it fills."""

    selected: tuple[tuple[str, str], ...]      # (column name, contract field name)

    @classmethod
    def of(cls, contract: Contract, columns: list[str], ignore=(), source: str = "table") -> "ColumnMap":
        """Map ``columns`` (in table order) to top-level contract fields; ``ignore`` are read for other uses."""
        fields = [node.name for node in contract.nodes]
        exact = set(fields)
        folded: dict[str, list[str]] = {}
        for name in fields:
            folded.setdefault(name.lower(), []).append(name)
        selected, unknown, seen = [], [], {}
        for column in columns:
            if column in exact:
                target = column
            elif len(folded.get(column.lower(), [])) == 1:
                target = folded[column.lower()][0]
            elif column in ignore:
                continue
            else:
                unknown.append(column)
                continue
            if target in seen:
                raise ColumnError(f"{source}: columns '{seen[target]}' and '{column}' both map to contract field "
                                  f"'{target}'; select one of them with a query")
            seen[target] = column
            selected.append((column, target))
        if unknown:
            raise ColumnError(f"{source}: column(s) {', '.join(repr(c) for c in unknown)} are not fields of contract "
                              f"{contract.ref}; select the contract's columns with a query: \"SELECT ... FROM ...\"")
        if not selected:
            raise ColumnError(f"{source}: no column is a field of contract {contract.ref}")
        return cls(tuple(selected))

    @property
    def columns(self) -> list[str]:
        return [column for column, _ in self.selected]

    @property
    def fields(self) -> list[str]:
        return [name for _, name in self.selected]

    def row(self, values) -> dict:
        """A row dict by contract field from values in ``selected`` order."""
        return dict(zip(self.fields, values))


def structured_field(contract: Contract, name: str) -> bool:
    """Whether a field's text form is JSON (repeated fields and nested records), as in a CSV."""
    node = contract.node(name)
    return node is not None and (node.repeated or node.type == NODE)


def text_form(value):
    """A driver's Python value as the text a CSV of it would hold; ``None`` stays ``None``.

    Numbers and text as ``str()`` gives them, booleans ``true``/``false``, times in ISO form
    with a space (``2024-01-01 00:00:00``, an offset when the value has one), lists and
    records as JSON, bytes as base64.
    """
    if value is None or value.__class__ is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, Decimal)):
        return str(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=_json_default, separators=(", ", ": "))
    return str(value)


def _json_default(value):
    if isinstance(value, Decimal):
        return float(value) if value != value.to_integral_value() else int(value)
    text = text_form(value)
    if text is value:
        raise TypeError(type(value).__name__)
    return text
