"""``strmMeta``, the metadata record of every event: its one definition.

    from contracts.strm_meta import STRM_META, STRM_META_NAMES, describe_ref
    [field.name for field in STRM_META]   # ['eventContractRef', 'nonce', 'timestamp', 'keyLink', ...]
    STRM_META_NAMES                       # frozenset of the same names
    [field.node for field in STRM_META]   # as contract Nodes: what Avro, DDL and generated code use
    describe_ref("acme/Shop/1.0.0")       # 'acme/Shop/1.0.0'; long or odd text is cut and hashed

Every other description of strmMeta derives from ``STRM_META``: the event validator's checks
(``contracts.events``), the Avro record (``contracts.avro``), the external-table DDL
(``cli.ddl``) and the generated event classes (``cli.schema_code``). The record is strict: a key
that is not here, a value of the wrong type or out of its range makes the event invalid (a dead
letter in a pipeline, a 400 at the gateway), so nothing unknown rides along into ``encrypted/``.

| field | type | rule |
|---|---|---|
| eventContractRef | STRING, required | the event's contract (``handle/name/1.2.3``) |
| nonce | INTEGER (32-bit) | set on acceptance (gateway, batch reader) |
| timestamp | LONG | epoch ms between 0001-01-01 and 9999-12-31 (UTC) |
| keyLink | STRING | a UUID; set by the pipeline when it encrypts |
| billingId | STRING | deprecated; at most 64 of ``A-Z a-z 0-9 _ . : -`` |
| consentLevels | repeated INTEGER | purpose levels, 0 .. 2^31-1; missing or null: no consent |

``describe_ref`` is how a contract reference that is not a known contract appears in dead
letters and messages: a well-formed reference (``handle/name/1.2.3`` in ASCII letters, digits
and ``_ . -``) of at most 40 characters as it is, a longer one cut to 40 characters and
followed by a short hash, and anything else only as a hash (``(malformed reference #1a2b...)``),
so that a hostile "reference" cannot carry a copy of data.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from contracts.model import Node

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
TIMESTAMP_MS = (-62_135_596_800_000, 253_402_300_799_999)  # 0001-01-01 .. 9999-12-31T23:59:59.999 UTC
SHOWN_REF_CHARS = 40


@dataclass(frozen=True)
class MetaField:
    """One field of strmMeta: a contract-style type plus the range or shape its values keep to."""

    name: str
    type: str
    repeated: bool = False
    required: bool = False
    minimum: int | None = None
    maximum: int | None = None
    pattern: str | None = None  # every value matches in full (STRING fields)
    doc: str = ""

    @property
    def node(self) -> Node:
        """The field as a contract Node (for Avro, DDL and generated code)."""
        return Node(self.name, self.type, repeated=self.repeated, required=self.required, doc=self.doc or None)


STRM_META: tuple[MetaField, ...] = (
    MetaField("eventContractRef", "STRING", required=True, doc="The event's data contract, handle/name/version."),
    MetaField("nonce", "INTEGER", doc="A random number set on acceptance (a dedupe aid)."),
    MetaField("timestamp", "LONG", minimum=TIMESTAMP_MS[0], maximum=TIMESTAMP_MS[1],
              doc="Epoch milliseconds (UTC) at acceptance, or the event time of a batch row."),
    MetaField("keyLink", "STRING", pattern="[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}",
              doc="The UUID of the encryption key of this event (set by the pipeline)."),
    MetaField("billingId", "STRING", pattern="[A-Za-z0-9_.:-]{1,64}", doc="Deprecated; null."),
    MetaField("consentLevels", "INTEGER", repeated=True, minimum=0,
              doc="The purpose levels the data subject consented to; empty: none."),
)
STRM_META_NAMES = frozenset(field.name for field in STRM_META)

_REF = re.compile(r"[A-Za-z0-9_.-]{1,100}/[A-Za-z0-9_.-]{1,100}/[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")


def describe_ref(ref) -> str | None:
    """A contract reference as dead letters and messages may show it (see the module docstring)."""
    if ref is None:
        return None
    if ref.__class__ is not str:
        return "(not a text)"
    digest = hashlib.sha256(ref.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    if not _REF.fullmatch(ref):
        return f"(malformed reference #{digest})"
    if len(ref) <= SHOWN_REF_CHARS:
        return ref
    return f"{ref[:SHOWN_REF_CHARS]}...#{digest}"
