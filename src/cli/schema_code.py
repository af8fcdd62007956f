"""``pstream get schema-code REF --language python``: a pip-installable package of event classes.

    pstream get schema-code strmprivacy/PrivacyEngineeringWorkshop/1.0.0 --language python
    unzip python-avro-PrivacyEngineeringWorkshop-1.0.0.zip
    cd python-avro-PrivacyEngineeringWorkshop-1.0.0 && make install

    from strmprivacy_privacyengineeringworkshop_v1_0_0 import PrivacyEngineeringWorkshop
    event = PrivacyEngineeringWorkshop()
    event.strmMeta.eventContractRef = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
    event.items = "[11217, 18090]"          # CSV text converts to [11217, 18090]
    event.to_dict(); PrivacyEngineeringWorkshop.get_schema()

The zip holds README.md, setup.py, Makefile, requirements*.txt, schema/schema.avsc and the
package with one class per record (``StrmMeta`` and one per NODE). Assigning a field converts
text to the contract's type with ``contracts.events.coerce_value`` (so the classes need this
project's package installed, as the driver that sends them does); an unknown attribute name is
an error, so typos do not vanish silently.
"""
from __future__ import annotations

import io
import json
import re
import sys
import zipfile
from pathlib import Path

from contracts import ContractError, load_contract
from contracts.avro import avro_schema
from contracts.model import NODE, Contract, Node

LANGUAGES = ("python",)


def package_name(contract: Contract) -> str:
    raw = f"{contract.handle}_{contract.name}_v{contract.version}".lower()
    return re.sub(r"[^a-z0-9_]", "_", raw)


def folder_name(contract: Contract) -> str:
    return f"python-avro-{contract.name}-{contract.version}"


def _class_name(path: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in path.split("/"))


def _node_spec(node: Node) -> dict:
    spec = {"name": node.name, "type": node.type, "repeated": node.repeated, "required": node.required}
    if node.type == NODE:
        spec["nodes"] = [_node_spec(child) for child in node.nodes]
    return spec


_RUNTIME = '''"""Generated from data contract {ref} by `pstream get schema-code`. Do not edit."""
from __future__ import annotations

import json

from contracts.events import coerce_value
from contracts.model import Node
from contracts.strm_meta import STRM_META


def _node(spec: dict) -> Node:
    return Node(name=spec["name"], type=spec["type"], repeated=spec["repeated"], required=spec["required"],
                nodes=tuple(_node(child) for child in spec.get("nodes", ())))


def _plain(value):
    """numpy / pandas scalars to Python values."""
    if value is not None and not isinstance(value, (str, int, float, bool, list, dict, _Record)):
        item = getattr(value, "item", None)
        if callable(item):
            return item()
    return value


class _Record:
    _FIELDS: dict = {{}}
    _NESTED: dict = {{}}
    _PATH = ""

    def __init__(self, **values):
        for name in self._FIELDS:
            object.__setattr__(self, name, None)
        for name, value in values.items():
            setattr(self, name, value)

    def __setattr__(self, name, value):
        node = self._FIELDS.get(name)
        if node is None:
            raise AttributeError(f"{{type(self).__name__}} has no field '{{name}}'")
        value = _plain(value)
        nested = self._NESTED.get(name)
        if nested is not None:
            if isinstance(value, dict):
                value = nested(**value)
            elif node.repeated and isinstance(value, list):
                value = [nested(**v) if isinstance(v, dict) else v for v in value]
        elif value is not None:
            path = f"{{self._PATH}}{{name}}"
            value = coerce_value(node, value, path)
        object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        out = {{}}
        for name in self._FIELDS:
            value = getattr(self, name)
            if isinstance(value, _Record):
                value = value.to_dict()
            elif isinstance(value, list):
                value = [v.to_dict() if isinstance(v, _Record) else v for v in value]
            out[name] = value
        return out

    def __eq__(self, other):
        return type(other) is type(self) and other.to_dict() == self.to_dict()

    def __repr__(self):
        return f"{{type(self).__name__}}({{self.to_dict()!r}})"


class StrmMeta(_Record):
    """Event metadata: eventContractRef and consentLevels are set by the sender; the gateway sets
    nonce and timestamp, the pipeline keyLink."""

    _FIELDS = {{field.name: field.node for field in STRM_META}}
    _PATH = "strmMeta/"

    def __init__(self, **values):
        super().__init__(**values)
        if self.consentLevels is None:
            self.consentLevels = []
'''

_CLASS = '''

class {cls}(_Record):
    """{doc}"""

    _FIELDS = {{spec["name"]: _node(spec) for spec in json.loads({specs!r})}}
    _NESTED = {{{nested}}}
    _PATH = {path!r}
'''

_TOP = '''
    SCHEMA_REF = {ref!r}

    def __init__(self, **values):
        super().__init__()
        self.strmMeta = StrmMeta()
        for name, value in values.items():
            setattr(self, name, value)
        if self.strmMeta.eventContractRef is None:
            self.strmMeta.eventContractRef = self.SCHEMA_REF

    @staticmethod
    def get_schema() -> dict:
        return json.loads(SCHEMA_JSON)


SCHEMA_JSON = {schema!r}
'''


def _classes(contract: Contract) -> str:
    parts = [_RUNTIME.format(ref=contract.ref)]

    def emit(nodes, path: str, cls: str, doc: str, top: bool):
        nested = {}
        for node in nodes:
            if node.type == NODE:
                child_path = f"{path}{node.name}"
                child_cls = _class_name(child_path)
                emit(node.nodes, f"{child_path}/", child_cls, f"The {child_path} record.", False)
                nested[node.name] = child_cls
        specs = [_node_spec(n) for n in nodes]
        if top:
            specs.insert(0, {"name": "strmMeta", "type": NODE, "repeated": False, "required": True, "nodes": []})
            nested = {"strmMeta": "StrmMeta", **nested}
        nested_text = ", ".join(f"{name!r}: {cls_}" for name, cls_ in nested.items())
        parts.append(_CLASS.format(cls=cls, doc=doc, specs=json.dumps(specs), nested=nested_text, path=path))

    emit(contract.nodes, "", contract.name, f"An event on data contract {contract.ref}.", True)
    parts.append(_TOP.format(ref=contract.ref, schema=json.dumps(avro_schema(contract))))
    return "".join(parts)


def _setup_py(contract: Contract, package: str) -> str:
    return f'''"""Event classes for data contract {contract.ref} (generated by `pstream get schema-code`)."""
from setuptools import setup

setup(
    name="{package.replace('_', '-')}",
    version="{contract.version}",
    description="Event classes for data contract {contract.ref}",
    packages=["{package}"],
    package_data={{"{package}": ["schema.avsc"]}},
    python_requires=">=3.9",
)
'''


_MAKEFILE = """# `make install` installs the event classes into the current Python environment.
PYTHON ?= python3
PIP_ARGS ?=

.PHONY: install clean

install: clean
\t$(PYTHON) -m pip install $(PIP_ARGS) .

clean:
\trm -fr build/ dist/ .eggs/
\tfind . -name '*.egg-info' -exec rm -fr {} +
\tfind . -name '__pycache__' -exec rm -fr {} +
"""


def _readme(contract: Contract, package: str) -> str:
    fields = "\n".join(f"- `{n.name}`: {n.type}{' (repeated)' if n.repeated else ''}{' required' if n.required else ''}"
                       for n in contract.nodes)
    return f"""# Event classes for `{contract.ref}`

Install into the environment that has the pstream driver (this package converts field values
with its contract code):

    make install          # or: python3 -m pip install .

Send events:

```python
from driver.client.syncsender import SyncSender
from {package} import {contract.name}

event = {contract.name}()
event.strmMeta.eventContractRef = "{contract.ref}"
event.strmMeta.consentLevels = [1, 2]
# ... set the fields below; text values convert to the field's type ("[1, 2]" -> [1, 2])
sender = SyncSender(client_id, client_secret)
sender.start(); sender.wait_ready()
assert sender.send_event(event) is None
```

Fields:

{fields}

The Avro schema is in `schema/schema.avsc` (events are sent as Avro binary by default).
"""


def build_zip(contract: Contract) -> tuple[str, bytes]:
    """(file name, zip bytes) of the generated Python package."""
    package = package_name(contract)
    folder = folder_name(contract)
    schema_text = json.dumps(avro_schema(contract), indent=2) + "\n"
    files = {
        "README.md": _readme(contract, package),
        "requirements.txt": "# the pstream package (driver and contracts) must be installed\n",
        "requirements-dev.txt": "pytest\n",
        "Makefile": _MAKEFILE,
        "setup.py": _setup_py(contract, package),
        "schema/schema.avsc": schema_text,
        f"{package}/__init__.py": f'"""Event classes for {contract.ref}."""\nfrom .schema_classes import {contract.name}, StrmMeta\n\n__all__ = ["{contract.name}", "StrmMeta"]\n',
        f"{package}/schema_classes.py": _classes(contract),
        f"{package}/schema.avsc": schema_text,
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(zipfile.ZipInfo(f"{folder}/"), "")
        for name, text in files.items():
            archive.writestr(f"{folder}/{name}", text)
    return f"{folder}.zip", buffer.getvalue()


def run(args) -> int:
    if args.language not in LANGUAGES:
        print(f"pstream get schema-code: language '{args.language}' is not supported (use: {', '.join(LANGUAGES)})",
              file=sys.stderr)
        return 2
    try:
        contract = load_contract(args.ref, _extra_dirs(args))
    except ContractError as exc:
        print(f"pstream get schema-code: {exc}", file=sys.stderr)
        return 2
    name, data = build_zip(contract)
    target = Path(args.output_dir) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    print(f"Saved to {target}", file=sys.stderr)
    return 0


def _extra_dirs(args) -> list:
    from cli.project_args import project_of

    return [project_of(args).contracts_dir()]
