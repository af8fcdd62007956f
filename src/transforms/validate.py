"""ValidateEvents: check batches of (position, event) pairs against their contracts.

    from transforms.validate import ContractCheck, ValidateEvents
    checked = batches | ValidateEvents({contract.ref: contract})   # transforms.event_batches
    checked[ValidateEvents.VALID]        # batches of the valid (position, event) pairs (never empty)
    checked[ValidateEvents.DEAD_LETTER]  # one row per rejected event: position + reason

    check = ContractCheck({contract.ref: contract})     # the same decision, without Beam
    event, dead = check("in.csv:7", event)             # exactly one of the two is None

The contract is looked up by ``strmMeta.eventContractRef``; unknown contracts, contracts whose state accepts no events (only ACTIVE and
DEPRECATED do) and
everything ``contracts.events.EventValidator`` refuses are dead letters. An unknown reference
appears in the dead letter only in ``describe_ref``'s bounded, sanitised form. Valid events
keep their position, so that later stages' dead letters can name it. Each input batch gives at
most one VALID batch (its valid events, in order, with the input batch's timestamp and windows).
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from contracts.events import EventError, EventValidator
from contracts.model import Contract
from contracts.strm_meta import describe_ref
from transforms.dead_letters import DEAD_LETTER, FailureLog, contract_label, dead_letter
from transforms.worker_tuning import tune_worker


class ContractCheck:
    """The pipelines' per-event contract decision: (event, None) or (None, dead-letter row)."""

    def __init__(self, contracts: dict[str, Contract]):
        self.contracts = contracts
        self.validators = {ref: EventValidator(c) for ref, c in contracts.items() if c.accepts_events}
        self.failures = FailureLog("validate")

    def __call__(self, position: str, event) -> tuple[dict | None, dict | None]:
        meta = event.get("strmMeta") if event.__class__ is dict else None
        ref = meta.get("eventContractRef") if meta.__class__ is dict else None
        validator = self.validators.get(ref) if ref.__class__ is str else None
        if validator is None:
            if ref is None:
                reason = "strmMeta.eventContractRef is missing"
            elif ref.__class__ is not str:
                reason = "strmMeta.eventContractRef is not a text"
            elif ref in self.contracts:
                reason = f"contract '{ref}' is not active (state {self.contracts[ref].state})"
            else:
                reason = f"unknown contract '{describe_ref(ref)}'"
            return None, dead_letter(position, "validate", reason, contract_label(ref, self.contracts))
        try:
            return validator.check(event), None
        except EventError as err:
            reason = err.reason
        except Exception as exc:  # the catch-all: class and stage, never the text
            reason = self.failures.record(exc, position)
        return None, dead_letter(position, "validate", reason, ref)


class _ValidateFn(beam.DoFn):
    def __init__(self, contracts: dict[str, Contract]):
        self.contracts = contracts
        self.valid = Metrics.counter("pipeline", "valid")
        self.rejected = Metrics.counter("pipeline", "dead_letter_validate")

    def setup(self):
        tune_worker()
        self.check = ContractCheck(self.contracts)

    def process(self, batch):
        check, valid = self.check, []
        for position, event in batch:
            checked, dead = check(position, event)
            if dead is None:
                valid.append((position, checked))
                continue
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead)
        if valid:
            self.valid.inc(len(valid))
            yield valid


class ValidateEvents(beam.PTransform):
    """Splits batches of (position, event) pairs into batches of the valid ones and dead letters."""

    VALID = "valid"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, contracts: dict[str, Contract]):
        super().__init__()
        self.contracts = contracts

    def expand(self, pairs):
        return pairs | "CheckContract" >> beam.ParDo(_ValidateFn(self.contracts)).with_outputs(
            DEAD_LETTER, main=self.VALID)
