"""Dead-letter rows: one per rejected input, with the stage, the input's position and the reason.

    from transforms.dead_letters import DEAD_LETTER, dead_letter, unexpected_error, FailureLog
    yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter("in.csv:12", "validate", err.reason, ref))

    failures = FailureLog("encrypt")          # one per DoFn instance
    try:
        ...                                   # the per-row work
    except Exception as exc:                  # the catch-all behind the specific checks
        reason = failures.record(exc, position)   # 'unexpected KeyError in stage encrypt'

A row looks like ``{"position": "in.csv:12", "stage": "validate", "reason": "field 'age': ...",
"eventContractRef": "acme/Shop/1.0.0", "rejectedAt": 1700000000000}``. Stages: ``read`` (the
row could not be read or converted), ``validate`` (the contract check), ``encrypt``,
``streams`` (a privacy stream's decrypt and mask), ``export`` (too late for its window).

A dead letter never copies the input: the reason names contract fields and positions
(``EventError.reason``), the position says where to look, and ``eventContractRef`` is a known
contract's reference or the bounded, sanitised form of an unknown one (``describe_ref``). Every
per-row DoFn has a catch-all behind its specific checks, in the spirit of Beam's
``ParDo(...).with_exception_handling()``, but it keeps this value-free row: the exception's
class and the stage, never ``str(exc)``, which may hold a value. ``FailureLog`` logs the first
failure of each class per worker (class, stage, position) and counts the rest.
"""
from __future__ import annotations

import logging
import time

from contracts.strm_meta import describe_ref

DEAD_LETTER = "dead_letter"
_LOG = logging.getLogger(__name__)


def dead_letter(position: str, stage: str, reason: str, contract_ref: str | None = None) -> dict:
    """A dead-letter row; ``contract_ref`` must be a known contract's ref or ``describe_ref``'s form."""
    return {
        "position": position,
        "stage": stage,
        "reason": reason,
        "eventContractRef": contract_ref,
        "rejectedAt": int(time.time() * 1000),
    }


def contract_label(ref, known) -> str | None:
    """The eventContractRef of a dead letter: a known contract's ref as is, anything else sanitised."""
    return ref if ref.__class__ is str and ref in known else describe_ref(ref)


def unexpected_error(stage: str, exc: BaseException) -> str:
    """The reason of a failure no specific check foresaw: the exception's class, never its text."""
    return f"unexpected {type(exc).__name__} in stage {stage}"


class FailureLog:
    """The catch-all's bookkeeping for one DoFn: a reason per failure, a log line per new class."""

    def __init__(self, stage: str):
        self.stage = stage
        self.seen: dict[str, int] = {}

    def record(self, exc: BaseException, position: str) -> str:
        name = type(exc).__name__
        count = self.seen.get(name, 0)
        self.seen[name] = count + 1
        if not count:
            _LOG.warning("stage %s: unexpected %s at %s; the row is a dead letter (more of this kind are "
                         "counted in the dead letters, not logged)", self.stage, name, position)
        return unexpected_error(self.stage, exc)
