"""Data connectors and batch exporters: where outputs are exported, and a probe that checks it.

    from pipelines.connectors import load_exports, probe_exporters
    exports = load_exports(config.extra, outputs=["encrypted", "keys", "webshop-1"], source="shop.yaml")
    exports.apply(options)                  # Beam options and environment for s3://, gs://, azfs://
    probe_exporters(exports.exporters)      # write and delete .strm_test_<uuid>.jsonl, or fail
    for exporter in exports.exporters:
        exporter.directory                  # e.g. 's3://lake/shop/encrypted'

A **data connector** is a named storage connection; an **exporter** writes one output (the
encrypted stream, a privacy stream by name, or the key stream) to a connector, every
``interval`` seconds in streaming runs, under ``path_prefix``. In the pipeline config::

    connectors:
      - name: lake
        kind: s3                          # s3 | gcs | azure | local
        bucket: acme-lake
        region: eu-west-1                 # s3 only, optional
        endpoint: http://127.0.0.1:9000   # optional: S3-compatible stores, emulators
        credentials: {file: /run/secrets/aws-key.json}   # or {env: VAR}, or default
      - {name: warehouse, kind: gcs, bucket: acme-exports, credentials: default}
      - {name: blob, kind: azure, account: acmeexports, container: events,
         credentials: {env: AZURE_STORAGE_CONNECTION_STRING}}
      - {name: disk, kind: local, path: /data/exports}
      - name: shopdb                      # a source of batch jobs (input: {connector: shopdb, ...})
        kind: postgresql
        uri: postgresql://reader@db.internal:5432/shop?sslmode=require
        credentials: {env: SHOPDB_PASSWORD}
      - {name: warehouse, kind: bigquery, project: acme-analytics, credentials: default}
    exporters:
      - {output: encrypted, connector: lake, path_prefix: shop/encrypted, interval: 60}
      - {output: webshop-1, connector: blob, path_prefix: streams/webshop-1}
      - {output: keys, connector: lake, path_prefix: shop/keys, include_existing_events: true}

Credentials are given by reference, never inline: ``{file: PATH}`` or ``{env: VAR}`` (the file
or variable holds the text below), or ``default`` (the platform's own: AWS's credential chain,
Google's application default credentials, Azure's DefaultAzureCredential).

- s3: the JSON of an access key, as ``aws iam create-access-key`` prints it
  (``{"AccessKey": {"AccessKeyId": …, "SecretAccessKey": …}}``, or the inner object; an
  optional ``SessionToken``) -> ``--s3_access_key_id``, ``--s3_secret_access_key``.
- gcs: a service-account key (any application-default credentials file) ->
  ``GOOGLE_APPLICATION_CREDENTIALS``; from a variable it is first written to a 0600 file.
- azure: a connection string (plain, or JSON ``{"connection_string": …}``) ->
  ``--azure_connection_string``; or JSON ``{"tenant_id", "client_id", "client_secret"}`` ->
  ``AZURE_*`` variables and ``--blob_service_endpoint``.
- postgresql: the password (``database_password``); ``default`` leaves it to libpq
  (``PGPASSWORD``, ``~/.pgpass``, trust). The URI must not hold one. The password is read where
  the job is launched and travels inside the job's graph to the workers, as JDBC sources do.
- bigquery: a service-account key, as for gcs.

**Source connectors** (``postgresql``, ``bigquery``; the reference's JDBC connectors) are read
by batch jobs (``input: {connector: NAME, table: ...}``) and can never be an exporter's target.

Beam's file systems take one setting per pipeline for each scheme, so two connectors of one
kind must agree on endpoint and credentials (two buckets under one key are fine); a conflict
is refused with both connectors' names. Secrets given to Beam's options travel with the job's
options (on Dataflow they show in the job's option list): on Dataflow prefer ``default`` (the
worker service account) where the store allows it.

Every problem is a ``ConnectorError`` whose message names the config file, the connector or
exporter, and the key; secrets are never part of a message.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import re
import stat
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import AzureOptions, S3Options

from privacy.private_files import private_dirs

KINDS = ("s3", "gcs", "azure", "local", "postgresql", "bigquery")
SOURCE_KINDS = ("postgresql", "bigquery")
SCHEMES = {"s3": "s3://", "gcs": "gs://", "azure": "azfs://"}
MIN_INTERVAL, MAX_INTERVAL, DEFAULT_INTERVAL = 30, 3600, 60
MAX_PREFIX = 900
ENCRYPTED, KEYS = "encrypted", "keys"
PROBE_PREFIX = ".strm_test_"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_S3_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_BQ_PROJECT = re.compile(r"^[a-z][a-z0-9.:-]{4,62}[a-z0-9]$")
_GCS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_AZURE_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
_AZURE_CONTAINER = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LOG = logging.getLogger(__name__)
_OPTION_CLASSES = {name: S3Options for name in ("s3_endpoint_url", "s3_region_name", "s3_access_key_id",
                                                "s3_secret_access_key", "s3_session_token")}
_OPTION_CLASSES.update(azure_connection_string=AzureOptions, blob_service_endpoint=AzureOptions)


class ConnectorError(ValueError):
    """A connector or exporter that cannot be used; the message names it (never a secret)."""


@dataclass(frozen=True)
class Connector:
    """A named storage connection: ``base_uri`` is where its exporters' prefixes start."""

    name: str
    kind: str
    bucket: str = ""           # s3, gcs: the bucket; azure: the container; local: the folder
    account: str = ""          # azure: the storage account
    endpoint: str = ""         # optional endpoint override
    region: str = ""           # s3
    credentials: str = "default"   # "default", "file:PATH" or "env:VAR"
    uri: str = ""              # postgresql: the server and database, without a password
    project: str = ""          # bigquery: the project billed for reads (default: the job's)

    @property
    def is_source(self) -> bool:
        """A database that batch jobs read, never an export target."""
        return self.kind in SOURCE_KINDS

    @property
    def base_uri(self) -> str:
        if self.kind == "postgresql":
            return self.uri
        if self.kind == "bigquery":
            return f"bigquery://{self.project or '(the job project)'}"
        if self.kind == "local":
            return self.bucket
        if self.kind == "azure":
            return f"azfs://{self.account}/{self.bucket}"
        return SCHEMES[self.kind] + self.bucket

    def describe(self) -> str:
        return f"connector '{self.name}' ({self.kind}, {self.base_uri})"


@dataclass(frozen=True)
class Exporter:
    """One output written to one connector under ``path_prefix``."""

    name: str
    output: str                # "encrypted", "keys", or a privacy stream name
    connector: Connector
    interval: int = DEFAULT_INTERVAL
    path_prefix: str = ""
    include_existing_events: bool = False

    @property
    def directory(self) -> str:
        base = self.connector.base_uri.rstrip("/")
        return f"{base}/{self.path_prefix}" if self.path_prefix else base

    @property
    def file_kind(self) -> str:
        """The word in the file names: ``…-stream-<uuid>---0.jsonl`` or ``…-keys-…``."""
        return "keys" if self.output == KEYS else "stream"


# -- credentials ---------------------------------------------------------------------------------
def _read_reference(connector: Connector, where: str) -> str:
    how, _, ref = connector.credentials.partition(":")
    if how == "file":
        try:
            return Path(ref).expanduser().read_text()
        except OSError as exc:
            raise ConnectorError(f"{where}: credentials file '{ref}' cannot be read: {exc.strerror}") from None
    value = os.environ.get(ref)
    if not value:
        raise ConnectorError(f"{where}: credentials variable ${ref} is not set or empty")
    return value


def database_password(connector: Connector, where: str = "") -> str | None:
    """A postgresql connector's password from its credentials reference; None for ``default``."""
    if connector.credentials == "default":
        return None
    return _read_reference(connector, where or connector.describe()).rstrip("\r\n")


def _json_credentials(text: str, where: str, what: str) -> dict:
    try:
        data = json.loads(text)
    except ValueError:
        raise ConnectorError(f"{where}: credentials are not valid JSON ({what} expected)") from None
    if not isinstance(data, dict):
        raise ConnectorError(f"{where}: credentials must be a JSON object ({what} expected)")
    return data


def _private_file(text: str, name: str) -> str:
    """Write credentials that came from a variable to a file only this user can read."""
    handle, path = tempfile.mkstemp(prefix=f"pstream-{name}-", suffix=".json")
    os.fchmod(handle, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(handle, "w") as out:
        out.write(text)
    atexit.register(_remove_quietly, path)  # not left on disk after the launcher exits
    return path


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


@dataclass
class BeamAccess:
    """Beam option values (by option name) and environment variables that reach the connectors."""

    options: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    secret: set[str] = field(default_factory=set)   # names whose values must not be shown
    owners: dict[str, str] = field(default_factory=dict)  # name -> connector that set it

    def add(self, connector: Connector, target: dict, name: str, value: str, secret: bool = False) -> None:
        if name in target and target[name] != value:
            raise ConnectorError(
                f"connectors '{self.owners[name]}' and '{connector.name}' need different values of "
                f"{name}: Beam's {connector.kind} file system takes one per pipeline; use one set of "
                "credentials and one endpoint per kind")
        target[name] = value
        self.owners.setdefault(name, connector.name)
        if secret:
            self.secret.add(name)


def connector_access(connector: Connector, access: BeamAccess | None = None, where: str = "") -> BeamAccess:
    """What Beam needs for ``connector``: options and environment, added to ``access``."""
    access = access if access is not None else BeamAccess()
    where = where or connector.describe()
    kind, opts, env = connector.kind, access.options, access.env
    by_reference = connector.credentials != "default"
    if kind == "s3":
        if connector.endpoint:
            access.add(connector, opts, "s3_endpoint_url", connector.endpoint)
        if connector.region:
            access.add(connector, opts, "s3_region_name", connector.region)
        if by_reference:
            data = _json_credentials(_read_reference(connector, where), where, "an access key's JSON")
            data = data.get("AccessKey", data) if isinstance(data.get("AccessKey"), dict) else data
            key_id, secret = data.get("AccessKeyId"), data.get("SecretAccessKey")
            if not key_id or not secret:
                raise ConnectorError(f"{where}: the access key JSON needs AccessKeyId and SecretAccessKey")
            access.add(connector, opts, "s3_access_key_id", key_id, secret=True)
            access.add(connector, opts, "s3_secret_access_key", secret, secret=True)
            if data.get("SessionToken"):
                access.add(connector, opts, "s3_session_token", data["SessionToken"], secret=True)
    elif kind in ("gcs", "bigquery"):
        if connector.endpoint:
            access.add(connector, env, "STORAGE_EMULATOR_HOST", connector.endpoint)
        if by_reference:
            how, _, ref = connector.credentials.partition(":")
            text = _read_reference(connector, where)
            _json_credentials(text, where, "a service-account key")
            path = str(Path(ref).expanduser().resolve()) if how == "file" else _private_file(text, connector.name)
            access.add(connector, env, "GOOGLE_APPLICATION_CREDENTIALS", path)
    elif kind == "azure":
        endpoint = connector.endpoint or f"https://{connector.account}.blob.core.windows.net"
        if by_reference:
            text = _read_reference(connector, where).strip()
            if not text.startswith("{"):
                access.add(connector, opts, "azure_connection_string", text, secret=True)
                return access
            data = _json_credentials(text, where, "a connection string or a service principal")
            if data.get("connection_string"):
                access.add(connector, opts, "azure_connection_string", data["connection_string"], secret=True)
                return access
            missing = [k for k in ("tenant_id", "client_id", "client_secret") if not data.get(k)]
            if missing:
                raise ConnectorError(f"{where}: Azure credentials need connection_string, or tenant_id, "
                                     f"client_id and client_secret (missing: {', '.join(missing)})")
            for key in ("tenant_id", "client_id", "client_secret"):
                access.add(connector, env, f"AZURE_{key.upper()}", data[key], secret=True)
        access.add(connector, opts, "blob_service_endpoint", endpoint)
    return access


# -- parsing -------------------------------------------------------------------------------------
def _text(entry: dict, key: str, where: str, required: bool = True) -> str:
    value = entry.get(key)
    if value is None or value == "":
        if required:
            raise ConnectorError(f"{where}: '{key}' is missing")
        return ""
    if not isinstance(value, str):
        raise ConnectorError(f"{where}: '{key}' must be text")
    return value


def _credentials(raw, where: str) -> str:
    if raw is None or raw == "default":
        return "default"
    if isinstance(raw, dict) and len(raw) == 1:
        (how, ref), = raw.items()
        if how == "file" and isinstance(ref, str) and ref:
            return f"file:{ref}"
        if how == "env" and isinstance(ref, str) and _ENV_VAR.match(ref):
            return f"env:{ref}"
    raise ConnectorError(f"{where}: credentials must be 'default', {{file: PATH}} or {{env: VARIABLE}}; "
                         "secrets are never written into the config")


def parse_connector(entry, where: str) -> Connector:
    if not isinstance(entry, dict):
        raise ConnectorError(f"{where}: a connector must be a mapping")
    name = _text(entry, "name", where)
    if not _NAME.match(name):
        raise ConnectorError(f"{where}: name '{name}' must be letters, digits, '-', '_' or '.' (at most 63)")
    where = f"{where.rsplit(':', 1)[0]}: connector '{name}'"
    kind = _text(entry, "kind", where)
    if kind not in KINDS:
        raise ConnectorError(f"{where}: kind '{kind}' is not one of {', '.join(KINDS)}")
    allowed = {"name", "kind", "credentials", "endpoint"} | {
        "s3": {"bucket", "region"}, "gcs": {"bucket"}, "azure": {"account", "container"}, "local": {"path"},
        "postgresql": {"uri"}, "bigquery": {"project"}}[kind]
    if kind in SOURCE_KINDS:
        allowed.discard("endpoint")
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise ConnectorError(f"{where}: unknown key(s) for kind {kind}: {', '.join(unknown)}")
    endpoint = _text(entry, "endpoint", where, required=False)
    if endpoint and not re.match(r"^https?://[^/\s]+", endpoint):
        raise ConnectorError(f"{where}: endpoint '{endpoint}' must be an http(s):// URL")
    credentials = _credentials(entry.get("credentials"), where)
    if kind == "postgresql":
        uri = _text(entry, "uri", where)
        try:
            parts = urlsplit(uri)
            parts.port
        except ValueError:
            raise ConnectorError(f"{where}: uri is not a valid URI") from None
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise ConnectorError(f"{where}: uri must be postgresql://[user@]host[:port]/database")
        if parts.password is not None:
            raise ConnectorError(f"{where}: the uri holds a password: give it by credentials {{file: PATH}} or "
                                 "{env: VARIABLE}, never in the config")
        return Connector(name, kind, uri=uri, credentials=credentials)
    if kind == "bigquery":
        project = _text(entry, "project", where, required=False)
        if project and not _BQ_PROJECT.match(project):
            raise ConnectorError(f"{where}: project '{project}' is not a valid Google Cloud project id")
        return Connector(name, kind, project=project, credentials=credentials)
    if kind == "local":
        path = _text(entry, "path", where)
        if credentials != "default":
            raise ConnectorError(f"{where}: a local connector takes no credentials")
        return Connector(name, kind, bucket=os.path.abspath(os.path.expanduser(path)).rstrip("/") or "/")
    if kind == "azure":
        account, container = _text(entry, "account", where), _text(entry, "container", where)
        if not _AZURE_ACCOUNT.match(account):
            raise ConnectorError(f"{where}: storage account '{account}' must be 3-24 lowercase letters and digits")
        if not _AZURE_CONTAINER.match(container):
            raise ConnectorError(f"{where}: container '{container}' is not a valid Azure container name")
        return Connector(name, kind, bucket=container, account=account, endpoint=endpoint, credentials=credentials)
    bucket = _text(entry, "bucket", where)
    if not (_S3_BUCKET if kind == "s3" else _GCS_BUCKET).match(bucket):
        raise ConnectorError(f"{where}: bucket '{bucket}' is not a valid {kind.upper()} bucket name")
    region = _text(entry, "region", where, required=False)
    return Connector(name, kind, bucket=bucket, endpoint=endpoint, region=region, credentials=credentials)


def parse_connectors(raw, source: str) -> dict[str, Connector]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ConnectorError(f"{source}: connectors must be a list")
    found: dict[str, Connector] = {}
    for index, entry in enumerate(raw):
        connector = parse_connector(entry, f"{source}: connectors[{index}]")
        if connector.name in found:
            raise ConnectorError(f"{source}: connector '{connector.name}' is defined twice")
        found[connector.name] = connector
    return found


def _interval(raw, where: str, min_interval: int = MIN_INTERVAL) -> int:
    if raw is None:
        return DEFAULT_INTERVAL
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw != int(raw):
        raise ConnectorError(f"{where}: interval must be whole seconds, got {raw!r}")
    if not min_interval <= int(raw) <= MAX_INTERVAL:
        raise ConnectorError(f"{where}: interval {int(raw)} s is outside {min_interval}-{MAX_INTERVAL} s")
    return int(raw)


def _path_prefix(raw, where: str) -> str:
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise ConnectorError(f"{where}: path_prefix must be text")
    if len(raw) > MAX_PREFIX:
        raise ConnectorError(f"{where}: path_prefix is {len(raw)} characters, at most {MAX_PREFIX} are allowed")
    if raw.endswith("/"):
        raise ConnectorError(f"{where}: path_prefix '{raw}' must not end with '/'")
    if raw.startswith("/") or "//" in raw or any(part in (".", "..") for part in raw.split("/")):
        raise ConnectorError(f"{where}: path_prefix '{raw}' must be relative, without empty, '.' or '..' parts")
    return raw


def parse_exporters(raw, connectors: dict[str, Connector], outputs: list[str], source: str,
                    min_interval: int = MIN_INTERVAL) -> list[Exporter]:
    """Exporters of the config; ``outputs`` are the names an exporter may export.

    ``min_interval`` lowers the shortest interval (only for tests of the local loop).
    """
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConnectorError(f"{source}: exporters must be a list")
    exporters: list[Exporter] = []
    for index, entry in enumerate(raw):
        where = f"{source}: exporters[{index}]"
        if not isinstance(entry, dict):
            raise ConnectorError(f"{where}: an exporter must be a mapping")
        output, connector_name = _text(entry, "output", where), _text(entry, "connector", where)
        name = _text(entry, "name", where, required=False) or f"{output}-to-{connector_name}"
        where = f"{source}: exporter '{name}'"
        unknown = sorted(set(entry) - {"name", "output", "connector", "interval", "path_prefix",
                                       "include_existing_events"})
        if unknown:
            raise ConnectorError(f"{where}: unknown key(s): {', '.join(unknown)}")
        if output not in outputs:
            raise ConnectorError(f"{where}: output '{output}' is not one of {', '.join(outputs)}")
        if connector_name not in connectors:
            known = ", ".join(sorted(connectors)) or "none defined"
            raise ConnectorError(f"{where}: connector '{connector_name}' is not defined (connectors: {known})")
        if connectors[connector_name].is_source:
            raise ConnectorError(f"{where}: connector '{connector_name}' is a {connectors[connector_name].kind} "
                                 "connector, a source of batch jobs: it cannot be an exporter's target")
        include = entry.get("include_existing_events", False)
        if not isinstance(include, bool):
            raise ConnectorError(f"{where}: include_existing_events must be true or false")
        exporter = Exporter(name, output, connectors[connector_name], _interval(entry.get("interval"), where, min_interval),
                            _path_prefix(entry.get("path_prefix"), where), include)
        for other in exporters:
            if other.name == exporter.name:
                raise ConnectorError(f"{where}: two exporters have this name; give one a 'name'")
            if other.directory == exporter.directory:
                raise ConnectorError(f"{where}: writes to {exporter.directory}, as exporter '{other.name}' does; "
                                     "give each exporter its own path_prefix")
        exporters.append(exporter)
    return exporters


@dataclass
class Exports:
    """The connectors and exporters of one pipeline config, and what Beam needs to reach them."""

    connectors: dict[str, Connector]
    exporters: list[Exporter]
    access: BeamAccess

    def apply(self, options, environ=None) -> None:
        """Set the connectors' Beam options on ``options`` and their variables in ``environ``.

        A Beam option the user gave on the command line with another value is an error: the
        connector would silently not be used.
        """
        environ = os.environ if environ is None else environ
        current = options.get_all_options(retain_unknown_options=True)
        for name, value in self.access.options.items():
            given = current.get(name)
            if given not in (None, value):
                raise ConnectorError(f"--{name} on the command line differs from what connector "
                                     f"'{self.access.owners[name]}' needs; drop one of them")
            setattr(options.view_as(_OPTION_CLASSES[name]), name, value)
        environ.update(self.access.env)


def load_exports(extra: dict | None, outputs: list[str], source: str) -> Exports:
    """Connectors and exporters from a pipeline config's extra keys (``config.extra``)."""
    extra = extra or {}
    connectors = parse_connectors(extra.get("connectors"), source)
    exporters = parse_exporters(extra.get("exporters"), connectors, outputs, source)
    access = BeamAccess()
    used = {e.connector.name: e.connector for e in exporters}
    for connector in used.values():
        connector_access(connector, access, f"{source}: {connector.describe()}")
    return Exports(connectors, exporters, access)


# -- the probe -----------------------------------------------------------------------------------
def _reason(exc: BaseException) -> str:
    """A one-line reason from a storage client's exception (paths and codes, not credentials)."""
    text = " ".join(str(exc).split())
    return (text[:400] + " ...") if len(text) > 400 else text or type(exc).__name__


def probe(exporter: Exporter) -> str:
    """Write an empty ``.strm_test_<uuid>.jsonl`` under the exporter's directory and delete it.

    Uses Beam's FileSystems with the options set by ``FileSystems.set_options`` (the pipeline's).
    Raises ConnectorError naming the exporter and connector when the file cannot be written; a
    file that cannot be deleted is only logged (the store may forbid deletes). Returns the path.
    """
    path = f"{exporter.directory}/{PROBE_PREFIX}{uuid.uuid4()}.jsonl"
    # Beam's S3 writer cannot complete a multipart upload of zero parts: give it one empty line.
    content = b"\n" if exporter.connector.kind == "s3" else b""
    try:
        if exporter.connector.kind == "local":
            private_dirs(exporter.directory)  # it will hold exported personal data
        handle = FileSystems.create(path, mime_type="application/x-ndjson")
        handle.write(content)
        handle.close()
    except Exception as exc:  # each cloud client raises its own types
        raise ConnectorError(f"exporter '{exporter.name}': {exporter.connector.describe()} cannot be written: "
                             f"{_reason(exc)}") from None
    try:
        FileSystems.delete([path])
    except Exception as exc:
        _LOG.warning("exporter '%s': probe file %s written but not deleted: %s", exporter.name, path, _reason(exc))
    return path


def probe_exporters(exporters: list[Exporter], options=None) -> list[str]:
    """Probe every exporter's directory once, before any event is read; returns the probe paths."""
    if options is not None:
        FileSystems.set_options(options)
    seen, paths = set(), []
    for exporter in exporters:
        if exporter.directory not in seen:
            seen.add(exporter.directory)
            paths.append(probe(exporter))
    return paths
