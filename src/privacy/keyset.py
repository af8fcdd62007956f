"""Tink JSON keysets for our AES-SIV data keys: the reference's key-export format.

    from privacy.daead import SivKey
    from privacy.keyset import keyset_json, key_from_keyset_json
    text = keyset_json(SivKey.generate())    # {"primaryKeyId":N,"key":[{"keyData":{...}}]}
    key = key_from_keyset_json(text)         # back to a SivKey

The keyData value is the serialized ``google.crypto.tink.AesSivKey`` proto: field 1 ``version``
(uint32, 0 and so omitted) and field 2 ``key_value`` (bytes, the 64-byte key). Google's ``tink``
package reads these keysets with ``tink.json_proto_keyset_format.parse`` (tested).
"""
from __future__ import annotations

import base64
import json

from privacy.daead import SivKey

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


def primary_key_material(data: dict, type_url: str, field_number: int) -> tuple[int, bytes]:
    """(key id, key bytes) of the primary key of a one-type Tink keyset."""
    primary = data["primaryKeyId"]
    for entry in data["key"]:
        if entry["keyId"] == primary:
            key_data = entry["keyData"]
            if key_data["typeUrl"] != type_url:
                raise ValueError(f"expected a {type_url.rsplit('.', 1)[-1]} keyset, got {key_data['typeUrl']}")
            if entry.get("outputPrefixType", "TINK") != "TINK":
                raise ValueError("only TINK output prefix keys are supported")
            return primary, material_from_proto(base64.b64decode(key_data["value"]), field_number)
    raise ValueError("keyset has no key with the primary key id")


def keyset_dict(key: SivKey) -> dict:
    return tink_keyset_dict(AES_SIV_TYPE_URL, key.key_id, key_proto(key.material))


def keyset_json(key: SivKey) -> str:
    return json.dumps(keyset_dict(key), separators=(",", ":"))


def key_from_keyset_json(text: str | dict) -> SivKey:
    """The primary AES-SIV key of a Tink JSON keyset."""
    data = json.loads(text) if isinstance(text, str) else text
    return SivKey(*primary_key_material(data, AES_SIV_TYPE_URL, 2))
