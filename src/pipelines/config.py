"""The pipeline config: a YAML file (or the embedded web shop default) plus command-line overrides.

    from pipelines.config import load_config
    config = load_config("pipeline.yaml", overrides={"output": "gs://bucket/run1"})
    config.contract.ref, config.streams, config.output_dir("encrypted")

File format (every key but ``contract`` is optional; see pipelines/webshop.yaml)::

    name: webshop                      # source stream name; default stream names <name>-<levels>
    contract: acme/Shop/1.0.0          # reference or YAML path
    input:
      path: data/*.csv                 # or --input
      format: csv                      # csv | jsonl; default from the suffix
      consent: {field: purposeConsent, map: {"yes": [1, 2]}, default: []}
      timestamp: {field: date, format: "yyyy-MM-dd HH:mm:ss", timezone: UTC}
    streams:
      - {name: shop-1, cumulative: 1, mask: [userId], mask_seed: 42}
      - {granular: [1, 2]}             # name defaults to shop-1-2
    export: {interval: 60, partition_by_day: false, max_file_bytes: 134217728}
    output: out
    keys: {store: "sqlite:///out/keystore.sqlite", kek: "local://out/kek.json", retention_days: 2556}

Instead of files, ``input`` may name a database connector (``connectors:``, see
pipelines/connectors.py) and a table or query: ``{connector: shopdb, table: public.orders,
split_by: id, incremental: {column: id}}``, see pipelines/sources.py. The second job kind::

    job: micro_aggregation             # default: encryption (the privacy streams job)
    micro_aggregation:
      k: 5                             # or --k
      quasi_identifiers: [age, zip]    # or --quasi_identifiers; default: the contract's isQuasiId
      consent_levels: [1]              # records must consent to each; default: to anything
      max_suppressed: 0.0              # share of records that may be suppressed (privacy.kanonymity)

A problem is reported as ``ConfigError`` naming the file and the key.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from contracts import Contract, ContractError, load_contract
from contracts.batch_input import ConsentConfig, TimestampConfig
from pipelines.connectors import ConnectorError, parse_connectors
from pipelines.sources import DatabaseInput, SourceConfigError, parse_database_input
from privacy.kanonymity import MicroAggregationError, MicroAggregationSpec
from privacy.keyring import DEFAULT_RETENTION_DAYS
from privacy.streams import StreamSpec, default_stream_name
from transforms.write_jsonl import DEFAULT_MAX_BYTES

DEFAULT_CONFIG = Path(__file__).resolve().parent / "webshop.yaml"
MIN_INTERVAL, MAX_INTERVAL = 30, 3600
ENCRYPTION, MICRO_AGGREGATION = "encryption", "micro_aggregation"
JOBS = (ENCRYPTION, MICRO_AGGREGATION)
MICRO_KEYS = {"k", "quasi_identifiers", "consent_levels", "max_suppressed"}


class ConfigError(ValueError):
    """A pipeline config that cannot be used; the message names the file and the key."""


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


@dataclass
class PipelineConfig:
    name: str
    contract: Contract
    input_path: str | None
    input_format: str | None
    consent: ConsentConfig
    timestamp: TimestampConfig
    streams: list[StreamSpec]
    output: str
    key_store: str
    kek: str
    retention_days: int = DEFAULT_RETENTION_DAYS
    export_interval: int = 60
    partition_by_day: bool = False
    max_file_bytes: int = DEFAULT_MAX_BYTES
    source: str = str(DEFAULT_CONFIG)
    is_default_example: bool = False
    extra: dict = field(default_factory=dict)
    database: DatabaseInput | None = None      # input from a database connector instead of files
    job: str = ENCRYPTION
    micro_aggregation: MicroAggregationSpec | None = None

    def output_dir(self, *parts: str) -> str:
        return "/".join([self.output.rstrip("/"), *parts])


def _read_text(source: str) -> str:
    """A local file, or gs://, s3://, azfs:// through Beam's FileSystems (flex templates read it there)."""
    if not is_remote(source):
        return Path(source).read_text()
    from apache_beam.io.filesystems import FileSystems
    try:
        with FileSystems.open(source) as handle:
            return handle.read().decode("utf-8")
    except Exception as exc:  # each store raises its own errors
        raise OSError(0, " ".join(str(exc).split())[:300]) from None


def _streams(raw, source: str, name: str) -> list[StreamSpec]:
    specs = []
    for index, entry in enumerate(raw or []):
        where = f"{source}: streams[{index}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: must be a mapping")
        if ("cumulative" in entry) == ("granular" in entry):
            raise ConfigError(f"{where}: give exactly one of 'cumulative: N' or 'granular: [levels]'")
        masks = entry.get("mask") or []
        if isinstance(masks, str):
            masks = [masks]
        try:
            if "cumulative" in entry:
                level = entry["cumulative"]
                spec = StreamSpec.cumulative(entry.get("name") or default_stream_name(name, [level]), int(level),
                                             masks, entry.get("mask_seed"))
            else:
                levels = entry["granular"]
                levels = levels if isinstance(levels, list) else [levels]
                spec = StreamSpec.granular(entry.get("name") or default_stream_name(name, sorted(levels)),
                                           [int(v) for v in levels], masks, entry.get("mask_seed"))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        specs.append(spec)
    names = [s.name for s in specs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"{source}: streams: names must be unique, repeated: {', '.join(sorted(duplicates))}")
    return specs


def _micro_aggregation(data: dict, contract: Contract, overrides: dict, source: str) -> MicroAggregationSpec:
    section = data.get("micro_aggregation") or {}
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: micro_aggregation must be a mapping")
    unknown = sorted(set(section) - MICRO_KEYS)
    if unknown:
        raise ConfigError(f"{source}: micro_aggregation: unknown key(s) {', '.join(unknown)} "
                          f"(known: {', '.join(sorted(MICRO_KEYS))})")
    k = overrides.get("k", section.get("k"))
    if k is None:
        raise ConfigError(f"{source}: the micro_aggregation job needs k (micro_aggregation.k or --k)")
    names = overrides.get("quasi_identifiers") or section.get("quasi_identifiers")
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    try:
        return MicroAggregationSpec.for_contract(contract, k, names, section.get("consent_levels") or (),
                                                 section.get("max_suppressed") or 0.0)
    except (MicroAggregationError, TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: micro_aggregation: {exc}") from None


def load_config(path: str | None = None, overrides: dict | None = None) -> PipelineConfig:
    """Read a config file (default: the embedded web shop example) and apply overrides (None = keep)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    source = str(path or DEFAULT_CONFIG)
    try:
        data = yaml.safe_load(_read_text(source))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a pipeline config must be a YAML mapping")
    if path is None and overrides.get("contract") not in (None, data.get("contract")):
        # Another contract without a config: the web shop's consent, timestamp and streams don't apply.
        data = {"name": "pipeline", "output": data.get("output")}
    inputs = data.get("input") or {}
    export = data.get("export") or {}
    keys = data.get("keys") or {}
    name = str(data.get("name") or "pipeline")

    contract_ref = overrides.get("contract") or data.get("contract")
    if not contract_ref:
        raise ConfigError(f"{source}: 'contract' is missing (a reference or a YAML path; or --contract)")
    try:
        contract = load_contract(contract_ref)
    except ContractError as exc:
        raise ConfigError(str(exc)) from None
    try:
        consent = ConsentConfig.from_dict(inputs.get("consent"))
        timestamp = TimestampConfig.from_dict(inputs.get("timestamp"))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{source}: input: {exc}") from None

    output = str(overrides.get("output") or data.get("output") or "out")
    local = not is_remote(output)
    key_store = overrides.get("key_store") or keys.get("store")
    kek = overrides.get("kek") or keys.get("kek")
    if not key_store:
        if not local:
            raise ConfigError(f"{source}: output '{output}' is remote: give a key store (--key_store postgresql://... "
                              "or keys.store), the workers must share it")
        key_store = "sqlite://" + os.path.abspath(os.path.join(output, "keystore.sqlite"))
    if not kek:
        if not local:
            raise ConfigError(f"{source}: output '{output}' is remote: give a KEK (--kek gcp-kms://..., aws-kms://... "
                              "or keys.kek)")
        kek = "local://" + os.path.abspath(os.path.join(output, "kek.json"))

    interval = int(overrides.get("export_interval") or export.get("interval") or 60)
    if not MIN_INTERVAL <= interval <= MAX_INTERVAL:
        raise ConfigError(f"{source}: export interval {interval}s is outside {MIN_INTERVAL}-{MAX_INTERVAL}s")
    partition = overrides.get("partition_by_day")
    retention = int(overrides.get("retention_days") or keys.get("retention_days") or DEFAULT_RETENTION_DAYS)
    if retention < 1:
        raise ConfigError(f"{source}: retention_days must be at least 1")
    # The config's format describes the config's path; another --input gets its format from its suffix.
    input_format = overrides.get("input_format") or (None if "input" in overrides else inputs.get("format"))
    if input_format not in (None, "csv", "jsonl"):
        raise ConfigError(f"{source}: input.format '{input_format}' is not csv or jsonl")
    database = None
    if "input" not in overrides:   # --input reads files, whatever the config's input is
        try:
            database = parse_database_input(inputs, parse_connectors(data.get("connectors"), source), source)
        except (ConnectorError, SourceConfigError) as exc:
            raise ConfigError(str(exc)) from None
    job = overrides.get("job") or data.get("job") or ENCRYPTION
    if job not in JOBS:
        raise ConfigError(f"{source}: job '{job}' is not one of {', '.join(JOBS)}")
    if job == ENCRYPTION and ("k" in overrides or "quasi_identifiers" in overrides):
        raise ConfigError(f"{source}: --k and --quasi_identifiers belong to --job micro_aggregation")
    micro = _micro_aggregation(data, contract, overrides, source) if job == MICRO_AGGREGATION else None
    return PipelineConfig(
        name=name,
        contract=contract,
        input_path=overrides.get("input") or inputs.get("path"),
        input_format=input_format,
        consent=consent,
        timestamp=timestamp,
        streams=_streams(data.get("streams"), source, name),
        output=output,
        key_store=key_store,
        kek=kek,
        retention_days=retention,
        export_interval=interval,
        partition_by_day=bool(export.get("partition_by_day", False) if partition is None else partition),
        max_file_bytes=int(overrides.get("max_file_bytes") or export.get("max_file_bytes") or DEFAULT_MAX_BYTES),
        source=source,
        is_default_example=path is None and "input" not in overrides,
        extra={k: v for k, v in data.items() if k not in ("name", "contract", "input", "streams", "export", "output",
                                                          "keys", "job", "micro_aggregation")},
        database=database,
        job=job,
        micro_aggregation=micro,
    )
