"""The streaming graph under TestStream (DirectRunner), compared with a batch run of the same input.

- Streaming and batch runs of the same events produce the same set of events in every output
  (each run has its own key store, so ciphertexts are compared after decrypting with that run's
  keys, and keyLinks as the (key-field value, UTC day) they name).
- One file per export window and output, named ``<window start>-stream-<uuid>---0.jsonl``;
  none for a window without events.
- The key of a key-field value is the same across export windows of one UTC day and changes
  at midnight UTC.
- One late-data decision per event: an event late within the allowed lateness is in its window's
  file of every output it belongs to; a later one is in none of them and is exactly one dead
  letter (stage ``export``, naming the outputs), whether or not its window had events, and for
  any output. A late invalid event is one dead letter of validation. A too-late event creates no
  key, so keys/ holds every key the encrypted output uses.
- keys/ and dead_letter/ are written in processing-time batches: never too late.
- ``pipelines.streaming.summarize`` reports too-late events per output from the files (the
  DirectRunner loses counters).
- The adversarial day of issue 16: 238 messages, every count checked, against a batch run.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.test_stream import TestStream as EventStream

from apache_beam.transforms.window import TimestampedValue

from cli.jsonl_files import read_jsonl
from cli.main import main as pstream
from contracts import load_contract
from pipelines.graph import build_batch_graph
from pipelines.streaming import main as streaming_main
from pipelines.streaming import summarize
from privacy.daead import DecryptError
from privacy.keyring import KeyRing
from privacy.masking import hmac_mask
from stream_events import EVENTS, FILE, WEBSHOP, at, config_for, in_windows, message, run_streaming, shop_event


def normalized(root: Path, folder: str, users=None) -> list[str]:
    """An output's events with ciphertexts decrypted by the run's own keys, keyLinks resolved and masked
    ids named (each run's store has its own masking keys); ids are those of EVENTS (or ``users``)."""
    ring = KeyRing.shared(f"sqlite://{root / 'keys.sqlite'}", f"local://{root / 'kek.json'}")
    pii = list(load_contract(WEBSHOP).pii)
    masked = {}
    if folder.startswith("streams/"):
        key = ring.masking_key(folder.split("/")[1])
        masked = {hmac_mask(u, key): f"masked {u}" for u in set(known_ids(ring, users).values())}
    rows = []
    for _, _, event in read_jsonl([str(root / "out" / folder)]):
        meta = event.get("strmMeta")
        if meta and meta.get("keyLink"):
            record = ring.store.by_links([meta["keyLink"]])[meta["keyLink"]]
            key = ring.key_for_link(meta["keyLink"])
            event = {**event, "strmMeta": {**meta, "keyLink": [known_ids(ring, users)[record.value_hash], record.day]}}
            for path in pii:
                try:
                    event[path] = key.decrypt(event[path])
                except (DecryptError, ValueError, TypeError):
                    pass  # masked or already plaintext
            if event.get("userId") in masked:
                event["userId"] = masked[event["userId"]]
        rows.append(json.dumps(event, sort_keys=True))
    return sorted(rows)


def known_ids(ring, users=None) -> dict[str, str]:
    """{hash: id} for the user ids of EVENTS (or ``users``), as value and as subject hashes under the
    ring's look-up key (each run's store has its own look-up key, so runs compare ids, not hashes)."""
    if users is None:
        users = {e.get("userId") for e in EVENTS if isinstance(e, dict) and isinstance(e.get("userId"), str)}
    return {h: u for u in users for h in (ring.ids.value_hash(u), ring.ids.subject_hash(u))}


def key_pairs(root: Path, users=None) -> list[tuple]:
    """The distinct keys in keys/ (a key may have more than one row: one per writer that first used it),
    as (user id, day, subject ids) for the user ids of EVENTS (or ``users``)."""
    ids = known_ids(KeyRing.shared(f"sqlite://{root / 'keys.sqlite'}", f"local://{root / 'kek.json'}"), users)
    return sorted({(ids[k["keyFieldHash"]], k["day"], tuple(sorted(ids[h] for h in k["dataSubjectHashes"])))
                   for _, _, k in read_jsonl([str(root / "out" / "keys")])})


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


def files_by_window(out: Path, folder: str) -> dict[str, list[str]]:
    """{window label: sorted transactionIds} of one output (every shard's file of a window together)."""
    windows: dict[str, list[str]] = {}
    for path in sorted((out / folder).iterdir()) if (out / folder).exists() else []:
        windows.setdefault(FILE.match(path.name).group(1), []).extend(e["transactionId"] for _, _, e in read_jsonl([str(path)]))
    return {label: sorted(ids) for label, ids in windows.items()}


def dead_letter_rows(out: Path) -> list[dict]:
    return [row for _, _, row in read_jsonl([str(out / "dead_letter")])]


def transaction_ids(out: Path, folder: str) -> list[str]:
    return sorted(e["transactionId"] for _, _, e in read_jsonl([str(out / folder)]))


def position_of(row: dict) -> str:
    """The message a too-late row names: its position once validation passes positions on (i10-rows), else the
    event's nonce, which these tests set to 1000 + the message number."""
    position = row["position"]
    return f"m:{int(position[len('nonce:'):]) - 1000}" if position.startswith("nonce:") else position


def seconds(text: str) -> float:
    return at(text) / 1000


ALL_OUTPUTS = ["encrypted", "streams/webshop-1", "streams/webshop-2"]


def test_an_event_late_within_lateness_is_exported_a_later_one_is_one_dead_letter_for_all_outputs(tmp_path):
    on_time = shop_event(1, "u1", "2024-03-09 23:57:10", [1, 2])
    late_ok = shop_event(2, "u2", "2024-03-09 23:57:20", [1])       # arrives 40 s after 23:58:00
    too_late = shop_event(3, "u1", "2024-03-09 23:57:30", [1, 2])   # arrives after 23:58:00 + 60 s
    later = shop_event(4, "u2", "2024-03-09 23:59:10", [1])
    stream = (EventStream()
              .advance_watermark_to(seconds("2024-03-09 23:57:00"))
              .add_elements([message("m:1", on_time)])
              .advance_watermark_to(seconds("2024-03-09 23:58:40"))   # window ended 40 s ago
              .add_elements([message("m:2", late_ok)])
              .advance_watermark_to(seconds("2024-03-09 23:59:05"))   # 23:58:00 + 60 s lateness passed
              .add_elements([message("m:3", too_late), message("m:4", later)])
              .advance_watermark_to_infinity())
    out = run_streaming(tmp_path, stream, flags=["--allowed_lateness=60"])
    assert files_by_window(out, "encrypted") == {"2024-03-09T23:57:00": ["1", "2"], "2024-03-09T23:59:00": ["4"]}
    assert files_by_window(out, "streams/webshop-2") == {"2024-03-09T23:57:00": ["1"]}
    [row] = dead_letter_rows(out)        # one row for the event, not one per output
    assert position_of(row) == "m:3" and row["stage"] == "export" and row["outputs"] == ALL_OUTPUTS
    assert row["window"] == "2024-03-09T23:57:00" and row["eventContractRef"] == WEBSHOP
    assert "too late for export window 2024-03-09T23:57:00 (+60 s)" in row["reason"]
    assert "u1" not in json.dumps(row)   # no values, only the position
    # too-late counts per output, read from the files (the DirectRunner loses counters)
    summary = {folder.split("/out/", 1)[1]: (rows, late) for folder, rows, late in summarize(str(out))}
    keys = summary.pop("keys/")
    assert summary == {"encrypted/": (3, 1), "streams/webshop-1/": (3, 1), "streams/webshop-2/": (1, 1),
                       "dead_letter/": (1, None)}
    assert keys[0] >= 2 and keys[1] is None and len(key_pairs(tmp_path)) == 2
    printed = []
    assert streaming_main(["summary", str(out)], echo=printed.append) == 0
    table = {line.split()[0].split("/out/", 1)[1]: line.split()[1:] for line in printed[1:]}
    assert table == {"encrypted/": ["3", "1"], "streams/webshop-1/": ["3", "1"], "streams/webshop-2/": ["1", "1"],
                     "keys/": [str(keys[0])], "dead_letter/": ["1"]}


def test_a_late_event_for_a_window_without_in_time_events_is_a_dead_letter_and_writes_no_file(tmp_path):
    stream = (EventStream()
              .advance_watermark_to(seconds("2024-03-09 23:57:00"))
              .add_elements([message("m:1", shop_event(1, "u1", "2024-03-09 23:57:10", [1, 2]))])
              .advance_watermark_to(seconds("2024-03-09 23:59:30"))
              .add_elements([message("m:2", shop_event(2, "u2", "2024-03-09 23:59:40", [2]))])
              .advance_watermark_to(seconds("2024-03-10 00:00:10"))   # 23:58 (no events) closed at 00:00:00
              .add_elements([message("m:3", shop_event(3, "u2", "2024-03-09 23:58:30", [1, 2]))])
              .advance_watermark_to_infinity())
    out = run_streaming(tmp_path, stream)
    for folder in ALL_OUTPUTS:
        assert "2024-03-09T23:58:00" not in files_by_window(out, folder), folder
        assert "3" not in transaction_ids(out, folder)
    assert files_by_window(out, "encrypted") == {"2024-03-09T23:57:00": ["1"], "2024-03-09T23:59:00": ["2"]}
    [row] = dead_letter_rows(out)
    assert (position_of(row), row["window"], row["outputs"]) == ("m:3", "2024-03-09T23:58:00", ALL_OUTPUTS)


def test_a_late_event_for_a_window_with_events_for_some_outputs_only_is_in_none_of_them(tmp_path):
    # window 23:57 has in-time events for encrypted/ and webshop-1 (consent 1), none for webshop-2
    in_time = [message(f"m:{n}", shop_event(n, "u1", f"2024-03-09 23:57:{10 * n}", [1])) for n in (1, 2)]
    late = shop_event(3, "u2", "2024-03-09 23:57:40", [1, 2])    # would be in all three
    stream = (EventStream()
              .advance_watermark_to(seconds("2024-03-09 23:57:00"))
              .add_elements(in_time)
              .advance_watermark_to(seconds("2024-03-09 23:59:10"))   # 23:57 closed at 23:59:00
              .add_elements([message("m:3", late)])
              .advance_watermark_to_infinity())
    out = run_streaming(tmp_path, stream)
    assert files_by_window(out, "encrypted") == files_by_window(out, "streams/webshop-1") == {
        "2024-03-09T23:57:00": ["1", "2"]}
    assert files_by_window(out, "streams/webshop-2") == {}   # not published where encrypted/ rejected it
    [row] = dead_letter_rows(out)
    assert position_of(row) == "m:3" and row["outputs"] == ALL_OUTPUTS


def test_when_the_first_event_of_a_customer_day_is_too_late_keys_still_decrypt_every_exported_event(tmp_path):
    first = shop_event(1, "u3", "2024-03-10 00:00:10", [1, 2])   # u3's first event of the day, too late
    others = [shop_event(2, "u1", "2024-03-10 00:00:20", [2]), shop_event(3, "u3", "2024-03-10 00:02:30", [1]),
              shop_event(4, "u3", "2024-03-10 00:03:10", [2])]
    stream = (EventStream()
              .advance_watermark_to(seconds("2024-03-10 00:00:00"))
              .add_elements([message("m:2", others[0])])
              .advance_watermark_to(seconds("2024-03-10 00:02:10"))   # 00:00 closed at 00:02:00
              .add_elements([message("m:1", first), message("m:3", others[1])])
              .advance_watermark_to(seconds("2024-03-10 00:03:00"))
              .add_elements([message("m:4", others[2])])
              .advance_watermark_to_infinity())
    out = run_streaming(tmp_path, stream)
    assert transaction_ids(out, "encrypted") == ["2", "3", "4"]
    assert [position_of(row) for row in dead_letter_rows(out)] == ["m:1"]
    assert key_pairs(tmp_path, {"u1", "u2", "u3"}) == [("u1", "2024-03-10", ("u1",)), ("u3", "2024-03-10", ("u3",))]
    keys_csv, decrypted = tmp_path / "keys.csv", tmp_path / "decrypted.jsonl"
    assert pstream(["keys", "export", str(out / "keys"), "--kek", f"local://{tmp_path / 'kek.json'}",
                    "-o", str(keys_csv)]) == 0
    assert pstream(["decrypt", str(out / "encrypted"), "--keys", str(keys_csv), "-o", str(decrypted)]) == 0
    plain = {e["transactionId"]: e for _, _, e in read_jsonl([str(decrypted)])}
    source = {e["transactionId"]: e for e in others}
    assert sorted(plain) == ["2", "3", "4"]
    for tx, event in plain.items():
        for field in ("userId", "email", "fullName", "phoneNumber", "address"):
            assert event[field] == source[tx][field], (tx, field)


def test_a_late_invalid_event_is_exactly_one_dead_letter(tmp_path):
    invalid = shop_event(2, "u2", "2024-03-09 23:57:20", [1], size="XXL")   # regex failure, and too late
    stream = (EventStream()
              .advance_watermark_to(seconds("2024-03-09 23:57:00"))
              .add_elements([message("m:1", shop_event(1, "u1", "2024-03-09 23:57:10", [1]))])
              .advance_watermark_to(seconds("2024-03-09 23:59:30"))
              .add_elements([message("m:2", invalid), message("m:3", shop_event(3, "u1", "2024-03-09 23:57:30", [1]))])
              .advance_watermark_to_infinity())
    out = run_streaming(tmp_path, stream)
    rows = sorted((position_of(row), row["stage"]) for row in dead_letter_rows(out))
    # the invalid one: its validation row (as in a batch run), no second one for lateness; the valid one: export
    assert rows == [("m:2", "validate"), ("m:3", "export")]
    assert transaction_ids(out, "encrypted") == ["1"]


# -- the adversarial day of issue 16 ----------------------------------------------------------------
DAY_START = seconds("2024-03-09 23:50:00")
WINDOWS = [DAY_START + 60 * i for i in range(20)]                # 23:50 .. 00:09
EMPTY = seconds("2024-03-10 00:04:00")                           # a window without in-time events
NO_WEBSHOP_2 = seconds("2024-03-09 23:55:00")                    # in-time events, none with consent 2
C3_DAY_2_FROM = seconds("2024-03-10 00:03:00")                   # c3's in-time events of 03-10 start here
CONSENTS = [[], [1], [1, 2], [2]]
STEP = 10                                                        # seconds between watermark steps


def _when(t: float) -> str:
    from datetime import datetime, timezone
    return datetime.fromtimestamp(t, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def adversarial_day():
    """238 messages: (arrival watermark, position, event or raw bytes), plus what each is expected to be."""
    messages, kinds = [], {}
    n = 0

    def add(arrival, event, kind, position=None):
        nonlocal n
        n += 1
        position = position or f"m:{n}"
        messages.append((arrival, position, event))
        kinds[position] = (kind, event)

    windows = [w for w in WINDOWS if w != EMPTY]
    for i in range(199):                                         # in time: ahead of the watermark
        window = windows[i % len(windows)]
        t = window + (i * 7) % 60
        customer = ["c1", "c2", "c3"][i % 3]
        if customer == "c3" and DAY_START + 600 <= t < C3_DAY_2_FROM:
            customer = "c1"
        consent = ([1] if i % 2 else []) if window == NO_WEBSHOP_2 else CONSENTS[i % 4]
        add(window + 30, shop_event(2000 + i, customer, _when(t), consent), "in time")   # in its window
    for j in range(28):                                          # 30-59 s after their window's end
        window = windows[(5 * j) % 15]
        t, lateness = window + 3 + j, 30 if j % 3 else 50
        customer = ["c1", "c2", "c3"][j % 3] if window < DAY_START + 600 else ["c1", "c2"][j % 2]
        consent = [1] if window == NO_WEBSHOP_2 else CONSENTS[j % 4]
        add(window + 60 + lateness, shop_event(3000 + j, customer, _when(t), consent), "late")
    too_late = [  # (window, seconds after its end, customer, consent): 61-250 s after the window's end
        (EMPTY, 70, "c1", [1, 2]), (NO_WEBSHOP_2, 90, "c2", [1, 2]), (DAY_START + 600, 90, "c3", [2]),
        (WINDOWS[1], 150, "c1", []), (WINDOWS[3], 210, "c2", [1]), (WINDOWS[12], 150, "c1", [2]),
        (WINDOWS[15], 250, "c2", [1])]
    for k, (window, lateness, customer, consent) in enumerate(too_late):
        add(window + 60 + lateness, shop_event(4000 + k, customer, _when(window + 20), consent), "too late")
    bad_size = shop_event(5000, "c1", _when(WINDOWS[2] + 5), [1], size="XXL")
    add(WINDOWS[2] + 30, bad_size, "invalid")                                           # in time, regex failure
    add(WINDOWS[6] + 30, {**shop_event(5001, "", _when(WINDOWS[6] + 5), [1]), "userId": ""}, "invalid")
    add(WINDOWS[8] + 30, b"{not json", "invalid")                                       # not an event at all
    add(WINDOWS[9] + 60 + 150, shop_event(5002, "c2", _when(WINDOWS[9] + 30), [2], size="XXL"), "invalid")
    return messages, kinds


def adversarial_stream(messages) -> EventStream:
    stream = EventStream()
    for step in range(int(DAY_START), int(DAY_START) + 23 * 60, STEP):
        stream = stream.advance_watermark_to(step)
        batch = [TimestampedValue((position, event if isinstance(event, bytes) else json.dumps(event).encode(), {}),
                                  (event["strmMeta"]["timestamp"] / 1000) if isinstance(event, dict) else arrival)
                 for arrival, position, event in messages if arrival == step]
        if batch:
            stream = stream.add_elements(batch)
    return stream.advance_watermark_to_infinity()


def test_the_adversarial_day(tmp_path):
    messages, kinds = adversarial_day()
    assert len(messages) == 238 and len({p for _, p, _ in messages}) == 238
    count = {kind: sum(1 for k, _ in kinds.values() if k == kind) for kind in ("in time", "late", "too late", "invalid")}
    assert count == {"in time": 199, "late": 28, "too late": 7, "invalid": 4}
    for arrival, _, event in messages:   # the schedule is what it claims: lateness after the window's end
        if isinstance(event, dict) and kinds[_][0] != "invalid":
            end = event["strmMeta"]["timestamp"] // 60_000 * 60 + 60
            lateness = arrival - end
            assert {"in time": lateness < 0, "late": 30 <= lateness <= 59,
                    "too late": 61 <= lateness <= 250}[kinds[_][0]]

    stream_root = tmp_path / "stream"
    out = run_streaming(stream_root, adversarial_stream(messages), flags=["--export_shards=2"])

    exported = {e["transactionId"]: e for k, e in kinds.values() if k in ("in time", "late")}
    rejected = {position: e for position, (k, e) in kinds.items() if k == "too late"}
    by_nonce = {f"nonce:{e['strmMeta']['nonce']}": position for position, e in rejected.items()}

    def message_of(row):   # a too-late row names its message, or (before i10-rows) its event's nonce
        return by_nonce.get(row["position"], row["position"])
    # every in-time and within-lateness event exactly once in encrypted/, no too-late one
    assert transaction_ids(out, "encrypted") == sorted(exported) and len(exported) == 227
    for name, level in (("streams/webshop-1", 1), ("streams/webshop-2", 2)):
        admitted = sorted(tx for tx, e in exported.items() if max(e["strmMeta"]["consentLevels"] or [0]) >= level)
        assert transaction_ids(out, name) == admitted, name
    # windows: one file per window and shard (two shards), none for the empty window; webshop-2 has no file
    # for 23:55, where in time only events without consent 2 came
    encrypted_windows = files_by_window(out, "encrypted")
    assert sorted(encrypted_windows) == [_when(w).replace(" ", "T") for w in WINDOWS if w != EMPTY]
    names = [p.name for p in (out / "encrypted").iterdir()]
    assert {FILE.match(n).group(3) for n in names} == {"0", "1"} and len(names) <= 2 * 19
    assert "2024-03-09T23:55:00" not in files_by_window(out, "streams/webshop-2")
    assert "2024-03-09T23:55:00" in files_by_window(out, "streams/webshop-1")
    assert not list(out.rglob(".temp-*"))
    # dead letters: exactly one per rejected input
    dead = dead_letter_rows(out)
    assert len(dead) == 11
    by_stage = {}
    for row in dead:
        by_stage.setdefault(row["stage"], []).append(message_of(row))
    assert sorted(by_stage["read"]) == [p for p, (k, e) in kinds.items() if isinstance(e, bytes)]
    assert sorted(by_stage["validate"]) == sorted(p for p, (k, e) in kinds.items()
                                                  if k == "invalid" and isinstance(e, dict))
    assert sorted(by_stage["export"]) == sorted(rejected)
    expected_outputs = {}
    for position, event in rejected.items():
        top = max(event["strmMeta"]["consentLevels"] or [0])
        expected_outputs[position] = ["encrypted"] + [f"streams/webshop-{level}" for level in (1, 2) if top >= level]
    assert {message_of(row): row["outputs"] for row in dead if row["stage"] == "export"} == expected_outputs
    late_windows = {row["window"] for row in dead if row["stage"] == "export"}
    assert {"2024-03-10T00:04:00", "2024-03-09T23:55:00", "2024-03-10T00:00:00"} <= late_windows
    # too-late counts per output, from the files
    summary = {folder.split("/out/", 1)[1]: (rows, late) for folder, rows, late in summarize(str(out))}
    assert summary["encrypted/"] == (227, 7)
    assert summary["streams/webshop-1/"][1] == 6 and summary["streams/webshop-2/"][1] == 4
    assert summary["keys/"][0] >= 6 and summary["dead_letter/"] == (11, None)
    # keys: one per (customer, UTC day), new at midnight; c3's first event of 03-10 was too late
    customers = {"c1", "c2", "c3"}
    assert key_pairs(stream_root, customers) == [(c, d, (c,)) for c in sorted(customers)
                                                 for d in ("2024-03-09", "2024-03-10")]
    links = {}
    for _, _, e in read_jsonl([str(out / "encrypted")]):
        links.setdefault((e["userId"][:8], e["strmMeta"]["timestamp"] >= at("2024-03-10 00:00:00")), set()).add(
            e["strmMeta"]["keyLink"])
    assert len({link for group in links.values() for link in group}) == 6
    # keys/ is complete: the exported keys decrypt every exported event
    keys_csv = tmp_path / "keys.csv"
    assert pstream(["keys", "export", str(out / "keys"), "--kek", f"local://{stream_root / 'kek.json'}",
                    "-o", str(keys_csv)]) == 0
    assert pstream(["decrypt", str(out / "encrypted"), "--keys", str(keys_csv), "-o", str(tmp_path / "d.jsonl")]) == 0
    plain = {e["transactionId"]: e for _, _, e in read_jsonl([str(tmp_path / "d.jsonl")])}
    assert sorted(plain) == sorted(exported)
    assert all(plain[tx]["email"] == exported[tx]["email"] for tx in exported)
    # the same events through a batch run: the same outputs
    input_path = tmp_path / "in_time.jsonl"
    input_path.write_text("".join(json.dumps(e) + "\n" for e in exported.values()))
    batch_root = tmp_path / "batch"
    batch_config = config_for(batch_root)
    batch_config.input_path, batch_config.input_format = str(input_path), "jsonl"
    with TestPipeline(runner="FnApiRunner") as p:
        build_batch_graph(p, batch_config)
    for folder in ALL_OUTPUTS:
        assert normalized(stream_root, folder, customers) == normalized(batch_root, folder, customers), folder
    assert key_pairs(stream_root, customers) == key_pairs(batch_root, customers)
