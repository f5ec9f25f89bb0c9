"""Build one source's contract events: envelope, validation, seq and signature."""

import hashlib
import hmac
import os
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from contracts import SCHEMA_VERSION, canonical_json, decode_event
from contracts.codec import SigningKey


class EventBuilder:
    """Events of one source: a device (``device_id`` set, numbered by ``seq``) or an operator's
    back office. ``key`` signs them over canonical JSON (contract.md): HMAC-SHA256 with a bytes
    key, Ed25519 with a private key, as the source's key in the registry."""

    def __init__(
        self,
        *,
        operator_id: str,
        site_id: str | None = None,
        device_id: str | None = None,
        key: SigningKey | None = None,
        seq: Callable[[], int] | None = None,
    ) -> None:
        self.operator_id, self.site_id, self.device_id = operator_id, site_id, device_id
        self.seq = seq
        self._mac = hmac.new(key, digestmod=hashlib.sha256) if isinstance(key, bytes) else None
        self._private = key if isinstance(key, Ed25519PrivateKey) else None
        self._clock = _MillisecondClock()

    def fields(
        self, event_type: str, *, occurred_at: str | None = None, event_id: str | None = None, **payload: Any
    ) -> dict[str, Any]:
        """The unsigned, unnumbered event (seq and sig null)."""
        return {
            "schema": SCHEMA_VERSION,
            "event_id": event_id or random_uuid(),
            "type": event_type,
            "occurred_at": occurred_at or self._clock.now(),
            "operator_id": self.operator_id,
            "site_id": self.site_id,
            "device_id": self.device_id,
            "seq": None,
            **payload,
            "sig": None,
        }

    def build(self, event_type: str, **fields: Any) -> tuple[dict[str, Any], bytes]:
        """The final event and its wire bytes. Raises ContractError, before a seq number is
        taken, if the event breaks the contract."""
        event = self.fields(event_type, **fields)
        decode_event(canonical_json(event))
        if self.seq is not None:
            event["seq"] = self.seq()
        if self._mac is not None:
            del event["sig"]  # the signature covers the event without its sig field
            mac = self._mac.copy()
            mac.update(canonical_json(event))
            event["sig"] = mac.hexdigest()
        elif self._private is not None:
            del event["sig"]
            event["sig"] = self._private.sign(canonical_json(event)).hex()
        return event, canonical_json(event)


def random_uuid() -> str:
    """A random (version 4, RFC 4122 variant) UUID string, cheaper than str(uuid.uuid4())."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


class _MillisecondClock:
    """Now as a contract timestamp; the date-and-time part is formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        millis = time.time_ns() // 1_000_000
        second, milli = divmod(millis, 1000)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{milli:03d}Z"
