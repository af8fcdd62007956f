"""A contract with nested and repeated PII fields, end to end through `python -m pipelines.run`."""
from __future__ import annotations

import json

from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from pipelines.run import run
from privacy.daead import key_id_of
from tests.test_contracts import NESTED

EVENTS = [
    {"id": "u1", "emails": ["ann@example.com", "ann@work.example"],
     "addresses": [{"street": "Secret Street 1", "lines": ["Flat 2", "Floor 3"], "number": 1},
                   {"street": "Hidden Road 9", "number": 9}],
     "profile": {"name": "Ann Example", "score": 0.5, "active": True, "visits": 3}, "consent": "[1]"},
    {"id": "u2", "emails": [], "addresses": [], "profile": {"name": "Bob Example"}, "consent": "[1, 2]"},
    {"id": "u3", "emails": ["cy@example.com"], "profile": None, "consent": "[]"},
]


def test_nested_and_repeated_pii_end_to_end(tmp_path):
    contract = tmp_path / "nested.yaml"
    contract.write_text(NESTED)
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
name: nested
contract: {contract}
input:
  consent: {{field: consent}}
streams:
  - {{granular: [1]}}
  - {{name: everything, granular: [1, 2], mask: ["addresses/number"]}}
""")
    data = tmp_path / "input.jsonl"
    data.write_text("\n".join(json.dumps({k: v for k, v in e.items() if k != "consent"} | {"consent": e["consent"]})
                              for e in EVENTS))
    # `consent` is not a contract field: every row would be a dead letter, so the config is refused...
    lines = []
    assert run(["--config", str(config), "--input", str(data), "--output", str(tmp_path / "o1")], echo=lines.append) == 2
    assert "input.consent.field: 'consent' is not a top-level field of contract acme/Nested/1.0.0" in lines[-1]
    # ...so consent goes in strmMeta, as the gateway's events carry it.
    config.write_text(config.read_text().replace("input:\n  consent: {field: consent}\n", ""))
    data.write_text("\n".join(json.dumps({k: v for k, v in e.items() if k != "consent"}
                                         | {"strmMeta": {"eventContractRef": "acme/Nested/1.0.0",
                                                         "consentLevels": json.loads(e["consent"])}})
                              for e in EVENTS))
    out = tmp_path / "o2"
    assert run(["--config", str(config), "--input", str(data), "--output", str(out)], echo=lines.append) == 0
    encrypted = {e["id"]: e for _, _, e in read_jsonl([str(out / "encrypted")])}
    assert len(encrypted) == 3
    ann = encrypted["u1"]  # the key field is not PII in this contract, so ids stay readable
    values = ann["emails"] + [a["street"] for a in ann["addresses"]] + ann["addresses"][0]["lines"] + [ann["profile"]["name"]]
    assert len({key_id_of(v) for v in values}) == 1 and None not in {key_id_of(v) for v in values}
    assert ann["addresses"][0]["number"] == 1 and ann["profile"]["visits"] == 3
    assert encrypted["u2"]["emails"] == [] and encrypted["u3"]["profile"] is None
    text = "".join(p.read_text() for p in (out / "encrypted").glob("*.jsonl"))
    for secret in ("ann@", "Secret Street", "Flat 2", "Ann Example", "Bob Example", "cy@"):
        assert secret not in text

    level1 = {e["id"]: e for _, _, e in read_jsonl([str(out / "streams" / "nested-1")])}
    assert set(level1) == {"u1", "u2"}
    assert level1["u1"]["emails"] == EVENTS[0]["emails"] and level1["u1"]["profile"]["name"] == "Ann Example"
    assert key_id_of(level1["u1"]["addresses"][0]["street"]) is not None  # level 2 stays encrypted
    everything = {e["id"]: e for _, _, e in read_jsonl([str(out / "streams" / "everything")])}
    assert set(everything) == {"u2"}
    assert everything["u2"]["profile"]["name"] == "Bob Example"

    keys = tmp_path / "keys.csv"
    assert pstream(["keys", "export", str(out / "keys"), "--kek", f"local://{out / 'kek.json'}", "-o", str(keys)]) == 0
    decrypted = tmp_path / "decrypted.jsonl"
    assert pstream(["decrypt", str(out / "encrypted"), "--keys", str(keys), "--contract", str(contract),
                    "-o", str(decrypted)]) == 0
    back = {e["id"]: e for e in map(json.loads, decrypted.read_text().splitlines())}
    for original in EVENTS:
        restored = {k: v for k, v in back[original["id"]].items() if k != "strmMeta"}
        assert restored == {k: v for k, v in original.items() if k != "consent"}
