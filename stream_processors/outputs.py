"""The processor's output records as Kafka values: violations and dead letters (contract.md)."""

import base64
import hashlib

import msgspec

from contracts.records import DeadLetter, Violation
from contracts.timestamps import now_timestamp

Source = tuple[str, int, int]  # topic, partition, offset of the input message

_encode = msgspec.json.Encoder().encode


def violation_value(violation: Violation) -> bytes:
    return _encode(violation)


# Kafka refuses records over 1 MiB by default and base64 adds a third: a larger original is cut
# to this many bytes, and the reason says so with the whole message's size and SHA-256.
MAX_ORIGINAL_BYTES = 512 * 1024


def dead_letter_value(raw: bytes, reason: str, source: Source) -> bytes:
    if len(raw) > MAX_ORIGINAL_BYTES:
        reason += (
            f" (original cut to its first {MAX_ORIGINAL_BYTES} of {len(raw)} bytes; "
            f"sha256 of the whole: {hashlib.sha256(raw).hexdigest()})"
        )
        raw = raw[:MAX_ORIGINAL_BYTES]
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
