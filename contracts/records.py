"""Records frtwatch itself writes: the violation (frt.violations.v1) and the dead letter
(frt.deadletter.v1)."""

import hashlib
from typing import Annotated, Literal

import msgspec

from contracts.events import OperatorId, Timestamp
from contracts.vocabulary import Severity

ViolationStatus = Literal["open", "retracted"]


class Violation(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """One rule broken by one triggering event; ``violation_id`` is derived from both.

    A late fact may revise the verdict (contract.md, "Verdict revisions"): a retraction is a
    record with the same ``violation_id``, ``status`` "retracted", ``revised_at`` and
    ``revised_by``; a violation found late is "open" with ``revised_by`` naming the late facts.
    The fields of revisions are left out of an ordinary record (a record without ``status`` is
    open)."""

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
    status: ViolationStatus = "open"
    revised_at: Timestamp | None = None
    revised_by: list[str] | None = None  # event ids of the late facts behind the revision

    @property
    def revision_id(self) -> str:
        return revision_id(self.violation_id, self.status, self.revised_by)


def revision_id(violation_id: str, status: str, revised_by: list[str] | None) -> str:
    """Names a record among its violation's records: the original is the violation_id."""
    if revised_by is None:
        return violation_id
    cause = hashlib.sha256("\x1f".join([status, *revised_by]).encode()).hexdigest()[:16]
    return f"{violation_id}:{cause}"


class DeadLetter(msgspec.Struct, kw_only=True, frozen=True):
    """An input that could not be accepted, with everything needed to find and replay it."""

    original: Annotated[str, msgspec.Meta(description="the original message value, base64")]
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    dead_lettered_at: Timestamp
