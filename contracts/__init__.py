"""Contract v1 in code: typed events and records, the codec, topics, schemas and examples."""

from contracts.codec import (
    MAX_MESSAGE_BYTES,
    ContractError,
    canonical_json,
    decode_event,
    encode_event,
    sign,
    signature,
    verify,
)
from contracts.events import EVENT_CLASSES, EVENT_TYPES, SCHEMA_VERSION, Envelope, Event
from contracts.records import DeadLetter, Violation

__all__ = [
    "EVENT_CLASSES",
    "EVENT_TYPES",
    "MAX_MESSAGE_BYTES",
    "SCHEMA_VERSION",
    "ContractError",
    "DeadLetter",
    "Envelope",
    "Event",
    "Violation",
    "canonical_json",
    "decode_event",
    "encode_event",
    "sign",
    "signature",
    "verify",
]
