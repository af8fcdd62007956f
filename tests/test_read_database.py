"""PostgreSQL tables as batch input, against the real server: same events as the CSV, exact splits,
dead letters for bad rows, a start-up error for columns the contract lacks."""
from __future__ import annotations

import collections
import datetime as dt
import math

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings, strategies as st

from contracts import load_contract
from contracts.batch_input import BatchInput, ConsentConfig, TimestampConfig
from pg_tables import PG_URI, connect, drop, unique_table, webshop_table
from pipeline_runs import read_csv, webshop_csv
from transforms.postgres_ranges import PostgresSource, SourceError, plan_read, read_range, select_sql
from transforms.event_batches import Unbatch
from transforms.read_database import ReadPostgresTable
from transforms.read_input import ReadBatchInput
from transforms.validate import ValidateEvents

WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
NOW_MS = 1_700_000_000_000


@pytest.fixture(scope="module")
def contract():
    return load_contract(WEBSHOP)


@pytest.fixture(scope="module")
def batch(contract):
    return BatchInput(contract, ConsentConfig(field="purposeConsent"),
                      TimestampConfig(field="date", format="yyyy-MM-dd HH:mm:ss"), now_ms=NOW_MS)


@pytest.fixture
def conn():
    with connect() as connection:
        yield connection


@pytest.fixture
def table(conn):
    name = unique_table("t")
    yield name
    drop(conn, name)


def without_nonce(pair):
    position, event = pair
    meta = {k: v for k, v in event["strmMeta"].items() if k != "nonce"}
    return {**event, "strmMeta": meta}


def test_table_rows_become_the_events_of_the_same_csv(tmp_path, conn, table, batch):
    csv_path = webshop_csv(tmp_path / "shop.csv", records=2000, customers=150)
    webshop_table(conn, table, read_csv(csv_path))
    source = PostgresSource(PG_URI, table=table, splits=5, name="shopdb")
    with TestPipeline(runner="FnApiRunner") as p:
        from_table = p | "Table" >> ReadPostgresTable(source, batch)
        from_csv = p | "Csv" >> ReadBatchInput(str(csv_path), batch)
        table_events = from_table[ReadPostgresTable.EVENTS] | "UT" >> Unbatch() | "T" >> beam.Map(without_nonce)
        csv_events = from_csv[ReadBatchInput.EVENTS] | "UC" >> Unbatch() | "C" >> beam.Map(without_nonce)
        expected = csv_events | "All C" >> beam.combiners.ToList()
        actual = table_events | "All T" >> beam.combiners.ToList()
        same = actual | beam.Map(lambda t, c: (len(t), sorted(map(repr, t)) == sorted(map(repr, c))),
                                 beam.pvalue.AsSingleton(expected))
        assert_that(same, equal_to([(2000, True)]))
        assert_that(from_table[ReadPostgresTable.DEAD_LETTER], equal_to([]), label="no dead letters")


def test_a_column_the_contract_lacks_is_a_start_up_error(conn, table, contract):
    conn.execute(f'CREATE TABLE {table} ("transactionId" text, "userId" text, loyalty_tier text, "Secret" text)')
    source = PostgresSource(PG_URI, table=table, name="shopdb")
    with source.connect() as reader, pytest.raises(SourceError) as err:
        plan_read(reader, source, contract)
    assert "'loyalty_tier', 'Secret'" in str(err.value) and "not fields of contract" in str(err.value)
    # a query that selects the contract's columns reads the same table
    source = PostgresSource(PG_URI, query=f'SELECT "transactionId", "userId" FROM {table}', name="shopdb")
    with source.connect() as reader:
        assert plan_read(reader, source, contract).columns.fields == ["transactionId", "userId"]


def test_unknown_tables_and_split_columns_are_clear_errors(conn, table, contract):
    conn.execute(f'CREATE TABLE {table} ("transactionId" text, "userId" text)')
    cases = [(dict(table=table + "_absent"), "no such table"),
             (dict(table=table, split_by="nope"), "split_by column 'nope' is not a column"),
             (dict(table=table, split_by="userId"), "of type text; it must be a number, a date or a timestamp"),
             (dict(query="SELECT 1 +"), "syntax error")]
    for kwargs, message in cases:
        source = PostgresSource(PG_URI, name="shopdb", **kwargs)
        with source.connect() as reader, pytest.raises(SourceError, match=message):
            plan_read(reader, source, contract)
    with pytest.raises(SourceError, match="cannot connect"):
        PostgresSource("postgresql://postgres@127.0.0.1:1/test", table=table, name="down").connect()


def test_nulls_and_wrong_types_become_dead_letters(conn, table, batch, contract):
    conn.execute(f'CREATE TABLE {table} (id int PRIMARY KEY, "transactionId" text, "userId" text, age text, '
                 f'"tshirtSize" text, items text, date text, "purposeConsent" text)')
    conn.execute(f"""INSERT INTO {table} VALUES
        (1, 't1', 'u1', '30', 'M', '[1, 2]', '2024-01-01 10:00:00', '2'),
        (2, NULL, 'u2', '31', 'M', '[1]', '2024-01-01 10:00:00', '2'),
        (3, 't3', 'u3', 'thirty', 'M', '[1]', '2024-01-01 10:00:00', '2'),
        (4, 't4', 'u4', '32', 'M', 'not a list', '2024-01-01 10:00:00', '2'),
        (5, 't5', 'u5', '33', 'M', '[1]', 'yesterday', '2'),
        (6, 't6', 'u6', '34', 'XXL', '[1]', '2024-01-01 10:00:00', '2'),
        (7, 't7', NULL, NULL, NULL, NULL, '2024-01-01 10:00:00', NULL)""")
    source = PostgresSource(PG_URI, table=table, split_by="id", splits=3, name="shopdb")
    with TestPipeline(runner="FnApiRunner") as p:
        read = p | ReadPostgresTable(source, batch)
        checked = read[ReadPostgresTable.EVENTS] | ValidateEvents({contract.ref: contract})
        dead = [read[ReadPostgresTable.DEAD_LETTER], checked[ValidateEvents.DEAD_LETTER]] | beam.Flatten()
        assert_that(dead | beam.Map(lambda d: (d["stage"], d["reason"])), equal_to([
            ("read", "field 'age': cannot be converted to INTEGER"),
            ("read", "field 'items': cannot be converted to a list of INTEGER"),
            ("read", "field 'date': does not parse as a timestamp of format 'yyyy-MM-dd HH:mm:ss'"),
            ("validate", "field 'transactionId': is required but missing"),
            ("validate", "field 'userId': is required but missing"),
            ("validate", "field 'tshirtSize': doesn't match regex '^(XS|S|M|L|XL)$'"),
        ]))
        positions = dead | "Positions" >> beam.Map(lambda d: d["position"].startswith(f"shopdb:{table}@(")
                                                    and "thirty" not in str(d) and "XXL" not in str(d))
        assert_that(positions, equal_to([True] * 6), label="ctid positions, no values")
        assert_that(checked[ValidateEvents.VALID] | Unbatch() | beam.Map(lambda pair: pair[1]["transactionId"]),
                    equal_to(["t1"]),
                    label="valid")


KEY_TYPES = {
    "bigint": st.integers(-(2**62), 2**62),
    "float8": st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, -0.0, 1.5])),
    "numeric": st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**9, max_value=10**9),
    "timestamptz": st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1),
                                timezones=st.just(dt.timezone.utc)),
    "date": st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
}


@pytest.mark.parametrize("key_type", sorted(KEY_TYPES))
def test_splits_cover_every_row_exactly_once(conn, contract, key_type):
    """Any split count and key distribution (duplicates, NULLs, NaN, infinities): each row read once."""
    table = unique_table("split")
    conn.execute(f'CREATE TABLE {table} ("transactionId" text, k {key_type})')
    keys = KEY_TYPES[key_type]

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(values=st.lists(st.one_of(st.none(), keys), max_size=60),
           clustered=st.booleans(), splits=st.integers(1, 12))
    def check(values, clustered, splits):
        if clustered and values:   # many rows on a few keys
            values = values[:3] * 10
        conn.execute(f"TRUNCATE {table}")
        with conn.cursor() as cur:
            cur.executemany(f'INSERT INTO {table} VALUES (%s, %s)', [(str(i), v) for i, v in enumerate(values)])
        source = PostgresSource(PG_URI, table=table, split_by="k", splits=splits, name="db")
        with source.connect() as reader:
            plan = plan_read(reader, source, contract)
            read = [row["transactionId"] for r in plan.ranges for _, row in read_range(reader, source, plan, r)]
        assert collections.Counter(read) == collections.Counter(str(i) for i in range(len(values)))
        assert plan.rows == len(values)
        assert len(plan.ranges) <= splits + 1

    try:
        check()
    finally:
        drop(conn, table)


def test_a_million_rows_split_into_even_ranges(conn, contract):
    table = unique_table("million")
    conn.execute(f'CREATE TABLE {table} AS SELECT g AS id, g::text AS "transactionId", (g % 500)::text AS "userId" '
                 'FROM generate_series(1, 1000000) g')
    conn.execute(f"ALTER TABLE {table} ADD PRIMARY KEY (id)")
    try:
        source = PostgresSource(PG_URI, table=table, splits=8, name="db")   # split by the primary key
        with source.connect() as reader:
            plan = plan_read(reader, source, contract)
            assert plan.split.name == "id" and plan.rows == 1_000_000 and len(plan.ranges) == 8   # NOT NULL: no NULL range
            counts = []
            for key_range in plan.ranges:
                sql, params = select_sql(plan, source, key_range)
                counts.append(reader.execute(f"SELECT count(*) FROM ({sql}) AS r", params).fetchone()[0])
            reader.rollback()
        assert sum(counts) == 1_000_000 and max(counts) - min(counts) <= 2
        default = PostgresSource(PG_URI, table=table, name="db")   # one range per 50,000 rows
        with default.connect() as reader:
            assert len(plan_read(reader, default, contract).ranges) == math.ceil(1_000_000 / 50_000)
    finally:
        drop(conn, table)


def test_bigquery_rows_convert_like_csv_text(batch):
    """ReadFromBigQuery's typed values (Storage API) become their CSV text, then events or dead letters."""
    from decimal import Decimal

    from transforms.read_database import _BigQueryRowsFn

    good = {"transactionId": 170525764, "userId": 477049, "email": "a@b.io", "age": 30, "tshirtSize": "M",
            "items": [11217, 18090], "totalItems": 2, "transactionAmount": Decimal("12"),
            "date": dt.datetime(2024, 1, 2, 3, 4, 5), "purposeConsent": 2}
    bad = {**good, "transactionId": 1, "age": Decimal("30.5")}
    fn = _BigQueryRowsFn("demo-project.shop.orders", batch)
    fn.setup()
    fn.start_bundle()
    outs = list(fn.process(good)) + list(fn.finish_bundle())   # the bundle's batch leaves at its end
    (position, event), = [pair for out in outs for pair in out.value]
    assert position.startswith("bigquery:demo-project.shop.orders@") and position.endswith("#1")
    assert {k: event[k] for k in ("transactionId", "userId", "age", "items", "transactionAmount")} == {
        "transactionId": "170525764", "userId": "477049", "age": 30, "items": [11217, 18090], "transactionAmount": 12}
    assert event["strmMeta"]["timestamp"] == int(dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
                                                 .timestamp() * 1000) and event["strmMeta"]["consentLevels"] == [2]
    (dead,) = list(fn.process(bad))
    assert dead.tag == "dead_letter" and dead.value["reason"] == "field 'age': cannot be converted to INTEGER"


def test_columns_map_by_name_or_ignoring_case(contract):
    from contracts.table_rows import ColumnError, ColumnMap

    columns = ColumnMap.of(contract, ["transactionid", "userId", "AGE", "id"], ignore=["id"], source="db:t")
    assert columns.selected == (("transactionid", "transactionId"), ("userId", "userId"), ("AGE", "age"))
    with pytest.raises(ColumnError, match="columns 'userId' and 'userid' both map to contract field 'userId'"):
        ColumnMap.of(contract, ["userId", "userid"], source="db:t")
