"""Issue 10, point 1 (strict files) and the config side of point 8: contracts and pipeline configs
are checked against their published JSON Schemas, typos at any depth are errors naming the file,
the path and the nearest key; cumulative streams take one level; mask, consent and time fields
must exist; contract regexes are RE2 (linear time, refused at load when RE2 cannot compile them)."""
from __future__ import annotations

import json
import re
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import ContractError, list_contracts, load_contract
from contracts.loader import PACKAGE_DIR, load_contract_ref, parse_contract
from contracts.regex import RegexError, compile_regex
from pipelines.config import DEFAULT_CONFIG, ConfigError, load_config
from privacy.streams import CUMULATIVE, StreamSpec
from schemas import check, load_checked, schema_path
from tests.conftest import SIMULATOR, WEBSHOP

SHOP = textwrap.dedent("""\
    ref: acme/Shop/1.0.0
    schema:
      name: Shop
      nodes:
        - {name: userId, type: STRING, required: true}
        - {name: email, type: STRING}
        - {name: consent, type: STRING}
        - {name: created, type: STRING}
        - {name: size, type: STRING}
        - name: address
          type: NODE
          nodes:
            - {name: street, type: STRING}
            - {name: city, type: STRING}
    keyField: userId
    fieldMetadata:
      - fieldName: email
        personalDataConfig: {isPii: true, purposeLevel: 1}
      - fieldName: address/street
        personalDataConfig: {isPii: true, purposeLevel: 2}
    validations:
      - {field: size, type: regex, value: "^(XS|S|M|L|XL)$"}
    """)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def contract_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "acme" / "Shop" / "1.0.0.yaml", text)
    with pytest.raises(ContractError) as caught:
        load_contract(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: "):]


# -- contracts ----------------------------------------------------------------------------------
def test_every_shipped_contract_follows_the_published_schema():
    refs = list_contracts()
    assert {WEBSHOP, SIMULATOR} <= set(refs)
    for ref in refs:
        path = PACKAGE_DIR / f"{ref}.yaml"
        check(yaml.safe_load(path.read_text()), "contract", str(path))
        assert load_contract(ref).pii, ref


@pytest.mark.parametrize("old, new, message", [
    # the case: one misspelled key used to declare no PII and write plaintext
    ("fieldMetadata:", "fieldMetaData:", "unknown key 'fieldMetaData' (did you mean 'fieldMetadata'?)"),
    ("personalDataConfig: {isPii: true, purposeLevel: 1}", "personalDataConfig: {isPii: true, purposelevel: 1}",
     "fieldMetadata[0].personalDataConfig: unknown key 'purposelevel' (did you mean 'purposeLevel'?)"),
    ("personalDataConfig: {isPii: true, purposeLevel: 1}", "personalDataconfig: {isPii: true, purposeLevel: 1}",
     "fieldMetadata[0]: unknown key 'personalDataconfig' (did you mean 'personalDataConfig'?)"),
    ("- {name: city, type: STRING}", "- {name: city, type: STRING, requird: true}",
     "schema.nodes[5].nodes[1]: unknown key 'requird' (did you mean 'required'?)"),
    ("  name: Shop\n", "  name: Shop\n  node: []\n", "schema: unknown key 'node' (did you mean 'nodes'?)"),
    ("{field: size, type: regex,", "{feild: size, type: regex,",
     "validations[0]: unknown key 'feild' (did you mean 'field'?)"),
    ("keyField: userId", "keyfield: userId", "unknown key 'keyfield' (did you mean 'keyField'?)"),
    ("keyField: userId", "keyField: userId\nstate: LIVE", "state: LIVE does not fit: enum DRAFT, IN_REVIEW"),
    ("{name: email, type: STRING}", "{name: email, type: STRING, repeated: yes please}",
     "schema.nodes[1].repeated: yes please does not fit: type boolean"),
])
def test_a_typo_at_any_depth_names_the_file_the_path_and_the_nearest_key(tmp_path, old, new, message):
    assert old in SHOP
    assert contract_error(tmp_path, SHOP.replace(old, new, 1)).startswith(message)


@pytest.mark.parametrize("text, problem", [
    (SHOP.replace("- {name: email, type: STRING}", "- &e {name: email, type: STRING}"), "anchors (&name) are not allowed"),
    (SHOP + "dataSubjectField: userId\ndataSubjectField: email\n", "duplicate key 'dataSubjectField'"),
    (SHOP.replace("keyField: userId", "<<: {keyField: userId}"), "merge keys (<<) are not allowed"),
])
def test_contracts_refuse_yaml_expansion_tricks(tmp_path, text, problem):
    assert problem in contract_error(tmp_path, text)


def test_the_lifecycle_states_include_deprecated(tmp_path):
    path = write(tmp_path / "shop.yaml", SHOP + "state: DEPRECATED\n")
    contract = load_contract(str(path))
    assert contract.state == "DEPRECATED" and not contract.is_active
    states = json.loads(schema_path("contract").read_text())["properties"]["state"]["enum"]
    assert states == ["DRAFT", "IN_REVIEW", "APPROVED", "ACTIVE", "DEPRECATED", "ARCHIVED"]


def test_semantic_checks_stay_after_the_schema(tmp_path):
    assert contract_error(tmp_path, SHOP.replace("fieldName: email", "fieldName: emial", 1)) == \
        "field 'emial': fieldMetadata.fieldName names a field that is not in the schema"
    assert contract_error(tmp_path, SHOP.replace("- {name: userId, type: STRING, required: true}",
                                                 "- {name: userId, type: LONG, required: true}")) == \
        "field 'userId': the key field must be a required, non-repeated STRING field"


def test_by_reference_only_never_resolves_a_path(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTRACTS_PATH", str(tmp_path))
    write(tmp_path / "acme" / "Shop" / "1.0.0.yaml", SHOP)
    assert load_contract_ref("acme/Shop/1.0.0").ref == "acme/Shop/1.0.0"
    file = str(tmp_path / "acme" / "Shop" / "1.0.0.yaml")
    assert load_contract(file).ref == "acme/Shop/1.0.0"  # the CLI and configs take a user's own file
    for ref in (file, "../Shop/1.0.0", "acme/../1.0.0", "acme/Shop/1.0.0.yaml", "x" * 500):
        with pytest.raises(ContractError, match="is not a contract reference") as caught:
            load_contract_ref(ref)
        assert len(str(caught.value)) < 200
    # a file at one reference's place that declares another reference is not served under it
    write(tmp_path / "acme" / "Shop" / "2.0.0.yaml", SHOP)
    with pytest.raises(ContractError, match="declares ref 'acme/Shop/1.0.0', but lives at the place of 'acme/Shop/2.0.0'"):
        load_contract_ref("acme/Shop/2.0.0")


# -- regexes: RE2 -------------------------------------------------------------------------------
@pytest.mark.parametrize("pattern", [r"^(a)\1$", "(?=x)abc", "(?<!x)abc", "a{1001}", "[unclosed"])
def test_a_pattern_re2_cannot_compile_is_refused_at_load_naming_field_and_pattern(tmp_path, pattern):
    text = SHOP.replace('value: "^(XS|S|M|L|XL)$"', f"value: '{pattern}'")
    message = contract_error(tmp_path, text)
    assert message.startswith(f"field 'size': invalid regex '{pattern}': RE2 cannot compile it: "), message


def test_catastrophic_backtracking_pattern_runs_in_linear_time():
    pattern = compile_regex("^(X+)+$")
    hostile = "X" * 200_000 + "Y"
    started = time.perf_counter()
    assert pattern.fullmatch(hostile) is None
    assert pattern.fullmatch("X" * 200_000)
    assert time.perf_counter() - started < 2.0  # Python's re would take longer than the universe's age
    # through the contract and the validator, as the pipeline and the gateway use it
    from contracts.events import EventError, EventValidator
    contract = parse_contract(yaml.safe_load(SHOP.replace("^(XS|S|M|L|XL)$", "^(X+)+$")), "shop.yaml")
    event = {"strmMeta": {"eventContractRef": contract.ref}, "userId": "u1", "size": "X" * 100_000 + "!"}
    started = time.perf_counter()
    with pytest.raises(EventError, match="doesn't match regex"):
        EventValidator(contract).check(event)
    assert time.perf_counter() - started < 2.0


SAME_IN_BOTH = ["^(XS|S|M|L|XL)$", "XS|S|M|L|XL", "[a-z]+@[a-z]+\\.(com|org)", "^[A-Z]{2}[0-9]{2}$", "a.c",
                "(ab)*c?", "^$", ".*", "[^,]+", "(?i)xl"]


@settings(max_examples=600, deadline=None)
@given(pattern=st.sampled_from(SAME_IN_BOTH),
       text=st.one_of(st.text(alphabet="XSMLabc@.comrgAZ019,", max_size=12), st.text(max_size=12)))
def test_the_validation_semantics_are_a_full_match_as_before(pattern, text):
    """What Python's re.fullmatch said for these patterns, RE2 says too (no search, no partial match)."""
    assert (compile_regex(pattern).fullmatch(text) is not None) == (re.fullmatch(pattern, text) is not None)


def test_full_match_not_search_and_bad_text_does_not_crash():
    pattern = compile_regex("XS|S|M|L|XL")
    assert pattern.fullmatch("S") and pattern.fullmatch("XS") and pattern.fullmatch("XSS") is None
    assert compile_regex(".+").fullmatch("\ud800")  # a lone surrogate is a character, as for re
    with pytest.raises(RegexError):
        compile_regex("x" * 5000)


# -- pipeline configs ---------------------------------------------------------------------------
def test_the_embedded_webshop_config_follows_the_published_schema():
    load_checked(DEFAULT_CONFIG.read_text(), "pipeline-config", str(DEFAULT_CONFIG))
    config = load_config()
    assert [s.name for s in config.streams] == ["webshop-1", "webshop-2"]


def config_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path / "pipeline.yaml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    return message[len(f"{path}: "):]


WEBSHOP_CONFIG = DEFAULT_CONFIG.read_text()


@pytest.mark.parametrize("old, new, message", [
    ("streams:", "stream:", "unknown key 'stream' (did you mean 'streams'?)"),
    ("export:", "exprt:", "unknown key 'exprt' (did you mean 'export'?)"),
    ("output: out", "output: out\nkeys: {stor: 'sqlite:///tmp/k.sqlite'}", "keys: unknown key 'stor' (did you mean 'store'?)"),
    ("  path: example_input.csv", "  pth: example_input.csv", "input: unknown key 'pth' (did you mean 'path'?)"),
    ("    field: purposeConsent", "    feld: purposeConsent", "input.consent: unknown key 'feld' (did you mean 'field'?)"),
    ("    mask: [userId]", "    masks: [userId]", "streams[0]: unknown key 'masks' (did you mean 'mask'?)"),
    ("  partition_by_day: false", "  partition_by_day: nope",
     "export.partition_by_day: nope does not fit: type boolean (true: date=YYYY-MM-DD/ folders; default false.)"),
    ("output: out", "output: out\nconnectors: [{name: lake, kind: s3, bucket: acme-lake, container: x}]",
     "connectors[0]: unknown key 'container' (valid keys: bucket, credentials, endpoint, kind, name, region)"),
    ("output: out", "output: out\nconnectors: [{name: lake, kind: s3, bucket: acme-lake}]\n"
     "exporters: [{output: encrypted, conector: lake}]", "exporters[0]: unknown key 'conector' (did you mean 'connector'?)"),
    ("output: out", "output: out\nconnectors: [{name: lake, kind: s3, bucket: b, credentials: AKIAEXAMPLESECRET}]",
     "connectors[0].credentials: the value does not fit: const default"),
    ("    cumulative: 1", "    cumulative: [1, 2]", "streams[0].cumulative: [1, 2] does not fit: type integer (Exactly one level"),
])
def test_config_typos_are_errors_naming_the_file_the_path_and_the_nearest_key(tmp_path, old, new, message):
    assert old in WEBSHOP_CONFIG
    assert config_error(tmp_path, WEBSHOP_CONFIG.replace(old, new, 1)).startswith(message)


def test_configs_refuse_yaml_expansion_tricks(tmp_path):
    text = WEBSHOP_CONFIG.replace("  - name: webshop-2", "  - &two\n    name: webshop-2")
    assert "anchors (&name) are not allowed" in config_error(tmp_path, text)
    assert "duplicate key 'output'" in config_error(tmp_path, WEBSHOP_CONFIG + "output: elsewhere\n")


def test_a_cumulative_stream_takes_exactly_one_level_everywhere():
    with pytest.raises(ValueError, match="exactly one level N .* got 1, 2"):
        StreamSpec.create("demo-1-2", CUMULATIVE, [1, 2])
    assert StreamSpec.create("demo-1", CUMULATIVE, [1]).levels == (1,)


def test_pstream_create_stream_refuses_a_cumulative_stream_with_two_levels(tmp_path, capsys):
    from cli.main import main
    from controlplane.project import Project
    p = ["--project_dir", str(tmp_path)]
    assert main(["create", "stream", "demo", *p]) == 0
    capsys.readouterr()
    assert main(["create", "stream", "--derived-from", "demo", "--cumulative", "--levels", "1,2", *p]) == 2
    assert "a CUMULATIVE stream has exactly one level" in capsys.readouterr().err
    assert Project.open(tmp_path).privacy_streams == {}


def shop_config(tmp_path: Path, streams: str = "", consent: str = "consent", created: str = "created") -> str:
    write(tmp_path / "shop.yaml", SHOP)
    return textwrap.dedent(f"""\
        name: shop
        contract: {tmp_path / 'shop.yaml'}
        input:
          consent: {{field: {consent}, map: {{"yes": [1, 2]}}}}
          timestamp: {{field: {created}}}
        streams:
        """) + (streams or "  - {granular: [1]}\n")


@pytest.mark.parametrize("streams, message", [
    ("  - {granular: [1], mask: [emial]}\n",
     "streams[0]: stream 'shop-1': mask 'emial' names no field of contract acme/Shop/1.0.0 (fields: userId, email"),
    ("  - {name: s2, cumulative: 2, mask: [street]}\n", "stream 's2': mask 'street' names no field"),  # nested: address/street
    ("  - {granular: [1], mask: ['address/*', 'nope*']}\n", "mask 'nope*' names no field"),
])
def test_mask_fields_must_exist_in_the_contract(tmp_path, streams, message):
    assert message in config_error(tmp_path, shop_config(tmp_path, streams))


def test_nested_masks_as_the_contract_spells_them(tmp_path):
    path = write(tmp_path / "pipeline.yaml", shop_config(tmp_path, "  - {granular: [2], mask: [address/street, 'address/c*']}\n"))
    assert load_config(str(path)).streams[0].masked_fields == ("address/street", "address/c*")


@pytest.mark.parametrize("consent, created, message", [
    ("consnet", "created", "input.consent.field: 'consnet' is not a top-level field of contract acme/Shop/1.0.0"),
    ("address/street", "created", "input.consent.field: 'address/street' is not a top-level field"),
    ("consent", "createdAt", "input.timestamp.field: 'createdAt' is not a top-level field"),
])
def test_consent_and_time_fields_must_be_contract_fields(tmp_path, consent, created, message):
    assert config_error(tmp_path, shop_config(tmp_path, consent=consent, created=created)).startswith(message)


def test_a_consent_map_regex_re2_refuses_is_a_config_error(tmp_path):
    text = shop_config(tmp_path).replace('map: {"yes": [1, 2]}', r'map: {"(y)\\1": [1]}')
    assert config_error(tmp_path, text).startswith("input.consent.map: RE2 cannot compile it")
