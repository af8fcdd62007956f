"""Micro-aggregation: every published quasi-identifier combination occurs at least k times (checked
with pycanon and a property test), the loss figure follows its definition, errors are clear."""
from __future__ import annotations

import collections

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
from pycanon import anonymity

from contracts import load_contract
from contracts.loader import parse_contract
from privacy.kanonymity import MicroAggregationError, MicroAggregationSpec, blocks, mdav, microaggregate

WEBSHOP = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
PEOPLE = parse_contract({
    "ref": "acme/People/1.0.0", "state": "ACTIVE",
    "schema": {"name": "People", "nodes": [
        {"name": "id", "type": "STRING", "required": True}, {"name": "email", "type": "STRING"},
        {"name": "age", "type": "INTEGER"}, {"name": "income", "type": "FLOAT"}, {"name": "zip", "type": "STRING"},
        {"name": "member", "type": "BOOLEAN"}, {"name": "tags", "type": "STRING", "repeated": True}]},
    "keyField": "id",
    "fieldMetadata": [{"fieldName": "id", "personalDataConfig": {"isPii": True, "purposeLevel": 1}},
                      {"fieldName": "email", "personalDataConfig": {"isPii": True, "purposeLevel": 2}},
                      {"fieldName": "age", "personalDataConfig": {"isQuasiId": True}},
                      {"fieldName": "zip", "personalDataConfig": {"isQuasiId": True}}],
})


def person(i, age, zip_code="12345", income=1000.0, member=True, consent=(1,)):
    return {"strmMeta": {"consentLevels": list(consent), "eventContractRef": PEOPLE.ref}, "id": f"p{i}",
            "email": f"p{i}@x.io", "age": age, "income": income, "zip": zip_code, "member": member}


def qi_frame(published, names):
    return pd.DataFrame([{name: e[name] for name in names} for e in published]).astype(str)


def test_the_web_shop_age_is_k_anonymous_checked_by_pycanon():
    contract = load_contract(WEBSHOP)
    spec = MicroAggregationSpec.for_contract(contract, k=5)           # age: the contract's isQuasiId
    rng = np.random.default_rng(3)
    events = [{"strmMeta": {"consentLevels": [2]}, "age": int(a), "userId": str(i)} for i, a in
              enumerate(rng.integers(0, 99, 1000))]
    published, report = microaggregate(events, spec)
    assert spec.numeric == ("age",) and len(published) == 1000
    assert anonymity.k_anonymity(qi_frame(published, ["age"]), ["age"]) >= 5
    assert report["smallest_group"] >= 5 and all(isinstance(e["age"], int) for e in published)
    assert [e["userId"] for e in published] == [e["userId"] for e in events]   # other fields untouched


def test_mixed_quasi_identifiers_and_the_loss_figure_from_its_definition():
    rng = np.random.default_rng(5)
    events = [person(i, int(rng.integers(18, 90)), zip_code=f"{rng.integers(10000, 10400)}",
                     income=float(rng.normal(3000, 800))) for i in range(600)]
    spec = MicroAggregationSpec.for_contract(PEOPLE, k=4, quasi_identifiers=["age", "income", "zip"])
    published, report = microaggregate(events, spec)
    names = ["age", "income", "zip"]
    assert anonymity.k_anonymity(qi_frame(published, names), names) >= 4
    assert report["groups"] == len({tuple(e[n] for n in names) for e in published})
    assert report["generalisation"]["zip"]["level"] >= 1 and all(e["zip"].endswith("*") for e in published)
    # SSE/SST per field, from the definition, on the published and the original values
    by_id = {e["id"]: e for e in events}
    for name in ("age", "income"):
        original = np.array([by_id[e["id"]][name] for e in published], dtype=float)
        released = np.array([e[name] for e in published], dtype=float)
        sse = ((original - released) ** 2).sum()
        sst = ((original - original.mean()) ** 2).sum()
        assert report["information_loss"]["per_field"][name] == pytest.approx(sse / sst, abs=1e-6)
    per_field = report["information_loss"]["per_field"]
    assert report["information_loss"]["total"] == pytest.approx(np.mean(list(per_field.values())), abs=1e-6)
    assert 0 < report["information_loss"]["total"] < 1


def test_records_without_consent_are_absent_and_counted():
    events = [person(i, 20 + i % 7, consent=() if i % 4 == 0 else (1,) if i % 4 == 1 else (1, 2)) for i in range(40)]
    published, report = microaggregate(events, MicroAggregationSpec.for_contract(PEOPLE, k=3, quasi_identifiers=["age"]))
    assert len(published) == 30 and report["suppressed"] == {"records": 10, "reasons": {"no consent": 10}}
    spec = MicroAggregationSpec.for_contract(PEOPLE, k=3, quasi_identifiers=["age"], consent_levels=[2])
    published, report = microaggregate(events, spec)
    assert {e["id"] for e in published} == {f"p{i}" for i in range(40) if i % 4 == 2 or i % 4 == 3} and \
        report["suppressed"]["reasons"] == {"no consent to levels [2]": 20}
    # a non-consenting person's age takes no part in any group mean
    lonely = [person(i, 30, consent=(1,)) for i in range(5)] + [person(9, 90, consent=())]
    published, _ = microaggregate(lonely, MicroAggregationSpec.for_contract(PEOPLE, k=5, quasi_identifiers=["age"]))
    assert {e["age"] for e in published} == {30}


def test_missing_values_and_small_categorical_classes_within_the_suppression_budget():
    events = [person(i, 40 + i % 3, zip_code="11111") for i in range(20)] + [person(20, None), person(21, 33, "99999")]
    spec = MicroAggregationSpec.for_contract(PEOPLE, k=5, quasi_identifiers=["age", "zip"], max_suppressed=0.1)
    published, report = microaggregate(events, spec)
    assert len(published) == 20 and report["generalisation"]["zip"]["level"] == 0
    assert report["suppressed"]["reasons"] == {
        "quasi-identifier 'age' is missing": 1,
        "in a combination of categorical quasi-identifiers shared by fewer than 5 records": 1}
    published, report = microaggregate(events, MicroAggregationSpec.for_contract(PEOPLE, k=5, quasi_identifiers=["zip"]))
    assert {e["zip"] for e in published} == {"*"} and report["generalisation"]["zip"] == {"level": 5, "top": 5}
    published, _ = microaggregate(events, MicroAggregationSpec.for_contract(PEOPLE, k=2, quasi_identifiers=["member"]))
    assert {e["member"] for e in published} == {True}


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=1), "k must be an integer of at least 2"),
    (dict(k=5, quasi_identifiers=["zipcode"]), "'zipcode' is not a top-level field of contract acme/People/1.0.0"),
    (dict(k=5, quasi_identifiers=["email"]), "'email' is PII"),
    (dict(k=5, quasi_identifiers=["tags"]), "'tags' is a list"),
    (dict(k=5, quasi_identifiers=["age", "age"]), "given twice: age"),
])
def test_bad_specs_are_clear_errors(kwargs, message):
    with pytest.raises(MicroAggregationError, match=message):
        MicroAggregationSpec.for_contract(PEOPLE, **kwargs)


def test_k_larger_than_the_data_is_a_clear_error():
    events = [person(i, 30) for i in range(4)] + [person(5, 30, consent=())]
    with pytest.raises(MicroAggregationError, match=r"k = 5 is larger than the 4 records that can be grouped "
                                                     r"\(of 5 read; 1 suppressed: no consent\)"):
        microaggregate(events, MicroAggregationSpec.for_contract(PEOPLE, k=5, quasi_identifiers=["age"]))


@settings(max_examples=60, deadline=None)
@given(data=st.data(), k=st.integers(2, 8), dims=st.integers(1, 3), with_zip=st.booleans())
def test_any_data_and_k_give_groups_of_at_least_k(data, k, dims, with_zip):
    n = data.draw(st.integers(k, 120))
    values = data.draw(st.lists(st.lists(st.integers(0, 20) | st.integers(-10**6, 10**6), min_size=dims, max_size=dims),
                                min_size=n, max_size=n))
    zips = data.draw(st.lists(st.sampled_from(["1000", "1001", "1100", "2000", "20", ""]), min_size=n, max_size=n))
    events = [{"strmMeta": {"consentLevels": [1]}, "id": str(i), "age": row[0], "income": float(row[-1]),
               "zip": zips[i]} for i, row in enumerate(values)]
    names = ["age", "income"][:min(dims, 2)] + (["zip"] if with_zip else [])
    published, report = microaggregate(events, MicroAggregationSpec.for_contract(PEOPLE, k=k, quasi_identifiers=names))
    counts = collections.Counter(tuple(e[name] for name in names) for e in published)
    assert len(published) == n and min(counts.values()) >= k and report["smallest_group"] >= k
    assert sorted(e["id"] for e in published) == sorted(e["id"] for e in events)


@settings(max_examples=40, deadline=None)
@given(points=st.integers(1, 400).flatmap(lambda n: st.lists(st.tuples(st.floats(-1e6, 1e6), st.floats(-5, 5)),
                                                              min_size=n, max_size=n)),
       k=st.integers(2, 10), block=st.sampled_from([20, 64, 4096]))
def test_mdav_groups_hold_k_to_2k_minus_1_rows(points, k, block):
    if len(points) < k:
        with pytest.raises(MicroAggregationError):
            mdav(np.array(points), k)
        return
    labels = mdav(np.array(points), k, block_size=block)
    sizes = np.bincount(labels)
    assert sizes.sum() == len(points) and sizes.min() >= k and sizes.max() <= 2 * k - 1
    assert sorted(np.concatenate(blocks(np.array(points), max(block, 2 * k)))) == list(range(len(points)))
