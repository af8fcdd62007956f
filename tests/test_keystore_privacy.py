"""The key store keeps no plaintext ids, and deleted keys leave no bytes behind (both backends).

What is read here is the storage itself: the SQLite file and its write-ahead log, and PostgreSQL's
table files under the server's data directory (``store_backends.pg_store_file_bytes``).
"""
from __future__ import annotations

import base64
import json
import sqlite3

import pytest

from cli.main import main as pstream
from privacy.kek import KekError, LocalKek
from privacy.keyring import KeyRing
from privacy.keystore import KeyStoreError, SqliteKeyStore, open_key_store
from privacy.lookup import LOOKUP_KEY, lookup_key
from store_backends import new_pg_uri, drop_pg, pg_available, pg_store_file_bytes, store_uri  # noqa: F401

DAYS = ("2024-03-01", "2024-03-02")
# Ids the pipeline accepts, which the reference's 4-100 printable ASCII rule refused (short ones with a
# character that hex, base64 and UUIDs never hold, so that finding them in the bytes means a leak).
ODD_IDS = ["a!c", "Zoë-Ünïcode-ünique-7", "x" * 150, "tab\there", "日本語のユーザー"]


def storage_bytes(store) -> bytes:
    if isinstance(store, SqliteKeyStore):
        return b"".join(p.read_bytes() for p in (store.path, store.path.with_name(store.path.name + "-wal"))
                        if p.exists())
    return pg_store_file_bytes(store)


def ring_with_keys(uri: str, kek_path, subjects: list[str]) -> KeyRing:
    ring = KeyRing(open_key_store(uri), LocalKek.create(kek_path))
    ring.keys_for({(s, day): {s} for s in subjects for day in DAYS})
    return ring


def test_the_store_holds_hashes_never_the_values_or_subject_ids(store_uri, tmp_path):
    subjects = [f"subject-{i:04d}@example.org" for i in range(40)] + ODD_IDS
    ring = ring_with_keys(store_uri, tmp_path / "kek.json", subjects)
    raw = storage_bytes(ring.store)
    for subject in subjects:
        assert subject.encode() not in raw
    # the reading is real: the hashes (and the wrapped keys) are there
    assert ring.ids.value_hash(subjects[0]).encode() in raw and ring.ids.subject_hash(subjects[0]).encode() in raw
    record = ring.store.keys_of_subjects([ring.ids.subject_hash(subjects[0])])[0]
    assert record.wrapped_key in raw
    # every look-up works by hash: the subject's two days, and nothing under the plaintext
    assert [r.day for r in ring.store.keys_of_subjects([ring.ids.subject_hash("日本語のユーザー")])] == list(DAYS)
    assert ring.store.keys_of_subjects(["日本語のユーザー"]) == []
    assert ring.ids.value_hash("abc") != ring.ids.subject_hash("abc")  # the two roles cannot be joined


def test_store_keys_are_made_once_per_store_and_open_only_with_its_kek(store_uri, tmp_path):
    kek = LocalKek.create(tmp_path / "kek.json")
    store = open_key_store(store_uri)
    first = store.store_key(LOOKUP_KEY, kek)
    assert len(first) == 32 and open_key_store(store_uri).store_key(LOOKUP_KEY, kek) == first
    assert store.store_key("mask/webshop-1", kek) not in (first, store.store_key("mask/webshop-2", kek))
    with pytest.raises(KekError, match="set up with another KEK"):
        lookup_key(open_key_store(store_uri), LocalKek.create(tmp_path / "other-kek.json"))


def test_sqlite_forget_leaves_no_wrapped_key_bytes_in_the_file_or_the_log(tmp_path):
    uri = f"sqlite://{tmp_path / 'keystore.sqlite'}"
    subjects = [f"user-{i}" for i in range(60)]
    ring = ring_with_keys(uri, tmp_path / "kek.json", subjects)
    store = ring.store
    assert store._db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    forgotten = store.keys_of_subjects([ring.ids.subject_hash("user-7")])
    kept = store.keys_of_subjects([ring.ids.subject_hash("user-8")])
    before = storage_bytes(store)
    assert all(r.wrapped_key in before for r in forgotten)  # the test can fail: the bytes are there now

    assert sorted(store.delete_subjects([ring.ids.subject_hash("user-7")])) == sorted(r.key_link for r in forgotten)
    after = storage_bytes(store)
    assert not any(r.wrapped_key in after for r in forgotten)
    assert all(r.wrapped_key in after for r in kept)
    assert store.residue() is None


def test_sqlite_a_reader_keeps_the_log_until_compact(tmp_path):
    uri = f"sqlite://{tmp_path / 'keystore.sqlite'}"
    ring = ring_with_keys(uri, tmp_path / "kek.json", [f"user-{i}" for i in range(20)])
    store = ring.store
    forgotten = store.keys_of_subjects([ring.ids.subject_hash("user-3")])
    reader = sqlite3.connect(store.path)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM data_keys").fetchone()  # an open read transaction pins the log
    store.delete_subjects([ring.ids.subject_hash("user-3")])
    assert "pstream keys compact" in store.residue()
    assert any(r.wrapped_key in storage_bytes(store) for r in forgotten)  # still in the log's old frames
    reader.execute("COMMIT")
    reader.close()
    assert store.compact()["complete"] and store.residue() is None
    assert not any(r.wrapped_key in storage_bytes(store) for r in forgotten)


def test_postgres_compaction_removes_the_deleted_rows_from_the_table_files(tmp_path, capsys):
    reason = pg_available()
    if reason:
        pytest.skip(reason)
    uri = new_pg_uri()
    try:
        subjects = [f"user-{i}" for i in range(80)]
        ring = ring_with_keys(uri, tmp_path / "kek.json", subjects)
        store = ring.store
        gone = [ring.ids.subject_hash(s) for s in ("user-5", "user-6")]
        forgotten = store.keys_of_subjects(gone)
        kept = store.keys_of_subjects([ring.ids.subject_hash("user-9")])
        assert len(forgotten) == 4
        store.delete_subjects(gone)
        assert "VACUUM FULL" in store.residue()
        before = pg_store_file_bytes(store)
        carved = [r for r in forgotten if r.wrapped_key in before]
        assert carved, "a DELETE leaves the rows' bytes in the table file (what compaction is for)"
        assert any(h.encode() in before for h in gone)

        assert pstream(["keys", "compact", "--key-store", uri]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"compacted {store.uri}: ")
        after = pg_store_file_bytes(store)
        assert not any(r.wrapped_key in after for r in forgotten)
        assert not any(h.encode() in after for h in gone)  # nor the subject hashes, in tables or indexes
        assert all(r.wrapped_key in after for r in kept)  # the live rows are still read from the new files
        print(f"PG compaction: {len(carved)}/{len(forgotten)} forgotten wrapped keys in the table files before, "
              f"0 after; {len(before):,} -> {len(after):,} bytes of files")
    finally:
        drop_pg(uri)


# -- stores of the previous version (plaintext values and subject ids) --------------------------
V1_SQLITE = """
CREATE TABLE data_keys (key_link TEXT PRIMARY KEY, key_field_value TEXT NOT NULL, day TEXT NOT NULL,
    key_id INTEGER NOT NULL, wrapped_key BLOB NOT NULL, kek_uri TEXT NOT NULL, policy_id TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL, UNIQUE (key_field_value, day));
CREATE TABLE key_subjects (subject TEXT NOT NULL,
    key_link TEXT NOT NULL REFERENCES data_keys (key_link) ON DELETE CASCADE, PRIMARY KEY (subject, key_link));
CREATE INDEX key_subjects_by_link ON key_subjects (key_link);
CREATE INDEX data_keys_by_expiry ON data_keys (expires_at);
CREATE TABLE policies (policy_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '', retention_days INTEGER NOT NULL,
    legal_grounds TEXT NOT NULL DEFAULT '', description TEXT NOT NULL DEFAULT '');
"""


def _v1_pg_sql(schema: str) -> list[str]:
    return [f'CREATE SCHEMA "{schema}"',
            f'''CREATE TABLE "{schema}".data_keys (key_link TEXT PRIMARY KEY, key_field_value TEXT NOT NULL,
                day DATE NOT NULL, key_id BIGINT NOT NULL, wrapped_key BYTEA NOT NULL, kek_uri TEXT NOT NULL,
                policy_id TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,
                CONSTRAINT data_keys_one_per_value_and_day UNIQUE (key_field_value, day))''',
            f'''CREATE TABLE "{schema}".key_subjects (subject TEXT NOT NULL, key_link TEXT NOT NULL
                REFERENCES "{schema}".data_keys (key_link) ON DELETE CASCADE, PRIMARY KEY (subject, key_link))''',
            f'CREATE INDEX key_subjects_by_link ON "{schema}".key_subjects (key_link)',
            f'CREATE INDEX data_keys_by_expiry ON "{schema}".data_keys (expires_at)',
            f'''CREATE TABLE "{schema}".policies (policy_id TEXT PRIMARY KEY, name TEXT NOT NULL DEFAULT '',
                retention_days INTEGER NOT NULL, legal_grounds TEXT NOT NULL DEFAULT '',
                description TEXT NOT NULL DEFAULT '')''']


V1_KEYS = [("link-1", "alice-value", "2024-03-01", ["alice"]), ("link-2", "alice-value", "2024-03-02", ["alice"]),
           ("link-3", "shared", "2024-03-01", ["alice", "bob"]), ("link-4", "bob-value", "2024-03-01", ["bob"])]


def _make_v1_store(uri: str, kek: LocalKek) -> None:
    rows = [(link, value, day, 7, kek.wrap(b"k" * 64, link.encode()), kek.uri, "", 1, 10**13)
            for link, value, day, _ in V1_KEYS]
    subjects = [(s, link) for link, _, _, names in V1_KEYS for s in names]
    if uri.startswith("sqlite://"):
        db = sqlite3.connect(uri[len("sqlite://"):])
        db.executescript(V1_SQLITE)
        db.executemany("INSERT INTO data_keys VALUES (?,?,?,?,?,?,?,?,?)", rows)
        db.executemany("INSERT INTO key_subjects VALUES (?,?)", subjects)
        db.commit()
        db.close()
        return
    from privacy.keystore_pg import connect, connection_options

    options, schema, _ = connection_options(uri)
    db = connect(options)
    for sql in _v1_pg_sql(schema):
        db.execute(sql)
    for row in rows:
        db.execute(f'INSERT INTO "{schema}".data_keys VALUES (%s, %s, CAST(%s AS date), %s, %s, %s, %s, %s, %s)', row)
    for subject, link in subjects:
        db.execute(f'INSERT INTO "{schema}".key_subjects VALUES (%s, %s)', (subject, link))
    db.close()


def test_a_store_of_the_previous_version_is_refused_then_migrated_with_its_key_rows(tmp_path, capsys):
    for uri in _v1_uris(tmp_path):
        kek_path = tmp_path / "kek.json"
        kek = LocalKek.create(kek_path)
        _make_v1_store(uri, kek)
        with pytest.raises(KeyStoreError, match=r"older pstream .* `pstream keys migrate --key-store"):
            open_key_store(uri)
        out = tmp_path / f"out-{uri.split(':')[0]}"
        (out / "keys" / ".temp-x").mkdir(parents=True)
        old_rows = [{"keyLink": link, "keyId": 7, "keyFieldValue": value, "day": day, "dataSubjects": names,
                     "wrappedKey": base64.b64encode(b"w").decode(), "kekUri": kek.uri, "policyId": "",
                     "createdAt": 1, "expiresAt": 10**13} for link, value, day, names in V1_KEYS]
        (out / "keys" / "part-0.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old_rows[:3]))
        (out / "keys" / ".temp-x" / "left").write_text(json.dumps(old_rows[3]) + "\n")

        args = ["keys", "migrate", "--key-store", uri, "--kek", f"local://{kek_path}", "--output", str(out)]
        assert pstream(args) == 0
        assert capsys.readouterr().out.startswith("migrated 4 keys in ")
        store = open_key_store(uri)
        ids = lookup_key(store, kek)
        assert [r.key_link for r in store.keys_of_subjects([ids.subject_hash("alice")])] == ["link-1", "link-3", "link-2"]
        assert store.lookup([(ids.value_hash("shared"), "2024-03-01")])[(ids.value_hash("shared"), "2024-03-01")] \
            .subject_hashes == tuple(sorted([ids.subject_hash("alice"), ids.subject_hash("bob")]))
        assert kek.unwrap(store.by_links(["link-4"])["link-4"].wrapped_key, b"link-4") == b"k" * 64
        rows = [json.loads(line) for p in sorted((out / "keys").rglob("*")) if p.is_file()
                for line in p.read_text().splitlines()]
        assert len(rows) == 4 and all("keyFieldValue" not in r and "dataSubjects" not in r for r in rows)
        assert {r["keyFieldHash"] for r in rows} == {ids.value_hash(v) for _, v, _, _ in V1_KEYS}
        raw = storage_bytes(store)
        assert b"alice" not in raw and b"bob-value" not in raw  # the old rows' bytes went with the migration
        assert pstream(args) == 0 and capsys.readouterr().out.startswith("migrated 0 keys")  # once is enough
        if not uri.startswith("sqlite"):
            drop_pg(uri)


def _v1_uris(tmp_path) -> list[str]:
    uris = [f"sqlite://{tmp_path / 'v1.sqlite'}"]
    if not pg_available():
        uris.append(new_pg_uri())
    return uris
