"""Masking: keyed HMAC-SHA-256 by default, the reference's MurmurHash3 by name; brute force shows which is which."""
from __future__ import annotations

import hashlib
import hmac
import random

import mmh3
import pytest

from cli.jsonl_files import read_jsonl
from pipelines.config import ConfigError, load_config
from pipelines.run import run
from privacy.kek import LocalKek
from privacy.keystore import open_key_store
from privacy.masking import HMAC_SHA256, MURMUR3, hmac_mask, masker, murmur3_mask
from privacy.streams import StreamSpec
from pipeline_runs import write_rows

SEED = 1673808342  # the seed the web shop config used to publish
ID_SPACE = 10**5


def test_murmur3_is_the_references_hash_and_hmac_is_keyed():
    assert int(murmur3_mask("abc", 42), 16) == mmh3.hash128(b"abc", 42, signed=False)
    assert len(murmur3_mask("x", 0)) == 32 and murmur3_mask("x", 1) != murmur3_mask("x", 2)
    key = b"k" * 32
    assert hmac_mask("477049", key) == hmac.new(key, b"477049", "sha256").hexdigest()
    assert hmac_mask("477049", key) != hmac_mask("477049", b"j" * 32) and len(hmac_mask("x", key)) == 64
    assert masker(HMAC_SHA256, key=key)(42) == hmac_mask("42", key)  # values that are not text: their str()
    assert masker(MURMUR3, seed=7)("a") == murmur3_mask("a", 7)
    with pytest.raises(ValueError, match="masking key"):
        masker(HMAC_SHA256)
    with pytest.raises(ValueError, match="mask hash 'md5'"):
        masker("md5", key=key)


def test_stream_specs_mask_with_a_key_unless_murmur3_is_named():
    keyed = StreamSpec.cumulative("s-1", 1, ["userId"])
    assert keyed.mask_hash == HMAC_SHA256 and keyed.mask_seed is None
    reference = StreamSpec.cumulative("s-2", 1, ["userId"], mask_hash=MURMUR3)
    assert reference.mask_hash == MURMUR3 and 0 <= reference.mask_seed < 2**31  # a seed made when none is given
    with pytest.raises(ValueError, match="mask_seed is the seed of murmur3"):
        StreamSpec.cumulative("s-3", 1, ["userId"], mask_seed=5)
    with pytest.raises(ValueError, match="mask hash 'sha1'"):
        StreamSpec.granular("s-4", [1], ["userId"], mask_hash="sha1")


def test_config_names_the_hash_and_refuses_a_seed_without_murmur3(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("contract: strmprivacy/PrivacyEngineeringWorkshop/1.0.0\nstreams:\n"
                      "  - {name: a-1, cumulative: 1, mask: [userId], mask_seed: 3}\n")
    with pytest.raises(ConfigError, match="mask_seed is the seed of murmur3"):
        load_config(str(config))
    config.write_text("contract: strmprivacy/PrivacyEngineeringWorkshop/1.0.0\nstreams:\n"
                      "  - {name: a-1, cumulative: 1, mask: [userId], mask_hash: murmur3, mask_seed: 3}\n"
                      "  - {name: b-1, cumulative: 1, mask: [userId]}\n")
    assert [(s.mask_hash, s.mask_seed) for s in load_config(str(config)).streams] == [(MURMUR3, 3), (HMAC_SHA256, None)]
    assert [s.mask_hash for s in load_config().streams if s.masked_fields] == [HMAC_SHA256]  # the default example


def test_brute_force_over_the_id_space_recovers_nothing_without_the_key(tmp_path):
    """Two privacy streams of one run mask userId: keyed (the default) and murmur3 by name. Trying every id
    of the id space reverses the murmur3 stream; without the masking key, the keyed one gives nothing."""
    rng = random.Random(5)
    users = [str(n) for n in rng.sample(range(ID_SPACE), 40)]
    rows = [{"transactionId": str(100000 + i), "userId": users[i % len(users)], "purposeConsent": "1",
             "date": f"2024-03-{1 + i % 3:02d} 10:00:00"} for i in range(200)]
    write_rows(tmp_path / "in.csv", rows)
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""name: shop
contract: strmprivacy/PrivacyEngineeringWorkshop/1.0.0
input: {{consent: {{field: purposeConsent}}, timestamp: {{field: date, format: "yyyy-MM-dd HH:mm:ss"}}}}
streams:
  - {{name: keyed-1, cumulative: 1, mask: [userId]}}
  - {{name: reference-1, cumulative: 1, mask: [userId], mask_hash: murmur3, mask_seed: {SEED}}}
""")
    out = tmp_path / "out"
    assert run(["--config", str(config), "--input", str(tmp_path / "in.csv"), "--output", str(out)],
               echo=lambda line: None) == 0
    truth = {r["transactionId"]: r["userId"] for r in rows}
    keyed = {e["transactionId"]: e["userId"] for _, _, e in read_jsonl([str(out / "streams" / "keyed-1")])}
    reference = {e["transactionId"]: e["userId"] for _, _, e in read_jsonl([str(out / "streams" / "reference-1")])}
    assert len(keyed) == len(reference) == len(rows)

    # Without the key: every id of the space under the reference's hash and seed, unkeyed SHA-256, and
    # HMAC-SHA-256 under guessable keys.
    table = {}
    for n in range(ID_SPACE):
        text = str(n)
        for digest in (murmur3_mask(text, SEED), hashlib.sha256(text.encode()).hexdigest(),
                       hmac_mask(text, b"\0" * 32), hmac_mask(text, str(SEED).encode().ljust(16, b"\0"))):
            table[digest] = text

    def brute_force(masked: dict) -> dict:
        return {tx: table[value] for tx, value in masked.items() if value in table}

    assert brute_force(reference) == truth  # murmur3 by name: every event re-identified
    assert brute_force(keyed) == {}  # keyed: nothing
    # the keyed values are HMAC-SHA-256 of the ids under the stream's key from the key store (KEK-wrapped)
    key = open_key_store(out / "keystore.sqlite").store_key("mask/keyed-1", LocalKek(out / "kek.json"))
    assert key not in (out / "keystore.sqlite").read_bytes()  # stored wrapped only
    assert {tx: value for tx, value in keyed.items()} == {tx: hmac_mask(user, key) for tx, user in truth.items()}
    print(f"brute force over {ID_SPACE:,} ids: murmur3 {len(brute_force(reference))}/{len(rows)} "
          f"events re-identified, keyed HMAC-SHA-256 0/{len(rows)}")
