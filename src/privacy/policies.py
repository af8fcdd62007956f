"""Policies: how long a data key is kept (retention) and on what legal ground the data is processed.

    from privacy.policies import Policy, DEFAULT_POLICY
    policy = Policy("marketing-2y", "Marketing", retention_days=730, legal_grounds="consent (GDPR 6(1)(a))")
    policy.expires_at_ms("2024-03-01")     # day start + 730 days, epoch ms: the key's expiresAt
    store.save_policy(policy)              # kept in the key store beside the keys
    KeyRing(store, kek, **policy.ring_options())

Every key records the id of its policy (``policyId``; empty for the default policy of 2556 days,
seven years) and its ``expiresAt``. ``pstream keys purge`` deletes keys whose ``expiresAt`` has
passed, and with them the only way to read what they encrypted.

A data contract attaches a policy with ``retention: {policy: marketing}``: the contract is what
the events carry, so its events' keys are that policy's keys wherever they are made. A run reads
the policy from its key store at start (``PipelineConfig.retention_policies``; a policy the
store lacks refuses the run) and hands it to the key ring (``KeyRing.keys_for`` with ``(value,
day, policy)``). A policy's keys are its own: the same subject and day under another policy (or
the default) has another key, so purging one policy's expired keys leaves the others' data.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from privacy.keyring import DAY_MS, DEFAULT_RETENTION_DAYS, day_start_ms

POLICY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Policy:
    policy_id: str
    name: str = ""
    retention_days: int = DEFAULT_RETENTION_DAYS
    legal_grounds: str = ""
    description: str = ""

    def __post_init__(self):
        if self.policy_id and not POLICY_ID.match(self.policy_id):
            raise ValueError(f"policy id '{self.policy_id}': use 1-63 letters, digits, '.', '_' or '-'")
        if not isinstance(self.retention_days, int) or self.retention_days < 1:
            raise ValueError("retention_days must be a whole number of days, at least 1")

    def expires_at_ms(self, day: str) -> int:
        """When a key for ``day`` ('YYYY-MM-DD', UTC) expires: the day's start plus the retention."""
        return day_start_ms(day) + self.retention_days * DAY_MS

    def ring_options(self) -> dict:
        """Keyword arguments for ``KeyRing``: keys it creates carry this policy."""
        return {"retention_days": self.retention_days, "policy_id": self.policy_id}

    def to_dict(self) -> dict:
        return {"policyId": self.policy_id, "name": self.name, "retentionDays": self.retention_days,
                "legalGrounds": self.legal_grounds, "description": self.description}


DEFAULT_POLICY = Policy("", "default", DEFAULT_RETENTION_DAYS, "", "The default policy: keys are kept seven years.")
