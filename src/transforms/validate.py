"""ValidateEvents: check (position, event) pairs against their contracts.

    from transforms.validate import ValidateEvents
    checked = pairs | ValidateEvents({contract.ref: contract})
    checked[ValidateEvents.VALID]        # events (dicts with strmMeta), timestamps kept
    checked[ValidateEvents.DEAD_LETTER]  # one row per rejected event: position + reason

The contract is looked up by ``strmMeta.eventContractRef``; unknown or not ACTIVE contracts,
wrong types, missing required fields, empty key fields and regex failures are dead letters.
"""
from __future__ import annotations

import apache_beam as beam
from apache_beam.metrics import Metrics

from contracts.events import EventError, EventValidator
from contracts.model import Contract
from transforms.dead_letters import DEAD_LETTER, dead_letter
from transforms.worker_tuning import tune_worker


class _ValidateFn(beam.DoFn):
    def __init__(self, contracts: dict[str, Contract]):
        self.contracts = contracts
        self.valid = Metrics.counter("pipeline", "valid")
        self.rejected = Metrics.counter("pipeline", "dead_letter_validate")

    def setup(self):
        tune_worker()
        self.validators = {ref: EventValidator(c) for ref, c in self.contracts.items() if c.is_active}

    def process(self, pair):
        position, event = pair
        meta = event.get("strmMeta") if isinstance(event, dict) else None
        ref = meta.get("eventContractRef") if isinstance(meta, dict) else None
        validator = self.validators.get(ref)
        if validator is None:
            reason = (f"contract '{ref}' is not ACTIVE" if ref in self.contracts
                      else f"unknown contract '{ref}'" if ref else "strmMeta.eventContractRef is missing")
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(position, "validate", reason, ref))
            return
        try:
            checked = validator.check(event)
        except EventError as err:
            self.rejected.inc()
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, dead_letter(position, "validate", err.reason, ref))
            return
        self.valid.inc()
        yield checked


class ValidateEvents(beam.PTransform):
    """Splits (position, event) pairs into valid events and dead letters."""

    VALID = "valid"
    DEAD_LETTER = DEAD_LETTER

    def __init__(self, contracts: dict[str, Contract]):
        super().__init__()
        self.contracts = contracts

    def expand(self, pairs):
        return pairs | "CheckContract" >> beam.ParDo(_ValidateFn(self.contracts)).with_outputs(
            DEAD_LETTER, main=self.VALID)
