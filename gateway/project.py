"""The local project: pipelines (streams) with their credentials, privacy streams, data
connectors and batch exporters, kept in one YAML file that the CLI edits and the gateway reads.

    from gateway.project import Project
    project = Project.open()                    # $PSTREAM_PROJECT_DIR or ~/.config/pstream
    project = Project.open("/tmp/demo")         # or an explicit directory (--project_dir)
    pipeline = project.create_pipeline("demo")  # generates a client id and secret
    project.create_privacy_stream("demo-1", source="demo", mode="CUMULATIVE", levels=[1])
    project.save()

Layout of a project directory::

    project.yaml        the resources below (mode 0600: it holds client secrets)
    gateway.key         the gateway's token-signing key (0600, created on first use)
    contracts/          extra data contracts (<handle>/<name>/<version>.yaml), next to the shipped ones
    spool/<pipeline>/   the gateway's append-only JSONL segments of accepted events
    out/<pipeline>/     the pipeline's outputs: encrypted/, streams/<name>/, keys/, dead_letter/
    exports/            what local data connectors receive from batch exporters

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

from privacy.streams import CUMULATIVE, GRANULAR, StreamSpec

PROJECT_DIR_ENV = "PSTREAM_PROJECT_DIR"
DEFAULT_PROJECT_DIR = Path.home() / ".config" / "pstream"
PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
CONNECTOR_TYPES = ("local", "s3", "gcs", "azure-blob-storage", "jdbc")
MIN_EXPORT_INTERVAL, MAX_EXPORT_INTERVAL, MAX_PATH_PREFIX = 30, 3600, 900


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
    mask_seed: int | None = None
    created_at: int = 0

    def spec(self) -> StreamSpec:
        if self.mode == CUMULATIVE:
            return StreamSpec.cumulative(self.name, self.levels[0], self.masked_fields, self.mask_seed)
        return StreamSpec.granular(self.name, self.levels, self.masked_fields, self.mask_seed)


@dataclass
class DataConnector:
    """A named storage location: local directory, S3/GCS bucket, Azure container, JDBC."""

    name: str
    type: str
    settings: dict = field(default_factory=dict)

    def location(self, project_dir: Path) -> str:
        """The base URI that exporters write under."""
        s = self.settings
        if self.type == "local":
            return str(Path(s.get("path") or project_dir / "exports" / self.name).resolve())
        if self.type == "s3":
            return f"s3://{s['bucket']}"
        if self.type == "gcs":
            return f"gs://{s['bucket']}"
        if self.type == "azure-blob-storage":
            return f"azfs://{s['storage_account']}/{s['container']}"
        raise ProjectError(f"data connector '{self.name}' of type {self.type} cannot be a batch exporter target")


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
                        item = kind(**entry)
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
        data = {section: [asdict(item) for item in getattr(self, section).values()] for section in _SECTIONS}
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
                              masked_fields: list[str] = (), mask_seed: int | None = None) -> PrivacyStream:
        if source not in self.pipelines:
            raise ProjectError(f"--derived-from: no pipeline named '{source}'")
        mode = mode.upper()
        if mode not in (CUMULATIVE, GRANULAR):
            raise ProjectError(f"mode must be {CUMULATIVE} or {GRANULAR}")
        levels = sorted(set(int(v) for v in levels))
        name = name or "-".join([source] + [str(v) for v in levels])
        self._check_free(name)
        if mask_seed is None and masked_fields:
            mask_seed = secrets.randbits(31)
        stream = PrivacyStream(name, source, mode, levels, list(masked_fields), mask_seed, _now_ms())
        try:
            stream.spec()
        except ValueError as exc:
            raise ProjectError(str(exc)) from None
        self.privacy_streams[name] = stream
        return stream

    # ------------------------------------------------------ data connectors
    def create_data_connector(self, name: str, type_: str, settings: dict) -> DataConnector:
        if type_ not in CONNECTOR_TYPES:
            raise ProjectError(f"data connector type '{type_}' is not one of {', '.join(CONNECTOR_TYPES)}")
        if name in self.data_connectors:
            raise ProjectError(f"a data connector named '{name}' already exists")
        connector = DataConnector(name, type_, {k: v for k, v in settings.items() if v is not None})
        self.data_connectors[name] = connector
        return connector

    def delete_data_connector(self, name: str) -> None:
        if name not in self.data_connectors:
            raise ProjectError(f"no data connector named '{name}'")
        users = [e.name for e in self.batch_exporters.values() if e.data_connector == name]
        if users:
            raise ProjectError(f"batch exporters {', '.join(users)} use data connector '{name}': delete them first")
        del self.data_connectors[name]

    # ------------------------------------------------------- batch exporters
    def create_batch_exporter(self, stream: str, data_connector: str, name: str | None = None,
                              interval: int = 60, path_prefix: str = "",
                              include_existing_events: bool = False) -> BatchExporter:
        self.source_of(stream)
        if data_connector not in self.data_connectors:
            raise ProjectError(f"no data connector named '{data_connector}'")
        self.data_connectors[data_connector].location(self.directory)
        if not MIN_EXPORT_INTERVAL <= interval <= MAX_EXPORT_INTERVAL and not os.environ.get("PSTREAM_ALLOW_SHORT_INTERVALS"):
            raise ProjectError(f"interval {interval}s is outside {MIN_EXPORT_INTERVAL}-{MAX_EXPORT_INTERVAL}s")
        if len(path_prefix) > MAX_PATH_PREFIX or path_prefix.endswith("/"):
            raise ProjectError(f"path prefix: at most {MAX_PATH_PREFIX} characters and no trailing '/'")
        name = name or f"{stream}-{data_connector}"
        if name in self.batch_exporters:
            raise ProjectError(f"a batch exporter named '{name}' already exists")
        exporter = BatchExporter(name, stream, data_connector, interval, path_prefix, include_existing_events,
                                 str(uuid.uuid4()), _now_ms())
        self.batch_exporters[name] = exporter
        return exporter

    def delete_batch_exporter(self, name: str) -> None:
        if name not in self.batch_exporters:
            raise ProjectError(f"no batch exporter named '{name}'")
        del self.batch_exporters[name]
