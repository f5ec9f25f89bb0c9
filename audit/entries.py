"""What the audit log records, made from the pipeline's Kafka records. Pure.

Each entry's body is canonical JSON, the bytes hashed into the Merkle log. Nothing that could
hold a face image or a raw identity gets in: accepted events keep only the contract's fields
(the processor already dropped unknown extras, and subjects are pseudonymous refs), and a dead
letter keeps its reason, source position, size and the SHA-256 of the original bytes, never
the bytes themselves.

A violation may have several records (the original, a retraction, a late detection): each is
an entry of its own, named by the record's revision id, so the log keeps every record once
while a redelivered record is still dropped as a repeat.
"""

import base64
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from contracts import canonical_json, decode_event
from contracts.records import DeadLetter, Violation
from contracts.timestamps import parse_timestamp

COLUMNS = (
    "seq",
    "kind",
    "entry_id",
    "operator_id",
    "site_id",
    "device_id",
    "subject_ref",
    "event_type",
    "rule_id",
    "severity",
    "policy_pack",
    "occurred_at",
    "recorded_at",
    "source",
    "body",
    "violation_id",
    "status",
)


@dataclass(frozen=True)
class Entry:
    kind: str  # event | violation | dead_letter | query
    entry_id: str
    operator_id: str
    occurred_at: datetime
    body: bytes
    source: str  # topic:partition:offset it was read from ("" for the API's own entries)
    site_id: str | None = None
    device_id: str | None = None
    subject_ref: str | None = None
    event_type: str = ""
    rule_id: str = ""
    severity: str = ""
    policy_pack: str = ""
    violation_id: str = ""  # violations: the violation this record is of (entry_id is the record's)
    status: str = ""  # violations: this record's status, open or retracted; events: "unsigned" or ""

    def row(self, seq: int, recorded_at: datetime) -> tuple[Any, ...]:
        return (
            seq,
            self.kind,
            self.entry_id,
            self.operator_id,
            self.site_id,
            self.device_id,
            self.subject_ref,
            self.event_type,
            self.rule_id,
            self.severity,
            self.policy_pack,
            self.occurred_at,
            recorded_at,
            self.source,
            self.body.decode(),
            self.violation_id,
            self.status,
        )


def _canonical(struct: msgspec.Struct) -> bytes:
    return canonical_json(msgspec.to_builtins(struct))


def accepted_event(raw: bytes, source: str) -> Entry:
    event = decode_event(raw)
    return Entry(
        "event",
        event.event_id,
        event.operator_id,
        parse_timestamp(event.occurred_at),
        _canonical(event),
        source,
        site_id=event.site_id,
        device_id=event.device_id,
        subject_ref=getattr(event, "subject_ref", None),
        event_type=event.event_type,
        # Weaker evidence: admitted unsigned (its operator may send so), as the body's null sig says.
        status="unsigned" if event.sig is None else "",
    )


_violation = msgspec.json.Decoder(Violation)
_dead_letter = msgspec.json.Decoder(DeadLetter)


def violation(raw: bytes, source: str) -> Entry:
    record = _violation.decode(raw)
    return Entry(
        "violation",
        record.revision_id,  # an original's is its violation_id: the ids of older entries hold
        record.operator_id,
        parse_timestamp(record.occurred_at),
        _canonical(record),
        source,
        site_id=record.site_id,
        device_id=record.device_id,
        subject_ref=record.subject_ref,
        event_type="violation",
        rule_id=record.rule_id,
        severity=record.severity,
        policy_pack=record.policy_pack,
        violation_id=record.violation_id,
        status=record.status,
    )


def dead_letter_id(position: str, reason_code: str) -> str:
    """One input position is one dead letter, however often the processor repeats it."""
    return hashlib.sha256(f"{position}|{reason_code}".encode()).hexdigest()[:32]


def dead_letter(raw: bytes, source: str) -> Entry:
    record = _dead_letter.decode(raw)
    original = base64.b64decode(record.original)
    position = f"{record.source_topic}:{record.source_partition}:{record.source_offset}"
    reason_code = record.reason.split(":", 1)[0]
    body = canonical_json(
        {
            "kind": "dead_letter",
            "reason": record.reason,
            "source": position,
            "original_bytes": len(original),
            "original_sha256": hashlib.sha256(original).hexdigest(),
            "dead_lettered_at": record.dead_lettered_at,
        }
    )
    return Entry(
        "dead_letter",
        dead_letter_id(position, reason_code),
        "",
        parse_timestamp(record.dead_lettered_at),
        body,
        source,
        event_type=reason_code,
    )


_query_record = msgspec.json.Decoder(dict[str, Any])


def query(raw: bytes, source: str) -> Entry:
    """A query the regulators' API answered or refused (audit/query_log.py wrote it)."""
    record = _query_record.decode(raw)
    if record.get("kind") != "query" or not record.get("request_id"):
        raise ValueError("not a query record")
    return Entry(
        "query",
        str(record["request_id"]),
        str(record.get("operator_id") or ""),
        parse_timestamp(str(record["at"])),
        canonical_json(record),
        source,
        event_type=str(record.get("route") or ""),
    )


def recorded_now() -> datetime:
    return datetime.now(UTC)
