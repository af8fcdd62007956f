"""The local project: pipelines (streams) with their credentials, privacy streams, data
connectors and batch exporters, kept in one schema-checked YAML file that the CLI edits and the
gateway and the local loop read.

    from controlplane.project import Project
    project = Project.open()                    # $PSTREAM_PROJECT_DIR or ~/.config/pstream
    project = Project.open("/tmp/demo")         # or an explicit directory (--project-dir)
    pipeline = project.create_pipeline("demo")  # a client id and a secret: pipeline.client_secret,
                                                # shown once (only its hash is saved)
    project.rotate_credentials("demo").client_secret   # a new secret; earlier tokens are refused
    project.create_privacy_stream("demo-1", source="demo", mode="CUMULATIVE", levels=[1])
    project.create_data_connector({"name": "lake", "kind": "s3", "bucket": "acme-lake",
                                   "credentials": {"file": "/run/secrets/aws-key.json"}})
    project.create_batch_exporter("demo-1", "lake", path_prefix="events")
    project.create_purpose(1, "analytics", "product analytics")   # a name for purpose level 1
    project.purpose_levels(["analytics"])       # [1]; ProjectError naming an unknown name
    project.purpose_label(1)                    # '1 (analytics)'; '4' for a level without a name
    for record, exporter in project.pipeline_exporters("demo"):   # pipelines.connectors.Exporter
        exporter.directory                                         # 's3://acme-lake/events'
    project.save()

The file follows the published schema ``src/schemas/project.schema.json`` (``schemas.load_checked``):
an unknown or misspelled key is an error naming the nearest valid one, as for contracts and
pipeline configs. Every resource name (pipeline, privacy stream, data connector, batch
exporter) is 1-63 lowercase letters, digits and '-', checked at creation and on every load,
because names become file names (state, exports).

Data connectors and batch exporters are the ones of ``pipelines.connectors``: a connector is
stored as the mapping a pipeline config's ``connectors:`` holds and checked by the same
``parse_connector``; the exporters of a pipeline are built by ``parse_exporters``.

Credentials: a pipeline's client secret is random (256 bits), shown once when it is created or
rotated, and stored only as ``sha256:<salt>:<HMAC-SHA256(salt, secret)>``: the gateway verifies
secrets (``Pipeline.check_secret``, constant time) and never needs to read them. Every rotation
raises ``credential_generation``; ``gateway.auth`` binds tokens to the client id and the
generation, so deleting, re-creating or rotating a pipeline's credentials refuses every earlier
token at once.

Layout of a project directory::

    project.yaml        the resources below (mode 0600)
    gateway.key         the gateway's token-signing key (0600, created on first use)
    contracts/          the project's own data contracts: <handle>/<name>/<version>.yaml
                        (controlplane.contracts.ContractRegistry), next to the shipped ones
    spool/<id>/         the gateway's segments of accepted events of the pipeline with this id
    out/<id>/           the pipeline's outputs: encrypted/, streams/<name>/, keys/, dead_letter/
    state/<id>.json     what the local loop has processed (state/exporter-<id>.json per exporter)
    exports/<name>/     what a local data connector created without --path receives
    credentials/        credentials given as `pstream create data-connector` flags (0600 files)

A pipeline's ``id`` is ``<name>-<12 hex digits>``, new for every pipeline created, so a new
pipeline of a deleted one's name starts with an empty spool and empty outputs. Saving is atomic
(temp file + rename), so a reader (the gateway) never sees half a file.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from privacy.masking import DEFAULT_MASK_HASH, MURMUR3
from privacy.private_files import replace_private
from privacy.streams import CUMULATIVE, GRANULAR, StreamSpec

PROJECT_DIR_ENV = "PSTREAM_PROJECT_DIR"
DEFAULT_PROJECT_DIR = Path.home() / ".config" / "pstream"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
PIPELINE_NAME = NAME
SHORT_INTERVALS_ENV = "PSTREAM_ALLOW_SHORT_INTERVALS"   # tests of the local loop: intervals from 1 s
MAX_PROJECT_BYTES = 16 << 20
_HASH = "sha256"


class ProjectError(ValueError):
    """A request the project cannot satisfy; the message says which resource and why."""


def check_name(kind: str, name) -> str:
    """``name`` unchanged, or ProjectError: 1-63 lowercase letters, digits and '-'."""
    if isinstance(name, str) and NAME.fullmatch(name):
        return name
    text = str(name)
    shown = text if len(text) <= 40 else f"{text[:40]}... ({len(text)} characters)"
    shown = shown.encode("unicode_escape").decode("ascii")
    raise ProjectError(f"{kind} name '{shown}': use 1-63 lowercase letters, digits and '-', "
                       "starting with a letter or digit")


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """``sha256:<salt hex>:<HMAC-SHA256(salt, secret) hex>``. The secrets are 256 random bits, so
    a salted fast hash is enough: no password-style stretching, which would let anyone with a
    client id make the token endpoint burn CPU."""
    salt = secrets.token_bytes(16) if salt is None else salt
    digest = hmac.new(salt, secret.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()
    return f"{_HASH}:{salt.hex()}:{digest}"


@dataclass
class Pipeline:
    """A source stream: events sent with its credentials land in its spool."""

    name: str
    client_id: str
    client_secret_hash: str = ""
    credential_generation: int = 1
    credentials_rotated_at: int = 0
    enabled: bool = True
    created_at: int = 0
    description: str = ""
    id: str = ""
    # the plaintext secret, only right after create_pipeline / rotate_credentials; never saved
    client_secret: str | None = field(default=None, repr=False, compare=False)

    def check_secret(self, secret) -> bool:
        """Whether ``secret`` is this pipeline's client secret (constant time in the secret)."""
        if not isinstance(secret, str) or not self.client_secret_hash.startswith(_HASH + ":"):
            return False
        _, salt, digest = self.client_secret_hash.split(":")
        return hmac.compare_digest(hash_secret(secret, bytes.fromhex(salt)).rsplit(":", 1)[1], digest)

    def to_file(self) -> dict:
        data = asdict(self)
        del data["client_secret"]
        return data


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

    def to_file(self) -> dict:
        return asdict(self)


@dataclass
class DataConnector:
    """A data connector as the project file stores it: ``entry`` is the mapping that
    ``pipelines.connectors.parse_connector`` accepts (kind s3 | gcs | azure | local, or a
    database a batch job reads: postgresql | bigquery, never an export target; the same keys as
    a pipeline config's ``connectors:``)."""

    entry: dict

    @property
    def name(self) -> str:
        return self.entry["name"]

    @property
    def kind(self) -> str:
        return self.entry.get("kind", "")

    def to_file(self) -> dict:
        return dict(self.entry)

    def connector(self, source: str):
        """The ``pipelines.connectors.Connector``; ProjectError for an invalid entry."""
        from pipelines.connectors import ConnectorError, parse_connector

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

    def to_file(self) -> dict:
        return asdict(self)


@dataclass
class Purpose:
    """A name for a purpose level: what consent to that level is for. Levels stay the wire format
    (events' consentLevels, contracts' purposeLevel); the names are for people."""

    level: int
    name: str
    description: str = ""
    created_at: int = 0

    def to_file(self) -> dict:
        return asdict(self)


_SECTIONS = {
    "pipelines": Pipeline,
    "privacy_streams": PrivacyStream,
    "data_connectors": DataConnector,
    "batch_exporters": BatchExporter,
    "purposes": Purpose,
}


def default_project_dir() -> Path:
    return Path(os.environ.get(PROJECT_DIR_ENV) or DEFAULT_PROJECT_DIR)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _load_pipeline(entry: dict) -> Pipeline:
    entry = dict(entry)
    legacy = entry.pop("client_secret", None)
    pipeline = Pipeline(**entry)
    if legacy is not None and not pipeline.client_secret_hash:
        pipeline.client_secret_hash = hash_secret(legacy)   # the plaintext is not written back
    pipeline.id = pipeline.id or pipeline.name   # older files: directories named after the pipeline
    return pipeline


def _refuse_old_forms(data, path: Path) -> None:
    """Entries of earlier project files that the schema would only call unknown keys: say how to fix them."""
    for entry in (data.get("data_connectors") or []) if isinstance(data, dict) else []:
        if isinstance(entry, dict) and (("type" in entry and "settings" in entry) or entry.get("kind") == "jdbc"):
            form = entry.get("kind") or "type, settings"
            raise ProjectError(f"{path}: data connector '{entry.get('name')}' is in an old form ({form}): "
                               "delete it from the file and create it again with `pstream create data-connector`")


class Project:
    """All resources of one project directory; see the module docstring."""

    FILE = "project.yaml"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.pipelines: dict[str, Pipeline] = {}
        self.privacy_streams: dict[str, PrivacyStream] = {}
        self.data_connectors: dict[str, DataConnector] = {}
        self.batch_exporters: dict[str, BatchExporter] = {}
        self.purposes: dict[str, Purpose] = {}   # by name
        self.settings: dict = {}
        self._clients: dict[str, Pipeline] | None = None

    # ----------------------------------------------------------------- files
    @classmethod
    def open(cls, directory: str | Path | None = None) -> "Project":
        """The project in ``directory`` (empty if it has no project file); ProjectError for a
        file that does not follow ``project.schema.json``, naming the file, the key and the
        nearest valid key."""
        project = cls(Path(directory) if directory else default_project_dir())
        path = project.path
        try:
            text = path.read_bytes()
        except FileNotFoundError:
            return project
        except OSError as exc:
            raise ProjectError(f"{path}: cannot be read: {exc.strerror}") from None
        from schemas import SchemaError, check, load_strict_yaml   # jsonschema: only when a project is read

        try:
            data = load_strict_yaml(text, str(path), max_bytes=MAX_PROJECT_BYTES) or {}
            _refuse_old_forms(data, path)
            check(data, "project", source=str(path))
        except SchemaError as exc:
            raise ProjectError(str(exc)) from None
        names: set[str] = set()
        for section, kind in _SECTIONS.items():
            for entry in data.get(section) or []:
                if kind is Pipeline:
                    item = _load_pipeline(entry)
                elif kind is DataConnector:
                    item = DataConnector(dict(entry))
                else:
                    item = kind(**entry)
                try:
                    check_name(section, item.name)   # also here: names become file names
                except ProjectError as exc:
                    raise ProjectError(f"{path}: {exc}") from None
                key = (section if section in ("data_connectors", "batch_exporters", "purposes") else "streams",
                       item.name)
                if kind is Purpose and any(p.level == item.level for p in project.purposes.values()):
                    raise ProjectError(f"{path}: purposes: level {item.level} is named twice")
                if key in names:
                    raise ProjectError(f"{path}: {section}: '{item.name}' is defined twice")
                names.add(key)
                getattr(project, section)[item.name] = item
        project.settings = data.get("settings") or {}
        return project

    @property
    def path(self) -> Path:
        return self.directory / self.FILE

    def save(self) -> None:
        import yaml

        self.directory.mkdir(parents=True, exist_ok=True)
        data = {section: [item.to_file() for item in getattr(self, section).values()] for section in _SECTIONS}
        data["settings"] = self.settings
        text = ("# pstream project: pipelines, privacy streams, data connectors, batch exporters.\n"
                "# Format: src/schemas/project.schema.json. Keep it private (mode 0600).\n"
                + yaml.safe_dump(data, sort_keys=False))
        replace_private(self.path, text.encode("utf-8"))

    def pipeline(self, name: str) -> Pipeline:
        try:
            return self.pipelines[name]
        except KeyError:
            raise ProjectError(f"no pipeline named '{name}' (see `pstream list streams`)") from None

    def spool_dir(self, pipeline: str) -> Path:
        """The gateway's spool of a pipeline (by name): ``spool/<pipeline id>/``."""
        return self.directory / "spool" / self.pipeline(pipeline).id

    def output_dir(self, pipeline: str) -> Path:
        """The outputs of a pipeline (by name): ``out/<pipeline id>/``."""
        return self.directory / "out" / self.pipeline(pipeline).id

    def stream_dir(self, stream: str) -> Path:
        """Where a stream's events are written: a pipeline's encrypted/, a privacy stream's streams/<name>/."""
        pipeline = self.source_of(stream)
        out = self.output_dir(pipeline)
        return out / "encrypted" if stream == pipeline else out / "streams" / stream

    def state_dir(self) -> Path:
        return self.directory / "state"

    def contracts_dir(self) -> Path:
        return self.directory / "contracts"

    def gateway_url(self) -> str:
        return os.environ.get("PSTREAM_GATEWAY_URL") or self.settings.get("gateway_url") or "http://127.0.0.1:8080"

    # ------------------------------------------------------------- pipelines
    def create_pipeline(self, name: str, description: str = "") -> Pipeline:
        """A new pipeline with a new id, client id and secret (``.client_secret``, this once)."""
        check_name("stream", name)
        self._check_free(name)
        secret = secrets.token_urlsafe(32)
        pipeline = Pipeline(
            name=name,
            client_id=f"{name}-{uuid.uuid4().hex[:12]}",
            client_secret_hash=hash_secret(secret),
            created_at=_now_ms(),
            description=description,
            id=f"{name}-{secrets.token_hex(6)}",
            client_secret=secret,
        )
        self.pipelines[name] = pipeline
        return pipeline

    def rotate_credentials(self, name: str) -> Pipeline:
        """A new client secret (``.client_secret``, this once) and the next credential generation:
        tokens issued before are refused from now on."""
        pipeline = self.pipeline(name)
        secret = secrets.token_urlsafe(32)
        pipeline.client_secret_hash = hash_secret(secret)
        pipeline.credential_generation += 1
        pipeline.credentials_rotated_at = _now_ms()
        pipeline.client_secret = secret
        return pipeline

    def pipeline_by_client(self, client_id) -> Pipeline | None:
        """The pipeline of a client id (a dict lookup: the gateway asks on every request)."""
        index = self._clients
        if index is None or len(index) != len(self.pipelines):
            index = self._clients = {p.client_id: p for p in self.pipelines.values()}
        pipeline = index.get(client_id)
        if pipeline is not None and self.pipelines.get(pipeline.name) is pipeline and pipeline.client_id == client_id:
            return pipeline
        found = next((p for p in self.pipelines.values() if p.client_id == client_id), None)
        if found is not None or pipeline is not None:
            self._clients = None   # changed behind the index's back: rebuilt on the next call
        return found

    def source_of(self, stream: str) -> str:
        """The pipeline a stream name belongs to (itself for a pipeline)."""
        if stream in self.pipelines:
            return stream
        if stream in self.privacy_streams:
            return self.privacy_streams[stream].source
        raise ProjectError(f"no stream named '{stream}' (see `pstream list streams`)")

    def delete_stream(self, name: str, recursive: bool = False) -> list[str]:
        """Delete a pipeline or privacy stream; a pipeline with privacy streams needs ``recursive``.

        A pipeline's spool and outputs stay under its id (``spool/<id>``, ``out/<id>``): no other
        pipeline uses them, whatever its name; remove them with ``pipeline_data(pipeline)``'s paths.
        """
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

    def pipeline_data(self, name: str) -> list[Path]:
        """The spool, output and state paths of a pipeline (which may or may not exist)."""
        pipeline = self.pipeline(name)
        return [self.spool_dir(name), self.output_dir(name), self.state_dir() / f"{pipeline.id}.json"]

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
        name = check_name("stream", name or "-".join([source] + [str(v) for v in levels]))
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
        """Add a connector given as a pipeline config's ``connectors:`` entry.

        The name follows the project's resource names; the rest is validated by
        ``pipelines.connectors.parse_connector``, with its messages; a local connector's path
        is stored absolute. Reaching it is ``controlplane.connectors.probe_data_connector``'s.
        """
        entry = {k: v for k, v in entry.items() if v is not None}
        name = check_name("data connector", entry.get("name"))
        if name in self.data_connectors:
            raise ProjectError(f"a data connector named '{name}' already exists")
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
        path = folder / f"{check_name('data connector', name)}.json"
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
        if name is None and len(f"{stream}-{data_connector}") > 63:
            raise ProjectError(f"the default exporter name '{stream}-{data_connector}' is longer than 63 "
                               "characters: give one with --name")
        name = check_name("batch exporter", name or f"{stream}-{data_connector}")
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


    # ------------------------------------------------------------- purposes
    def create_purpose(self, level: int, name: str, description: str = "") -> Purpose:
        """Name a purpose level; ProjectError when the level or the name is taken."""
        check_name("purpose", name)
        if not isinstance(level, int) or isinstance(level, bool) or not 0 <= level <= 1_000_000:
            raise ProjectError(f"purpose level '{level}': a whole number from 0")
        if name in self.purposes:
            raise ProjectError(f"a purpose named '{name}' exists (level {self.purposes[name].level})")
        taken = self.purpose_name(level)
        if taken:
            raise ProjectError(f"purpose level {level} is named '{taken}' already")
        purpose = Purpose(level, name, description, _now_ms())
        self.purposes[name] = purpose
        return purpose

    def purpose_name(self, level: int) -> str | None:
        return next((p.name for p in self.purposes.values() if p.level == level), None)

    def purpose_label(self, level: int) -> str:
        """'1 (analytics)' for a named level, '1' for another."""
        name = self.purpose_name(level)
        return f"{level} ({name})" if name else str(level)

    def purpose_levels(self, names) -> list[int]:
        """The levels of purpose names (a name that is a number is that level); ProjectError for an unknown name."""
        levels = []
        for name in names:
            if name in self.purposes:
                levels.append(self.purposes[name].level)
            elif isinstance(name, str) and name.isdigit():
                levels.append(int(name))
            else:
                known = ", ".join(f"{p.name} ({p.level})" for p in sorted(self.purposes.values(), key=lambda p: p.level))
                raise ProjectError(f"no purpose named '{name}' (known: {known or 'none; pstream purposes create LEVEL NAME'})")
        return levels
