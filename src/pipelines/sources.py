"""The batch source of a pipeline config: files, a PostgreSQL table or query, or a BigQuery table.

    from pipelines.sources import read_batch_source, prepare_database
    prepare_database(config)                  # launch: columns checked, incremental bounds fixed
    read = read_batch_source(pipeline, config, batch_input)
    read["events"], read["dead_letter"]       # the same two outputs for every source

In a pipeline config (the connector is one of ``connectors:``, see pipelines/connectors.py)::

    input:
      connector: shopdb                 # a postgresql or bigquery connector
      table: public.orders              # postgresql: [schema.]table; bigquery: project.dataset.table
      # query: "SELECT ... FROM ..."    # instead of table
      split_by: id                      # postgresql: numeric or time column (default: the primary key)
      splits: 16                        # postgresql: number of key ranges (default: one per 50,000 rows)
      incremental: {column: updated_at} # postgresql: only rows newer than the last run's maximum
      consent: {field: purposeConsent}  # as for CSV input
      timestamp: {field: date, format: "yyyy-MM-dd HH:mm:ss"}

Incremental state is ``<output>/state/incremental.json`` (``pipelines.incremental``): read at
launch, written only after the run has finished with every row accounted for.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pipelines.connectors import Connector, ConnectorError, database_password

DATABASE_KEYS = {"connector", "table", "query", "split_by", "splits", "incremental", "consent", "timestamp"}


class SourceConfigError(ValueError):
    """A database input that cannot be used; the message names the config file and the key."""


@dataclass(frozen=True)
class DatabaseInput:
    """``input:`` of a config that reads a database table or query."""

    connector: Connector
    table: str | None = None
    query: str | None = None
    split_by: str | None = None
    splits: int | None = None
    incremental: str | None = None
    since: str | None = None       # set at launch (pipelines.incremental)
    until: str | None = None

    @property
    def label(self) -> str:
        return f"{self.connector.name}:{self.table or 'query'}"

    def postgres_source(self, password: str | None = None):
        from transforms.postgres_ranges import PostgresSource

        return PostgresSource(self.connector.uri, password=password, table=self.table, query=self.query,
                              split_by=self.split_by, splits=self.splits, incremental=self.incremental,
                              since=self.since, until=self.until, name=self.connector.name)


def parse_database_input(inputs: dict, connectors: dict[str, Connector], source: str) -> DatabaseInput | None:
    """The database input of ``input:``, or None when it reads files."""
    if "connector" not in inputs:
        extra = sorted(set(inputs) & (DATABASE_KEYS - {"consent", "timestamp"}))
        if extra:
            raise SourceConfigError(f"{source}: input: {', '.join(extra)} need input.connector (a database)")
        return None
    where = f"{source}: input"
    name = inputs["connector"]
    if name not in connectors:
        known = ", ".join(sorted(connectors)) or "none defined"
        raise SourceConfigError(f"{where}: connector '{name}' is not defined (connectors: {known})")
    connector = connectors[name]
    if not connector.is_source:
        raise SourceConfigError(f"{where}: connector '{name}' is a {connector.kind} connector; batch input needs a "
                                "postgresql or bigquery connector (files are read with input.path)")
    unknown = sorted(set(inputs) - DATABASE_KEYS)
    if unknown:
        raise SourceConfigError(f"{where}: unknown key(s) for a database input: {', '.join(unknown)}")
    table, query = inputs.get("table"), inputs.get("query")
    if (table is None) == (query is None) or not isinstance(table or query, str) or not (table or query).strip():
        raise SourceConfigError(f"{where}: give exactly one of table: SCHEMA.TABLE or query: \"SELECT ...\"")
    splits, incremental = inputs.get("splits"), inputs.get("incremental")
    if splits is not None and (isinstance(splits, bool) or not isinstance(splits, int) or not 1 <= splits <= 1024):
        raise SourceConfigError(f"{where}: splits must be a whole number from 1 to 1024")
    if incremental is not None:
        if not isinstance(incremental, dict) or set(incremental) != {"column"} or not isinstance(incremental["column"], str):
            raise SourceConfigError(f"{where}: incremental must be {{column: NAME}} (the watermark column)")
        incremental = incremental["column"]
    if connector.kind == "bigquery":
        given = [key for key in ("split_by", "splits", "incremental") if inputs.get(key) is not None]
        if given:
            raise SourceConfigError(f"{where}: {', '.join(given)} apply to postgresql only (BigQuery splits its "
                                    "reads itself)")
        if table is not None and table.count(".") + table.count(":") != 2:
            raise SourceConfigError(f"{where}: a BigQuery table is project.dataset.table")
    split_by = inputs.get("split_by")
    if split_by is not None and not isinstance(split_by, str):
        raise SourceConfigError(f"{where}: split_by must be a column name")
    return DatabaseInput(connector, table=table, query=query, split_by=split_by, splits=splits,
                         incremental=incremental)


def _password(database: DatabaseInput) -> str | None:
    try:
        return database_password(database.connector)
    except ConnectorError as exc:
        raise SourceConfigError(str(exc)) from None


def prepare_database(config) -> DatabaseInput:
    """Launch checks of a PostgreSQL input: reachable, columns fit the contract; incremental
    bounds fixed (``since`` from the state, ``until`` the column's maximum now). Returns the
    input with its bounds, also set on ``config.database``. A BigQuery input gets its
    connector's credentials (``GOOGLE_APPLICATION_CREDENTIALS``) and is checked by BigQuery."""
    from pipelines.incremental import load_watermark
    from transforms.postgres_ranges import SourceError, max_watermark, plan_read

    database = config.database
    if database.connector.kind == "bigquery":   # a service-account key reaches Beam's BigQuery client
        import os

        from pipelines.connectors import connector_access

        try:
            os.environ.update(connector_access(database.connector, where=f"{config.source}: input").env)
        except ConnectorError as exc:
            raise SourceConfigError(str(exc)) from None
        return database
    source = database.postgres_source(_password(database))
    try:
        with source.connect() as conn:
            if database.incremental:
                since = load_watermark(config)
                until = max_watermark(conn, source)
                database = dataclasses.replace(database, since=since, until=until)
                source = database.postgres_source(source.password)
            plan_read(conn, source, config.contract)
    except SourceError as exc:
        raise SourceConfigError(str(exc)) from None
    config.database = database
    return database


def read_batch_source(pipeline, config, batch_input) -> dict:
    """The source step of a batch job: {'events': ..., 'dead_letter': ...} for any input."""
    from transforms.dead_letters import DEAD_LETTER

    database = config.database
    if database is None:
        from transforms.read_input import ReadBatchInput

        read = pipeline | "ReadInput" >> ReadBatchInput(config.input_path, batch_input, config.input_format)
        return {"events": read[ReadBatchInput.EVENTS], DEAD_LETTER: read[ReadBatchInput.DEAD_LETTER]}
    if database.connector.kind == "bigquery":
        from transforms.read_database import ReadBigQueryTable

        read = pipeline | "ReadInput" >> ReadBigQueryTable(database.table, batch_input, database.query,
                                                          database.connector.project or None)
    else:
        from transforms.read_database import ReadPostgresTable

        source = database.postgres_source(_password(database))
        read = pipeline | "ReadInput" >> ReadPostgresTable(source, batch_input)
    return {"events": read["events"], DEAD_LETTER: read[DEAD_LETTER]}
