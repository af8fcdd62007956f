"""The strict YAML loader and schema check that every file format of the project goes through."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from schemas import SchemaError, check, load_checked, load_strict_yaml

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "fieldMetadata": {"type": "array", "items": {
            "type": "object", "additionalProperties": False,
            "properties": {"fieldName": {"type": "string"}, "purposeLevel": {"type": "integer", "minimum": 0}}}},
        "streams": {"type": "array"},
    },
}


@pytest.mark.parametrize("text, problem", [
    ("a: &x [1, 2]\nb: *x\n", "anchors"),
    ("a: [1]\nb: *x\n", "line 2"),
    ("base: {x: 1}\nother:\n  <<: {y: 2}\n", "merge keys"),
    ("name: a\nname: b\n", "duplicate key 'name'"),
    ("a: !!python/object:os.system {}\n", "not valid YAML"),
    ("[" * 100 + "]" * 100, "deeper than 64"),
])
def test_strict_yaml_refuses_expansion_tricks_and_ambiguity(text, problem):
    with pytest.raises(SchemaError, match=problem) as err:
        load_strict_yaml(text, "f.yaml")
    assert str(err.value).startswith("f.yaml: ")


def test_alias_bomb_is_refused_before_it_expands():
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(20))
    with pytest.raises(SchemaError, match="anchors"):
        load_strict_yaml(bomb, "bomb.yaml")


def test_size_bound():
    with pytest.raises(SchemaError, match="larger than 100 bytes"):
        load_strict_yaml("a: " + "x" * 200, "big.yaml", max_bytes=100)


@pytest.mark.parametrize("text, message", [
    ("name: a\nfieldMetaData: []\n", "f.yaml: unknown key 'fieldMetaData' (did you mean 'fieldMetadata'?)"),
    ("name: a\nstream: []\n", "f.yaml: unknown key 'stream' (did you mean 'streams'?)"),
    ("name: a\nfieldMetadata:\n  - {fieldName: x, purposeLevl: 1}\n",
     "f.yaml: fieldMetadata[0]: unknown key 'purposeLevl' (did you mean 'purposeLevel'?)"),
    ("name: a\nzzz: 1\n", "f.yaml: unknown key 'zzz' (valid keys: fieldMetadata, name, streams)"),
    ("fieldMetadata: []\n", "f.yaml: 'name' is missing"),
    ("name: a\nfieldMetadata: [{purposeLevel: -1}]\n", "f.yaml: fieldMetadata[0].purposeLevel: -1 does not fit: minimum 0"),
])
def test_schema_errors_name_file_path_and_nearest_key(text, message):
    with pytest.raises(SchemaError) as err:
        load_checked(text, SCHEMA, "f.yaml")
    assert str(err.value) == message


def test_a_valid_file_loads_unchanged():
    assert load_checked("name: a\nfieldMetadata: [{fieldName: x, purposeLevel: 2}]\n", SCHEMA, "f.yaml") == {
        "name": "a", "fieldMetadata": [{"fieldName": "x", "purposeLevel": 2}]}


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=2000))
def test_unknown_keys_are_shown_bounded_and_escaped(key):
    if key in SCHEMA["properties"]:
        return
    with pytest.raises(SchemaError) as err:
        check({"name": "a", key: 1}, SCHEMA, "f.yaml")
    message = str(err.value)
    assert message.isascii() and len(message) < 200
