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
      - {name: shop-1, cumulative: 1, mask: [userId]}   # keyed (HMAC-SHA-256) masking
      - {granular: [1, 2], mask: [email], mask_hash: murmur3, mask_seed: 42}  # the reference's; name shop-1-2
      - name: shop-groups
        cumulative: 1
        generalise:                    # privacy/generalise.py: the rule's output replaces the value
          age: {bucket: [0, 18, 30, 45, 65]}           # '18-29', '65+'; below 0: the default (null)
          date: {truncate: month}                       # '2022-09'
          tshirtSize: {group: {small: [XS, S], large: [M, L, XL]}, default: other}
    export: {interval: 60, partition_by_day: false, max_file_bytes: 134217728, write_mode: replace}
    output: out
    keys: {store: "sqlite:///out/keystore.sqlite", kek: "local://out/kek.json", retention_days: 2556}
    connectors: [...]                  # and exporters: see pipelines/connectors.py

The format is published as a JSON Schema, ``src/schemas/pipeline-config.schema.json`` (connectors
and exporters: ``connector.schema.json``), and read with the strict YAML loader: an unknown or
misspelled key at any depth (``stream:``, ``exprt:``, ``keys: {stor: ...}``) is an error naming the
file, the path and the nearest valid key; anchors, aliases, merge keys and duplicate keys are
refused. Then what a schema cannot check: a cumulative stream has exactly one level, ``mask:``
patterns, ``generalise:`` rules (a field of the contract, of a type the rule fits) and the
consent and timestamp fields name fields of the contract (nested paths as the
contract spells them, ``address/street``), consent-map regexes compile with RE2.

Editors: with yaml-language-server (VS Code's YAML extension and others), start the config with::

    # yaml-language-server: $schema=<path to>/src/schemas/pipeline-config.schema.json

(``python -c "import schemas; print(schemas.schema_path('pipeline-config'))"`` prints it).

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

from contracts import Contract, ContractError
from contracts.batch_input import ConsentConfig, TimestampConfig
from contracts.regex import RegexError
from pipelines.connectors import ConnectorError, parse_connectors
from pipelines.sources import DatabaseInput, SourceConfigError, parse_database_input
from privacy.kanonymity import MicroAggregationError, MicroAggregationSpec
from privacy.keyring import DEFAULT_RETENTION_DAYS
from privacy.masking import DEFAULT_MASK_HASH
from privacy.streams import CUMULATIVE, GRANULAR, StreamSpec, default_stream_name
from schemas import SchemaError, _shown, load_checked
from transforms.run_commit import DEFAULT_WRITE_MODE, WRITE_MODES
from transforms.write_jsonl import DEFAULT_MAX_BYTES

DEFAULT_CONFIG = Path(__file__).resolve().parent / "webshop.yaml"
SCHEMA = "pipeline-config"
MIN_INTERVAL, MAX_INTERVAL = 30, 3600
ENCRYPTION, MICRO_AGGREGATION = "encryption", "micro_aggregation"
JOBS = (ENCRYPTION, MICRO_AGGREGATION)


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
    write_mode: str = DEFAULT_WRITE_MODE
    source: str = str(DEFAULT_CONFIG)
    is_default_example: bool = False
    extra: dict = field(default_factory=dict)
    database: DatabaseInput | None = None      # input from a database connector instead of files
    job: str = ENCRYPTION
    micro_aggregation: MicroAggregationSpec | None = None

    def output_dir(self, *parts: str) -> str:
        return "/".join([self.output.rstrip("/"), *parts])

    def retention_policies(self) -> dict:
        """contract ref -> ``privacy.policies.Policy`` for a contract with ``retention: {policy: ID}``,
        read from the key store where its keys are made (the store is opened only then); ConfigError
        naming the contract file and the store for a policy the store does not have."""
        wanted = [c for c in (self.contract,) if c.retention_policy]
        if not wanted:
            return {}
        from privacy.keystore import KeyStoreError, open_key_store

        try:
            store = open_key_store(self.key_store)
            try:
                known = {policy.policy_id: policy for policy in store.policies()}
                uri = store.uri
            finally:
                store.close()
        except KeyStoreError as exc:
            raise ConfigError(f"{self.source}: the retention policies of contract {wanted[0].ref} cannot be read: "
                              f"{exc}") from None
        policies = {}
        for contract in wanted:
            policy = known.get(contract.retention_policy)
            if policy is None:
                raise ConfigError(
                    f"{contract.source or contract.ref}: retention: policy '{contract.retention_policy}' is not a "
                    f"policy of the key store {uri} (it has: {', '.join(sorted(known)) or 'none'}); create it "
                    f"first: pstream policies create {contract.retention_policy} --retention-days N "
                    f"--legal-grounds TEXT --key-store {uri}")
            policies[contract.ref] = policy
        return policies

    @classmethod
    def build(cls, name: str, contract: Contract, input_path: str, streams: list[StreamSpec], output: str,
              input_format: str = "jsonl", source: str = "", write_mode: str = DEFAULT_WRITE_MODE) -> "PipelineConfig":
        """A config made in code rather than read from a file (the local loop builds one from the
        project model, appending each micro-batch), with ``load_config``'s defaults: a local output
        keeps its key store and KEK in the output root; consent and event time come from each
        event's ``strmMeta``."""
        if is_remote(output):
            raise ConfigError(f"{source or name}: output '{output}' is remote: build the config with load_config")
        for spec in streams:  # a project stream's rule whose field this contract lacks does nothing here
            _check_rules(spec, contract, source or name, missing=False)
        return cls(name=name, contract=contract, input_path=input_path, input_format=input_format,
                   consent=ConsentConfig.from_dict(None), timestamp=TimestampConfig.from_dict(None),
                   streams=list(streams), output=output, key_store=_local_key_store(output), kek=_local_kek(output),
                   source=source or name, write_mode=write_mode)


def _local_key_store(output: str) -> str:
    return "sqlite://" + os.path.abspath(os.path.join(output, "keystore.sqlite"))


def _local_kek(output: str) -> str:
    return "local://" + os.path.abspath(os.path.join(output, "kek.json"))


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


def _streams(raw, source: str, name: str, contract: Contract) -> list[StreamSpec]:
    """The privacy streams of a config the schema has checked (types and keys)."""
    specs = []
    paths = contract.field_paths()
    for index, entry in enumerate(raw or []):
        where = f"{source}: streams[{index}]"
        if ("cumulative" in entry) == ("granular" in entry):
            raise ConfigError(f"{where}: give exactly one of 'cumulative: N' or 'granular: [levels]'")
        masks = entry.get("mask") or []
        masks = [masks] if isinstance(masks, str) else masks
        mode, levels = (CUMULATIVE, entry["cumulative"]) if "cumulative" in entry else (GRANULAR, entry["granular"])
        levels = levels if isinstance(levels, list) else [levels]
        stream_name = entry.get("name") or default_stream_name(name, sorted(set(levels)))
        try:
            spec = StreamSpec.create(stream_name, mode, levels, masks, entry.get("mask_seed"),
                                     entry.get("mask_hash", DEFAULT_MASK_HASH), entry.get("generalise"))
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        unknown = spec.unknown_masks(paths)
        if unknown:
            raise ConfigError(f"{where}: stream '{spec.name}': mask '{_shown(unknown[0])}' names no field of contract "
                              f"{contract.ref} (fields: {_shown(', '.join(paths))})")
        _check_rules(spec, contract, where)
        specs.append(spec)
    names = [s.name for s in specs]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ConfigError(f"{source}: streams: names must be unique, repeated: {', '.join(sorted(duplicates))}")
    return specs


def _micro_aggregation(data: dict, contract: Contract, overrides: dict, source: str) -> MicroAggregationSpec:
    section = data.get("micro_aggregation") or {}   # its keys and types: the schema checked them
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


def _check_rules(spec: StreamSpec, contract: Contract, where: str, missing: bool = True) -> None:
    """A stream's generalisation rules must name fields of the contract, of types they fit."""
    problems = spec.rule_problems(contract, missing)
    if problems:
        raise ConfigError(f"{where}: stream '{spec.name}': {problems[0]}")


def _check_input_field(field: str | None, key: str, source: str, contract: Contract) -> None:
    """A field the config reads from each row must be a top-level field of the contract: a column
    outside the contract makes every row a dead letter, a missing one leaves every row without it."""
    if field is None:
        return
    top = [node.name for node in contract.nodes]
    if field not in top:
        raise ConfigError(f"{source}: {key}: '{_shown(field)}' is not a top-level field of contract "
                          f"{contract.ref} (fields: {_shown(', '.join(top))})")


def load_config(path: str | None = None, overrides: dict | None = None) -> PipelineConfig:
    """Read a config file (default: the embedded web shop example) and apply overrides (None = keep)."""
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    source = str(path or DEFAULT_CONFIG)
    try:
        data = load_checked(_read_text(source), SCHEMA, source) or {}
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read the config: {exc.strerror}") from None
    except SchemaError as exc:
        raise ConfigError(str(exc)) from None
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
        from controlplane.contracts import load_for_running   # the project registry: only when a job loads

        contract = load_for_running(str(contract_ref))
    except ContractError as exc:
        raise ConfigError(str(exc)) from None
    try:
        consent = ConsentConfig.from_dict(inputs.get("consent"))
    except RegexError as exc:
        raise ConfigError(f"{source}: input.consent.map: {exc}") from None
    try:
        timestamp = TimestampConfig.from_dict(inputs.get("timestamp"))
    except ValueError as exc:
        raise ConfigError(f"{source}: input.timestamp: {exc}") from None
    _check_input_field(consent.field, "input.consent.field", source, contract)
    _check_input_field(timestamp.field, "input.timestamp.field", source, contract)

    output = str(overrides.get("output") or data.get("output") or "out")
    local = not is_remote(output)
    key_store = overrides.get("key_store") or keys.get("store")
    kek = overrides.get("kek") or keys.get("kek")
    if not key_store:
        if not local:
            raise ConfigError(f"{source}: output '{output}' is remote: give a key store (--key_store postgresql://... "
                              "or keys.store), the workers must share it")
        key_store = _local_key_store(output)
    if not kek:
        if not local:
            raise ConfigError(f"{source}: output '{output}' is remote: give a KEK (--kek gcp-kms://..., aws-kms://... "
                              "or keys.kek)")
        kek = _local_kek(output)

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
    incremental = database is not None and database.incremental is not None
    # An incremental read adds the new rows to what earlier runs wrote: its default mode is append,
    # and replace (which would delete the rows earlier runs read) is refused.
    write_mode = str(overrides.get("write_mode") or export.get("write_mode")
                     or ("append" if incremental else DEFAULT_WRITE_MODE))
    if write_mode not in WRITE_MODES:
        raise ConfigError(f"{source}: export.write_mode '{write_mode}' is not one of {', '.join(WRITE_MODES)}")
    if incremental and write_mode == "replace":
        raise ConfigError(f"{source}: write mode replace would delete what earlier incremental runs read; "
                          "an incremental input writes in append mode (or fail)")
    return PipelineConfig(
        name=name,
        contract=contract,
        input_path=overrides.get("input") or inputs.get("path"),
        input_format=input_format,
        consent=consent,
        timestamp=timestamp,
        streams=_streams(data.get("streams"), source, name, contract),
        output=output,
        key_store=key_store,
        kek=kek,
        retention_days=retention,
        export_interval=interval,
        partition_by_day=bool(export.get("partition_by_day", False) if partition is None else partition),
        max_file_bytes=int(overrides.get("max_file_bytes") or export.get("max_file_bytes") or DEFAULT_MAX_BYTES),
        write_mode=write_mode,
        source=source,
        is_default_example=path is None and "input" not in overrides,
        extra={k: v for k, v in data.items() if k not in ("name", "contract", "input", "streams", "export", "output",
                                                          "keys", "job", "micro_aggregation")},
        database=database,
        job=job,
        micro_aggregation=micro,
    )
