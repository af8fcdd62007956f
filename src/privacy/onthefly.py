"""On-the-fly decryption where analysts work: a Spark UDF, BigQuery SQL, and the key sources under them.

    from privacy.onthefly import StoreKeys, ExportedKeys, SparkDecryptor, bigquery_decrypt_sql
    keys = StoreKeys(store, kek)                       # asks the key store, so a forget applies at once
    keys.decrypt(token, key_link)                      # plaintext, or None: no such key (forgotten) / not ours
    keys.decrypt_many(tokens, key_links)               # one key-store query per call, for vectorized UDFs

    udf = SparkDecryptor("postgresql://...", "gcp-kms://...")    # picklable; opens the store on the executor
    spark.udf.register("decrypt_pii", udf, "string")             # SELECT decrypt_pii(email, strmMeta.keyLink)

    print(bigquery_decrypt_sql(contract, "proj.shop.events", "proj.shop.keys", purposes=[1, 2]))

The DuckDB function and consent-aware views are in ``privacy.onthefly_duckdb``.

``StoreKeys`` trusts what it read from the key store for ``max_age_s`` seconds (default 0: every
call asks again, so a forgotten subject's values are NULL in the next query). Unwrapped keys are
cached in memory by (keyLink, wrapped key), so a KMS KEK is asked once per key, not per row.
``ExportedKeys`` decrypts with a key-export file (``pstream keys export``; ``forget`` removes the
rows of forgotten keys from such files).

BigQuery: load the key export (CSV: keyLink, encryptionKey, policyId, expiresAt) as a table; the
generated query LEFT JOINs it on ``strmMeta.keyLink`` and decrypts with
``SAFE.DETERMINISTIC_DECRYPT_STRING(KEYS.KEYSET_FROM_JSON(encryptionKey), FROM_BASE64(field), '')``,
so rows of deleted keys come out NULL. ``bigquery_forget_sql`` deletes keys from that table.
"""
from __future__ import annotations

import re
import threading
import time
from typing import Callable, Iterable, Protocol

from privacy.daead import DecryptError, SivKey
from privacy.kek import kek_from_uri
from privacy.keystore import open_key_store

CUMULATIVE, GRANULAR = "cumulative", "granular"


class KeySource(Protocol):
    def keys(self, links: Iterable[str]) -> dict[str, SivKey]: ...


def _decrypt(key: SivKey | None, token) -> str | None:
    if key is None or not isinstance(token, str):
        return None
    try:
        return key.decrypt(token)
    except (DecryptError, UnicodeDecodeError):
        return None


class _Decrypting:
    def decrypt(self, token: str | None, key_link: str | None) -> str | None:
        """The plaintext of a token, or None (no token, no key for the link, or not decryptable)."""
        if token is None or key_link is None:
            return None
        return _decrypt(self.keys([key_link]).get(key_link), token)

    def decrypt_many(self, tokens: list, key_links: list) -> list[str | None]:
        keys = self.keys({link for link in key_links if link is not None})
        return [_decrypt(keys.get(link), token) if link is not None else None for token, link in zip(tokens, key_links)]


class StoreKeys(_Decrypting):
    """Keys by keyLink from a key store and KEK (see the module docstring)."""

    def __init__(self, store, kek, max_age_s: float = 0.0, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.kek = kek
        self.max_age_s = max_age_s
        self.clock = clock
        self._unwrapped: dict[tuple[str, bytes], SivKey] = {}
        self._seen: dict[str, tuple[float, SivKey | None]] = {}
        self._lock = threading.Lock()

    def keys(self, links: Iterable[str]) -> dict[str, SivKey]:
        links = set(links)
        now = self.clock()
        with self._lock:
            fresh = {link: self._seen[link] for link in links
                     if link in self._seen and now - self._seen[link][0] < self.max_age_s}
            missing = links - fresh.keys()
            if missing:
                records = self.store.by_links(missing)
                for link in missing:
                    record = records.get(link)
                    key = None
                    if record is not None:
                        cached = (link, record.wrapped_key)
                        key = self._unwrapped.get(cached)
                        if key is None:
                            material = self.kek.unwrap(record.wrapped_key, link.encode())
                            key = self._unwrapped[cached] = SivKey(record.key_id, material)
                    else:  # forgotten or purged: drop the unwrapped copy too
                        for cached in [c for c in self._unwrapped if c[0] == link]:
                            del self._unwrapped[cached]
                    fresh[link] = self._seen[link] = (now, key)
        return {link: key for link, (_, key) in fresh.items() if key is not None}


class ExportedKeys(_Decrypting):
    """Keys by keyLink from a key-export file (CSV or JSONL), read once."""

    def __init__(self, path: str):
        from privacy.key_export import read_key_export

        self.path = path
        self._keys = read_key_export(path)

    def keys(self, links: Iterable[str]) -> dict[str, SivKey]:
        return {link: self._keys[link] for link in links if link in self._keys}


class SparkDecryptor:
    """A plain, picklable Python function ``(ciphertext, keyLink) -> plaintext or None`` for Spark UDFs.

    Give it a key store and KEK URI (each executor opens them on first call; ``max_age_s`` bounds
    how long a forgotten key can still be used by an executor that already read it), or a
    key-export file path with ``key_export=``.
    """

    def __init__(self, store_uri: str | None = None, kek_uri: str | None = None, max_age_s: float = 60.0,
                 key_export: str | None = None, clock: Callable[[], float] = time.monotonic):
        if (store_uri is None) == (key_export is None) or (store_uri is not None and kek_uri is None):
            raise ValueError("give a key store URI and a KEK URI, or a key-export file")
        self.store_uri, self.kek_uri, self.key_export = store_uri, kek_uri, key_export
        self.max_age_s = max_age_s
        self.clock = clock
        self._source = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_source"] = None  # connections and keys are never pickled
        return state

    def _keys(self) -> _Decrypting:
        if self._source is None:
            if self.key_export:
                self._source = ExportedKeys(self.key_export)
            else:
                self._source = StoreKeys(open_key_store(self.store_uri), kek_from_uri(self.kek_uri),
                                         self.max_age_s, self.clock)
        return self._source

    def __call__(self, ciphertext: str | None, key_link: str | None) -> str | None:
        return self._keys().decrypt(ciphertext, key_link)


# --- BigQuery ---------------------------------------------------------------------------------

_BQ_TABLE = re.compile(r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_$-]+){1,2}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _bq_table(name: str) -> str:
    if not _BQ_TABLE.match(name):
        raise ValueError(f"'{name}' is not a BigQuery table name (project.dataset.table or dataset.table)")
    return f"`{name}`"


def pii_columns(contract, purposes: Iterable[int] | None = None) -> list[tuple[str, int, bool]]:
    """(top-level column, purpose level, repeated) of each PII field to decrypt; nested paths refused."""
    chosen = None if purposes is None else set(purposes)
    repeated = {node.name: node.repeated for node in contract.nodes}
    columns = []
    for path, level in contract.pii.items():
        if "/" in path:
            raise ValueError(f"PII field '{path}' is nested: on-the-fly SQL decrypts top-level fields only")
        if not _IDENTIFIER.match(path):
            raise ValueError(f"PII field '{path}' is not a plain SQL identifier")
        if chosen is None or level in chosen:
            columns.append((path, level, repeated.get(path, False)))
    return columns


def bigquery_consent_condition(level: int, rule: str = CUMULATIVE, alias: str = "e") -> str:
    """True when the row's consent covers a purpose level: cumulative (max >= level) or granular (contains)."""
    if rule == CUMULATIVE:
        return f"(SELECT MAX(c) FROM UNNEST({alias}.strmMeta.consentLevels) AS c) >= {int(level)}"
    if rule == GRANULAR:
        return f"{int(level)} IN UNNEST({alias}.strmMeta.consentLevels)"
    raise ValueError(f"consent rule '{rule}': use '{CUMULATIVE}' or '{GRANULAR}'")


def bigquery_decrypt_sql(contract, events_table: str, keys_table: str, purposes: Iterable[int] | None = None,
                         rule: str = CUMULATIVE, view: str | None = None) -> str:
    """A BigQuery query (or CREATE VIEW) that decrypts PII where the row's consent allows.

    Fields of other purposes, and fields whose consent is missing, keep their ciphertext; fields
    whose key is not in ``keys_table`` (forgotten, purged) come out NULL.
    """
    decrypt = ("SAFE.DETERMINISTIC_DECRYPT_STRING(KEYS.KEYSET_FROM_JSON(k.encryptionKey), "
               "FROM_BASE64({value}), '')")
    replaced = []
    for column, level, repeated in pii_columns(contract, purposes):
        if repeated:
            plain = (f"ARRAY(SELECT {decrypt.format(value='v')} FROM UNNEST(e.{column}) AS v WITH OFFSET AS o "
                     f"ORDER BY o)")
        else:
            plain = decrypt.format(value=f"e.{column}")
        replaced.append(f"    IF({bigquery_consent_condition(level, rule)}, {plain}, e.{column}) AS {column}")
    select = "SELECT e.*" + (" REPLACE (\n" + ",\n".join(replaced) + "\n  )" if replaced else "")
    query = (f"{select}\nFROM {_bq_table(events_table)} AS e\n"
             f"LEFT JOIN {_bq_table(keys_table)} AS k ON k.keyLink = e.strmMeta.keyLink")
    if view:
        return f"CREATE OR REPLACE VIEW {_bq_table(view)} AS\n{query}"
    return query


def bigquery_forget_sql(keys_table: str, key_links: Iterable[str]) -> str:
    """DELETE the given keyLinks from a BigQuery key table (after ``pstream subjects forget``)."""
    links = sorted(set(key_links))
    if not links:
        raise ValueError("no keyLinks to delete")
    for link in links:
        if not re.match(r"^[A-Za-z0-9-]{1,64}$", link):
            raise ValueError("a keyLink is a UUID")
    quoted = ", ".join(f"'{link}'" for link in links)
    return f"DELETE FROM {_bq_table(keys_table)} WHERE keyLink IN ({quoted})"
