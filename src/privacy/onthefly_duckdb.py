"""DuckDB: decrypt PII per row while querying exported JSONL, and consent-aware views.

    import duckdb
    from privacy.onthefly import StoreKeys
    from privacy.onthefly_duckdb import register_decrypt, create_consent_view, jsonl_source
    con = duckdb.connect()
    register_decrypt(con, StoreKeys(store, kek))          # decrypt_pii(ciphertext, keyLink) -> VARCHAR
    con.sql(f'SELECT decrypt_pii(email, "strmMeta"."keyLink") FROM {jsonl_source("out/encrypted")}')
    create_consent_view(con, "shop", jsonl_source("out/encrypted"), contract, purposes=[1, 2])
    con.sql("SELECT email FROM shop")     # plaintext where the row's consent covers email's purpose

``decrypt_pii`` is a vectorized (Arrow) function: one key-store query per chunk of rows, for
the distinct keyLinks in it. It returns NULL when the key is gone (the subject was forgotten,
the key purged) or the value is not a ciphertext of that key. It is marked as having side
effects, so DuckDB never reuses an earlier result after a forget.

A consent view keeps every row and column of its source; each PII field whose purpose is among
``purposes`` (default: all) is decrypted in the rows whose ``strmMeta.consentLevels`` allow that
purpose (``cumulative``: the highest consented level is at least the field's level, as the
cumulative privacy streams; ``granular``: the levels contain it); elsewhere the field keeps its
ciphertext. Repeated PII fields are decrypted element by element.
"""
from __future__ import annotations

from typing import Iterable

from privacy.onthefly import CUMULATIVE, GRANULAR, KeySource, pii_columns

DEFAULT_FUNCTION = "decrypt_pii"


def register_decrypt(con, keys: KeySource, name: str = DEFAULT_FUNCTION) -> None:
    """Register ``name(ciphertext VARCHAR, keyLink VARCHAR) -> VARCHAR`` on a DuckDB connection."""
    import duckdb
    import pyarrow as pa

    def decrypt(tokens: "pa.Array", links: "pa.Array") -> "pa.Array":
        return pa.array(keys.decrypt_many(tokens.to_pylist(), links.to_pylist()), type=pa.string())

    impl = f"_{name}_arrow"
    con.create_function(impl, decrypt, [duckdb.sqltype("VARCHAR"), duckdb.sqltype("VARCHAR")],
                        duckdb.sqltype("VARCHAR"), type="arrow", null_handling="special", side_effects=True)
    # A macro in front, so a keyLink that read_json typed as UUID is accepted as it is.
    con.execute(f"CREATE OR REPLACE TEMP MACRO {_ident(name)}(token, key_link) AS "
                f"{_ident(impl)}(CAST(token AS VARCHAR), CAST(key_link AS VARCHAR))")


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def jsonl_source(path) -> str:
    """A DuckDB relation over JSONL files: a directory (every *.jsonl under it of the runs that
    committed: ``transforms.run_commit.committed_files``, so a view never mixes in a run that is
    still writing, was killed, or was replaced), a glob (filtered the same way), a file, or a
    list of files."""
    if isinstance(path, str) and path.endswith((".jsonl", ".json")) and not any(ch in path for ch in "*?["):
        files = [path]
    elif isinstance(path, str):
        from transforms.run_commit import committed_files  # the writer's commit protocol; no Beam for local paths
        files = committed_files([path])
        if not files:
            raise ValueError(f"no committed JSONL files under '{path}'")
    else:
        files = list(path)
    listed = ", ".join(_literal(f) for f in files)
    return f"read_json([{listed}], format = 'newline_delimited', union_by_name = true)"


def consent_condition(level: int, rule: str = CUMULATIVE) -> str:
    levels = '"strmMeta"."consentLevels"'
    if rule == CUMULATIVE:
        return f"coalesce(list_max({levels}) >= {int(level)}, false)"
    if rule == GRANULAR:
        return f"coalesce(list_contains({levels}, {int(level)}), false)"
    raise ValueError(f"consent rule '{rule}': use '{CUMULATIVE}' or '{GRANULAR}'")


def consent_view_sql(view: str, source: str, contract, purposes: Iterable[int] | None = None,
                     rule: str = CUMULATIVE, function: str = DEFAULT_FUNCTION) -> str:
    link = '"strmMeta"."keyLink"'
    replaced = []
    for column, level, repeated in pii_columns(contract, purposes):
        col = _ident(column)
        plain = (f"list_transform({col}, lambda v: {function}(v, {link}))" if repeated
                 else f"{function}({col}, {link})")
        replaced.append(f"CASE WHEN {consent_condition(level, rule)} THEN {plain} ELSE {col} END AS {col}")
    select = "SELECT *" + (f" REPLACE ({', '.join(replaced)})" if replaced else "")
    return f"CREATE OR REPLACE VIEW {_ident(view)} AS {select} FROM {source}"


def create_consent_view(con, view: str, source: str, contract, purposes: Iterable[int] | None = None,
                        rule: str = CUMULATIVE, function: str = DEFAULT_FUNCTION) -> str:
    """Create (or replace) the view on the connection; returns its SQL."""
    sql = consent_view_sql(view, source, contract, purposes, rule, function)
    con.execute(sql)
    return sql
