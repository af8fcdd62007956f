"""Spool (roll, recovery, group commit) and tokens (expiry, forgery)."""
from __future__ import annotations

import asyncio

import pytest
from hypothesis import strategies as st

from controlplane.project import Project
from gateway.auth import TokenError, TokenIssuer
from gateway.spool import OPEN_SUFFIX, Spool, all_segments, closed_segments


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


# ------------------------------------------------------------------ spool
def test_spool_rolls_by_size(tmp_path):
    spool = Spool(tmp_path, max_bytes=100, max_age_seconds=3600)
    for i in range(10):
        spool.write_sync(b"x" * 40 + b"\n")
    spool.close()
    segments = closed_segments(tmp_path)
    assert len(segments) == 4  # 3 lines of 41 bytes pass 100
    assert sum(len(s.read_bytes().splitlines()) for s in segments) == 10


def test_spool_rolls_by_age_with_the_injected_clock(tmp_path):
    clock = Clock()
    spool = Spool(tmp_path, max_bytes=1 << 20, max_age_seconds=5, clock=clock)
    spool.write_sync(b"a\n")
    assert not spool.roll_if_old() and closed_segments(tmp_path) == []
    clock.now += 6
    assert spool.roll_if_old()
    assert [s.read_bytes() for s in closed_segments(tmp_path)] == [b"a\n"]
    assert not spool.roll_if_old()  # nothing open: nothing to roll
    spool.close()


def test_spool_recovery_cuts_a_partial_line_and_closes_the_segment(tmp_path):
    (tmp_path / f"0000000003-1{'.jsonl'}{OPEN_SUFFIX}").write_bytes(b'{"a":1}\n{"b":')
    (tmp_path / f"0000000004-2{'.jsonl'}{OPEN_SUFFIX}").write_bytes(b"")
    spool = Spool(tmp_path)
    assert [s.name for s in all_segments(tmp_path)] == ["0000000003-1.jsonl"]
    assert closed_segments(tmp_path)[0].read_bytes() == b'{"a":1}\n'
    spool.write_sync(b'{"c":1}\n')
    spool.close()
    assert [s.name[:10] for s in closed_segments(tmp_path)] == ["0000000003", "0000000005"]


def test_concurrent_appends_share_fsyncs(tmp_path):
    spool = Spool(tmp_path)

    async def main():
        await asyncio.gather(*(spool.append(b'{"i":%d}\n' % i) for i in range(500)))

    asyncio.run(main())
    spool.close()
    assert spool.lines == 500
    assert spool.batches < 100  # group commit: many lines per write + fsync
    lines = closed_segments(tmp_path)[0].read_bytes().splitlines()
    assert sorted(lines) == sorted(b'{"i":%d}' % i for i in range(500))


# ----------------------------------------------------------------- tokens
def _project(*names):
    project = Project("/nonexistent")
    for name in names:
        project.create_pipeline(name)
    return project


def test_token_verifies_until_it_expires():
    clock = Clock()
    project = _project("demo")
    issuer = TokenIssuer(b"k" * 32, ttl_seconds=10, clock=clock)
    token, expires_in = issuer.issue(project.pipelines["demo"])
    assert expires_in == 10 and issuer.verify(token, project).name == "demo"
    clock.now += 9.9
    assert issuer.verify(token, project).name == "demo"
    clock.now += 0.2
    with pytest.raises(TokenError, match="expired"):
        issuer.verify(token, project)


def test_forged_or_foreign_tokens_are_refused():
    project = _project("demo")
    issuer = TokenIssuer(b"k" * 32)
    token, _ = issuer.issue(project.pipelines["demo"])
    payload, signature = token.split(".")
    with pytest.raises(TokenError):
        issuer.verify(payload + "." + signature[::-1], project)
    with pytest.raises(TokenError):
        TokenIssuer(b"other key".ljust(32)).verify(token, project)
    with pytest.raises(TokenError):
        issuer.verify("garbage", project)
    with pytest.raises(TokenError, match="deleted"):
        issuer.verify(token, _project("demo"))        # the same name, another pipeline: another client id


def test_a_failing_disk_fails_the_waiting_appends(tmp_path, monkeypatch):
    spool = Spool(tmp_path)

    def broken(data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(spool, "write_sync", broken)

    async def main():
        return await asyncio.gather(*(spool.append(b"x\n") for _ in range(5)), return_exceptions=True)

    results = asyncio.run(main())
    assert all(isinstance(r, OSError) for r in results) and spool.lines == 0
    spool._executor.shutdown()
