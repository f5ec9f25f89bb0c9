"""The gate every input passes before the rule engine: the contract, the signature, a sane
event time, a new event_id and a growing seq. Pure (no I/O): the faust app and
`frtwatch rules eval` share it, so both accept exactly the same events.

A refused input becomes a dead letter with a reason code; a seq gap is accepted and also
reported, because the gap is evidence of lost or suppressed events.
"""

import json
from collections import deque
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from contracts import ContractError, Event, decode_event, verify
from contracts.timestamps import parse_timestamp

MAX_FUTURE = timedelta(minutes=5)  # device clocks may run this far ahead of ours
MAX_AGE = timedelta(days=400)

REASONS = (
    "too_large",
    "invalid_utf8",
    "invalid_json",
    "unsupported_schema",
    "unknown_type",
    "invalid_event",
    "missing_signature",
    "bad_signature",
    "future_timestamp",
    "stale_timestamp",
    "duplicate_event_id",
    "seq_backwards",
    "seq_gap",
)


@dataclass(frozen=True)
class Rejection:
    reason: str  # one of REASONS
    detail: str


@dataclass
class Admission:
    event: Event | None  # None: refused
    problems: list[Rejection] = field(default_factory=list)


class Gate:
    """``seen`` (event_id -> where it was first accepted) and ``last_seq`` (device -> seq) may
    be any mapping: dicts offline, changelogged tables in the stream processor. ``origin`` names
    the message being judged (e.g. partition:offset) so that a redelivery of the same message
    after a restart is not mistaken for a replayed event. ``max_future`` and ``max_age`` bound
    live traffic's event time around now; None lifts a bound (a replay of history)."""

    def __init__(
        self,
        keys: dict[str, bytes] | None = None,
        *,
        max_future: timedelta | None = MAX_FUTURE,
        max_age: timedelta | None = MAX_AGE,
        dedup_window: int | None = 500_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        seen: MutableMapping[str, str] | None = None,
        last_seq: MutableMapping[str, int] | None = None,
    ) -> None:
        self.keys = keys or {}
        self.max_future, self.max_age = max_future, max_age
        self.clock = clock
        self._seen: MutableMapping[str, str] = seen if seen is not None else {}
        # Admission order, to bound ``seen``; None: whoever owns ``seen`` bounds it (the
        # processor's journal), and an order kept here would only grow.
        self._recent: deque[str] | None = deque() if dedup_window is not None else None
        self._dedup_window = dedup_window or 0
        self._last_seq: MutableMapping[str, int] = last_seq if last_seq is not None else {}

    def admit(self, raw: bytes, origin: str = "") -> Admission:
        try:
            event = decode_event(raw)
        except ContractError as error:
            return _refuse(error.code, str(error))
        source = event.device_id or event.operator_id
        key = self.keys.get(source)
        if key is not None:
            if event.sig is None:
                return _refuse(
                    "missing_signature", f"{source} has a registered key but the event is unsigned"
                )
            if not verify(raw, key):
                return _refuse("bad_signature", f"signature does not match {source}'s key")
        now = self.clock()
        at = parse_timestamp(event.occurred_at)
        if self.max_future is not None and at > now + self.max_future:
            return _refuse(
                "future_timestamp", f"occurred_at {event.occurred_at} is ahead of now by {at - now}"
            )
        if self.max_age is not None and at < now - self.max_age:
            return _refuse(
                "stale_timestamp", f"occurred_at {event.occurred_at} is older than {self.max_age.days} days"
            )
        first = self._seen.get(event.event_id)
        if first is not None:
            if origin and first == origin:
                return Admission(event)  # the same message again (redelivered after a restart)
            return _refuse("duplicate_event_id", f"event_id {event.event_id} was already accepted")
        problems = []
        if event.seq is not None and event.device_id is not None:
            last = self._last_seq.get(event.device_id)
            if last is not None and event.seq <= last:
                return _refuse("seq_backwards", f"seq {event.seq} of {event.device_id} after {last}")
            if last is not None and event.seq > last + 1:
                problems.append(
                    Rejection("seq_gap", f"{event.device_id} skipped seq {last + 1}..{event.seq - 1}")
                )
            self._last_seq[event.device_id] = event.seq
        self._remember(event.event_id, origin)
        return Admission(event, problems)

    def _remember(self, event_id: str, origin: str) -> None:
        self._seen[event_id] = origin or "-"
        if self._recent is None:
            return
        self._recent.append(event_id)
        if len(self._recent) > self._dedup_window:
            self._seen.pop(self._recent.popleft(), None)


def _refuse(reason: str, detail: str) -> Admission:
    return Admission(None, [Rejection(reason, detail)])


def load_keys(path: Path) -> dict[str, bytes]:
    """A keys file as `frtwatch simulate --keys-file` writes it: devices and back offices, hex."""
    data = json.loads(path.read_text())
    return {
        source: bytes.fromhex(key)
        for group in ("devices", "back_offices")
        for source, key in data[group].items()
    }
