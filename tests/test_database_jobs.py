"""Batch jobs from database tables and the micro-aggregation job, end to end (``python -m pipelines.run``),
plus Dataflow dry runs of the PostgreSQL, BigQuery and micro-aggregation graphs."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest
import yaml
from pycanon import anonymity

from cli.jsonl_files import read_jsonl as read_lines
from cli.main import main as pstream
from pg_tables import PG_URI, connect, drop, unique_table, webshop_table
from pipeline_runs import read_csv, run_pipeline, webshop_csv
from test_deploy import DATAFLOW, REMOTE, dataflow_job, transform_names

WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
MAPPING = {"consent": {"field": "purposeConsent"},
           "timestamp": {"field": "date", "format": "yyyy-MM-dd HH:mm:ss", "timezone": "UTC"}}


def write_config(path, **sections):
    base = {"name": "shop", "contract": WEBSHOP,
            "connectors": [{"name": "shopdb", "kind": "postgresql", "uri": PG_URI}], **sections}
    path.write_text(yaml.safe_dump(base, sort_keys=False))
    return path


def read_jsonl(directory: str) -> list[dict]:
    return [obj for _, _, obj in read_lines([directory])]


def run_here(*args: str) -> tuple[int, str]:
    """``python -m pipelines.run`` in this process (quick for runs that stop early): (exit code, output)."""
    from pipelines.run import run

    lines: list[str] = []
    code = run(list(args), echo=lines.append)
    return code, "\n".join(lines)


def counts(out: str) -> dict[str, int]:
    """The run summary's rows: label -> count."""
    return {m.group(1).strip(): int(m.group(2).replace(",", "")) for m in re.finditer(r"^(\S.*?)\s+([\d,]+)$", out, re.M)}


def decrypted(root, out: str, tmp_path) -> dict[str, dict]:
    keys = tmp_path / f"{out}-keys.jsonl"
    assert pstream(["keys", "export", str(root / out / "keys"), "--kek", f"local://{root / out / 'kek.json'}",
                    "-o", str(keys)]) == 0
    target = tmp_path / f"{out}-decrypted.jsonl"
    assert pstream(["decrypt", str(root / out / "encrypted"), "--keys", str(keys), "-o", str(target)]) == 0
    events = [json.loads(line) for line in target.read_text().splitlines()]
    return {e["transactionId"]: {k: v for k, v in e.items() if k != "strmMeta"} | {
        "consent": e["strmMeta"]["consentLevels"], "time": e["strmMeta"]["timestamp"]} for e in events}


@pytest.fixture
def shop_table():
    with connect() as conn:
        name = unique_table("shop")
        yield conn, name
        drop(conn, name)


def test_a_table_of_the_workshop_rows_gives_the_events_of_its_csv(tmp_path, shop_table, capsys):
    conn, table = shop_table
    csv_path = webshop_csv(tmp_path / "shop.csv", records=10_000, customers=500)
    webshop_table(conn, table, read_csv(csv_path))
    config = write_config(tmp_path / "db.yaml", input={"connector": "shopdb", "table": table, "split_by": "id",
                                                       "splits": 4, **MAPPING}, output="from_table")
    table_run = run_pipeline(tmp_path, "--config", str(config))
    csv_run = run_pipeline(tmp_path, "--config", str(write_config(
        tmp_path / "csv.yaml", input={"path": str(csv_path), **MAPPING}, output="from_csv")))
    for out in (table_run, csv_run):
        assert counts(out)["rows read"] == 10_000 and counts(out)["dead letters"] == 0
    from_table, from_csv = decrypted(tmp_path, "from_table", tmp_path), decrypted(tmp_path, "from_csv", tmp_path)
    assert len(from_table) == 10_000 and from_table == from_csv
    capsys.readouterr()


def test_incremental_reads_only_new_rows_and_keeps_its_state_after_the_run(tmp_path, shop_table):
    conn, table = shop_table
    rows = read_csv(webshop_csv(tmp_path / "shop.csv", records=300, customers=40))
    webshop_table(conn, table, rows[:200])
    config = write_config(tmp_path / "inc.yaml", output="out", input={
        "connector": "shopdb", "table": table, "split_by": "id", "incremental": {"column": "id"}, **MAPPING})
    first = run_pipeline(tmp_path, "--config", str(config))
    state = json.loads((tmp_path / "out" / "state" / "incremental.json").read_text())
    assert counts(first)["rows read"] == 200 and state["value"] == "200" and state["column"] == "id"
    with conn.cursor() as cur:   # 100 new rows: ids 201..300
        cur.executemany(f'INSERT INTO {table} ("transactionId", "userId", email, age, "tshirtSize", "fullName", '
                        '"phoneNumber", address, "transactionAmount", items, "totalItems", date, "purposeConsent") '
                        'VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)',
                        [(r["transactionId"], r["userId"], r["email"], r["age"], r["tshirtSize"], r["fullName"],
                          r["phoneNumber"], r["address"], r["transactionAmount"], json.loads(r["items"]),
                          r["totalItems"], r["date"], r["purposeConsent"]) for r in rows[200:]])
    second = run_pipeline(tmp_path, "--config", str(config))
    assert counts(second)["rows read"] == 100
    encrypted = read_jsonl(str(tmp_path / "out" / "encrypted"))
    ids = sorted(e["transactionId"] for e in encrypted)
    assert ids == sorted(r["transactionId"] for r in rows)           # each row once over both runs
    assert json.loads((tmp_path / "out" / "state" / "incremental.json").read_text())["value"] == "300"
    third = run_pipeline(tmp_path, "--config", str(config))
    assert counts(third)["rows read"] == 0
    # another table with the same output root is refused: its watermark would be wrong
    other = write_config(tmp_path / "other.yaml", output=str(tmp_path / "out"), input={
        "connector": "shopdb", "table": table, "incremental": {"column": "age"}, "split_by": "id", **MAPPING})
    code, refused = run_here("--config", str(other))
    assert code == 2 and "incremental state belongs to" in refused
    code, refused = run_here("--config", str(config), "--write_mode", "replace")
    assert code == 2 and "would delete what earlier incremental runs read" in refused


def test_start_up_errors_name_the_table_and_the_columns(tmp_path, shop_table):
    conn, table = shop_table
    conn.execute(f'CREATE TABLE {table} ("transactionId" text, "userId" text, loyalty text)')
    out = str(tmp_path / "out")
    code, text = run_here("--config", str(write_config(tmp_path / "bad.yaml", output=out,
                                                       input={"connector": "shopdb", "table": table})))
    assert code == 2 and f"error: shopdb:{table}: column(s) 'loyalty' are not fields of contract {WEBSHOP}" in text
    code, text = run_here("--config", str(write_config(tmp_path / "bad2.yaml", output=out,
                                                       input={"connector": "lake", "table": table})))
    assert code == 2 and "connector 'lake' is not defined (connectors: shopdb)" in text
    (tmp_path / "x.csv").write_text("transactionId\n")
    code, text = run_here("--config", str(write_config(tmp_path / "bad3.yaml", output=out,
                                                       input={"path": str(tmp_path / "x.csv")},
                                                       exporters=[{"output": "encrypted", "connector": "shopdb"}])))
    assert code == 2 and "a source of batch jobs: it cannot be an exporter's target" in text
    code, text = run_here("--config", str(write_config(
        tmp_path / "bad4.yaml", output=out, input={"connector": "shopdb", "table": table},
        connectors=[{"name": "shopdb", "kind": "postgresql", "uri": "postgresql://u:secret@127.0.0.1/test"}])))
    assert code == 2 and "the uri holds a password" in text and "secret" not in text
    code, text = run_here("--config", str(write_config(tmp_path / "bad5.yaml", output=out,
                                                       input={"connector": "shopdb", "table": table, "splits": 0})))
    assert code == 2 and "input.splits: 0 does not fit: minimum 1" in text   # the published schema says so


def test_micro_aggregation_of_a_table_is_k_anonymous_and_reports_its_loss(tmp_path, shop_table):
    conn, table = shop_table
    rows = read_csv(webshop_csv(tmp_path / "shop.csv", records=2000, customers=300))
    webshop_table(conn, table, rows)
    config = write_config(tmp_path / "micro.yaml", output="out", job="micro_aggregation",
                          micro_aggregation={"k": 4, "consent_levels": [1]},
                          input={"connector": "shopdb", "query": f'SELECT "transactionId", "userId", email, age, '
                                 f'"tshirtSize", "fullName", "phoneNumber", address, "transactionAmount", items, '
                                 f'"totalItems", date, "purposeConsent" FROM {table}', **MAPPING})
    out = run_pipeline(tmp_path, "--config", str(config), "--quasi_identifiers", "age,transactionAmount,tshirtSize")
    published = read_jsonl(str(tmp_path / "out" / "micro_aggregated"))
    consenting = [r for r in rows if r["purposeConsent"] == "1"]   # granular [1]: consent 2 is [2], not [1, 2]
    assert len(published) == len(consenting)
    frame = pd.DataFrame([{q: str(e[q]) for q in ("age", "transactionAmount", "tshirtSize")} for e in published])
    assert anonymity.k_anonymity(frame, list(frame.columns)) >= 4
    assert not {e["email"] for e in published} & {r["email"] for r in rows}          # PII stays encrypted
    report = read_jsonl(str(tmp_path / "out" / "report"))[0]
    assert report["k"] == 4 and report["suppressed"]["reasons"] == {"no consent to levels [1]": 2000 - len(consenting)}
    by_id = {r["transactionId"]: r for r in rows}
    for name in ("age", "transactionAmount"):
        original = pd.Series([float(by_id[e["transactionId"]][name]) for e in published])
        released = pd.Series([float(e[name]) for e in published])
        loss = ((original - released) ** 2).sum() / ((original - original.mean()) ** 2).sum()
        assert report["information_loss"]["per_field"][name] == pytest.approx(loss, abs=1e-6)
    assert f"information loss (SSE/SST): {report['information_loss']['total']:.4f}" in out
    code, too_big = run_here("--config", str(config), "--k", "5000", "--output", str(tmp_path / "out2"))
    assert code == 1 and "error: micro-aggregation: k = 5000 is larger than the" in too_big
    code, unknown = run_here("--config", str(config), "--quasi_identifiers", "zip")
    assert code == 2 and "quasi-identifier 'zip' is not a top-level field" in unknown
    code, small = run_here("--config", str(config), "--k", "1")
    assert code == 2 and "k must be an integer of at least 2" in small


# -- Dataflow dry runs --------------------------------------------------------------------------
def remote_config(tmp_path, **sections):
    from pipelines.config import load_config

    return load_config(str(write_config(tmp_path / "remote.yaml", **sections)), REMOTE)


def test_the_postgresql_graph_translates_for_dataflow(tmp_path):
    from pipelines.graph import build_batch_graph

    config = remote_config(tmp_path, input={"connector": "shopdb", "table": "public.orders", "split_by": "id",
                                            **MAPPING},
                           connectors=[{"name": "shopdb", "kind": "postgresql",
                                        "uri": "postgresql://reader@10.0.0.5:5432/shop"}])
    job = dataflow_job(lambda p, _: build_batch_graph(p, config))
    names = transform_names(job.proto_pipeline)
    for step in ("ReadInput/PlanRanges", "ReadInput/SpreadRanges", "ReadInput/ReadRanges", "ValidateEvents",
                 "EncryptPii", "Write encrypted"):
        assert step in names, step
    assert job.proto.type.name == "JOB_TYPE_BATCH"


def test_the_bigquery_graph_translates_for_dataflow(tmp_path):
    from apache_beam.portability import common_urns

    from pipelines.graph import build_batch_graph

    config = remote_config(tmp_path, input={"connector": "warehouse", "table": "demo-project.shop.orders", **MAPPING},
                           connectors=[{"name": "warehouse", "kind": "bigquery", "project": "demo-project"}])
    job = dataflow_job(lambda p, _: build_batch_graph(p, config))
    names = transform_names(job.proto_pipeline)
    assert "ReadInput/ReadFromBigQuery" in names and "ReadInput/RowsToEvents" in names
    reads = [t for t in job.proto_pipeline.components.transforms.values()
             if t.spec.urn == common_urns.deprecated_primitives.READ.urn or "BigQuery" in t.unique_name]
    assert reads
    with pytest.raises(Exception, match="apply to postgresql only"):
        remote_config(tmp_path, input={"connector": "warehouse", "table": "p.d.t", "split_by": "id"},
                      connectors=[{"name": "warehouse", "kind": "bigquery"}])


def test_the_micro_aggregation_graph_translates_for_dataflow(tmp_path):
    from pipelines.micro_aggregation import build_micro_aggregation_graph

    config = remote_config(tmp_path, input={"path": "gs://demo-bucket/in/*.csv", **MAPPING},
                           job="micro_aggregation", micro_aggregation={"k": 5, "quasi_identifiers": ["age"]})
    job = dataflow_job(lambda p, _: build_micro_aggregation_graph(p, config))
    names = transform_names(job.proto_pipeline)
    assert {"MicroAggregate/Gather", "Write micro_aggregated", "Write report", "Write keys"} <= names


def test_the_new_keys_are_in_the_published_schema(tmp_path):
    from pipelines.config import ConfigError, load_config

    config = load_config(str(write_config(
        tmp_path / "all.yaml", job="micro_aggregation",
        micro_aggregation={"k": 3, "quasi_identifiers": ["age"], "consent_levels": [1], "max_suppressed": 0.05},
        input={"connector": "shopdb", "table": "public.orders", "split_by": "id", "splits": 8,
               "incremental": {"column": "id"}, **MAPPING})))
    assert config.database.splits == 8 and config.micro_aggregation.k == 3 and config.job == "micro_aggregation"
    for sections, message in [
        ({"input": {"connector": "shopdb", "table": "t", "split_bi": "id"}}, "did you mean 'split_by'"),
        ({"job": "micro_aggregation", "micro_aggregation": {"k": 1}}, "micro_aggregation.k"),
        ({"job": "anonymise"}, "job"),
        ({"connectors": [{"name": "db", "kind": "postgresql", "bucket": "b"}]}, "bucket"),
        ({"input": {"connector": "shopdb", "path": "x.csv", "table": "t"}}, r"unknown key\(s\) for a database input: path"),
    ]:
        with pytest.raises(ConfigError, match=message):
            load_config(str(write_config(tmp_path / "bad.yaml", **sections)))
