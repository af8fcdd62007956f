"""Load data contracts from YAML, refusing malformed ones with a message that names the problem.

A contract file lives at ``<dir>/<handle>/<name>/<version>.yaml``; the shipped ones are in this
package, more directories can be added with the ``CONTRACTS_PATH`` environment variable
(``os.pathsep``-separated) or the ``search_dirs`` argument::

    from contracts.loader import load_contract, load_contract_ref, ContractError
    contract = load_contract("strmprivacy/example/1.5.0")      # by reference
    contract = load_contract("my_contracts/shop.yaml")          # or a file path (CLI, pipeline config)
    contract = load_contract_ref(ref, [project / "contracts"])  # by reference ONLY (the gateway:
                                                                # a request must never name a file)

The YAML format (Simple Schema plus the privacy classification) is published as a JSON Schema,
``src/schemas/contract.schema.json``; every object in it is closed, so a misspelled key at any
depth (``fieldMetaData:``) is an error naming the file, the path in it and the nearest valid key.
The file is read with the strict YAML loader (no anchors, aliases, merge keys or duplicate keys)::

    ref: acme/Shop/1.0.0          # handle/name/version; taken from the path when absent
    state: ACTIVE                 # DRAFT | IN_REVIEW | APPROVED | ACTIVE | DEPRECATED | ARCHIVED
    schema:
      name: Shop
      nodes:
        - {name: userId, type: STRING, required: true}
        - {name: emails, type: STRING, repeated: true}
        - name: address
          type: NODE
          nodes: [{name: street, type: STRING}]
    keyField: userId
    dataSubjectField: userId
    fieldMetadata:
      - fieldName: address/street
        personalDataConfig: {isPii: true, purposeLevel: 2}
        nullHandlingConfig: {type: DEFAULT_VALUE, defaultValue: ""}
    validations:
      - {field: size, type: regex, value: "XS|S|M|L|XL"}   # RE2, must match the whole value
    retention: {policy: marketing}  # keys expire after this key-store policy's days (privacy.policies)

After the schema, the loader checks what a schema cannot: that named fields exist, the key field
is a required STRING, only STRING fields are PII, and every regex compiles with RE2
(``contracts.regex``: linear time; a pattern RE2 refuses is refused here, naming field and pattern).

Editors: yaml-language-server (VS Code's YAML extension, and others) checks and completes a
contract as you type when the file's first line is::

    # yaml-language-server: $schema=<path to>/src/schemas/contract.schema.json

or with ``"yaml.schemas": {"<path to>/src/schemas/contract.schema.json": "contracts/**/*.yaml"}``
in the editor's settings (``python -c "import schemas; print(schemas.schema_path('contract'))"``
prints the path of the installed copy).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from contracts.model import ACTIVE, NODE, Contract, Node, NullHandling, Validation
from contracts.regex import RegexError, compile_regex
from schemas import SchemaError, _shown, check, load_strict_yaml

PACKAGE_DIR = Path(__file__).resolve().parent
SCHEMA = "contract"
MAX_CONTRACT_BYTES = 1 << 20
# Each part starts with a letter, digit or '_': no '.' or '..' parts, so a reference is never a path.
REF_PATTERN = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,99})/([A-Za-z0-9_][A-Za-z0-9_.-]{0,99})/(\d{1,9}\.\d{1,9}\.\d{1,9})$")


class ContractError(ValueError):
    """A contract that cannot be used; the message names the file, the field and the problem."""


def search_dirs(extra: list[str | Path] | None = None) -> list[Path]:
    dirs = [Path(d) for d in (extra or [])]
    env = os.environ.get("CONTRACTS_PATH", "")
    dirs += [Path(d) for d in env.split(os.pathsep) if d]
    dirs.append(PACKAGE_DIR)
    return dirs


def contract_path(ref: str, extra_dirs: list[str | Path] | None = None) -> Path:
    """The YAML file of a contract reference; ContractError when no directory has it."""
    match = REF_PATTERN.match(ref) if isinstance(ref, str) else None
    if not match:
        raise ContractError(f"'{_shown(ref)}' is not a contract reference of the form handle/name/1.2.3")
    handle, name, version = match.groups()
    for directory in search_dirs(extra_dirs):
        candidate = directory / handle / name / f"{version}.yaml"
        if candidate.is_file():
            return candidate
    looked = ", ".join(str(d) for d in search_dirs(extra_dirs))
    raise ContractError(f"contract '{ref}' not found (looked in: {looked})")


def load_contract_ref(ref: str, extra_dirs: list[str | Path] | None = None) -> Contract:
    """Load a contract by reference (``handle/name/version``) only, never from a file path.

    The file found must declare that reference (or none): a file copied to another version's
    place is refused rather than served under the wrong name.
    """
    path = contract_path(ref, extra_dirs)
    contract = read_contract_file(path)
    if contract.ref != ref:
        raise ContractError(f"{path}: declares ref '{contract.ref}', but lives at the place of '{ref}'")
    return contract


def is_contract_path(text: str) -> bool:
    """Whether ``load_contract`` reads ``text`` as a YAML file path (else: a reference)."""
    return text.endswith((".yaml", ".yml")) or os.path.sep in text and Path(text).is_file()


def load_contract(ref_or_path: str | Path, extra_dirs: list[str | Path] | None = None) -> Contract:
    """Load a contract by reference (``handle/name/version``) or by YAML file path."""
    text = str(ref_or_path)
    if is_contract_path(text):
        path = Path(text)
        if not path.is_file():
            raise ContractError(f"{path}: no such contract file")
        return read_contract_file(path)
    return load_contract_ref(text, extra_dirs)


def read_contract_file(path: str | Path) -> Contract:
    """Parse and check one contract file (strict YAML, the schema, then the semantic checks)."""
    path = Path(path)
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise ContractError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        data = load_strict_yaml(text, str(path), max_bytes=MAX_CONTRACT_BYTES)
    except SchemaError as exc:
        raise ContractError(str(exc)) from None
    return parse_contract(data, source=str(path))


def list_contracts(extra_dirs: list[str | Path] | None = None) -> list[str]:
    """References of every contract file found in the search directories."""
    refs = set()
    for directory in search_dirs(extra_dirs):
        for path in directory.glob("*/*/*.yaml"):
            refs.add(f"{path.parent.parent.name}/{path.parent.name}/{path.stem}")
    return sorted(refs)


def parse_contract(data, source: str = "<contract>") -> Contract:
    """Check a contract mapping (the schema, then the semantics) and build a Contract.

    ContractError names the source, the field and what is wrong.
    """
    try:
        check(data, SCHEMA, source)
    except SchemaError as exc:
        raise ContractError(str(exc)) from None

    def fail(problem: str, field: str | None = None):
        where = f"field '{field}': " if field else ""
        raise ContractError(f"{source}: {where}{problem}")

    ref = data.get("ref")
    if ref is None:
        stem = source[: -len(Path(source).suffix)] if source.endswith((".yaml", ".yml")) else source
        ref = "/".join(Path(stem).parts[-3:])
    match = REF_PATTERN.match(ref)
    if not match:
        fail(f"ref '{_shown(ref)}' is not of the form handle/name/1.2.3")
    handle, name, version = match.groups()

    nodes = tuple(_parse_node(n, "", fail) for n in data["schema"]["nodes"])
    _check_unique([n.name for n in nodes], "", fail)
    root = Node(name="", type=NODE, nodes=nodes)

    def resolve(path: str, what: str) -> Node:
        current = root
        for part in path.split("/"):
            nxt = current.child(part) if current.type == NODE else None
            if nxt is None:
                fail(f"{what} names a field that is not in the schema", _shown(path))
            current = nxt
        return current

    key_field = data["keyField"]
    key_node = resolve(key_field, "keyField")
    if key_node.type != "STRING" or key_node.repeated or not key_node.required:
        fail("the key field must be a required, non-repeated STRING field", key_field)

    subject_field = data.get("dataSubjectField")
    if subject_field is not None:
        subject_node = resolve(subject_field, "dataSubjectField")
        if subject_node.type != "STRING" or subject_node.repeated:
            fail("the data subject field must be a non-repeated STRING field", subject_field)

    pii: dict[str, int] = {}
    quasi_ids: list[str] = []
    null_handling: list[NullHandling] = []
    for entry in data.get("fieldMetadata") or []:
        path = entry["fieldName"]
        node = resolve(path, "fieldMetadata.fieldName")
        personal = entry.get("personalDataConfig") or {}
        if personal.get("isPii"):
            if node.type != "STRING":
                fail(f"only (repeated) STRING fields can be PII, this one is {node.type}", path)
            level = personal.get("purposeLevel")
            if level is None:
                fail("a PII field needs a non-negative integer purposeLevel", path)
            if path in pii:
                fail("classified twice", path)
            pii[path] = int(level)
        if personal.get("isQuasiId"):
            quasi_ids.append(path)
        nulls = entry.get("nullHandlingConfig")
        if nulls:
            null_handling.append(NullHandling(path, nulls["type"], nulls.get("defaultValue")))

    validations = []
    for entry in data.get("validations") or []:
        path = entry["field"]
        node = resolve(path, "validations.field")
        if node.type == NODE:
            fail("a regex validation needs a scalar field, not a NODE", path)
        try:
            pattern = compile_regex(entry["value"])
        except RegexError as exc:
            fail(f"invalid regex '{_shown(entry['value'])}': {_shown(str(exc))}", path)
        validations.append(Validation(path, pattern.pattern, pattern))

    # Classification and checks in schema order (a field's own regexes keep theirs): the order
    # they are listed in has no meaning, so two files that say the same make equal contracts.
    position = {path: i for i, path in enumerate(Contract("", "", "", ACTIVE, nodes, key_field).field_paths())}
    return Contract(
        handle=handle,
        name=name,
        version=version,
        state=data.get("state", ACTIVE),
        nodes=nodes,
        key_field=key_field,
        data_subject_field=subject_field,
        pii={path: pii[path] for path in sorted(pii, key=position.__getitem__)},
        quasi_ids=tuple(sorted(quasi_ids, key=position.__getitem__)),
        validations=tuple(sorted(validations, key=lambda v: position[v.field])),
        null_handling=tuple(sorted(null_handling, key=lambda n: position[n.field])),
        source=source,
        schema_name=data["schema"].get("name", name),
        retention_policy=(data.get("retention") or {}).get("policy"),
    )


def _parse_node(raw: dict, parent: str, fail) -> Node:
    """One node the schema has already checked (names, types, flags): the rules between nodes."""
    name = raw["name"]
    path = f"{parent}/{name}" if parent else name
    if name == "strmMeta":
        fail("'strmMeta' is reserved for event metadata", path)
    node_type = raw["type"]
    children = ()
    if node_type == NODE:
        if not raw.get("nodes"):
            fail("a NODE needs a non-empty list 'nodes'", path)
        children = tuple(_parse_node(n, path, fail) for n in raw["nodes"])
        _check_unique([c.name for c in children], path, fail)
    elif "nodes" in raw:
        fail(f"only NODE fields can have 'nodes', this one is {node_type}", path)
    return Node(
        name=name,
        type=node_type,
        repeated=raw.get("repeated", False),
        required=raw.get("required", False),
        nodes=children,
        doc=raw.get("doc"),
    )


def _check_unique(names: list[str], parent: str, fail):
    seen = set()
    for name in names:
        if name in seen:
            fail("defined twice", f"{parent}/{name}" if parent else name)
        seen.add(name)
