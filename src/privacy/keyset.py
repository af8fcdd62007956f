"""Tink JSON keysets for our AES-SIV data keys: the reference's key-export format.

    from privacy.daead import SivKey
    from privacy.keyset import keyset_json, key_from_keyset_json
    text = keyset_json(SivKey.generate())    # {"primaryKeyId":N,"key":[{"keyData":{...}}]}
    key = key_from_keyset_json(text)         # a SivKeyset: encrypts with the primary key,
    key.decrypt(token)                       # decrypts with whichever key the token names

A keyset may hold several keys (Tink's rotation: add a key, make it primary): every ENABLED key
is kept, with its output prefix type (TINK, LEGACY, CRUNCHY or RAW); DISABLED and DESTROYED keys
are left out, as Tink leaves them out of its primitive set. The same reading serves the local
KEK's AES-GCM keyset (``keyset_keys``).

The keyData value is the serialized ``google.crypto.tink.AesSivKey`` proto: field 1 ``version``
(uint32, 0 and so omitted) and field 2 ``key_value`` (bytes, the 64-byte key). Google's ``tink``
package reads these keysets with ``tink.json_proto_keyset_format.parse`` (tested).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from privacy.daead import PREFIX_TYPES, SivKey, SivKeyset, output_prefix

AES_SIV_TYPE_URL = "type.googleapis.com/google.crypto.tink.AesSivKey"


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7


def key_proto(material: bytes, field_number: int = 2) -> bytes:
    """A serialized Tink key proto holding only its key bytes (AesSivKey: field 2, AesGcmKey: 3)."""
    return _varint(field_number << 3 | 2) + _varint(len(material)) + material


def material_from_proto(proto: bytes, field_number: int = 2) -> bytes:
    pos, material = 0, None
    while pos < len(proto):
        tag, pos = _read_varint(proto, pos)
        wire_type = tag & 7
        if wire_type == 0:
            _, pos = _read_varint(proto, pos)
        elif wire_type == 2:
            length, pos = _read_varint(proto, pos)
            if tag >> 3 == field_number:
                material = proto[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected wire type {wire_type} in AesSivKey proto")
    if material is None:
        raise ValueError("key proto has no key_value")
    return material


def tink_keyset_dict(type_url: str, key_id: int, proto: bytes) -> dict:
    """A one-key Tink JSON keyset (as a dict) with a TINK output prefix."""
    return {
        "primaryKeyId": key_id,
        "key": [
            {
                "keyData": {
                    "typeUrl": type_url,
                    "value": base64.b64encode(proto).decode("ascii"),
                    "keyMaterialType": "SYMMETRIC",
                },
                "status": "ENABLED",
                "keyId": key_id,
                "outputPrefixType": "TINK",
            }
        ],
    }


@dataclass(frozen=True)
class KeysetKey:
    """One enabled key of a Tink keyset: its id, output prefix type and key bytes."""

    key_id: int
    prefix_type: str
    material: bytes = field(repr=False)

    @property
    def prefix(self) -> bytes:
        return output_prefix(self.prefix_type, self.key_id)


def keyset_keys(data: dict, type_url: str, field_number: int) -> tuple[int, list[KeysetKey]]:
    """(primary key id, enabled keys) of a Tink JSON keyset of one key type; ValueError if malformed."""
    if not isinstance(data, dict) or not isinstance(data.get("key"), list):
        raise ValueError("not a Tink JSON keyset (no 'key' list)")
    primary, keys = data.get("primaryKeyId"), []
    for entry in data["key"]:
        if not isinstance(entry, dict) or entry.get("status", "ENABLED") != "ENABLED":
            continue
        key_data = entry.get("keyData") or {}
        if key_data.get("typeUrl") != type_url:
            raise ValueError(f"expected a {type_url.rsplit('.', 1)[-1]} keyset, got {key_data.get('typeUrl')}")
        prefix_type = entry.get("outputPrefixType", "TINK")
        if prefix_type not in PREFIX_TYPES:
            raise ValueError(f"output prefix type '{prefix_type}' is not one of {', '.join(PREFIX_TYPES)}")
        material = material_from_proto(base64.b64decode(key_data["value"]), field_number)
        keys.append(KeysetKey(int(entry["keyId"]), prefix_type, material))
    if not any(key.key_id == primary for key in keys):
        raise ValueError("keyset has no enabled key with the primary key id")
    return primary, keys


def keyset_dict(key: SivKey) -> dict:
    return tink_keyset_dict(AES_SIV_TYPE_URL, key.key_id, key_proto(key.material))


def keyset_json(key: SivKey) -> str:
    return json.dumps(keyset_dict(key), separators=(",", ":"))


def key_from_keyset_json(text: str | dict) -> SivKeyset:
    """Every enabled AES-SIV key of a Tink JSON keyset, as one key (primary encrypts)."""
    data = json.loads(text) if isinstance(text, str) else text
    primary, keys = keyset_keys(data, AES_SIV_TYPE_URL, 2)
    return SivKeyset([SivKey(k.key_id, k.material, k.prefix_type) for k in keys], primary)
