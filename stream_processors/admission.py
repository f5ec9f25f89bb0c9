"""The gate every input passes before the rule engine: the contract, the source's identity, a
sane event time, a new event_id and a growing seq. Pure (no I/O but the key registry's file,
read again when it changes): the faust app and `frtwatch rules eval` share it, so both accept
exactly the same events.

With a key registry (contracts/keyring.py) the gate fails closed: an event must be signed by
a valid key bound to the source it claims (its operator and device, or its operator's back
office). Unsigned events are admitted only from sources with no key, of operators the
deployment names (FRTWATCH_UNSIGNED_OPERATORS); the audit log marks them as weaker evidence.
Without a registry no signature is checked (a development set-up).

A refused input becomes a dead letter with a reason code; a seq gap is accepted and also
reported, because the gap is evidence of lost or suppressed events.
"""

from collections import deque
from collections.abc import Callable, Collection, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

from contracts import ContractError, Event, decode_event, verify
from contracts.keyring import Keyring, KeyringFile
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
    "unknown_source",  # a registry is configured and the source has no key in it
    "key_not_bound",  # the device is enrolled under another operator than the event claims
    "bad_signature",
    "revoked_key",
    "expired_key",  # signed with a key rotated out before the event occurred
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


@dataclass(slots=True)
class Admission:
    event: Event | None  # None: refused
    problems: list[Rejection] = field(default_factory=list)
    at: datetime | None = None  # the event's occurred_at, parsed (the engine needs it too)


class Keys(Protocol):
    """A Keyring, or a KeyringFile that reads its file again when it changes."""

    def current(self) -> Keyring: ...


class Gate:
    """``seen`` (event_id -> where it was first accepted) and ``last_seq`` (device -> seq) may
    be any mapping: dicts offline, changelogged tables in the stream processor. ``origin`` names
    the message being judged (e.g. partition:offset) so that a redelivery of the same message
    after a restart is not mistaken for a replayed event. ``max_future`` and ``max_age`` bound
    live traffic's event time around now; None lifts a bound (a replay of history)."""

    def __init__(
        self,
        keys: Keys | None = None,
        *,
        unsigned_operators: Collection[str] = (),
        max_future: timedelta | None = MAX_FUTURE,
        max_age: timedelta | None = MAX_AGE,
        dedup_window: int | None = 500_000,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        seen: MutableMapping[str, str] | None = None,
        last_seq: MutableMapping[str, int] | None = None,
    ) -> None:
        self.keys = keys
        self.unsigned_operators = frozenset(unsigned_operators)
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
        now = self.clock()
        at = parse_timestamp(event.occurred_at)
        if self.keys is not None:
            refused = self._identify(raw, event, at)
            if refused is not None:
                return refused
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
                return Admission(event, [], at)  # the same message again (redelivered after a restart)
            return _refuse("duplicate_event_id", f"event_id {event.event_id} was already accepted")
        problems: list[Rejection] = []
        seq, device = event.seq, event.device_id
        if seq is not None and device is not None:
            last = self._last_seq.get(device)
            if last is not None:
                if seq <= last:
                    return _refuse("seq_backwards", f"seq {seq} of {device} after {last}")
                if seq > last + 1:
                    problems.append(Rejection("seq_gap", f"{device} skipped seq {last + 1}..{seq - 1}"))
            self._last_seq[device] = seq
        self._remember(event.event_id, origin)
        return Admission(event, problems, at)

    def _identify(self, raw: bytes, event: Event, at: datetime) -> Admission | None:
        """None if the event's source is who it claims, or may send unsigned; else the refusal."""
        assert self.keys is not None
        keyring = self.keys.current()
        operator, device = event.operator_id, event.device_id
        keys = keyring.keys_of(operator, device)
        if not keys:
            elsewhere = keyring.operators_of(device) if device is not None else set()
            if elsewhere:
                return _refuse(
                    "key_not_bound",
                    f"device {device} is enrolled under {', '.join(sorted(elsewhere))}, not {operator}",
                )
            if event.sig is None and operator in self.unsigned_operators:
                return None
            return _refuse("unknown_source", f"{_source(event)} has no registered key")
        if event.sig is None:
            return _refuse(
                "missing_signature", f"{_source(event)} has a registered key but the event is unsigned"
            )
        for entry, key in keys:
            if not verify(raw, key):
                continue
            if entry.revoked_at is not None:
                return _refuse(
                    "revoked_key", f"{_source(event)}'s key {entry.key_id} was revoked at {entry.revoked_at}"
                )
            if entry.valid_until is not None and at > parse_timestamp(entry.valid_until):
                return _refuse(
                    "expired_key",
                    f"{_source(event)}'s key {entry.key_id} was rotated out at {entry.valid_until}",
                )
            return None
        return _refuse("bad_signature", f"signature does not match a key of {_source(event)}")

    def _remember(self, event_id: str, origin: str) -> None:
        self._seen[event_id] = origin or "-"
        if self._recent is None:
            return
        self._recent.append(event_id)
        if len(self._recent) > self._dedup_window:
            self._seen.pop(self._recent.popleft(), None)


def _source(event: Event) -> str:
    """The source an event claims, as a refusal names it."""
    return f"{event.operator_id}/{event.device_id or 'back-office'}"


def _refuse(reason: str, detail: str) -> Admission:
    return Admission(None, [Rejection(reason, detail)])


def load_keys(path: Path) -> KeyringFile:
    """The key registry at ``path`` (`frtwatch keys`, or `frtwatch simulate --keys-file`),
    read again when it changes. Raises OSError or KeyringError."""
    return KeyringFile(path)
