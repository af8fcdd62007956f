"""The streaming graph under TestStream (DirectRunner), compared with a batch run of the same input.

- Streaming and batch runs of the same events produce the same set of events in every output
  (each run has its own key store, so ciphertexts are compared after decrypting with that run's
  keys, and keyLinks as the (key-field value, UTC day) they name).
- One file per export window and output, named ``<window start>-stream-<uuid>---0.jsonl``;
  none for a window without events.
- The key of a key-field value is the same across export windows of one UTC day and changes
  at midnight UTC.
- Events late within the allowed lateness are exported with their window; later ones become
  dead letters of stage ``export``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream as EventStream

from cli.jsonl_files import read_jsonl
from contracts import load_contract
from pipelines.graph import build_batch_graph
from privacy.daead import DecryptError
from privacy.keyring import KeyRing
from privacy.masking import hmac_mask
from stream_events import EVENTS, FILE, WEBSHOP, at, config_for, in_windows, message, run_streaming, shop_event

def normalized(root: Path, folder: str) -> list[str]:
    """An output's events with ciphertexts decrypted by the run's own keys, keyLinks resolved and masked
    ids named (each run's store has its own masking keys)."""
    ring = KeyRing.shared(f"sqlite://{root / 'keys.sqlite'}", f"local://{root / 'kek.json'}")
    pii = list(load_contract(WEBSHOP).pii)
    masked = {}
    if folder.startswith("streams/"):
        key = ring.masking_key(folder.split("/")[1])
        masked = {hmac_mask(u, key): f"masked {u}" for u in set(known_ids(ring).values())}
    rows = []
    for _, _, event in read_jsonl([str(root / "out" / folder)]):
        meta = event.get("strmMeta")
        if meta and meta.get("keyLink"):
            record = ring.store.by_links([meta["keyLink"]])[meta["keyLink"]]
            key = ring.key_for_link(meta["keyLink"])
            event = {**event, "strmMeta": {**meta, "keyLink": [known_ids(ring)[record.value_hash], record.day]}}
            for path in pii:
                try:
                    event[path] = key.decrypt(event[path])
                except (DecryptError, ValueError, TypeError):
                    pass  # masked or already plaintext
            if event.get("userId") in masked:
                event["userId"] = masked[event["userId"]]
        rows.append(json.dumps(event, sort_keys=True))
    return sorted(rows)


def known_ids(ring) -> dict[str, str]:
    """{hash: id} for the user ids of EVENTS, as value and as subject hashes under the ring's look-up key
    (each run's store has its own look-up key, so runs compare ids, not hashes)."""
    users = {e.get("userId") for e in EVENTS if isinstance(e, dict) and isinstance(e.get("userId"), str)}
    return {h: u for u in users for h in (ring.ids.value_hash(u), ring.ids.subject_hash(u))}


def key_pairs(root: Path) -> list[tuple]:
    ids = known_ids(KeyRing.shared(f"sqlite://{root / 'keys.sqlite'}", f"local://{root / 'kek.json'}"))
    return sorted((ids[k["keyFieldHash"]], k["day"], tuple(sorted(ids[h] for h in k["dataSubjectHashes"])))
                  for _, _, k in read_jsonl([str(root / "out" / "keys")]))


def dead_letters(root: Path) -> list[tuple]:
    return sorted((d["position"], d["stage"], d["reason"]) for _, _, d in read_jsonl([str(root / "out" / "dead_letter")]))


def test_streaming_and_batch_runs_give_the_same_events_in_every_output(tmp_path):
    input_path = tmp_path / "events.jsonl"
    input_path.write_text("".join(json.dumps(e) + "\n" for e in EVENTS))
    positions = [(f"{input_path}:{i}", event) for i, event in enumerate(EVENTS, start=1)]

    batch_root = tmp_path / "batch"
    batch_config = config_for(batch_root)
    batch_config.input_path, batch_config.input_format = str(input_path), "jsonl"
    with TestPipeline(runner="FnApiRunner") as p:
        build_batch_graph(p, batch_config)

    stream_root = tmp_path / "stream"
    minute = [at(f"2024-03-{t}") / 1000 for t in ("09 23:58:00", "10 00:00:00", "10 00:01:00", "10 00:03:00")]
    run_streaming(stream_root, in_windows(positions, minute))

    for folder in ("encrypted", "streams/webshop-1", "streams/webshop-2"):
        streamed, batched = normalized(stream_root, folder), normalized(batch_root, folder)
        assert streamed == batched, folder
        assert streamed, folder
    assert len(normalized(stream_root, "encrypted")) == 6
    assert key_pairs(stream_root) == key_pairs(batch_root) == [
        ("u1", "2024-03-09", ("u1",)), ("u1", "2024-03-10", ("u1",)),
        ("u2", "2024-03-09", ("u2",)), ("u2", "2024-03-10", ("u2",))]
    assert dead_letters(stream_root) == dead_letters(batch_root)
    assert [d[0] for d in dead_letters(stream_root)] == [f"{input_path}:4", f"{input_path}:8"]


def test_one_file_per_window_and_keys_by_utc_day_not_by_window(tmp_path):
    positions = [(f"m:{i}", event) for i, event in enumerate(EVENTS, start=1)]
    out = run_streaming(tmp_path, in_windows(positions, [at("2024-03-10 00:01:00") / 1000]))
    names = sorted(p.name for p in (out / "encrypted").iterdir())
    assert all(FILE.match(name) for name in names), names
    # events in windows 23:57, 23:59, 00:00 and 00:02; none in 23:58 and 00:01: no file for those
    assert [FILE.match(n).group(1) for n in names] == [
        "2024-03-09T23:57:00", "2024-03-09T23:59:00", "2024-03-10T00:00:00", "2024-03-10T00:02:00"]
    assert len({re.search(r"-stream-(.*)---", n).group(1) for n in names}) == 1   # one run uuid
    by_tx = {e["transactionId"]: e for _, _, e in read_jsonl([str(out / "encrypted")])}
    link = {tx: e["strmMeta"]["keyLink"] for tx, e in by_tx.items()}
    assert link["1"] == link["3"]             # u1, 23:57 and 23:59 windows, one UTC day: one key
    assert link["5"] == link["7"]             # u1, next day, windows 00:00 and 00:02
    assert link["1"] != link["5"]             # midnight UTC: a new key
    assert link["2"] != link["6"] and link["1"] != link["2"]
    assert by_tx["1"]["email"][:8] == by_tx["3"]["email"][:8]   # same Tink key id prefix
    # privacy streams and keys are windowed too
    assert all(FILE.match(p.name) for p in (out / "streams" / "webshop-1").iterdir())
    assert {FILE.match(p.name).group(2) for p in (out / "keys").iterdir()} == {"keys"}


def test_late_events_within_lateness_are_exported_and_later_ones_are_dead_letters(tmp_path):
    on_time = shop_event(1, "u1", "2024-03-09 23:57:10", [1, 2])
    late_ok = shop_event(2, "u2", "2024-03-09 23:57:20", [1])       # arrives 40 s after 23:58:00
    too_late = shop_event(3, "u1", "2024-03-09 23:57:30", [1, 2])   # arrives after 23:58:00 + 60 s
    later = shop_event(4, "u2", "2024-03-09 23:59:10", [1])
    stream = (EventStream()
              .advance_watermark_to(at("2024-03-09 23:57:00") / 1000)
              .add_elements([message("m:1", on_time)])
              .advance_watermark_to(at("2024-03-09 23:58:40") / 1000)   # window ended 40 s ago
              .add_elements([message("m:2", late_ok)])
              .advance_watermark_to(at("2024-03-09 23:59:05") / 1000)   # 23:58:00 + 60 s lateness passed
              .add_elements([message("m:3", too_late), message("m:4", later)])
              .advance_watermark_to_infinity())
    out = run_streaming(tmp_path, stream, flags=["--allowed_lateness=60"])
    files = {FILE.match(p.name).group(1): sorted(e["transactionId"] for _, _, e in read_jsonl([str(p)]))
             for p in (out / "encrypted").iterdir()}
    assert files == {"2024-03-09T23:57:00": ["1", "2"], "2024-03-09T23:59:00": ["4"]}
    late_rows = [d for _, _, d in read_jsonl([str(out / "dead_letter")]) if d["stage"] == "export"]
    # one dead letter per output the late event would have reached: encrypted, webshop-1, webshop-2
    assert sorted(d["reason"].split(":")[0] for d in late_rows) == ["encrypted", "streams/webshop-1",
                                                                     "streams/webshop-2"]
    assert {d["position"] for d in late_rows} == {"nonce:1003"}
    assert all("too late for export window 2024-03-09T23:57:00" in d["reason"] for d in late_rows)
    assert all("u1" not in json.dumps(d) for d in late_rows)   # no values, only the position
