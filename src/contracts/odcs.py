"""Contracts as Open Data Contract Standard (ODCS v3, Bitol) documents, and back.

    from contracts import load_contract
    from contracts.odcs import export_odcs, import_odcs
    text = export_odcs(load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0"))   # YAML
    result = import_odcs(text, source="shop.odcs.yaml")
    result.contract == load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")     # True
    result.ours            # True: the file carries our custom properties (pstream.*)
    result.notes           # what the file said that a contract cannot carry (never dropped silently)
    result.data            # the contract mapping, for contract_yaml / a registry
    import_odcs(catalog_text, ref="acme/Orders/1.0.0", key_field="customerId")   # someone else's file

Both directions go through the ``open-data-contract-standard`` package's pydantic model, and
every document is also checked against the JSON Schema shipped in that package (the model
alone lets unknown keys of a property pass).

| contract | ODCS v3 |
|---|---|
| ref handle / name / version | ``tenant`` / ``name`` / ``version``; ``id`` is ``handle/name`` |
| state DRAFT, IN_REVIEW, APPROVED, ACTIVE, DEPRECATED, ARCHIVED | ``status`` draft, proposed, approved, active, deprecated, retired |
| schema.name, nodes | one ``schema[]`` object (``logicalType: object``), its ``properties`` |
| STRING, BOOLEAN, FLOAT | ``logicalType`` string, boolean, number (``format: f64``) |
| INTEGER, LONG | ``logicalType: integer``, ``logicalTypeOptions.format`` i32, i64 |
| NODE | ``logicalType: object`` with ``properties`` |
| repeated | ``logicalType: array``, the type in ``items`` (a NODE's fields in ``items.properties``) |
| required, doc | ``required: true``, ``description`` |
| regex validation | ``logicalTypeOptions.pattern`` (of ``items`` when repeated), anchored ``^(?:...)$`` when not already, as ODCS patterns search; ``pstream.patterns`` keeps the regexes as written when that differs, several per field, or on non-string fields |
| PII, purpose level | ``classification: pii``; ``pstream.purposeLevel`` |
| quasi-identifier | ``classification: quasi-identifier`` (unless pii); ``pstream.quasiIdentifier: true`` |
| key field, data subject field | ``pstream.keyField: true``, ``pstream.dataSubject: true`` on that property |
| null handling | ``pstream.nullHandling: {type, defaultValue}`` |
| retention: {policy} | ``pstream.retentionPolicy`` in the document's ``customProperties`` |

Our custom properties are ``customProperties`` entries whose ``property`` starts with
``pstream.``. A file with none of them (from a catalog or datacontract-cli) is someone else's:
it imports as a DRAFT, with the key field, PII fields (and levels), quasi-identifiers proposed by
the wizard's rules (``contracts.classify``, from names, ``examples`` and a ``classification``
that says personal data), its patterns read as searches (``(?s:.*)(?:p)(?s:.*)`` unless
anchored) and an ``enum`` of strings as a regex. date, timestamp and time become STRING (event
times are text); a map has no contract type (refused, naming the field).
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from importlib import resources

import yaml

from contracts import classify
from contracts.infer import NAME, FieldProfile, propose
from contracts.loader import REF_PATTERN, ContractError, parse_contract
from contracts.model import NODE, Contract, Node
from contracts.regex_compare import anchored
from contracts.writer import NoAliasDumper, field_metadata, null_handling_data, validation_data
from schemas import SchemaError, _shown, check, load_strict_yaml, validator_for

API_VERSION = "v3.1.0"
VENDOR = "pstream."
MAX_ODCS_BYTES = 4 << 20
STATUS = {"DRAFT": "draft", "IN_REVIEW": "proposed", "APPROVED": "approved", "ACTIVE": "active",
          "DEPRECATED": "deprecated", "ARCHIVED": "retired"}
STATE = {status: state for state, status in STATUS.items()}
_LOGICAL = {"STRING": "string", "BOOLEAN": "boolean", "FLOAT": "number", "INTEGER": "integer", "LONG": "integer"}
_FORMAT = {"INTEGER": "i32", "LONG": "i64", "FLOAT": "f64"}
PERSONAL_CLASSIFICATIONS = {"pii", "personal", "personal-data", "personal data", "personaldata", "sensitive", "gdpr"}
_MAPPED_TOP = {"apiVersion", "kind", "id", "name", "version", "tenant", "status", "schema", "customProperties"}
_MAPPED_PROPERTY = {"name", "logicalType", "logicalTypeOptions", "required", "description", "classification",
                    "customProperties", "properties", "items", "physicalType", "examples", "enum"}


@functools.lru_cache(maxsize=1)
def odcs_json_schema() -> dict:
    """The ODCS JSON Schema shipped in the open-data-contract-standard package."""
    return json.loads(resources.files("open_data_contract_standard").joinpath("schema.json").read_text("utf-8"))


@functools.lru_cache(maxsize=1)
def _odcs_validator():
    return validator_for(odcs_json_schema())


def _model():
    from open_data_contract_standard.model import OpenDataContractStandard
    return OpenDataContractStandard


def validate_odcs(data, source: str = "<odcs>"):
    """Check an ODCS mapping with the standard's JSON Schema and its pydantic model; the model.
    ContractError names the source, the path and the problem."""
    try:
        check(data, _odcs_validator(), source)
    except SchemaError as exc:
        raise ContractError(f"not a valid ODCS document: {exc}") from None
    import pydantic
    try:
        return _model().model_validate(data)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise ContractError(f"{source}: not a valid ODCS document: {where}: {first.get('msg')}") from None


# -- export ------------------------------------------------------------------------------------
def _custom(name: str, value) -> dict:
    return {"property": VENDOR + name, "value": value}


def _type_fields(node: Node, regexes: list[str]) -> dict:
    """logicalType (+ options, properties) of one value of the node (an item when repeated)."""
    out = {"logicalType": "object" if node.type == NODE else _LOGICAL[node.type]}
    options = {}
    if node.type in _FORMAT:
        options["format"] = _FORMAT[node.type]
    if node.type == "STRING" and regexes:
        options["pattern"] = regexes[0] if anchored(regexes[0]) else f"^(?:{regexes[0]})$"
    if options:
        out["logicalTypeOptions"] = options
    return out


def _property(contract: Contract, node: Node, path: str, regexes: dict, nulls: dict) -> dict:
    prop = {"name": node.name}
    own = regexes.get(path, [])
    value = _type_fields(node, own)
    if node.repeated:
        prop["logicalType"] = "array"
        prop["items"] = value
    else:
        prop.update(value)
    if node.type == NODE:
        (prop["items"] if node.repeated else prop)["properties"] = [
            _property(contract, child, f"{path}/{child.name}", regexes, nulls) for child in node.nodes]
    if node.required:
        prop["required"] = True
    if node.doc is not None:
        prop["description"] = node.doc
    if path in contract.pii:
        prop["classification"] = "pii"
    elif path in contract.quasi_ids:
        prop["classification"] = "quasi-identifier"
    custom = []
    if path in contract.pii:
        custom.append(_custom("purposeLevel", contract.pii[path]))
    if path in contract.quasi_ids:
        custom.append(_custom("quasiIdentifier", True))
    if path == contract.key_field:
        custom.append(_custom("keyField", True))
    if path == contract.data_subject_field:
        custom.append(_custom("dataSubject", True))
    if path in nulls:
        custom.append(_custom("nullHandling", null_handling_data(nulls[path])))
    written = value.get("logicalTypeOptions", {}).get("pattern")
    if own and [written] != own:
        custom.append(_custom("patterns", list(own)))
    if custom:
        prop["customProperties"] = custom
    return prop


def to_odcs(contract: Contract) -> dict:
    """The ODCS v3 mapping of a contract (``export_odcs`` checks it and writes the YAML)."""
    regexes: dict[str, list[str]] = {}
    for validation in contract.validations:
        regexes.setdefault(validation.field, []).append(validation.regex)
    nulls = {n.field: n for n in contract.null_handling}
    doc = {
        "apiVersion": API_VERSION,
        "kind": "DataContract",
        "id": f"{contract.handle}/{contract.name}",
        "name": contract.name,
        "version": contract.version,
        "tenant": contract.handle,
        "status": STATUS[contract.state],
        "schema": [{
            "name": contract.schema_name or contract.name,
            "logicalType": "object",
            "properties": [_property(contract, node, node.name, regexes, nulls) for node in contract.nodes],
        }],
    }
    if contract.retention_policy is not None:
        doc["customProperties"] = [{"property": f"{VENDOR}retentionPolicy", "value": contract.retention_policy}]
    return doc


def export_odcs(contract: Contract) -> str:
    """The ODCS v3 YAML of a contract, checked by the standard's JSON Schema and dumped through
    its model."""
    model = validate_odcs(to_odcs(contract), f"ODCS export of {contract.ref}")
    data = model.model_dump(exclude_none=True, by_alias=True)
    return yaml.dump(data, Dumper=NoAliasDumper, sort_keys=False, allow_unicode=True, width=110)


# -- import ------------------------------------------------------------------------------------
@dataclass
class ImportResult:
    """An imported contract: the mapping, the checked contract, whether the file was ours, notes."""

    data: dict
    contract: Contract
    ours: bool
    notes: list[str] = field(default_factory=list)
    reasons: dict = field(default_factory=dict)   # path -> why a classification was proposed (not ours)


def _customs(element) -> dict:
    return {c["property"][len(VENDOR):]: c.get("value") for c in element.get("customProperties") or []
            if isinstance(c.get("property"), str) and c["property"].startswith(VENDOR)}


def _has_ours(value) -> bool:
    if isinstance(value, dict):
        if _customs(value):
            return True
        return any(_has_ours(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_ours(v) for v in value)
    return False


def to_fullmatch(pattern: str) -> str:
    """An ODCS (ECMA-262, searching) pattern as a contract regex, which must match the whole value."""
    return pattern if anchored(pattern) else f"(?s:.*)(?:{pattern})(?s:.*)"


class _Reader:
    """One ODCS document to a contract mapping; collects notes and, for a foreign file, profiles."""

    def __init__(self, source: str, ours: bool):
        self.source, self.ours = source, ours
        self.notes: list[str] = []
        self.pii: dict[str, int] = {}
        self.quasi: list[str] = []
        self.key: list[str] = []
        self.subject: list[str] = []
        self.nulls: dict[str, dict] = {}
        self.validations: list[tuple[str, str]] = []
        self.hinted: dict[str, str] = {}   # foreign: path -> classification that says personal data

    def fail(self, path: str, problem: str):
        raise ContractError(f"{self.source}: field '{_shown(path)}': {problem}")

    def node(self, prop: dict, parent: str) -> tuple[dict, FieldProfile]:
        name = prop.get("name")
        path = f"{parent}{name}"
        if not isinstance(name, str) or not NAME.match(name) or name == "strmMeta":
            self.fail(path, "a field name starts with a letter or '_' and holds only letters, digits and '_'")
        logical, value = prop.get("logicalType"), prop
        repeated = logical == "array"
        if repeated:
            value = prop.get("items") or {}
            if value.get("logicalType") == "array":
                self.fail(path, "lists of lists have no contract type")
        node_type = self.type_of(value, path)
        node = {"name": name, "type": node_type}
        if repeated:
            node["repeated"] = True
        if prop.get("required"):
            node["required"] = True
        if prop.get("description") is not None:
            node["doc"] = prop["description"]
        profile = FieldProfile(name, path, type=node_type, repeated=repeated, required=bool(prop.get("required")),
                               doc=prop.get("description"), small_values=None, text=False)
        if node_type == NODE:
            children = value.get("properties") or []
            if not children:
                self.fail(path, "an object needs properties")
            pairs = [self.node(child, f"{path}/") for child in children]
            node["nodes"] = [n for n, _ in pairs]
            profile.children = {p.name: p for _, p in pairs}
        self.classification(prop, value, path, node_type, profile)
        self.leftovers(prop, value, path)
        return node, profile

    def type_of(self, value: dict, path: str) -> str:
        logical = value.get("logicalType")
        options = value.get("logicalTypeOptions") or {}
        physical = str(value.get("physicalType") or "").lower()
        if logical == "object" or (logical is None and value.get("properties")):
            return NODE
        if logical == "string":
            return "STRING"
        if logical == "boolean":
            return "BOOLEAN"
        if logical == "number":
            return "FLOAT"
        if logical == "integer":
            width = options.get("format")
            if width in ("i64", "u32") or (width is None and any(w in physical for w in ("bigint", "int64", "long"))):
                return "LONG"
            if width in ("u64", "i128", "u128"):
                self.notes.append(f"field '{path}': {width} is read as LONG (64-bit signed): larger values are refused")
                return "LONG"
            return "INTEGER"
        if logical in ("date", "timestamp", "time"):
            self.notes.append(f"field '{path}': {logical} is read as STRING (event times are text)")
            return "STRING"
        if logical == "vector":
            self.fail(path, "a vector is a list: describe it as an array of numbers")
        if logical == "map":
            self.fail(path, "a map has no contract type (use an object with named properties)")
        if logical is None:
            self.notes.append(f"field '{path}': no logicalType; read as STRING")
            return "STRING"
        self.fail(path, f"logicalType '{_shown(logical)}' has no contract type")

    def classification(self, prop: dict, value: dict, path: str, node_type: str, profile: FieldProfile):
        custom = _customs(prop)
        options = value.get("logicalTypeOptions") or {}
        pattern = options.get("pattern")
        if self.ours:
            if "purposeLevel" in custom:
                self.pii[path] = custom["purposeLevel"]
            if custom.get("quasiIdentifier"):
                self.quasi.append(path)
            if custom.get("keyField"):
                self.key.append(path)
            if custom.get("dataSubject"):
                self.subject.append(path)
            if "nullHandling" in custom:
                self.nulls[path] = custom["nullHandling"]
            patterns = custom.get("patterns")
            if patterns is not None:
                if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
                    self.fail(path, f"{VENDOR}patterns must be a list of regexes")
                self.validations.extend((path, p) for p in patterns)
                return
            if pattern is not None:
                self.validations.append((path, to_fullmatch(pattern)))
            return
        if pattern is not None:
            self.validations.append((path, to_fullmatch(pattern)))
        strings = [e.get("value") for e in value.get("enum") or []]
        if strings and all(isinstance(s, str) for s in strings):
            self.validations.append((path, classify.enumeration_regex(strings)))
        elif strings:
            self.notes.append(f"field '{path}': enum values that are not all strings are not carried over")
        examples = [e for e in (prop.get("examples") or value.get("examples") or []) if isinstance(e, str)]
        for example in examples[:100]:
            profile.tested += 1
            profile.matches.update(classify.value_matches(example))
        kind = str(prop.get("classification") or "").strip().lower()
        if kind in PERSONAL_CLASSIFICATIONS:
            self.hinted[path] = kind

    def leftovers(self, prop: dict, value: dict, path: str):
        left = sorted(k for k in prop if k not in _MAPPED_PROPERTY)
        left += sorted(f"logicalTypeOptions.{k}" for k in (value.get("logicalTypeOptions") or {})
                       if k not in ("pattern", "format"))
        if value is not prop:
            left += sorted(f"items.{k}" for k in value if k not in _MAPPED_PROPERTY)
        if "examples" in prop:
            left.append("examples (used for the proposals only)")
        if left:
            self.notes.append(f"field '{path}': not carried over: {', '.join(left)}")


def import_odcs(text: str | bytes, source: str = "<odcs>", ref: str | None = None, key_field: str | None = None,
                schema_name: str | None = None) -> ImportResult:
    """Read an ODCS v3 YAML document (strict YAML, the standard's schema and model) as a contract.

    ``ref`` (handle/name/version) replaces tenant/name/version; ``key_field`` the key field;
    ``schema_name`` picks one of several ``schema[]`` objects. A file with our custom properties
    comes back exactly as exported (its status too); any other one as a DRAFT with proposals."""
    try:
        data = load_strict_yaml(text, source, max_bytes=MAX_ODCS_BYTES)
    except SchemaError as exc:
        raise ContractError(str(exc)) from None
    return from_odcs(data, source, ref=ref, key_field=key_field, schema_name=schema_name)


def from_odcs(data, source: str = "<odcs>", ref: str | None = None, key_field: str | None = None,
              schema_name: str | None = None) -> ImportResult:
    """``import_odcs`` for a mapping already loaded."""
    model = validate_odcs(data, source)
    if not str(model.apiVersion or "").startswith("v3."):
        raise ContractError(f"{source}: apiVersion '{_shown(model.apiVersion)}': only ODCS v3 documents can be imported")
    ours = _has_ours(data)
    objects = data.get("schema") or []
    if schema_name is not None:
        objects = [o for o in objects if o.get("name") == schema_name]
    if len(objects) != 1:
        names = ", ".join(repr(str(o.get("name"))) for o in data.get("schema") or []) or "none"
        raise ContractError(f"{source}: a contract describes one kind of event; choose one schema object "
                            f"(schema objects: {names})")
    schema = objects[0]
    handle, name, version = _ref_parts(data, schema, source, ref)
    reader = _Reader(source, ours)
    pairs = [reader.node(prop, "") for prop in schema.get("properties") or []]
    if not pairs:
        raise ContractError(f"{source}: schema object '{_shown(schema.get('name'))}' has no properties")
    nodes = [n for n, _ in pairs]
    left = sorted(k for k in data if k not in _MAPPED_TOP)
    if left:
        reader.notes.append(f"not carried over: {', '.join(left)}")
    left = sorted(k for k in schema if k not in ("name", "logicalType", "properties"))
    if left:
        reader.notes.append(f"schema object '{schema.get('name')}': not carried over: {', '.join(left)}")
    mapping = {"ref": f"{handle}/{name}/{version}", "state": "DRAFT",
               "schema": {"name": schema.get("name"), "nodes": nodes}}
    reasons = {}
    if ours:
        status = data.get("status")
        if status not in STATE:
            raise ContractError(f"{source}: status '{_shown(status)}' is none of {', '.join(STATE)}")
        mapping["state"] = STATE[status]
        keys = [key_field] if key_field else reader.key
        if len(keys) != 1:
            raise ContractError(f"{source}: exactly one property must carry {VENDOR}keyField: true "
                                f"(found {len(keys)})")
        mapping["keyField"] = keys[0]
        if len(reader.subject) > 1:
            raise ContractError(f"{source}: more than one property carries {VENDOR}dataSubject: true")
        if reader.subject:
            mapping["dataSubjectField"] = reader.subject[0]
        policy = _customs(data).get("retentionPolicy")
        if policy is not None:
            mapping["retention"] = {"policy": policy}
        pii, quasi, nulls = reader.pii, reader.quasi, reader.nulls
    else:
        proposal = propose([p for _, p in pairs], mapping["ref"], key_field=key_field)
        for path, kind in reader.hinted.items():
            if path not in proposal.pii:
                category = classify.name_category(path.rsplit("/", 1)[-1])
                try:
                    proposal.set_pii(path, category.level if category else classify.DEFAULT_LEVELS["contact"])
                    proposal._why(path, f"classification '{kind}'")
                except ContractError as exc:
                    reader.notes.append(f"field '{path}': classification '{kind}', but {exc}")
        if proposal.key_field is None:
            raise ContractError(f"{source}: no field looks like the key field (a required STRING that identifies "
                                "the data subject): name one (--key-field)")
        mapping["keyField"] = mapping["dataSubjectField"] = proposal.key_field
        _require(nodes, proposal.key_field)
        pii, quasi, nulls, reasons = proposal.pii, proposal.quasi_ids, {}, proposal.reasons
        reader.notes.extend(proposal.notes)
    metadata = field_metadata(_paths(nodes), pii, quasi, nulls)
    if metadata:
        mapping["fieldMetadata"] = metadata
    if reader.validations:
        mapping["validations"] = validation_data(reader.validations)
    contract = parse_contract(mapping, source=source)
    return ImportResult(mapping, contract, ours, reader.notes, reasons)


def _paths(nodes: list[dict], parent: str = "") -> list[str]:
    out = []
    for node in nodes:
        path = f"{parent}{node['name']}"
        out.append(path)
        out.extend(_paths(node.get("nodes") or [], f"{path}/"))
    return out


def _require(nodes: list[dict], path: str):
    head, _, rest = path.partition("/")
    for node in nodes:
        if node["name"] == head:
            if rest:
                _require(node.get("nodes") or [], rest)
            else:
                node["required"] = True


def _ref_parts(data: dict, schema: dict, source: str, ref: str | None) -> tuple[str, str, str]:
    if ref is not None:
        match = REF_PATTERN.match(ref)
        if not match:
            raise ContractError(f"'{_shown(ref)}' is not a contract reference of the form handle/name/1.2.3")
        return match.groups()
    parts = (data.get("tenant"), data.get("name") or schema.get("name"), data.get("version"))
    candidate = "/".join(str(p) for p in parts)
    match = REF_PATTERN.match(candidate) if all(isinstance(p, str) for p in parts) else None
    if not match:
        raise ContractError(f"{source}: tenant, name and version ('{_shown(candidate)}') do not make a contract "
                            "reference handle/name/1.2.3: give one (--ref)")
    return match.groups()
