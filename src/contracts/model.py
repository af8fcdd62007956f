"""The data contract model: schema nodes, privacy classification and validations.

A contract is loaded from YAML (see ``contracts.loader``) into these frozen dataclasses::

    from contracts import load_contract
    contract = load_contract("strmprivacy/PrivacyEngineeringWorkshop/1.0.0")
    contract.key_field                  # 'userId'
    contract.pii                        # {'userId': 1, 'email': 2, ...}  path -> purpose level
    contract.node("address/street")     # a Node, nested paths joined with '/'

No Beam imports here: this module is the pure core that the gateway, the pipeline and the
command line share.
"""
from __future__ import annotations

from dataclasses import dataclass, field

SCALAR_TYPES = ("STRING", "BOOLEAN", "FLOAT", "INTEGER", "LONG")
NODE = "NODE"
ACTIVE = "ACTIVE"
DEPRECATED = "DEPRECATED"
STATES = ("DRAFT", "IN_REVIEW", "APPROVED", ACTIVE, DEPRECATED, "ARCHIVED")  # as contract.schema.json
ACCEPTING = (ACTIVE, DEPRECATED)   # the states whose contracts accept events (DEPRECATED: with a warning)


@dataclass(frozen=True)
class Node:
    """One field of a Simple Schema: a scalar, or a NODE with child nodes."""

    name: str
    type: str
    repeated: bool = False
    required: bool = False
    nodes: tuple["Node", ...] = ()
    doc: str | None = None

    def child(self, name: str) -> "Node | None":
        for node in self.nodes:
            if node.name == name:
                return node
        return None


@dataclass(frozen=True)
class Validation:
    """A regex every value of ``field`` must match in full: ``pattern.fullmatch(text)`` is None
    when it does not (``contracts.regex.LinearRegex``, RE2: linear time)."""

    field: str
    regex: str
    pattern: object = field(compare=False, repr=False, default=None)


@dataclass(frozen=True)
class NullHandling:
    """What to do when ``field`` is absent: drop the record, or fill in ``default``."""

    field: str
    action: str  # DROP_RECORD | DEFAULT_VALUE
    default: object = None


@dataclass(frozen=True)
class Contract:
    """A parsed, checked data contract."""

    handle: str
    name: str
    version: str
    state: str
    nodes: tuple[Node, ...]
    key_field: str
    data_subject_field: str | None = None
    pii: dict = field(default_factory=dict)  # path -> purpose level
    quasi_ids: tuple[str, ...] = ()
    validations: tuple[Validation, ...] = ()
    null_handling: tuple[NullHandling, ...] = ()
    source: str = field(default="", compare=False)  # where it was read from: not part of what it says
    schema_name: str | None = None                  # schema.name; the loader fills in the contract's name
    retention_policy: str | None = None             # retention: {policy: ID}, a policy of the key store (privacy.policies)

    @property
    def ref(self) -> str:
        return f"{self.handle}/{self.name}/{self.version}"

    @property
    def is_active(self) -> bool:
        return self.state == ACTIVE

    @property
    def accepts_events(self) -> bool:
        """ACTIVE or DEPRECATED (controlplane.lifecycle): the gateway and the pipelines take its events."""
        return self.state in ACCEPTING

    def node(self, path: str) -> Node | None:
        """The node at a '/'-joined path, or None."""
        parts = path.split("/")
        current = Node(name="", type=NODE, nodes=self.nodes)
        for part in parts:
            if current.type != NODE:
                return None
            nxt = current.child(part)
            if nxt is None:
                return None
            current = nxt
        return current

    def field_paths(self) -> list[str]:
        """Every field's '/'-joined path, NODEs and their children, in schema order."""
        paths, stack = [], [("", node) for node in reversed(self.nodes)]
        while stack:
            parent, node = stack.pop()
            path = f"{parent}{node.name}"
            paths.append(path)
            stack.extend((f"{path}/", child) for child in reversed(node.nodes))
        return paths

    @property
    def purpose_levels(self) -> tuple[int, ...]:
        return tuple(sorted(set(self.pii.values())))
