"""Dead-letter rows: one per rejected input, with the reason and the input's position.

    from transforms.dead_letters import DEAD_LETTER, dead_letter
    yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter("in.csv:12", "validate", err.reason, ref))

A dead letter never copies the input's values: the reason names the field and the problem
(``EventError.reason``), the position says where to look.
"""
from __future__ import annotations

import time

DEAD_LETTER = "dead_letter"


def dead_letter(position: str, stage: str, reason: str, contract_ref: str | None = None) -> dict:
    return {
        "position": position,
        "stage": stage,
        "reason": reason,
        "eventContractRef": contract_ref,
        "rejectedAt": int(time.time() * 1000),
    }
