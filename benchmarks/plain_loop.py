"""The baseline: the batch job's work as the fastest plain Python loop we could write, on its own code.

    from benchmarks.plain_loop import run_plain_loop
    counts = run_plain_loop("in.csv", "out/")     # {output name: events written}

Nothing here calls the project's functions (contracts/, privacy/, transforms/): the loop is what
a developer would write by hand for the web shop contract, so the benchmark's ratio says how far
the Beam graph is from what the work costs, not how much Beam adds over the same slow code.
The work is the graph's, field for field:

- read the CSV (``csv.reader``), convert each column to the contract's type (integers, the
  ``items`` list, the UTC ``date`` to epoch milliseconds, ``purposeConsent`` to consent levels),
  check it (required fields, types, the ``tshirtSize`` regex); a row that fails is a dead letter
  with its ``file:line``;
- one AES-SIV data key (``cryptography``'s ``AESSIV``, Tink's wire format: ``0x01 || key id ||
  SIV || ciphertext``, base64) per (userId, UTC day), wrapped by an AES-256-GCM KEK with the
  keyLink as associated data, and persisted in batches of 10,000 events to a SQLite key store
  (insert-if-absent on (HMAC of the value, day): look up, insert with ``INSERT OR IGNORE``, adopt
  the winner of a race), with the keyed hash of the data subject; commits are durable
  (``synchronous=FULL``, as the project's store: a key that encrypted output must survive a power
  loss);
- the 5 PII fields encrypted; the encrypted event, its key row and two privacy streams written
  as JSONL with orjson: webshop-1 (consent >= 1, userId readable and then masked with
  HMAC-SHA-256 under the stream's stored masking key) and webshop-2 (consent >= 2, every field
  readable). The loop holds each event's plaintext, so the streams use it instead of decrypting
  again: the fastest honest way (the graph's streams stage decrypts, since it is a stage of its own).

``run_batches`` is the part the PySpark variant (``benchmarks.spark_job``) runs per partition.
Output layout: ``<out>/encrypted/part-N.jsonl``, ``streams/<name>/``, ``keys/``, ``dead_letter/``;
the KEK is ``<out>/kek.bin`` (32 raw bytes, owner-only), the store ``<out>/keystore.sqlite``.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import os
import re
import secrets
import sqlite3
import time
import uuid
from datetime import date

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV

CONTRACT_REF = "strmprivacy/PrivacyEngineeringWorkshop/1.0.0"
PII = ("userId", "email", "fullName", "phoneNumber", "address")  # userId level 1, the rest level 2
LEVEL_2 = ("email", "fullName", "phoneNumber", "address")
STRINGS = ("transactionId", "userId", "email", "tshirtSize", "fullName", "phoneNumber", "address", "date")
INTEGERS = ("age", "transactionAmount", "totalItems", "purposeConsent")
REQUIRED = ("transactionId", "userId")
TSHIRT = re.compile(r"^(XS|S|M|L|XL)$")
BATCH = 10_000
DAY_MS = 86_400_000
RETENTION_MS = 2556 * DAY_MS
_EMPTY_AD = [b""]
_EPOCH = date(1970, 1, 1)


def private_dir(path: str) -> str:
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def _private_open(path: str, mode: str = "wb"):
    return open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), mode)


def open_kek(out: str) -> AESGCM:
    """The run's KEK: created on first use (owner-only), else read."""
    path = os.path.join(out, "kek.bin")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        with open(path, "rb") as handle:
            return AESGCM(handle.read())
    with open(fd, "wb") as handle:
        handle.write(secrets.token_bytes(32))
    return open_kek(out)


class KeyStore:
    """Wrapped data keys in SQLite, unique on (value hash, day); safe for several writers."""

    def __init__(self, path: str, kek: AESGCM):
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # durable commits, as the project's key store (a used key must survive)
        self.db.executescript(
            "CREATE TABLE IF NOT EXISTS keys (key_link TEXT PRIMARY KEY, value_hash TEXT NOT NULL, day TEXT NOT NULL,"
            " key_id INTEGER NOT NULL, wrapped BLOB NOT NULL, subject_hash TEXT, created_at INTEGER, expires_at INTEGER,"
            " UNIQUE (value_hash, day));"
            "CREATE TABLE IF NOT EXISTS named_keys (name TEXT PRIMARY KEY, wrapped BLOB NOT NULL);")
        self.kek = kek
        self.lookup_key = self.named_key("lookup")

    def named_key(self, name: str) -> bytes:
        nonce = secrets.token_bytes(12)
        wrapped = nonce + self.kek.encrypt(nonce, secrets.token_bytes(32), name.encode())
        self.db.execute("INSERT OR IGNORE INTO named_keys VALUES (?, ?)", (name, wrapped))
        stored = self.db.execute("SELECT wrapped FROM named_keys WHERE name = ?", (name,)).fetchone()[0]
        return self.kek.decrypt(stored[:12], stored[12:], name.encode())

    def unwrap(self, link: str, wrapped: bytes) -> bytes:
        return self.kek.decrypt(wrapped[:12], wrapped[12:], link.encode())

    def _select(self, hashed: list[tuple[str, str]]) -> dict:
        found = {}
        for start in range(0, len(hashed), 400):
            chunk = hashed[start:start + 400]
            where = " OR ".join(["(value_hash = ? AND day = ?)"] * len(chunk))
            args = [x for pair in chunk for x in pair]
            for value_hash, day, link, key_id, wrapped in self.db.execute(
                    f"SELECT value_hash, day, key_link, key_id, wrapped FROM keys WHERE {where}", args):
                found[(value_hash, day)] = (link, key_id, wrapped)
        return found

    def resolve(self, missing: dict[tuple[str, str], str]) -> tuple[dict, list]:
        """Keys for (value, day) -> subject: {(value, day): (keyLink, AESSIV, prefix)}, new key rows."""
        mac = hmac.new(self.lookup_key, digestmod="sha256")
        hashes = {}
        for pair in missing:
            h = mac.copy()
            h.update(pair[0].encode())
            hashes[pair] = h.hexdigest()
        keys, rows = {}, []
        stored = self._select([(hashes[p], p[1]) for p in missing])
        fresh = []
        now = int(time.time() * 1000)
        for pair, subject in missing.items():
            hit = stored.get((hashes[pair], pair[1]))
            if hit:
                link, key_id, wrapped = hit
                keys[pair] = (link, AESSIV(self.unwrap(link, wrapped)), b"\x01" + key_id.to_bytes(4, "big"))
                continue
            raw = secrets.token_bytes(68)
            key_id, material, link = int.from_bytes(raw[:4], "big") or 1, raw[4:], str(uuid.uuid4())
            nonce = secrets.token_bytes(12)
            wrapped = nonce + self.kek.encrypt(nonce, material, link.encode())
            h = mac.copy()
            h.update(b"subject:" + subject.encode())
            day_ms = (date.fromisoformat(pair[1]) - _EPOCH).days * DAY_MS
            fresh.append((link, hashes[pair], pair[1], key_id, wrapped, h.hexdigest(), now, day_ms + RETENTION_MS))
            keys[pair] = (link, AESSIV(material), b"\x01" + key_id.to_bytes(4, "big"))
        if fresh:
            self.db.execute("BEGIN IMMEDIATE")
            before = self.db.total_changes
            self.db.executemany("INSERT OR IGNORE INTO keys VALUES (?, ?, ?, ?, ?, ?, ?, ?)", fresh)
            lost = len(fresh) - (self.db.total_changes - before)
            self.db.execute("COMMIT")
            if lost:  # another writer made some of these keys first: adopt its keys
                winners = self._select([(row[1], row[2]) for row in fresh])
                by_hash = {(hashes[p], p[1]): p for p in missing}
                mine = {row[0] for row in fresh}
                for hashed, (link, key_id, wrapped) in winners.items():
                    if link not in mine:
                        keys[by_hash[hashed]] = (link, AESSIV(self.unwrap(link, wrapped)),
                                                 b"\x01" + key_id.to_bytes(4, "big"))
                fresh = [row for row in fresh if winners[(row[1], row[2])][0] == row[0]]
            for link, value_hash, day, key_id, wrapped, subject_hash, created, expires in fresh:
                rows.append({"keyLink": link, "keyId": key_id, "keyFieldHash": value_hash, "day": day,
                             "dataSubjectHashes": [subject_hash], "wrappedKey": base64.b64encode(wrapped).decode(),
                             "policyId": "", "createdAt": created, "expiresAt": expires})
        return keys, rows


class Outputs:
    """One JSONL part file per output of one writer (the loop, or one Spark partition)."""

    NAMES = ("encrypted", "streams/webshop-1", "streams/webshop-2", "keys", "dead_letter")

    def __init__(self, out: str, part: int):
        self.files = {}
        for name in self.NAMES:
            directory = private_dir(os.path.join(out, name))
            self.files[name] = _private_open(os.path.join(directory, f"part-{part}.jsonl"))
        self.counts = dict.fromkeys(self.NAMES, 0)

    def close(self):
        for handle in self.files.values():
            handle.close()


def convert(row: list[str], header: dict[str, int], day_ms: dict) -> dict | str:
    """A CSV row -> the event (strmMeta and typed fields), or the reason it is refused."""
    event = {}
    for name in STRINGS:
        event[name] = row[header[name]] or None
    for name in REQUIRED:
        if event[name] is None:
            return f"field '{name}': is required"
    for name in INTEGERS:
        text = row[header[name]]
        if text:
            try:
                event[name] = int(text)
            except ValueError:
                return f"field '{name}': is not an INTEGER"
        else:
            event[name] = None
    items = row[header["items"]]
    try:
        parsed = orjson.loads(items) if items else None
    except orjson.JSONDecodeError:
        return "field 'items': is not a list of INTEGER"
    if parsed is not None and (parsed.__class__ is not list or any(i.__class__ is not int for i in parsed)):
        return "field 'items': is not a list of INTEGER"
    event["items"] = parsed
    size = event["tshirtSize"]
    if size is not None and not TSHIRT.match(size):
        return "field 'tshirtSize': does not match ^(XS|S|M|L|XL)$"
    stamp = event["date"]
    if stamp is None or len(stamp) != 19 or stamp[10] != " ":
        return "field 'date': is not a time 'yyyy-MM-dd HH:mm:ss'"
    day = stamp[:10]
    start = day_ms.get(day)
    try:
        if start is None:
            start = day_ms[day] = (date.fromisoformat(day) - _EPOCH).days * DAY_MS
        millis = start + (int(stamp[11:13]) * 3600 + int(stamp[14:16]) * 60 + int(stamp[17:19])) * 1000
    except ValueError:
        return "field 'date': is not a time 'yyyy-MM-dd HH:mm:ss'"
    consent = event["purposeConsent"]
    event["strmMeta"] = {"eventContractRef": CONTRACT_REF, "nonce": secrets.randbits(31), "timestamp": millis,
                         "keyLink": None, "billingId": None, "consentLevels": [] if consent is None else [consent]}
    return event


def run_batches(rows, path: str, out: str, part: int, store_path: str) -> dict[str, int]:
    """Convert, check, encrypt and write ``rows`` ((line number, CSV values) after the header row,
    whose values come first as ``(1, header)``); returns the counts."""
    kek = open_kek(out)
    store = KeyStore(store_path, kek)
    mask_key = store.named_key("mask/webshop-1")
    mask_mac = hmac.new(mask_key, digestmod="sha256")
    outputs = Outputs(out, part)
    files, counts = outputs.files, outputs.counts
    encrypted_out, s1_out, s2_out, keys_out, dead_out = (files[n] for n in Outputs.NAMES)
    dumps = orjson.dumps
    b64 = base64.b64encode
    keys: dict[tuple[str, str], tuple] = {}
    day_ms: dict[str, int] = {}
    header = None
    rows_read = valid = 0
    pending: list[dict] = []

    def flush(events: list[dict]) -> None:
        missing = {}
        for event in events:
            pair = (event["userId"], event["date"][:10])
            if pair not in keys and pair not in missing:
                missing[pair] = event["userId"]
        if missing:
            found, new_rows = store.resolve(missing)
            keys.update(found)
            for row in new_rows:
                row["kekUri"] = f"raw://{out}/kek.bin"
                keys_out.write(dumps(row) + b"\n")
            counts["keys"] += len(new_rows)
        n1 = n2 = 0
        for event in events:
            link, siv, prefix = keys[(event["userId"], event["date"][:10])]
            encrypted = dict(event)
            for name in PII:
                value = event[name]
                if value is not None:
                    encrypted[name] = b64(prefix + siv.encrypt(value.encode(), _EMPTY_AD)).decode()
            meta = encrypted["strmMeta"] = {**event["strmMeta"], "keyLink": link}
            encrypted_out.write(dumps(encrypted) + b"\n")
            consent = meta["consentLevels"]
            if consent and max(consent) >= 1:
                stream = dict(encrypted)
                mac = mask_mac.copy()
                mac.update(event["userId"].encode())
                stream["userId"] = mac.hexdigest()
                s1_out.write(dumps(stream) + b"\n")
                n1 += 1
                if max(consent) >= 2:
                    event["strmMeta"] = meta
                    s2_out.write(dumps(event) + b"\n")
                    n2 += 1
        counts["encrypted"] += len(events)
        counts["streams/webshop-1"] += n1
        counts["streams/webshop-2"] += n2

    for line, values in rows:
        if header is None:
            header = {name: i for i, name in enumerate(values)}
            width = len(values)
            continue
        rows_read += 1
        if len(values) != width:
            event = f"row has {len(values)} columns, the header has {width}"
        else:
            event = convert(values, header, day_ms)
        if event.__class__ is str:
            dead_out.write(dumps({"position": f"{path}:{line}", "stage": "read", "reason": event,
                                  "contract": CONTRACT_REF}) + b"\n")
            counts["dead_letter"] += 1
            continue
        valid += 1
        pending.append(event)
        if len(pending) >= BATCH:
            flush(pending)
            pending = []
    if pending:
        flush(pending)
    outputs.close()
    store.db.close()
    return {"rows_read": rows_read, "valid": valid, **counts}


def numbered_rows(text):
    """(line number, values) of a CSV text stream (records may span lines)."""
    reader = csv.reader(text)
    line = 0
    for values in reader:
        yield line + 1, values
        line = reader.line_num


def run_plain_loop(input_path: str, out: str) -> dict[str, int]:
    """The whole job on one CSV file, in this process; returns {output name: events written}."""
    private_dir(out)
    with open(input_path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        return run_batches(numbered_rows(text), input_path, out, 0, os.path.join(out, "keystore.sqlite"))
