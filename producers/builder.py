"""Build one source's contract events: envelope, validation, seq and signature."""

import uuid
from collections.abc import Callable
from typing import Any

from contracts import SCHEMA_VERSION, canonical_json, decode_event, signature
from contracts.timestamps import now_timestamp


class EventBuilder:
    """Events of one source: a device (``device_id`` set, numbered by ``seq``) or an operator's
    back office. ``key`` signs them (HMAC-SHA256 over canonical JSON, contract.md)."""

    def __init__(self, *, operator_id: str, site_id: str | None = None, device_id: str | None = None,
                 key: bytes | None = None, seq: Callable[[], int] | None = None) -> None:
        self.operator_id, self.site_id, self.device_id = operator_id, site_id, device_id
        self.key = key
        self.seq = seq

    def fields(self, event_type: str, *, occurred_at: str | None = None, event_id: str | None = None,
               **payload: Any) -> dict[str, Any]:
        """The unsigned, unnumbered event (seq and sig null)."""
        return {
            "schema": SCHEMA_VERSION,
            "event_id": event_id or str(uuid.uuid4()),
            "type": event_type,
            "occurred_at": occurred_at or now_timestamp(),
            "operator_id": self.operator_id,
            "site_id": self.site_id,
            "device_id": self.device_id,
            "seq": None,
            "sig": None,
            **payload,
        }

    def build(self, event_type: str, **fields: Any) -> tuple[dict[str, Any], bytes]:
        """The final event and its wire bytes. Raises ContractError, before a seq number is
        taken, if the event breaks the contract."""
        event = self.fields(event_type, **fields)
        decode_event(canonical_json(event))
        if self.seq is not None:
            event["seq"] = self.seq()
        if self.key is not None:
            event["sig"] = signature(event, self.key)
        return event, canonical_json(event)
