"""The local project: pipelines (streams) with their credentials, privacy streams, data
connectors and batch exporters, kept in one YAML file that the CLI edits and the gateway reads.

    from controlplane.project import Project
    project = Project.open()                    # $PSTREAM_PROJECT_DIR or ~/.config/pstream
    project = Project.open("/tmp/demo")         # or an explicit directory (--project_dir)
    pipeline = project.create_pipeline("demo")  # generates a client id and secret
    project.create_privacy_stream("demo-1", source="demo", mode="CUMULATIVE", levels=[1])
    project.create_data_connector({"name": "lake", "kind": "s3", "bucket": "acme-lake",
                                   "credentials": {"file": "/run/secrets/aws-key.json"}})
    project.create_batch_exporter("demo-1", "lake", path_prefix="events")
    for record, exporter in project.pipeline_exporters("demo"):   # pipelines.connectors.Exporter
        exporter.directory                                         # 's3://acme-lake/events'
    project.save()

Data connectors and batch exporters are the ones of ``pipelines.connectors``: a connector is
stored as the mapping a pipeline config's ``connectors:`` holds and checked by the same
``parse_connector``; the exporters of a pipeline are built by ``parse_exporters``.

Layout of a project directory::

    project.yaml        the resources below (mode 0600: it holds client secrets)
    gateway.key         the gateway's token-signing key (0600, created on first use)
    contracts/          extra data contracts (<handle>/<name>/<version>.yaml), next to the shipped ones
    spool/<pipeline>/   the gateway's append-only JSONL segments of accepted events
    out/<pipeline>/     the pipeline's outputs: encrypted/, streams/<name>/, keys/, dead_letter/
    exports/<name>/     what a local data connector created without --path receives
    credentials/        credentials given as `pstream create data-connector` flags (0600 files)

Saving is atomic (temp file + rename), so a reader (the gateway) never sees half a file.
"""
from __future__ import annotations

import os
import re
import secrets
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from privacy.masking import DEFAULT_MASK_HASH, MURMUR3
from privacy.streams import CUMULATIVE, GRANULAR, StreamSpec

PROJECT_DIR_ENV = "PSTREAM_PROJECT_DIR"
DEFAULT_PROJECT_DIR = Path.home() / ".config" / "pstream"
PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
JDBC = "jdbc"
JDBC_DATABASE_TYPES = ("POSTGRES", "MYSQL", "BIGQUERY", "SNOWFLAKE")
SHORT_INTERVALS_ENV = "PSTREAM_ALLOW_SHORT_INTERVALS"   # tests of the local loop: intervals from 1 s


class ProjectError(ValueError):
    """A request the project cannot satisfy; the message says which resource and why."""


@dataclass
class Pipeline:
    """A source stream: events sent with its credentials land in its spool."""

    name: str
    client_id: str
    client_secret: str
    enabled: bool = True
    created_at: int = 0
    description: str = ""


@dataclass
class PrivacyStream:
    """A derived stream of a pipeline: consent filter, decryption of permitted levels, masking."""

    name: str
    source: str
    mode: str
    levels: list[int]
    masked_fields: list[str] = field(default_factory=list)
    mask_seed: int | None = None  # murmur3 masking only
    created_at: int = 0
    mask_hash: str = DEFAULT_MASK_HASH
    generalise: dict = field(default_factory=dict)  # field path -> rule, a pipeline config's form

    def spec(self) -> StreamSpec:
        return StreamSpec.create(self.name, self.mode, self.levels, self.masked_fields, self.mask_seed,
                                 self.mask_hash, self.generalise)


@dataclass
class DataConnector:
    """A data connector as the project file stores it: ``entry`` is the mapping that
    ``pipelines.connectors.parse_connector`` accepts (kind s3 | gcs | azure | local, the same
    keys as a pipeline config's ``connectors:``), or a JDBC source (kind jdbc: ``uri``,
    ``database_type``), which batch jobs read from and which is never an export target."""

    entry: dict

    @property
    def name(self) -> str:
        return self.entry["name"]

    @property
    def kind(self) -> str:
        return self.entry.get("kind", "")

    def connector(self, source: str):
        """The ``pipelines.connectors.Connector``; ProjectError for JDBC or an invalid entry."""
        from pipelines.connectors import ConnectorError, parse_connector

        if self.kind == JDBC:
            raise ProjectError(f"{source}: data connector '{self.name}' is a JDBC connector (a source of batch "
                               "jobs): it cannot be a batch exporter target; use s3, gcs, azure or local")
        try:
            return parse_connector(self.entry, f"{source}: data_connectors")
        except ConnectorError as exc:
            raise ProjectError(str(exc)) from None


@dataclass
class BatchExporter:
    """Writes a stream's new events to a data connector every ``interval`` seconds."""

    name: str
    stream: str
    data_connector: str
    interval: int = 60
    path_prefix: str = ""
    include_existing_events: bool = False
    id: str = ""
    created_at: int = 0


_SECTIONS = {
    "pipelines": Pipeline,
    "privacy_streams": PrivacyStream,
    "data_connectors": DataConnector,
    "batch_exporters": BatchExporter,
}


def _load_connector(entry) -> DataConnector:
    if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
        raise TypeError("a data connector must be a mapping with a name")
    if "type" in entry and "settings" in entry:
        raise TypeError(f"data connector '{entry['name']}' is in the old form (type, settings): delete it from "
                        "the file and create it again with `pstream create data-connector`")
    return DataConnector(dict(entry))


def default_project_dir() -> Path:
    return Path(os.environ.get(PROJECT_DIR_ENV) or DEFAULT_PROJECT_DIR)


def _now_ms() -> int:
    return int(time.time() * 1000)


class Project:
    """All resources of one project directory; see the module docstring."""

    FILE = "project.yaml"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.pipelines: dict[str, Pipeline] = {}
        self.privacy_streams: dict[str, PrivacyStream] = {}
        self.data_connectors: dict[str, DataConnector] = {}
        self.batch_exporters: dict[str, BatchExporter] = {}
        self.settings: dict = {}

    # ----------------------------------------------------------------- files
    @classmethod
    def open(cls, directory: str | Path | None = None) -> "Project":
        project = cls(Path(directory) if directory else default_project_dir())
        path = project.path
        if path.exists():
            try:
                data = yaml.safe_load(path.read_text()) or {}
            except yaml.YAMLError as exc:
                raise ProjectError(f"{path}: not valid YAML: {exc}") from None
            if not isinstance(data, dict):
                raise ProjectError(f"{path}: a project file must be a YAML mapping")
            for section, kind in _SECTIONS.items():
                for entry in data.get(section) or []:
                    try:
                        item = _load_connector(entry) if kind is DataConnector else kind(**entry)
                    except TypeError as exc:
                        raise ProjectError(f"{path}: {section}: {exc}") from None
                    getattr(project, section)[item.name] = item
            project.settings = data.get("settings") or {}
        return project

    @property
    def path(self) -> Path:
        return self.directory / self.FILE

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        data = {section: [item.entry if isinstance(item, DataConnector) else asdict(item)
                          for item in getattr(self, section).values()] for section in _SECTIONS}
        data["settings"] = self.settings
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".project-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write("# pstream project: pipelines, privacy streams, data connectors, batch exporters.\n"
                             "# Holds client secrets: keep it private (mode 0600).\n")
                yaml.safe_dump(data, handle, sort_keys=False)
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(temp, 0o600)
            os.replace(temp, self.path)
        except BaseException:
            if os.path.exists(temp):
                os.unlink(temp)
            raise

    def spool_dir(self, pipeline: str) -> Path:
        return self.directory / "spool" / pipeline

    def output_dir(self, pipeline: str) -> Path:
        return self.directory / "out" / pipeline

    def contracts_dir(self) -> Path:
        return self.directory / "contracts"

    def gateway_url(self) -> str:
        return os.environ.get("PSTREAM_GATEWAY_URL") or self.settings.get("gateway_url") or "http://127.0.0.1:8080"

    # ------------------------------------------------------------- pipelines
    def create_pipeline(self, name: str, description: str = "") -> Pipeline:
        if not PIPELINE_NAME.match(name):
            raise ProjectError(f"stream name '{name}': use 1-63 lowercase letters, digits and '-'")
        self._check_free(name)
        pipeline = Pipeline(
            name=name,
            client_id=f"{name}-{uuid.uuid4().hex[:12]}",
            client_secret=secrets.token_urlsafe(32),
            created_at=_now_ms(),
            description=description,
        )
        self.pipelines[name] = pipeline
        return pipeline

    def pipeline_by_client(self, client_id: str) -> Pipeline | None:
        for pipeline in self.pipelines.values():
            if pipeline.client_id == client_id:
                return pipeline
        return None

    def source_of(self, stream: str) -> str:
        """The pipeline a stream name belongs to (itself for a pipeline)."""
        if stream in self.pipelines:
            return stream
        if stream in self.privacy_streams:
            return self.privacy_streams[stream].source
        raise ProjectError(f"no stream named '{stream}' (see `pstream list streams`)")

    def delete_stream(self, name: str, recursive: bool = False) -> list[str]:
        """Delete a pipeline or privacy stream; a pipeline with privacy streams needs ``recursive``."""
        deleted = []
        if name in self.privacy_streams:
            self._check_no_exporters([name])
            del self.privacy_streams[name]
            return [name]
        if name not in self.pipelines:
            raise ProjectError(f"no stream named '{name}'")
        derived = [s.name for s in self.privacy_streams.values() if s.source == name]
        if derived and not recursive:
            raise ProjectError(f"stream '{name}' has privacy streams ({', '.join(derived)}): "
                               "delete them first or use --recursive")
        self._check_no_exporters([name, *derived])
        for stream in derived:
            del self.privacy_streams[stream]
            deleted.append(stream)
        del self.pipelines[name]
        deleted.append(name)
        return deleted

    def _check_no_exporters(self, streams: list[str]) -> None:
        users = [e.name for e in self.batch_exporters.values() if e.stream in streams]
        if users:
            raise ProjectError(f"batch exporters {', '.join(users)} export this stream: delete them first")

    def _check_free(self, name: str) -> None:
        if name in self.pipelines or name in self.privacy_streams:
            raise ProjectError(f"a stream named '{name}' already exists")

    # ------------------------------------------------------- privacy streams
    def create_privacy_stream(self, name: str | None, source: str, mode: str, levels: list[int],
                              masked_fields: list[str] = (), mask_seed: int | None = None,
                              mask_hash: str = DEFAULT_MASK_HASH, generalise: dict | None = None) -> PrivacyStream:
        """A privacy stream of a pipeline. ``generalise``: field path -> rule (``privacy.generalise``:
        the config's form or ``Rule``s), stored in the config's form; the rules' shapes are checked
        here, their fields against the contract of each run (a pipeline's events name their contract)."""
        if source not in self.pipelines:
            raise ProjectError(f"--derived-from: no pipeline named '{source}'")
        mode = mode.upper()
        if mode not in (CUMULATIVE, GRANULAR):
            raise ProjectError(f"mode must be {CUMULATIVE} or {GRANULAR}")
        levels = sorted(set(int(v) for v in levels))
        name = name or "-".join([source] + [str(v) for v in levels])
        self._check_free(name)
        if mask_seed is None and masked_fields and mask_hash == MURMUR3:
            mask_seed = secrets.randbits(31)
        stream = PrivacyStream(name, source, mode, levels, list(masked_fields), mask_seed, _now_ms(), mask_hash,
                               dict(generalise or {}))
        try:
            stream.generalise = {path: rule.to_config() for path, rule in stream.spec().generalised}
        except ValueError as exc:
            raise ProjectError(str(exc)) from None
        self.privacy_streams[name] = stream
        return stream

    # ------------------------------------------------------ data connectors
    def create_data_connector(self, entry: dict) -> DataConnector:
        """Add a connector given as a pipeline config's ``connectors:`` entry (or a JDBC source).

        Validated by ``pipelines.connectors.parse_connector``, with its messages; a local
        connector's path is stored absolute.
        """
        entry = {k: v for k, v in entry.items() if v is not None}
        name = entry.get("name")
        if name in self.data_connectors:
            raise ProjectError(f"a data connector named '{name}' already exists")
        if entry.get("kind") == JDBC:
            connector = DataConnector(_jdbc_entry(entry, str(self.path)))
        else:
            connector = DataConnector(entry)
            parsed = connector.connector(str(self.path))
            if parsed.kind == "local":
                entry["path"] = parsed.bucket
        self.data_connectors[connector.name] = connector
        return connector

    def delete_data_connector(self, name: str) -> None:
        if name not in self.data_connectors:
            raise ProjectError(f"no data connector named '{name}'")
        users = [e.name for e in self.batch_exporters.values() if e.data_connector == name]
        if users:
            raise ProjectError(f"batch exporters {', '.join(users)} use data connector '{name}': delete them first")
        credentials = self.data_connectors.pop(name).entry.get("credentials")
        kept = Path(credentials["file"]) if isinstance(credentials, dict) and "file" in credentials else None
        if kept is not None and kept.parent == self.credentials_dir() and kept.exists():
            kept.unlink()  # written by `pstream create data-connector` from flags: the project's own copy

    def keep_credentials(self, name: str, text: str) -> str:
        """Write credentials given as flags to ``credentials/<name>.json`` (0600); returns its path."""
        folder = self.credentials_dir()
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = folder / f"{name}.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        return str(path)

    def credentials_dir(self) -> Path:
        """Where ``pstream create data-connector`` keeps credentials given as flags (0600 files)."""
        return self.directory / "credentials"

    # ------------------------------------------------------- batch exporters
    def create_batch_exporter(self, stream: str, data_connector: str, name: str | None = None,
                              interval: int = 60, path_prefix: str = "",
                              include_existing_events: bool = False) -> BatchExporter:
        self.source_of(stream)
        if data_connector not in self.data_connectors:
            raise ProjectError(f"no data connector named '{data_connector}'")
        name = name or f"{stream}-{data_connector}"
        if name in self.batch_exporters:
            raise ProjectError(f"a batch exporter named '{name}' already exists")
        exporter = BatchExporter(name, stream, data_connector, interval, path_prefix, include_existing_events,
                                 str(uuid.uuid4()), _now_ms())
        self.pipeline_exporters(self.source_of(stream), also=exporter)  # validates, with the pipeline's others
        self.batch_exporters[name] = exporter
        return exporter

    def delete_batch_exporter(self, name: str) -> None:
        if name not in self.batch_exporters:
            raise ProjectError(f"no batch exporter named '{name}'")
        del self.batch_exporters[name]

    def pipeline_exporters(self, pipeline: str, also: BatchExporter | None = None) -> list[tuple[BatchExporter, object]]:
        """The batch exporters of one pipeline's streams, each with its ``pipelines.connectors.Exporter``.

        Built by ``parse_exporters`` exactly as a pipeline config's ``exporters:`` are: a
        pipeline's own stream is the output ``encrypted``, a privacy stream its name.
        """
        from pipelines.connectors import ENCRYPTED, MIN_INTERVAL, ConnectorError, parse_exporters

        source = str(self.path)
        records = [e for e in [*self.batch_exporters.values(), *([also] if also else [])]
                   if self._source_or_none(e.stream) == pipeline]
        streams = [s.name for s in self.privacy_streams.values() if s.source == pipeline]
        connectors = {name: self.data_connectors[name].connector(source)
                      for name in sorted({e.data_connector for e in records}) if name in self.data_connectors}
        raw = [{"name": e.name, "output": ENCRYPTED if e.stream == pipeline else e.stream,
                "connector": e.data_connector, "interval": e.interval, "path_prefix": e.path_prefix or None,
                "include_existing_events": e.include_existing_events} for e in records]
        min_interval = 1 if os.environ.get(SHORT_INTERVALS_ENV) else MIN_INTERVAL
        try:
            exporters = parse_exporters(raw, connectors, [ENCRYPTED, *streams], source, min_interval)
        except ConnectorError as exc:
            raise ProjectError(str(exc)) from None
        return list(zip(records, exporters))

    def _source_or_none(self, stream: str) -> str | None:
        try:
            return self.source_of(stream)
        except ProjectError:
            return None


def _jdbc_entry(entry: dict, source: str) -> dict:
    where = f"{source}: connector '{entry.get('name')}'"
    unknown = sorted(set(entry) - {"name", "kind", "uri", "database_type"})
    if unknown:
        raise ProjectError(f"{where}: unknown key(s) for kind jdbc: {', '.join(unknown)}")
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$", str(entry.get("name") or "")):
        raise ProjectError(f"{where}: name must be letters, digits, '-', '_' or '.' (at most 63)")
    if not str(entry.get("uri") or "").startswith("jdbc:"):
        raise ProjectError(f"{where}: uri must be a JDBC URI (jdbc:...)")
    database_type = entry.get("database_type")
    if database_type is not None and str(database_type).upper() not in JDBC_DATABASE_TYPES:
        raise ProjectError(f"{where}: database_type must be one of {', '.join(JDBC_DATABASE_TYPES)}")
    return {**entry, **({"database_type": str(database_type).upper()} if database_type else {})}
