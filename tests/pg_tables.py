"""Tables on the machine's PostgreSQL server (127.0.0.1:5432, database ``test``) for the source tests.

    from pg_tables import PG_URI, connect, unique_table, webshop_table
    with connect() as conn:
        name = unique_table("orders")                # public.i13_orders_<random>: never shared
        webshop_table(conn, name, rows)              # the web shop columns, typed as a shop would
        ...
        drop(conn, name)

Column names are quoted as in the contract ("transactionId"), so they match it exactly.
"""
from __future__ import annotations

import json
import uuid

import psycopg

PG_URI = "postgresql://postgres@127.0.0.1:5432/test"

WEBSHOP_COLUMNS = {   # column -> SQL type: text and numbers as a shop database would keep them
    "transactionId": "bigint", "userId": "bigint", "email": "text", "age": "integer", "tshirtSize": "text",
    "fullName": "text", "phoneNumber": "text", "address": "text", "transactionAmount": "integer",
    "items": "integer[]", "totalItems": "integer", "date": "timestamp", "purposeConsent": "integer",
}


def connect():
    return psycopg.connect(PG_URI, autocommit=True)


def unique_table(stem: str) -> str:
    return f"public.i13_{stem}_{uuid.uuid4().hex[:10]}"


def drop(conn, table: str) -> None:
    conn.execute(f"DROP TABLE IF EXISTS {table}")


def webshop_table(conn, table: str, rows: list[dict], extra: str = "") -> None:
    """``id serial primary key`` plus the web shop columns, filled with ``rows`` (CSV text values)."""
    columns = ", ".join(f'"{name}" {sql}' for name, sql in WEBSHOP_COLUMNS.items())
    conn.execute(f"CREATE TABLE {table} (id serial PRIMARY KEY, {columns}{extra})")
    names = list(WEBSHOP_COLUMNS)
    quoted = ", ".join(f'"{n}"' for n in names)
    with conn.cursor() as cur:
        with cur.copy(f"COPY {table} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                values = []
                for name in names:
                    value = row[name]
                    if name == "items":
                        value = "{" + ",".join(str(v) for v in json.loads(value)) + "}"
                    values.append(value)
                copy.write_row(values)
