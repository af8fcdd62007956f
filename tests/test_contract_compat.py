"""Contract versions: compatible bumps are accepted, each incompatible change is refused with a
report naming the field, `pstream contracts diff` prints the same report; the regex widening
proofs are sound (property tests against RE2 itself)."""
from __future__ import annotations

import copy
import json

import pytest
from hypothesis import assume, given, settings, strategies as st

from cli.main import main
from conftest import WEBSHOP
from contracts import load_contract, parse_contract
from contracts.compat import check_version_bump, diff_contracts, latest_earlier
from contracts.regex import compile_regex
from contracts.regex_compare import accepts_all_of, all_accept_all_of, anchored, parse, same_values
from contracts.writer import contract_data

BASE = {
    "ref": "acme/Shop/1.0.0",
    "schema": {"name": "Shop", "nodes": [
        {"name": "userId", "type": "STRING", "required": True},
        {"name": "sessionId", "type": "STRING"},
        {"name": "email", "type": "STRING"},
        {"name": "age", "type": "INTEGER"},
        {"name": "size", "type": "STRING"},
        {"name": "tags", "type": "STRING", "repeated": True},
        {"name": "address", "type": "NODE", "nodes": [{"name": "street", "type": "STRING"},
                                                      {"name": "zip", "type": "STRING"}]},
    ]},
    "keyField": "userId",
    "dataSubjectField": "userId",
    "fieldMetadata": [
        {"fieldName": "email", "personalDataConfig": {"isPii": True, "purposeLevel": 2}},
        {"fieldName": "address/street", "personalDataConfig": {"isPii": True, "purposeLevel": 2}},
        {"fieldName": "age", "personalDataConfig": {"isQuasiId": True}},
    ],
    "validations": [{"field": "size", "type": "regex", "value": "^(S|M|L)$"}],
}


def version(change=None, ref="acme/Shop/1.1.0"):
    data = copy.deepcopy(BASE)
    data["ref"] = ref
    if change:
        change(data)
    return parse_contract(data)


def nodes(data):
    return {n["name"]: n for n in data["schema"]["nodes"]}


def meta(data, field):
    return next(m for m in data["fieldMetadata"] if m["fieldName"] == field)


PREVIOUS = version(ref="acme/Shop/1.0.0")

COMPATIBLE = [   # (change, the bump it needs, what the report says)
    (lambda d: d["schema"]["nodes"].append({"name": "coupon", "type": "STRING"}), "minor", "added, optional"),
    (lambda d: nodes(d)["address"]["nodes"].append({"name": "city", "type": "STRING"}), "minor", "added, optional"),
    (lambda d: d["validations"].__setitem__(0, {"field": "size", "type": "regex", "value": "^(S|M|L|XL)$"}),
     "minor", "regex widened"),
    (lambda d: d["validations"].__setitem__(0, {"field": "size", "type": "regex", "value": "[SML]"}),
     "patch", "exactly the same values"),
    (lambda d: d.pop("validations"), "minor", "regex removed"),
    (lambda d: nodes(d)["email"].update(doc="the customer's address"), "patch", "doc changed"),
    (lambda d: meta(d, "email")["personalDataConfig"].update(purposeLevel=3), "patch", "purpose level raised"),
    (lambda d: d["fieldMetadata"].append({"fieldName": "sessionId",
                                          "personalDataConfig": {"isPii": True, "purposeLevel": 1}}),
     "patch", "now PII"),
    (lambda d: d["fieldMetadata"].append({"fieldName": "address/zip", "personalDataConfig": {"isQuasiId": True}}),
     "patch", "now a quasi-identifier"),
    (lambda d: d["fieldMetadata"].append({"fieldName": "sessionId",
                                          "nullHandlingConfig": {"type": "DEFAULT_VALUE", "defaultValue": "-"}}),
     "minor", "null handling none -> DEFAULT_VALUE"),
    (lambda d: d["schema"]["nodes"].reverse(), "patch", "order of fields changed"),
    (lambda d: d.update(state="DEPRECATED"), "none", None),
]

INCOMPATIBLE = [   # (change, the field the report must name, what it says)
    (lambda d: d["schema"]["nodes"].remove(nodes(d)["sessionId"]), "sessionId", "removed"),
    (lambda d: nodes(d)["address"]["nodes"].pop(1), "address/zip", "removed"),
    (lambda d: nodes(d)["age"].update(type="LONG"), "age", "type INTEGER -> LONG"),
    (lambda d: nodes(d)["tags"].pop("repeated"), "tags", "no longer repeated"),
    (lambda d: nodes(d)["email"].update(required=True), "email", "now required"),
    (lambda d: d["schema"]["nodes"].append({"name": "coupon", "type": "STRING", "required": True}),
     "coupon", "added, required"),
    (lambda d: d["validations"].__setitem__(0, {"field": "size", "type": "regex", "value": "^(S|M)$"}),
     "size", "regex tightened"),
    (lambda d: d["validations"].__setitem__(0, {"field": "size", "type": "regex", "value": "(?i)^(s|m|l)$"}),
     "size", "not proven"),   # wider in fact, but not proven: counts as tightening
    (lambda d: d["validations"].append({"field": "email", "type": "regex", "value": ".+@.+"}), "email", "regex added"),
    (lambda d: (nodes(d)["sessionId"].update(required=True), d.update(keyField="sessionId")), "sessionId", "key field"),
    (lambda d: d.update(dataSubjectField="email"), "email", "data subject field"),
    (lambda d: meta(d, "email")["personalDataConfig"].update(purposeLevel=1), "email", "purpose level lowered"),
    (lambda d: d["fieldMetadata"].remove(meta(d, "address/street")), "address/street", "no longer PII"),
    (lambda d: d["fieldMetadata"].remove(meta(d, "age")), "age", "no longer a quasi-identifier"),
    (lambda d: d["fieldMetadata"].append({"fieldName": "sessionId", "nullHandlingConfig": {"type": "DROP_RECORD"}}),
     "sessionId", "DROP_RECORD"),
]


@pytest.mark.parametrize("change, bump, said", COMPATIBLE)
def test_compatible_changes_need_a_minor_or_patch_version(change, bump, said):
    new = version(change)
    report = check_version_bump(PREVIOUS, new)              # 1.0.0 -> 1.1.0
    assert report.ok and report.required == bump, report.text()
    assert said is None or said in report.text()
    patch = check_version_bump(PREVIOUS, version(change, ref="acme/Shop/1.0.1"))
    assert patch.ok == (bump in ("patch", "none")), patch.text()


@pytest.mark.parametrize("change, field, said", INCOMPATIBLE)
def test_each_incompatible_change_is_refused_naming_the_field(change, field, said):
    report = check_version_bump(PREVIOUS, version(change))  # a minor bump is too small
    assert not report.ok and report.required == "major"
    assert {c.field for c in report.blocking()} == {field} and any(said in c.what for c in report.blocking())
    text = report.text()
    assert f"refused: 1.1.0 is a minor version after 1.0.0, but the changes to '{field}' need a major version " \
           f"(2.0.0 or higher)" in text
    assert check_version_bump(PREVIOUS, version(change, ref="acme/Shop/2.0.0")).ok


def test_several_changes_are_each_named_and_the_largest_decides():
    def many(d):
        nodes(d)["email"]["doc"] = "changed"
        d["schema"]["nodes"].append({"name": "coupon", "type": "STRING"})
        d["schema"]["nodes"].remove(nodes(d)["tags"])
    report = check_version_bump(PREVIOUS, version(many))
    assert [(c.field, c.bump) for c in report.changes] == [("email", "patch"), ("tags", "major"),
                                                           ("coupon", "minor")]
    assert [c.field for c in report.blocking()] == ["tags"]


def test_the_version_must_be_higher_and_of_the_same_contract():
    same = check_version_bump(PREVIOUS, version(ref="acme/Shop/1.0.0"))
    assert not same.ok and "refused: 1.0.0 is not higher than 1.0.0" in same.text()
    lower = check_version_bump(version(ref="acme/Shop/1.2.0"), version(ref="acme/Shop/1.1.9"))
    assert not lower.ok and lower.actual == "lower"
    assert check_version_bump(PREVIOUS, version(ref="acme/Shop/1.0.1")).ok     # no changes: any higher version
    with pytest.raises(ValueError, match="is not a version of acme/Shop"):
        check_version_bump(PREVIOUS, version(ref="acme/Other/2.0.0"))


def test_latest_earlier_picks_the_highest_lower_version():
    versions = [version(ref=f"acme/Shop/{v}") for v in ("1.0.0", "1.2.0", "1.10.0", "2.0.0")]
    versions.append(version(ref="acme/Other/1.9.0"))
    new = version(ref="acme/Shop/1.11.0")
    assert latest_earlier(versions, new).ref == "acme/Shop/1.10.0"
    assert latest_earlier(versions, version(ref="acme/Shop/0.1.0")) is None


def test_diff_command_prints_the_report_and_exits_1_when_the_version_is_too_small(tmp_path, capsys):
    def write(name, change, ref):
        data = contract_data(version(change, ref=ref))
        path = tmp_path / name
        path.write_text(json.dumps(data))   # JSON is YAML
        return str(path)
    old = write("old.yaml", None, "acme/Shop/1.0.0")
    bad = write("bad.yaml", lambda d: nodes(d)["age"].update(type="STRING"), "acme/Shop/1.1.0")
    good = write("good.yaml", lambda d: d["schema"]["nodes"].append({"name": "x", "type": "BOOLEAN"}),
                 "acme/Shop/1.1.0")
    assert main(["contracts", "diff", old, bad]) == 1
    out = capsys.readouterr().out
    assert "major  field 'age': type INTEGER -> STRING" in out and "refused: 1.1.0 is a minor version" in out
    assert main(["contracts", "diff", old, good, "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["required"] == "minor" and report["changes"] == [
        {"field": "x", "what": "added, optional", "bump": "minor"}]
    assert main(["contracts", "diff", WEBSHOP, old]) == 0         # two different contracts: a plain diff
    assert "field 'transactionId': removed" in capsys.readouterr().out
    assert main(["contracts", "diff", old, str(tmp_path / "missing.yaml")]) == 2
    assert "no such contract file" in capsys.readouterr().err


def test_the_shipped_contract_against_itself_has_no_changes():
    contract = load_contract(WEBSHOP)
    assert diff_contracts(contract, contract).changes == ()


# -- regex widening proofs ---------------------------------------------------------------------
@pytest.mark.parametrize("new, old, proven", [
    ("^(XS|S|M|L|XL|XXL)$", "^(XS|S|M|L|XL)$", True),
    ("^(S|M)$", "^(S|M|L)$", False),
    ("[a-z]{1,100}", "[a-z]{1,64}", True),
    ("[a-z]{1,64}", "[a-z]{1,100}", False),
    ("(a|b)*", "(a|b)*a(a|b){8}", True),
    ("[a-z]+", "ab", True),
    ("ab?c", "ac", True),
    ("[0-9]{4}-?[0-9]{2}", "[0-9]{4}-[0-9]{2}", True),
    ("\\w+", "\\d+", True),
    ("\\d+", "\\w+", False),
    (".*", "a\nb", False),                  # RE2's '.' is not a newline
    ("x(ab|c)", "xab", True),
    ("[^@]+@[^@]+", "[^@\\s]+@[^@\\s]+\\.[^@\\s]+", True),
    ("a", "^a$", True), ("^a$", "a", True),
    ("a^b", "ab", False),                    # '^' inside: not reasoned about
    ("[[:alpha:]]+", "[a-z]+", False),       # POSIX class: read differently by Python, not reasoned about
    ("a{,3}", "a", False),                   # literal to RE2: not reasoned about
    ("(?i)a", "a", False),
])
def test_regex_widening_examples(new, old, proven):
    assert accepts_all_of(new, old) is proven


def test_regex_sets_and_anchoring():
    assert same_values("^(S|M)$", "M|S") and not same_values("S|M", "S")
    assert all_accept_all_of(["[A-Z]+", "^.{1,3}$"], ["^[A-Z]{1,2}$"])
    assert not all_accept_all_of(["[A-Z]+"], [])            # a regex added to a field without one
    assert all_accept_all_of([], ["[A-Z]+"])                # a regex removed
    assert all_accept_all_of(["(?s:.*)"], []) is False      # flags: not proven, even for everything
    assert all_accept_all_of(["[\\s\\S]*"], [])             # everything, proven
    assert anchored("^(S|M)$") and not anchored("S|M") and not anchored("^a$|b") and not anchored("^a|b$")


_ATOMS = st.sampled_from(["a", "b", "c", "[ab]", "[a-c]", "[^a]", ".", "\\d", "\\w", "\\s", "x", "-", "\\.", "1"])


@st.composite
def patterns(draw, depth=3):
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(_ATOMS)
    kind = draw(st.sampled_from(["seq", "alt", "rep", "group"]))
    if kind == "seq":
        return "".join(draw(st.lists(patterns(depth - 1), min_size=2, max_size=3)))
    if kind == "alt":
        return "(" + "|".join(draw(st.lists(patterns(depth - 1), min_size=2, max_size=3))) + ")"
    if kind == "group":
        return "(?:" + draw(patterns(depth - 1)) + ")"
    inner = draw(patterns(depth - 1))
    return "(?:" + inner + ")" + draw(st.sampled_from(["*", "+", "?", "{2}", "{1,3}", "{0,2}", "{2,}"]))


_TEXTS = st.text(alphabet="abcx1-. \n\u0661é", max_size=8)


@settings(max_examples=300, deadline=None)
@given(old=patterns(), new=patterns(), texts=st.lists(_TEXTS, min_size=5, max_size=20), data=st.data())
def test_a_proven_widening_accepts_every_value_the_old_regex_accepts(old, new, texts, data):
    """Soundness against RE2 itself: when the proof says new accepts all old accepts, no value that
    RE2 matches with old is refused by new (values drawn at random and from old's own language)."""
    assume(parse(old) is not None and parse(new) is not None)
    if not accepts_all_of(new, old):
        return
    old_re, new_re = compile_regex(old), compile_regex(new)
    members = [data.draw(st.from_regex(old, fullmatch=True).filter(lambda s: len(s) < 40)) for _ in range(5)]
    for value in texts + members:
        if old_re.fullmatch(value):
            assert new_re.fullmatch(value), (old, new, value)


@settings(max_examples=100, deadline=None)
@given(pattern=patterns())
def test_every_pattern_accepts_itself_and_its_rewrites(pattern):
    assume(parse(pattern) is not None)
    assert accepts_all_of(pattern, pattern)
    assert same_values(pattern, f"^(?:{pattern})$") and same_values(pattern, f"({pattern})")
    assert accepts_all_of(f"{pattern}|zz", pattern) and accepts_all_of(f"(?:{pattern})*", pattern)
