"""On-the-fly decryption over the exports of a real run: DuckDB, BigQuery SQL, a Spark UDF; then a forget."""
from __future__ import annotations

import pickle

import duckdb
import pytest
import sqlglot
from sqlglot import exp

from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from contracts import load_contract
from privacy.kek import kek_from_uri
from privacy.keystore import open_key_store
from privacy.onthefly import ExportedKeys, SparkDecryptor, StoreKeys, bigquery_decrypt_sql, bigquery_forget_sql
from privacy.onthefly_duckdb import consent_view_sql, create_consent_view, jsonl_source, register_decrypt
from pipeline_runs import copy_run, read_csv, webshop_run

WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
PII = {"userId": 1, "email": 2, "fullName": 2, "phoneNumber": 2, "address": 2}


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    return webshop_run(tmp_path_factory.mktemp("onthefly_run"))


@pytest.fixture
def run(shared_run, tmp_path):
    return copy_run(shared_run, tmp_path)


@pytest.fixture(scope="module")
def contract():
    return load_contract(WEBSHOP)


def store_keys(run, **kwargs) -> StoreKeys:
    out = run / "out"
    return StoreKeys(open_key_store(out / "keystore.sqlite"), kek_from_uri(f"local://{out / 'kek.json'}"), **kwargs)


def connect(run) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    register_decrypt(con, store_keys(run))
    return con


def query(con, sql: str) -> list[dict]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def inputs(run) -> dict[str, dict]:
    return {row["transactionId"]: row for row in read_csv(run / "in.csv")}


def consents(row: dict, level: int) -> bool:
    """The web shop's consent: purposeConsent N gives consentLevels [N]; cumulative: N >= level."""
    return int(row["purposeConsent"]) >= level


def test_duckdb_decrypts_every_pii_field_of_a_real_run(run):
    con = connect(run)
    columns = ", ".join(f'decrypt_pii("{f}", "strmMeta"."keyLink") AS "{f}"' for f in PII)
    found = query(con, f'SELECT "transactionId", {columns} FROM {jsonl_source(str(run / "out" / "encrypted"))}')
    expected = inputs(run)
    assert len(found) == len(expected) == 1500
    for row in found:
        assert {f: row[f] for f in PII} == {f: expected[row["transactionId"]][f] for f in PII}


def test_consent_view_shows_the_example_values_for_consenting_rows_only(run, contract):
    con = connect(run)
    create_consent_view(con, "shop", jsonl_source(str(run / "out" / "encrypted")), contract)
    expected = inputs(run)
    found = query(con, 'SELECT * FROM shop')
    assert len(found) == len(expected)
    seen = set()
    for row in found:
        source = expected[row["transactionId"]]
        for field, level in PII.items():
            if consents(source, level):
                assert row[field] == source[field]
                seen.add((field, True))
            else:
                assert row[field] != source[field] and row[field].startswith("A")  # still the ciphertext
                seen.add((field, False))
    assert seen == {(f, c) for f in PII for c in (True, False)}  # both cases occur for every field

    # the cumulative view equals the pipeline's own privacy stream webshop-2 on the rows in it
    stream = {e["transactionId"]: e for _, _, e in read_jsonl([str(run / "out" / "streams" / "webshop-2")])}
    assert stream
    view = {row["transactionId"]: row for row in found}
    for transaction, event in stream.items():
        assert {f: view[transaction][f] for f in PII} == {f: event[f] for f in PII}


def test_granular_view_and_purpose_selection(run, contract):
    con = connect(run)
    source = jsonl_source(str(run / "out" / "encrypted"))
    create_consent_view(con, "marketing", source, contract, purposes=[2], rule="granular")
    expected = inputs(run)
    for row in query(con, "SELECT * FROM marketing"):
        source_row = expected[row["transactionId"]]
        assert row["userId"] != source_row["userId"]  # purpose 1 is not asked for: never decrypted
        assert (row["email"] == source_row["email"]) == (source_row["purposeConsent"] == "2")
    with pytest.raises(ValueError, match="consent rule"):
        consent_view_sql("v", source, contract, rule="sometimes")


def test_after_forget_duckdb_and_the_spark_udf_return_null_for_them_and_plaintext_for_others(run, contract, capsys):
    expected = inputs(run)
    forgotten = sorted({row["userId"] for row in expected.values()})[0]
    con = connect(run)  # registered before the forget, used after it
    create_consent_view(con, "shop", jsonl_source(str(run / "out" / "encrypted")), contract)
    clock = [0.0]
    udf = pickle.loads(pickle.dumps(SparkDecryptor(  # shipped to an executor as Spark would
        f"sqlite://{run / 'out' / 'keystore.sqlite'}", f"local://{run / 'out' / 'kek.json'}", max_age_s=60)))
    udf.clock = lambda: clock[0]
    encrypted = {e["transactionId"]: e for _, _, e in read_jsonl([str(run / "out" / "encrypted")])}
    theirs = [t for t, row in expected.items() if row["userId"] == forgotten]
    event = encrypted[theirs[0]]
    assert udf(event["email"], event["strmMeta"]["keyLink"]) == expected[theirs[0]]["email"]

    assert pstream(["subjects", "forget", forgotten, "--output", str(run / "out")]) == 0
    assert capsys.readouterr().out.startswith("deleted ")

    rows = {r["transactionId"]: r for r in query(
        con, f'SELECT "transactionId", decrypt_pii(email, "strmMeta"."keyLink") AS plain, email FROM '
             f'{jsonl_source(str(run / "out" / "encrypted"))}')}
    view = {r["transactionId"]: r for r in query(con, "SELECT * FROM shop")}
    for transaction, row in expected.items():
        if row["userId"] == forgotten:
            assert rows[transaction]["plain"] is None
            assert view[transaction]["email"] in (None, encrypted[transaction]["email"])  # null, or never decrypted
            assert view[transaction]["email"] != row["email"]
        else:
            assert rows[transaction]["plain"] == row["email"]
    # the Spark UDF trusts what it read for max_age_s, then asks the key store again
    assert udf(event["email"], event["strmMeta"]["keyLink"]) == expected[theirs[0]]["email"]
    clock[0] += 61
    assert udf(event["email"], event["strmMeta"]["keyLink"]) is None
    other = next(t for t, row in expected.items() if row["userId"] != forgotten)
    assert udf(encrypted[other]["email"], encrypted[other]["strmMeta"]["keyLink"]) == expected[other]["email"]
    assert udf(None, "x") is None and udf("not a ciphertext", encrypted[other]["strmMeta"]["keyLink"]) is None


def test_spark_udf_from_a_key_export_file(run, capsys):
    out = run / "out"
    assert pstream(["keys", "export", str(out / "keys"), "--kek", f"local://{out / 'kek.json'}", "-o",
                    str(out / "keys.csv")]) == 0
    udf = pickle.loads(pickle.dumps(SparkDecryptor(key_export=str(out / "keys.csv"))))
    expected = inputs(run)
    for _, _, event in list(read_jsonl([str(out / "encrypted")]))[:50]:
        assert udf(event["address"], event["strmMeta"]["keyLink"]) == expected[event["transactionId"]]["address"]
    with pytest.raises(ValueError):
        SparkDecryptor("sqlite:///x")  # a store without a KEK


def test_bigquery_sql_parses_and_decrypts_like_bigquery_would(run, contract, capsys):
    """Parse the SQL as BigQuery; then run it, transpiled by sqlglot, in DuckDB where
    DETERMINISTIC_DECRYPT_STRING is Google Tink's deterministic AEAD over the keyset JSON."""
    import tink
    from tink import daead, secret_key_access

    daead.register()
    sql = bigquery_decrypt_sql(contract, "proj.shop.events", "proj.shop.keys", view="proj.shop.events_plain")
    tree = sqlglot.parse_one(sql, read="bigquery")
    assert isinstance(tree, exp.Create)
    calls = [f for f in tree.find_all(exp.Anonymous) if f.name.upper() == "DETERMINISTIC_DECRYPT_STRING"]
    assert len(calls) == len(PII)
    join = tree.find(exp.Join)
    assert join.side.upper() == "LEFT" and "keyLink" in join.sql("bigquery")
    replaced = {e.alias for e in tree.find(exp.Star).args["replace"]}
    assert replaced == set(PII)
    sqlglot.parse_one(bigquery_forget_sql("proj.shop.keys", ["6f9ad4ba-705a-4be3-b4ae-255d60a34f8e"]), read="bigquery")

    out = run / "out"
    assert pstream(["keys", "export", str(out / "keys"), "--kek", f"local://{out / 'kek.json'}", "-o",
                    str(out / "keys.csv")]) == 0
    capsys.readouterr()

    def tink_decrypt(keyset_json, ciphertext, associated_data):
        try:
            handle = tink.json_proto_keyset_format.parse(keyset_json, secret_key_access.TOKEN)
            return handle.primitive(daead.DeterministicAead).decrypt_deterministically(
                ciphertext, associated_data.encode()).decode()
        except tink.TinkError:
            return None  # SAFE.: NULL instead of an error

    con = duckdb.connect()
    con.create_function("_tink_decrypt", tink_decrypt, ["VARCHAR", "BLOB", "VARCHAR"], "VARCHAR")
    con.execute("CREATE SCHEMA safe; CREATE SCHEMA keys")
    con.execute("CREATE MACRO safe.deterministic_decrypt_string(k, c, a) AS _tink_decrypt(k, c, a)")
    con.execute("CREATE MACRO keys.keyset_from_json(j) AS j")
    con.execute("ATTACH ':memory:' AS proj; CREATE SCHEMA proj.shop")
    con.execute(f"CREATE TABLE proj.shop.events AS SELECT * FROM {jsonl_source(str(out / 'encrypted'))}")
    con.execute(f"CREATE TABLE proj.shop.keys AS SELECT * FROM read_csv('{out / 'keys.csv'}', all_varchar = true)")
    query_sql = bigquery_decrypt_sql(contract, "proj.shop.events", "proj.shop.keys")
    duck_sql = sqlglot.transpile(query_sql, read="bigquery", write="duckdb")[0]
    expected = inputs(run)
    found = query(con, duck_sql)
    assert len(found) == len(expected)
    for row in found:
        source = expected[row["transactionId"]]
        for field, level in PII.items():
            assert (row[field] == source[field]) == consents(source, level)

    forgotten_link = found[0]["strmMeta"]["keyLink"]
    con.execute(sqlglot.transpile(bigquery_forget_sql("proj.shop.keys", [str(forgotten_link)]),
                                  read="bigquery", write="duckdb")[0])
    after = [r for r in query(con, duck_sql) if r["strmMeta"]["keyLink"] == forgotten_link]
    assert after and all(r["email"] is None or r["email"].startswith("A") for r in after)


def test_bigquery_sql_refuses_bad_names(contract):
    with pytest.raises(ValueError, match="not a BigQuery table"):
        bigquery_decrypt_sql(contract, "events; DROP TABLE x", "proj.shop.keys")
    with pytest.raises(ValueError, match="UUID"):
        bigquery_forget_sql("proj.shop.keys", ["x' OR '1'='1"])


def test_exported_keys_source(run, capsys):
    out = run / "out"
    pstream(["keys", "export", str(out / "keys"), "--kek", f"local://{out / 'kek.json'}", "-o", str(out / "keys.csv")])
    keys = ExportedKeys(str(out / "keys.csv"))
    event = next(e for _, _, e in read_jsonl([str(out / "encrypted")]))
    assert keys.decrypt_many([event["email"], event["email"]], [event["strmMeta"]["keyLink"], "gone"]) == [
        inputs(run)[event["transactionId"]]["email"], None]
