"""AES-SIV in Tink's wire format, checked against Google's own tink package; keysets; KEKs."""
from __future__ import annotations

import base64
import json
import os
import stat

import pytest
import tink
from hypothesis import given, settings
from hypothesis import strategies as st
from tink import aead, daead, secret_key_access

from privacy.daead import DecryptError, SivKey, key_id_of
from privacy.kek import KekError, LocalKek, kek_from_uri, prepare_kek
from privacy.keyset import key_from_keyset_json, keyset_json

daead.register()
aead.register()


def tink_primitive(key: SivKey):
    handle = tink.json_proto_keyset_format.parse(keyset_json(key), secret_key_access.TOKEN)
    return handle.primitive(daead.DeterministicAead)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_round_trip_and_tink_decrypts_ours(text):
    key = SivKey.generate()
    token = key.encrypt(text)
    assert key.decrypt(token) == text
    assert key.encrypt(text) == token  # deterministic
    assert tink_primitive(key).decrypt_deterministically(base64.b64decode(token), b"").decode() == text
    assert key_id_of(token) == key.key_id


def test_we_decrypt_what_tink_encrypts_and_match_byte_for_byte():
    template = daead.deterministic_aead_key_templates.AES256_SIV
    handle = tink.new_keyset_handle(template)
    exported = tink.json_proto_keyset_format.serialize(handle, secret_key_access.TOKEN)
    ours = key_from_keyset_json(exported)
    theirs = handle.primitive(daead.DeterministicAead)
    for text in ("unique-37", "", "ünïcödé ✓", "x" * 1000):
        ciphertext = theirs.encrypt_deterministically(text.encode(), b"")
        assert ours.decrypt(base64.b64encode(ciphertext).decode()) == text
        assert base64.b64decode(ours.encrypt(text)) == ciphertext


def test_wire_format_prefix_shared_by_all_fields_of_one_key():
    key = SivKey.generate()
    tokens = [base64.b64decode(key.encrypt(v)) for v in ("a", "bb", "ccc")]
    for raw in tokens:
        assert raw[0] == 0x01 and int.from_bytes(raw[1:5], "big") == key.key_id
        assert len(raw) == 5 + 16 + len(raw) - 21
    other = SivKey.generate()
    with pytest.raises(DecryptError):
        other.decrypt(key.encrypt("a"))
    tampered = bytearray(base64.b64decode(key.encrypt("secret")))
    tampered[-1] ^= 1
    with pytest.raises(DecryptError, match="authentication"):
        key.decrypt(base64.b64encode(bytes(tampered)).decode())
    with pytest.raises(DecryptError, match="base64"):
        key.decrypt("not base64!")


def test_empty_associated_data_means_one_empty_component():
    from cryptography.hazmat.primitives.ciphers.aead import AESSIV
    key = SivKey.generate()
    raw = base64.b64decode(key.encrypt("v"))[5:]
    assert AESSIV(key.material).encrypt(b"v", [b""]) == raw
    assert AESSIV(key.material).encrypt(b"v", None) != raw


def test_local_kek_is_created_0600_and_tink_unwraps_its_output(tmp_path):
    path = tmp_path / "sub" / "kek.json"
    prepare_kek(f"local://{path}")
    kek = kek_from_uri(f"local://{path}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    material = os.urandom(64)
    wrapped = kek.wrap(material, b"link-1")
    assert kek.unwrap(wrapped, b"link-1") == material
    assert LocalKek(path).unwrap(wrapped, b"link-1") == material  # reopened from the file
    with pytest.raises(KekError):
        kek.unwrap(wrapped, b"link-2")  # bound to its keyLink
    handle = tink.json_proto_keyset_format.parse(path.read_text(), secret_key_access.TOKEN)
    assert handle.primitive(aead.Aead).decrypt(wrapped, b"link-1") == material
    assert material not in path.read_bytes() and json.loads(path.read_text())["primaryKeyId"] == kek.key_id


def test_unknown_kek_scheme():
    with pytest.raises(KekError, match="unknown KEK URI 'vault://x'"):
        kek_from_uri("vault://x")
