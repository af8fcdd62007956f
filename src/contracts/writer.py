"""Write a contract back as the YAML the loader reads: THE way a contract becomes a file.

    from contracts import load_contract
    from contracts.writer import contract_data, contract_yaml
    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")
    data = contract_data(contract)          # the mapping (contract.schema.json), in schema order
    text = contract_yaml(contract, comments=["Proposed by pstream contracts init"])
    parse_contract(yaml.safe_load(text)) == contract                  # True: nothing is lost

``contract_data`` writes only what differs from the defaults (``repeated: false`` is left out),
``fieldMetadata`` and ``validations`` in schema order, as the loader orders them. Leaf
mappings are written in flow style (``- {name: userId, type: STRING, required: true}``), as in
the shipped contracts; comments go on top. No anchors or aliases are ever written (the strict
loader refuses them).
"""
from __future__ import annotations

import yaml

from contracts.model import NODE, Contract, Node, NullHandling


def node_data(node: Node) -> dict:
    """One schema node as written in a contract file (defaults left out)."""
    data = {"name": node.name, "type": node.type}
    if node.repeated:
        data["repeated"] = True
    if node.required:
        data["required"] = True
    if node.doc is not None:
        data["doc"] = node.doc
    if node.type == NODE:
        data["nodes"] = [node_data(child) for child in node.nodes]
    return data


def field_metadata(paths, pii: dict, quasi_ids, nulls: dict) -> list[dict]:
    """``fieldMetadata`` entries in the order of ``paths`` (the schema's): PII with its purpose
    level, quasi-identifiers, and ``nulls`` (path -> nullHandlingConfig mapping)."""
    entries = []
    for path in paths:
        personal = {"isPii": True, "purposeLevel": pii[path]} if path in pii else {}
        if path in quasi_ids:
            personal["isQuasiId"] = True
        entry = {"fieldName": path}
        if personal:
            entry["personalDataConfig"] = personal
        if path in nulls:
            entry["nullHandlingConfig"] = nulls[path]
        if len(entry) > 1:
            entries.append(entry)
    return entries


def validation_data(pairs) -> list[dict]:
    """``validations`` entries of (field, regex) pairs."""
    return [{"field": path, "type": "regex", "value": regex} for path, regex in pairs]


def contract_data(contract: Contract) -> dict:
    """The contract as the mapping of its YAML file (checked by contract.schema.json)."""
    data = {
        "ref": contract.ref,
        "state": contract.state,
        "schema": {"name": contract.schema_name or contract.name,
                   "nodes": [node_data(node) for node in contract.nodes]},
        "keyField": contract.key_field,
    }
    if contract.data_subject_field is not None:
        data["dataSubjectField"] = contract.data_subject_field
    nulls = {n.field: null_handling_data(n) for n in contract.null_handling}
    metadata = field_metadata(contract.field_paths(), contract.pii, contract.quasi_ids, nulls)
    if metadata:
        data["fieldMetadata"] = metadata
    if contract.validations:
        data["validations"] = validation_data((v.field, v.regex) for v in contract.validations)
    if contract.retention_policy is not None:
        data["retention"] = {"policy": contract.retention_policy}
    return data


def null_handling_data(nulls: NullHandling) -> dict:
    """A nullHandlingConfig mapping (``defaultValue`` only when there is one)."""
    data = {"type": nulls.action}
    if nulls.default is not None:
        data["defaultValue"] = nulls.default
    return data


_YAML_LINE_BREAKS = ("\x85", "\u2028", "\u2029")


class NoAliasDumper(yaml.SafeDumper):
    """SafeDumper without anchors, and with text that reads back as written."""

    def ignore_aliases(self, data):  # never &anchors / *aliases, even for a value used twice
        return True

    def represent_str(self, data):
        # With allow_unicode, PyYAML writes NEL and the Unicode line/paragraph separators raw in
        # plain or single-quoted scalars, where a reader folds them as line breaks: quote them.
        if any(ch in data for ch in _YAML_LINE_BREAKS):
            return self.represent_scalar("tag:yaml.org,2002:str", data, style='"')
        return super().represent_str(data)


NoAliasDumper.add_representer(str, NoAliasDumper.represent_str)


def contract_yaml(contract: Contract | dict, comments: list[str] | tuple[str, ...] = ()) -> str:
    """The YAML text of a contract (or of its mapping), with ``comments`` as ``#`` lines on top."""
    data = contract_data(contract) if isinstance(contract, Contract) else contract
    body = yaml.dump(data, Dumper=NoAliasDumper, sort_keys=False, default_flow_style=None, allow_unicode=True, width=110)
    header = "".join(f"# {line}".rstrip() + "\n" for text in comments for line in str(text).splitlines() or [""])
    return header + body
