"""A PostgreSQL table or query cut into key ranges that workers read independently (no Beam here).

    from transforms.postgres_ranges import PostgresSource, plan_read, read_range
    source = PostgresSource("postgresql://reader@db:5432/shop", table="public.orders", split_by="id",
                            splits=8, name="shopdb")
    with source.connect() as conn:
        plan = plan_read(conn, source, contract)     # columns checked against the contract
        for key_range in plan.ranges:                # 8 ranges of id, plus one for NULL ids
            for position, row in read_range(conn, source, plan, key_range):
                ...                                  # row: {contract field: text or None}

**Splitting.** The split column is the one the user names (``split_by``), else the table's
primary key when it is one numeric or time column, else the read is one range. Its minimum
and maximum (over finite values) give ``splits - 1`` cut points at equal distances, as Beam
Java's ``JdbcIO.readWithPartitions`` and Spark's JDBC source do; the first range is open
below, the last open above and NULLs have a range of their own, so every row (NaN and
infinities too) falls in exactly one range whatever the key distribution: adjacent ranges test
the same cut value with ``<`` and ``>=``. Skewed keys give uneven ranges, not lost or doubled
rows. ``splits`` defaults to one range per ``ROWS_PER_SPLIT`` rows (``count(*)`` at planning).

**Values.** Every column is selected as PostgreSQL's own text form (``::text``; arrays and
records as JSON, ``to_json``), in a session whose time zone is UTC, so that a row is the text a
CSV export of it would hold and goes through the same conversion as a CSV row
(``contracts.table_rows``). NULL stays ``None``.

**Incremental reads.** With ``incremental`` (a watermark column), only rows with
``since < column <= until`` are read: ``since`` is the previous run's ``until``, and ``until``
is the column's maximum when the run starts (``max_watermark``), fixed before anything is read,
so a row added during the run is read by the next one. Rows whose watermark is NULL are never
read incrementally; a new row must get a watermark above every earlier one (a sequence, or the
insert time), or it is missed.

**Positions.** Dead letters name ``<connector>:<table>@<ctid>`` (the row's physical address:
``SELECT * FROM t WHERE ctid = '(12,5)'``) for tables and ``<connector>:query[<range>]#<row>``
for queries (rows of a range in split-column order): never a value of the row.

The driver is psycopg 3 with its C extension (``psycopg[binary]``), as for the key store: pg8000
(pure Python, the key store's driver before) read the web shop's 13 columns at 29,000 rows/s
here, psycopg at 115,000 rows/s. Connections are read-only.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from decimal import Decimal

from contracts.model import Contract
from contracts.table_rows import ColumnError, ColumnMap

ROWS_PER_SPLIT = 50_000
MAX_SPLITS = 1024
FETCH_ROWS = 5_000
_NUMERIC, _TIME = "N", "D"     # pg_type.typcategory of numbers and of dates/times
_FLOATS = {"float4", "float8", "numeric"}
_JSON_CATEGORIES = {"A", "C"}  # arrays, composite types: their text form becomes JSON


class SourceError(ValueError):
    """A table, query or column that cannot be read as asked; the message names it (never a secret)."""


@dataclass(frozen=True)
class PostgresSource:
    """What to read from one PostgreSQL connector.

    Args:
        conninfo: a ``postgresql://`` URI (or libpq key=value string) without a password.
        password: from the connector's credentials; never shown (not in ``repr``).
        table: ``schema.table`` or ``table``, resolved as PostgreSQL resolves names in SQL.
        query: a ``SELECT`` instead of a table.
        split_by: the numeric or time column to split on (default: the primary key).
        splits: number of key ranges (default: by ``count(*)``, one per ROWS_PER_SPLIT rows).
        incremental: the watermark column of incremental reads; ``since``/``until`` its bounds (text).
        name: the connector's name, for positions and messages.
    """

    conninfo: str
    password: str | None = field(default=None, repr=False)
    table: str | None = None
    query: str | None = None
    split_by: str | None = None
    splits: int | None = None
    incremental: str | None = None
    since: str | None = None
    until: str | None = None
    name: str = "postgresql"

    def __post_init__(self):
        if (self.table is None) == (self.query is None):
            raise SourceError(f"connector '{self.name}': give exactly one of a table or a query")
        if self.splits is not None and not 1 <= self.splits <= MAX_SPLITS:
            raise SourceError(f"connector '{self.name}': splits must be 1-{MAX_SPLITS}, got {self.splits}")

    @property
    def label(self) -> str:
        return f"{self.name}:{self.table if self.table else 'query'}"

    def connect(self):
        """A read-only psycopg connection in UTC; SourceError if the server cannot be reached."""
        import psycopg

        try:
            conn = psycopg.connect(self.conninfo, password=self.password, connect_timeout=15,
                                   application_name="pstream-batch-read")
        except psycopg.Error as exc:
            raise SourceError(f"connector '{self.name}': cannot connect: {_reason(exc)}") from None
        conn.read_only = True
        conn.execute("SET TIME ZONE 'UTC'")
        conn.commit()
        return conn


@dataclass(frozen=True)
class Column:
    name: str
    category: str        # pg_type.typcategory
    type_sql: str        # format_type(), for casts
    type_name: str       # pg_type.typname
    not_null: bool = False


@dataclass(frozen=True)
class KeyRange:
    """Rows with ``lower <= key < upper`` (None: unbounded), or the rows whose key is NULL."""

    index: int
    lower: object = None
    upper: object = None
    nulls: bool = False
    whole: bool = False   # no split: every row

    def describe(self) -> str:
        if self.whole:
            return "all rows"
        if self.nulls:
            return "key IS NULL"
        return f"[{'-inf' if self.lower is None else self.lower}, {'+inf' if self.upper is None else self.upper})"


@dataclass(frozen=True)
class ReadPlan:
    """The columns to select, the split column and the ranges of one read."""

    relation: str                  # SQL: a quoted table name, or (query)
    columns: ColumnMap
    split: Column | None
    watermark: Column | None
    ranges: tuple[KeyRange, ...]
    rows: int                      # count(*) at planning (incremental: new rows only)
    is_table: bool
    json_columns: frozenset = frozenset()   # arrays and records: selected as JSON


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + (" ..." if len(text) > 300 else "") or type(exc).__name__


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _relation(conn, source: PostgresSource) -> tuple[str, list[Column], list[str]]:
    """(FROM clause, columns, primary-key columns) of the table or query."""
    import psycopg

    try:
        with conn.cursor() as cur:
            if source.table is not None:
                cur.execute("SELECT to_regclass(%s)::oid", (source.table,))
                oid = cur.fetchone()[0]
                if oid is None:
                    raise SourceError(f"{source.label}: no such table (or no permission to see it)")
                cur.execute("SELECT %s::oid::regclass::text", (oid,))
                relation = cur.fetchone()[0]
                cur.execute("""SELECT a.attname, t.typcategory, format_type(a.atttypid, a.atttypmod), t.typname,
                                      a.attnotnull
                               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                               WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum""",
                            (oid,))
                columns = [Column(*row) for row in cur.fetchall()]
                cur.execute("""SELECT a.attname FROM pg_index i
                               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                               WHERE i.indrelid = %s AND i.indisprimary""", (oid,))
                primary = [row[0] for row in cur.fetchall()]
            else:
                relation = f"({source.query.strip().rstrip(';')})"
                cur.execute(f"SELECT * FROM {relation} AS q LIMIT 0")
                described = [(d.name, d.type_code) for d in cur.description]
                cur.execute("SELECT oid, typcategory, format_type(oid, NULL), typname FROM pg_type WHERE oid = ANY(%s)",
                            ([oid for _, oid in described],))
                types = {row[0]: row[1:] for row in cur.fetchall()}
                columns = [Column(name, *types[oid]) for name, oid in described]
                primary = []
        conn.rollback()
    except psycopg.Error as exc:
        conn.rollback()
        raise SourceError(f"{source.label}: {_reason(exc)}") from None
    names = [c.name for c in columns]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SourceError(f"{source.label}: the query returns column(s) {', '.join(duplicates)} more than once")
    return relation, columns, primary


def _named(columns: list[Column], name: str, source: PostgresSource, role: str) -> Column:
    for column in columns:
        if column.name == name:
            return column
    for column in columns:
        if column.name == name.lower():
            return column
    raise SourceError(f"{source.label}: the {role} column '{name}' is not a column of the "
                      f"{'table' if source.table else 'query'} ({', '.join(c.name for c in columns)})")


def _sortable(column: Column, source: PostgresSource, role: str) -> Column:
    if column.category not in (_NUMERIC, _TIME) or column.type_name in ("interval", "money"):
        raise SourceError(f"{source.label}: the {role} column '{column.name}' is of type {column.type_sql}; "
                          "it must be a number, a date or a timestamp")
    return column


def _finite(column: Column) -> str:
    name = f"q.{_quote(column.name)}"
    if column.category == _TIME:
        return f"isfinite({name})"
    if column.type_name in _FLOATS:
        return f"{name}::float8 > '-Infinity'::float8 AND {name}::float8 < 'Infinity'::float8"
    return "true"


def _incremental_filter(plan_watermark: Column | None, source: PostgresSource) -> tuple[str, list]:
    if plan_watermark is None:
        return "true", []
    name, cast = f"q.{_quote(plan_watermark.name)}", plan_watermark.type_sql
    clauses, params = [f"{name} <= CAST(%s AS {cast})"], [source.until]
    if source.since is not None:
        clauses.append(f"{name} > CAST(%s AS {cast})")
        params.append(source.since)
    return " AND ".join(clauses), params


def cut_points(lowest, highest, splits: int) -> list:
    """``splits - 1`` increasing cut values between lowest and highest (fewer when keys are few)."""
    if lowest is None or splits < 2 or not lowest < highest:
        return []
    if isinstance(lowest, int) and isinstance(highest, int):
        cuts = [lowest + (highest - lowest) * i // splits for i in range(1, splits)]
    elif isinstance(lowest, (dt.datetime, dt.date)):
        cuts = [lowest + (highest - lowest) * i / splits for i in range(1, splits)]
        if not isinstance(lowest, dt.datetime):
            cuts = [lowest + dt.timedelta(days=((highest - lowest).days * i) // splits) for i in range(1, splits)]
    else:
        low, high = float(lowest), float(highest)
        cuts = [low + (high - low) * i / splits for i in range(1, splits)]
        if isinstance(lowest, Decimal):
            cuts = [Decimal(repr(c)) for c in cuts]
    out = []
    for cut in cuts:
        if lowest < cut and (not out or cut > out[-1]):
            out.append(cut)
    return out


def ranges_for(cuts: list, with_nulls: bool) -> tuple[KeyRange, ...]:
    """Ranges (-inf, c1), [c1, c2), ..., [cn, +inf), and the NULL range: each key in exactly one."""
    bounds = [None, *cuts, None]
    ranges = [KeyRange(i, bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]
    if with_nulls:
        ranges.append(KeyRange(len(ranges), nulls=True))
    return tuple(ranges)


def plan_read(conn, source: PostgresSource, contract: Contract) -> ReadPlan:
    """Check the columns against the contract and cut the read into ranges (one query)."""
    import psycopg

    relation, columns, primary = _relation(conn, source)
    split = None
    if source.split_by:
        split = _sortable(_named(columns, source.split_by, source, "split_by"), source, "split_by")
    elif len(primary) == 1:
        candidate = _named(columns, primary[0], source, "primary key")
        if candidate.category in (_NUMERIC, _TIME) and candidate.type_name not in ("interval", "money"):
            split = candidate
    watermark = None
    if source.incremental:
        watermark = _sortable(_named(columns, source.incremental, source, "incremental"), source, "incremental")
    used = [c.name for c in (split, watermark) if c is not None]
    try:
        mapping = ColumnMap.of(contract, [c.name for c in columns], ignore=used, source=source.label)
    except ColumnError as exc:
        raise SourceError(str(exc)) from None
    json_columns = frozenset(c.name for c in columns if c.category in _JSON_CATEGORIES)
    where, params = _incremental_filter(watermark, source)
    if source.incremental and source.until is None:   # the column has no value yet: nothing to read
        return ReadPlan(relation, mapping, split, watermark, (), 0, source.table is not None, json_columns)
    try:
        with conn.cursor() as cur:
            if split is None:
                cur.execute(f"SELECT count(*) FROM {relation} AS q WHERE {where}", params)
                rows, lowest, highest = cur.fetchone()[0], None, None
            else:
                key, finite = f"q.{_quote(split.name)}", _finite(split)
                cur.execute(f"SELECT count(*), min({key}) FILTER (WHERE {finite}), max({key}) FILTER (WHERE {finite}),"
                            f" count(*) FILTER (WHERE {key} IS NULL) FROM {relation} AS q WHERE {where}", params)
                rows, lowest, highest, nulls = cur.fetchone()
        conn.rollback()
    except psycopg.Error as exc:
        conn.rollback()
        raise SourceError(f"{source.label}: {_reason(exc)}") from None
    splits = source.splits or max(1, min(MAX_SPLITS, math.ceil(rows / ROWS_PER_SPLIT)))
    if split is None or splits == 1 or lowest is None:
        ranges = (KeyRange(0, whole=True),)
    else:
        ranges = ranges_for(cut_points(lowest, highest, splits), with_nulls=not split.not_null)
    return ReadPlan(relation, mapping, split, watermark, ranges, rows, source.table is not None, json_columns)


def select_sql(plan: ReadPlan, source: PostgresSource, key_range: KeyRange) -> tuple[str, list]:
    """The SELECT of one range and its parameters."""
    exprs = ["q.ctid::text" if plan.is_table else "NULL"]
    for name in plan.columns.columns:
        quoted = f"q.{_quote(name)}"
        exprs.append(f"to_json({quoted})::text" if name in plan.json_columns else f"{quoted}::text")
    where, params = _incremental_filter(plan.watermark, source)
    order = ""
    if not key_range.whole and plan.split is not None:
        key = f"q.{_quote(plan.split.name)}"
        cast = plan.split.type_sql
        if key_range.nulls:
            where += f" AND {key} IS NULL"
        elif key_range.lower is None and key_range.upper is None:
            where += f" AND {key} IS NOT NULL"
        else:
            if key_range.lower is not None:
                where += f" AND {key} >= CAST(%s AS {cast})"
                params.append(key_range.lower)
            if key_range.upper is not None:
                where += f" AND {key} < CAST(%s AS {cast})"
                params.append(key_range.upper)
        if not plan.is_table:
            order = f" ORDER BY {key}"
    return f"SELECT {', '.join(exprs)} FROM {plan.relation} AS q WHERE {where}{order}", params


def read_range(conn, source: PostgresSource, plan: ReadPlan, key_range: KeyRange, fetch_rows: int = FETCH_ROWS):
    """(position, row dict by contract field) for each row of one range, through a server-side cursor."""
    import psycopg

    sql, params = select_sql(plan, source, key_range)
    fields = plan.columns.fields
    prefix = f"{source.label}@" if plan.is_table else f"{source.label}[{key_range.index}]#"
    try:
        with conn.cursor(name=f"pstream_range_{key_range.index}") as cur:
            cur.itersize = fetch_rows
            cur.execute(sql, params)
            number = 0
            for values in cur:
                number += 1
                yield prefix + (values[0] if plan.is_table else str(number)), dict(zip(fields, values[1:]))
        conn.commit()
    except psycopg.Error as exc:
        conn.rollback()
        raise SourceError(f"{source.label}: reading range {key_range.index} ({key_range.describe()}) failed: "
                          f"{_reason(exc)}") from None


def max_watermark(conn, source: PostgresSource) -> str | None:
    """The incremental column's largest value now, as text (None: the column has no value yet)."""
    import psycopg

    relation, columns, _ = _relation(conn, source)
    column = _sortable(_named(columns, source.incremental, source, "incremental"), source, "incremental")
    key = f"q.{_quote(column.name)}"
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT max({key})::text FROM {relation} AS q WHERE {_finite(column)}")
            value = cur.fetchone()[0]
        conn.rollback()
    except psycopg.Error as exc:
        conn.rollback()
        raise SourceError(f"{source.label}: {_reason(exc)}") from None
    return value
