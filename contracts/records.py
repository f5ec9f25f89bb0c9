"""Records frtwatch itself writes: the violation (frt.violations.v1) and the dead letter
(frt.deadletter.v1)."""

from typing import Annotated

import msgspec

from contracts.events import OperatorId, Timestamp
from contracts.vocabulary import Severity


class Violation(msgspec.Struct, kw_only=True, frozen=True):
    """One rule broken by one triggering event; ``violation_id`` is derived from both."""

    violation_id: Annotated[str, msgspec.Meta(min_length=1)]
    rule_id: Annotated[str, msgspec.Meta(pattern=r"^FRT-[A-Z0-9-]+$")]
    policy_pack: Annotated[str, msgspec.Meta(min_length=1)]
    severity: Severity
    reference: str
    operator_id: OperatorId
    site_id: str | None
    device_id: str | None
    subject_ref: str | None
    event_ids: Annotated[list[str], msgspec.Meta(min_length=1)]
    occurred_at: Timestamp
    detected_at: Timestamp
    explanation: Annotated[str, msgspec.Meta(min_length=1)]
    ruleset_hash: Annotated[str, msgspec.Meta(min_length=1)]


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    """An input that could not be accepted, with everything needed to find and replay it."""

    original: Annotated[str, msgspec.Meta(description="the original message value, base64")]
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    dead_lettered_at: Timestamp
