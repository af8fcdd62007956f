"""Retention per contract: `retention: {policy: ID}` in a contract makes its events' keys that
key-store policy's keys (expiresAt = the key's day + the policy's days, policyId in key rows and
key exports), a run refuses an unknown policy at start, and `keys purge` removes them and their
exported copies once they expire."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from contracts import ContractError, load_contract, parse_contract
from pipelines.run import run
from privacy.kek import LocalKek
from privacy.keyring import DAY_MS, KeyRing, day_start_ms
from privacy.keystore import open_key_store
from privacy.policies import Policy
from pipeline_runs import write_rows
from tests.conftest import WEBSHOP

DAY = "2024-03-01"
THIRTY = Policy("short-30", "Short", 30, "consent (GDPR 6(1)(a))")


def retained_contract(directory: Path, policy: str = "short-30") -> Path:
    """The web shop contract as acme/Retained/1.0.0, with a retention policy."""
    data = yaml.safe_load(Path(load_contract(WEBSHOP).source).read_text())
    data.update(ref="acme/Retained/1.0.0", retention={"policy": policy})
    path = directory / "acme" / "Retained" / "1.0.0.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------ the key ring
def test_a_policys_keys_expire_after_its_days_and_are_its_own(tmp_path):
    store_uri = f"sqlite://{tmp_path / 'keys.sqlite'}"
    ring = KeyRing(open_key_store(store_uri), LocalKek.create(tmp_path / "kek.json"), clock=lambda: 0)
    keys, created = ring.keys_for({("u1", DAY, THIRTY): {"u1"}, ("u1", DAY): {"u1"}, ("u2", "2024-03-02", THIRTY): set()})
    by_link = {r.key_link: r for r in created}
    assert len(created) == 3 and len({link for link, _ in keys.values()}) == 3    # one key per value, day, policy
    short = by_link[keys[("u1", DAY, THIRTY)][0]]
    assert (short.policy_id, short.expires_at) == ("short-30", day_start_ms(DAY) + 30 * DAY_MS)
    assert by_link[keys[("u2", "2024-03-02", THIRTY)][0]].expires_at == day_start_ms("2024-03-02") + 30 * DAY_MS
    default = by_link[keys[("u1", DAY)][0]]
    assert (default.policy_id, default.expires_at) == ("", day_start_ms(DAY) + 2556 * DAY_MS)
    assert short.value_hash == ring.ids.value_hash("u1", "short-30") != default.value_hash == ring.ids.value_hash("u1")
    assert short.subject_hashes == default.subject_hashes                          # the same data subject
    # the same policy again: the cached key; a new ring (another worker, a later run) finds it in the store
    again, created_again = ring.keys_for({("u1", DAY, THIRTY): set(), ("u1", DAY, Policy("", retention_days=9)): set()})
    assert created_again == [] and again[("u1", DAY, THIRTY)] == keys[("u1", DAY, THIRTY)]
    assert again[("u1", DAY, Policy("", retention_days=9))][0] == default.key_link   # policy "" is the ring's own
    fresh = KeyRing(open_key_store(store_uri), LocalKek(tmp_path / "kek.json"))
    found, made = fresh.keys_for({("u1", DAY, Policy("short-30", retention_days=99)): set()})
    assert made == [] and found[("u1", DAY, Policy("short-30", retention_days=99))][0] == short.key_link
    # purge at the policy's expiry takes its keys only
    assert sorted(ring.store.purge_expired(day_start_ms(DAY) + 30 * DAY_MS)) == [short.key_link]
    assert fresh.keys_for({("u1", DAY): set()})[1] == []                           # the default key is still there


def test_value_hashes_of_policies_are_separated(tmp_path):
    ids = KeyRing(open_key_store(tmp_path / "k.sqlite"), LocalKek.create(tmp_path / "kek.json")).ids
    hashes = {ids.value_hash("u1"), ids.value_hash("u1", "a"), ids.value_hash("u1", "b"), ids.value_hash("a\x00u1"),
              ids.value_hash("\x00u1", "a"), ids.value_hash("au1"), ids.value_hash("1", "au"), ids.subject_hash("u1")}
    assert len(hashes) == 8


# ------------------------------------------------------------------- the contract
def test_the_contract_names_a_policy_id(tmp_path):
    contract = load_contract(str(retained_contract(tmp_path)))
    assert contract.retention_policy == "short-30" and load_contract(WEBSHOP).retention_policy is None
    data = yaml.safe_load(Path(contract.source).read_text())
    for retention, message in (({"policy": "bad id!"}, "retention.policy"), ({"polcy": "x"}, "did you mean 'policy'"),
                               ({}, "'policy' is missing")):
        with pytest.raises(ContractError, match=message):
            parse_contract({**data, "retention": retention}, source="c.yaml")


# ------------------------------------------------------------- a run, export, purge
def test_keys_of_a_contract_with_a_30_day_policy_expire_and_purge_removes_them_everywhere(tmp_path, capsys):
    contract = retained_contract(tmp_path / "contracts")
    rows = [{"transactionId": str(100 + i), "userId": f"u{i % 4}", "purposeConsent": "2",
             "date": f"2024-03-0{1 + i % 3} 10:00:00", "email": f"person{i}@example.com"} for i in range(12)]
    write_rows(tmp_path / "in.csv", rows)
    out = tmp_path / "out"
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""name: shop
contract: {contract}
input: {{consent: {{field: purposeConsent}}, timestamp: {{field: date, format: "yyyy-MM-dd HH:mm:ss"}}}}
streams: [{{name: shop-2, cumulative: 2}}]
""")
    argv = ["--config", str(config), "--input", str(tmp_path / "in.csv"), "--output", str(out)]
    store_uri = f"sqlite://{out / 'keystore.sqlite'}"

    # no such policy in the key store: refused at start, before anything is read or written
    lines = []
    assert run(argv, echo=lines.append) == 2
    assert lines[-1] == (f"error: {contract}: retention: policy 'short-30' is not a policy of the key store {store_uri} "
                         f"(it has: none); create it first: pstream policies create short-30 --retention-days N "
                         f"--legal-grounds TEXT --key-store {store_uri}")
    assert not (out / "encrypted").exists() and not (out / "keys").exists()

    assert pstream(["policies", "create", "short-30", "--retention-days", "30", "--legal-grounds", "consent",
                    "--key-store", store_uri]) == 0
    assert run(argv, echo=lines.append) == 0, lines
    key_rows = [row for _, _, row in read_jsonl([str(out / "keys")])]
    assert len(key_rows) == 4 * 3 and {r["policyId"] for r in key_rows} == {"short-30"}
    for row in key_rows:
        assert row["expiresAt"] == day_start_ms(row["day"]) + 30 * DAY_MS
    store = open_key_store(out / "keystore.sqlite")
    records = store.by_links([r["keyLink"] for r in key_rows])
    assert {(r.policy_id, r.expires_at) for r in records.values()} == {(r["policyId"], r["expiresAt"]) for r in key_rows}

    export = tmp_path / "keys.csv"
    capsys.readouterr()
    assert pstream(["keys", "export", str(out / "keys"), "--kek", f"local://{out / 'kek.json'}", "-o", str(export)]) == 0
    exported = list(csv.DictReader(export.open()))
    assert {(r["keyLink"], r["policyId"], int(r["expiresAt"])) for r in exported} == {
        (r["keyLink"], "short-30", r["expiresAt"]) for r in key_rows}

    first_expiry = day_start_ms("2024-03-01") + 30 * DAY_MS
    purge = ["keys", "purge", "--output", str(out), "--key-export", str(export)]
    capsys.readouterr()
    assert pstream([*purge, "--now", str(first_expiry - 1)]) == 0
    assert capsys.readouterr().out.strip() == "purged 0 expired keys"
    assert pstream([*purge, "--now", "2024-03-31T00:00:00Z"]) == 0                     # exactly the first day's expiry
    first_day = {r["keyLink"] for r in key_rows if r["day"] == "2024-03-01"}
    assert capsys.readouterr().out.strip() == f"purged {len(first_day)} expired keys"
    assert {r["keyLink"] for r in csv.DictReader(export.open())} == {r["keyLink"] for r in key_rows} - first_day
    assert pstream([*purge, "--now", str(day_start_ms("2024-03-03") + 30 * DAY_MS)]) == 0
    assert capsys.readouterr().out.strip() == f"purged {len(key_rows) - len(first_day)} expired keys"
    assert not export.exists()                               # the export held only purged keys: removed whole
    assert [row for _, _, row in read_jsonl([str(out / "keys")])] == []
    assert [row for _, _, row in read_jsonl([str(out / "streams" / "shop-2")])] == []  # and the plaintext stream rows
    assert store.by_links([r["keyLink"] for r in key_rows]) == {}
