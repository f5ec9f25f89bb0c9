"""The processor's output records as Kafka values: violations and dead letters (contract.md)."""

import base64

import msgspec

from contracts.records import DeadLetter, Violation
from contracts.timestamps import now_timestamp

Source = tuple[str, int, int]  # topic, partition, offset of the input message

_encode = msgspec.json.Encoder().encode


def violation_value(violation: Violation) -> bytes:
    return _encode(violation)


def dead_letter_value(raw: bytes, reason: str, source: Source) -> bytes:
    return _encode(
        DeadLetter(
            original=base64.b64encode(raw).decode(),
            reason=reason,
            source_topic=source[0],
            source_partition=source[1],
            source_offset=source[2],
            dead_lettered_at=now_timestamp(),
        )
    )
