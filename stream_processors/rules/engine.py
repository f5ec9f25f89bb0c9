"""The rule engine: events in, violations out, no I/O.

Facts (registrations, consents, filings) are updated as events arrive, and every question is
asked as of the event's own time. A case whose predicates look for an absence (no valid
consent, no registration) is decided only when the event-time watermark has passed the event
by the grace period, so a consent that arrives late but occurred in time still counts; if the
stream goes quiet (every source's reader reports it has caught up), ``tick`` lets wall-clock
time stand in for event time. Cases that need no waiting are decided at once.

A fact can still come later than the grace period (contract.md, "Verdict revisions"). Within
the revision horizon the engine keeps the decided events a late fact could change
(stream_processors/rules/evidence.py): a late fact has the events of its subject, device or
registry judged again, and every verdict that changed comes out as a revision, a retraction or
a violation found late. A fact later than the horizon is counted, and verdicts stand.
"""

import hashlib
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from contracts.events import ConsentGranted, ConsentWithdrawn, DeviceRegistered, Envelope, RegistrySnapshot
from contracts.records import Violation
from contracts.timestamps import format_timestamp, parse_timestamp
from stream_processors.rules import plan
from stream_processors.rules.evidence import Evidence, Key, Opened, epoch_ms, from_epoch_ms
from stream_processors.rules.facts import DEVICE_FACTS, Consent, Facts, Registration
from stream_processors.rules.pack import Case, Pack, Rule
from stream_processors.rules.predicates import LEARNERS, Context

DEFAULT_GRACE = timedelta(seconds=10)
DEFAULT_HORIZON = timedelta(hours=24)
# Decided events kept for revision, at most: the horizon's memory does not grow with every
# event judged (stream_processors/rules/evidence.py).
DEFAULT_EVIDENCE_LIMIT = 200_000


def violation_id(policy_pack: str, rule_id: str, event_id: str) -> str:
    """The same rule of the same pack on the same event always gives the same id, so replays
    and restarts never duplicate a violation (the pack is part of it: both packs may fire)."""
    return hashlib.sha256(f"{policy_pack}\x1f{rule_id}\x1f{event_id}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class _Entry:
    order: int  # the case's place in the packs: violations come out in this order
    pack: Pack
    rule: Rule
    case: Case
    waits: bool  # the case looks for an absence (computed once: it is asked per event)
    about_registration: bool  # the case is the unregistered-device one


def _groups(entries: Iterable[_Entry]) -> tuple[plan.Group, ...]:
    """The questions asked of an event, each answered once (stream_processors/rules/plan.py)."""
    return plan.groups(entries)


@dataclass
class Stats:
    events: int = 0
    violations: int = 0
    late_events: int = 0  # arrived after their grace period had passed
    pending: int = 0
    retractions: int = 0  # violations a late fact disproved
    late_detections: int = 0  # violations a late fact proved
    beyond_horizon: int = 0  # facts later than the revision horizon: verdicts stand
    beyond_evidence: int = 0  # late facts older than the evidence kept: a revision may be missed


def _keys(event: Envelope) -> tuple[Key, ...]:
    """What a late fact names to find the decided events it concerns: the subject (consents),
    the device (registrations), the operator's registry (snapshots)."""
    keys: list[Key] = []
    subject = getattr(event, "subject_ref", None)
    if subject is not None:
        keys.append(("subject", event.operator_id, subject))
    if event.device_id is not None:
        keys.append(("device", event.device_id))
    if isinstance(event, RegistrySnapshot):
        keys.append(("registry", event.operator_id))
    return tuple(keys)


# An event waiting for its grace period: (due, order, event, at, device known on arrival, its
# immediate violations kept compactly, the registration they were judged with).
_Waiting = tuple[datetime, int, Envelope, datetime, bool, tuple[Opened, ...], str | None]


class Engine:
    def __init__(
        self,
        packs: list[Pack],
        *,
        grace: timedelta = DEFAULT_GRACE,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        sources: Iterable[str] = (),
        mark_ttl: timedelta = timedelta(seconds=3),
        horizon: timedelta = DEFAULT_HORIZON,
        evidence_limit: int = DEFAULT_EVIDENCE_LIMIT,
    ) -> None:
        self.grace = grace
        # Zero: no revisions, and nothing is kept for them.
        self.evidence = Evidence(horizon, evidence_limit) if horizon > timedelta(0) else None
        self.mark_ttl = mark_ttl
        self.clock = clock
        self.facts = Facts()
        self.stats = Stats()
        self._packs = packs
        self._by_type: dict[str, list[_Entry]] = {}
        self._entries: list[_Entry] = []  # by order
        order = itertools.count()
        for pack in packs:
            for rule in pack.rules:
                for case in rule.cases:
                    entry = _Entry(
                        next(order),
                        pack,
                        rule,
                        case,
                        case.waits,
                        case.about_registration,
                    )
                    self._entries.append(entry)
                    for event_type in case.on:
                        self._by_type.setdefault(event_type, []).append(entry)
        # What is asked of an event: at once; after its grace period, its device known or not
        # yet known when it arrived; after its grace period, its device still unknown.
        self._immediate = {t: _groups(e for e in es if not e.waits) for t, es in self._by_type.items()}
        self._waiting = {t: _groups(e for e in es if e.waits) for t, es in self._by_type.items()}
        self._all = {t: _groups(es) for t, es in self._by_type.items()}
        self._unregistered = {
            t: _groups(e for e in es if e.about_registration) for t, es in self._by_type.items()
        }
        self._any_waits = {t: any(e.waits for e in entries) for t, entries in self._by_type.items()}
        # (due, order, event, at, device known on arrival, its immediate violations kept compactly,
        # the registration they were judged with)
        self._pending: list[
            tuple[datetime, int, Envelope, datetime, bool, tuple[Opened, ...], str | None]
        ] = []
        self._order = itertools.count()
        self._watermark: datetime | None = None  # event time: never moves backwards
        # The latest event time each input source reached; None: expected, not heard from yet.
        self._source_times: dict[str, datetime | None] = dict.fromkeys(sources)
        # Sources whose reader last said it had nothing more to read, with when we heard it: a
        # reader that stops reporting (it died) stops vouching after mark_ttl.
        self._caught_up: dict[str, datetime] = {}
        self._latest: datetime | None = None  # the latest event time seen at all
        self._quiet: tuple[datetime, datetime] | None = None  # (wall, event time) when all caught up
        self.decided: list[str] = []  # ids of waiting events decided since the caller last cleared it
        self.last_queued = False  # whether the last processed event now waits for its grace period

    def process(
        self, event: Envelope, source: str | None = "", at: datetime | None = None
    ) -> list[Violation]:
        """Judge one event; return the violations now decided (its own immediate ones and any
        waiting ones whose grace period this event's time has closed). ``source`` names the
        input partition it came through: event time advances only as far as the slowest
        source has reached, so a source that lags (a stalled router, a rebalance) holds
        decisions back instead of having its late events judged without them. ``None``: the
        event does not move event time (a replay while rebuilding state). ``at``: its occurred_at
        already parsed (by the gate)."""
        if at is None:
            at = parse_timestamp(event.occurred_at)
        self.stats.events += 1
        if self._watermark is not None and at < self._watermark - self.grace:
            self.stats.late_events += 1
        previous = self._learn(event, at)
        found = self._revise(event, at) if event.event_type in FACTS else []
        entries = self._by_type.get(event.event_type, ())
        device = self._device_for(event, at)
        device_known = device is not None or event.device_id is None
        immediate: tuple[Opened, ...] = ()
        if device_known:
            fired = self._fire(event, at, device, previous, self._immediate.get(event.event_type, ()))
            if fired:
                detected = self.clock()
                self.stats.violations += len(fired)
                found += self._made(event, device, fired, detected)
                immediate = self._opened(device, fired, detected)
        self.last_queued = self._any_waits.get(event.event_type, False) or bool(entries and not device_known)
        if self.last_queued:
            registration = device.event_id if device is not None else None
            heapq.heappush(
                self._pending,
                (at + self.grace, next(self._order), event, at, device_known, immediate, registration),
            )
        elif entries:
            self._keep(event, at, immediate)
        if source is not None:
            moved = self._reach(source, at)
            if self._caught_up.pop(source, None) is not None or moved:
                found += self._advance()
        return found

    def mark(self, source: str, reached: datetime | None, caught_up_at: datetime | None) -> list[Violation]:
        """Progress reported by a source's reader: it has passed on every event of ``source``
        up to event time ``reached``, and ``caught_up_at`` is when it found nothing more to
        read (None: it had more). A caught-up source holds nothing back; when every source is
        caught up the stream is quiet and ``tick`` lets wall-clock time stand in for event
        time. The claim holds for mark_ttl from when it was made, not from when it is read:
        a mark read again after a restart tells of a past moment and vouches for nothing."""
        if reached is not None:
            self._reach(source, reached)
        else:
            self._source_times.setdefault(source, None)
        if caught_up_at is not None:
            self._caught_up[source] = min(caught_up_at, self.clock())
        else:
            self._caught_up.pop(source, None)
        return self._advance()

    def expect(self, sources: Iterable[str]) -> None:
        """Events of these sources are about to be processed: they are no longer caught up, so
        the others' events processed first cannot carry event time past theirs."""
        for source in sources:
            self._caught_up.pop(source, None)

    def _reach(self, source: str, at: datetime) -> bool:
        """Note that ``source`` reached ``at``; True if that moved it on."""
        at = min(at, self.clock())  # a device clock running ahead must not carry event time
        if self._latest is None or at > self._latest:
            self._latest = at
        reached = self._source_times.get(source)
        if reached is None or at > reached:
            self._source_times[source] = at
            return True
        return False

    def _advance(self) -> list[Violation]:
        """Move event time to the slowest source still being read. A source never heard from
        holds everything back: its events may be the ones that decide."""
        if not self._source_times:
            return []
        stale = self.clock() - self.mark_ttl
        active = [t for s, t in self._source_times.items() if self._caught_up.get(s, stale) <= stale]
        if active:
            self._quiet = None
            if any(t is None for t in active):
                return []
            low = min(t for t in active if t is not None)
        else:
            if self._latest is None:
                return []
            low = self._latest
            if self._quiet is None:
                self._quiet = (self.clock(), low)
        if self._watermark is None or low > self._watermark:
            self._watermark = low
        return self._flush(self._watermark)

    def learn(self, event: Envelope) -> None:
        """Take in the facts an event carries without judging it (rebuilding state)."""
        at = parse_timestamp(event.occurred_at)
        latest = min(at, self.clock())
        if self._latest is None or latest > self._latest:
            self._latest = latest
        self._learn(event, at)

    def evidence_from(self, at: datetime) -> None:
        """Nothing decided before event time ``at`` is kept here (an engine that took over a
        lane, or was rebuilt after a restart): a late fact older than it is counted as beyond
        the evidence."""
        if self.evidence is not None:
            floor = self.evidence.floor
            self.evidence.floor = at if floor is None else max(floor, at)

    def tick(self) -> list[Violation]:
        """While every source is caught up, let wall-clock time advance event time."""
        found = self._advance()
        if self._quiet is None:
            return found
        wall, at = self._quiet
        until = at + (self.clock() - wall)
        if self._watermark is None or until > self._watermark:
            self._watermark = until
        return found + self._flush(self._watermark)

    def flush_all(self) -> list[Violation]:
        """Decide everything still waiting (end of input)."""
        return self._flush(datetime.max.replace(tzinfo=UTC))

    # -- facts ---------------------------------------------------------------------------------

    def _learn(self, event: Envelope, at: datetime) -> Registration | None:
        """Update the facts with ``event``; for a registration return the one before it."""
        if isinstance(event, DeviceRegistered):
            facts = {name: getattr(event, name) for name in DEVICE_FACTS}
            return self.facts.register(event.device_id, at, event.event_id, facts)
        if isinstance(event, ConsentGranted):
            expires = parse_timestamp(event.expires_at) if event.expires_at else None
            consent = Consent(
                event.consent_id, at, frozenset(event.purposes), event.kind, event.subject_minor, expires
            )
            self.facts.grant(event.operator_id, event.subject_ref, consent)
        elif isinstance(event, ConsentWithdrawn):
            self.facts.withdraw(event.operator_id, event.consent_id, at)
        for learn in LEARNERS.get(type(event), ()):
            for pack in self._packs:
                learn(self.facts, pack.name, pack.params, event, at)
        return None

    def _device_for(self, event: Envelope, at: datetime) -> Registration | None:
        if event.device_id is None:
            return None
        if isinstance(event, DeviceRegistered):
            return next(
                r for r in reversed(self.facts.registrations[event.device_id]) if r.event_id == event.event_id
            )
        return self.facts.device(event.device_id, at)

    # -- judging -------------------------------------------------------------------------------

    def _flush(self, until: datetime) -> list[Violation]:
        found: list[Violation] = []
        while self._pending and self._pending[0][0] <= until:
            _, _, event, at, device_known, immediate, registration = heapq.heappop(self._pending)
            self.decided.append(event.event_id)
            device = self._device_for(event, at)
            if device is not None and device.event_id != registration and device_known:
                # A registration came while the event waited: what was decided at once is revised.
                cause = f"the registration of device {event.device_id} at {format_timestamp(device.at)}"
                again = self._fire(event, at, device, None, self._immediate.get(event.event_type, ()))
                changed, immediate = self._revised(event, device, immediate, again, device.event_id, cause)
                found += changed
            if event.device_id is not None and device is None:
                asked = self._unregistered
            else:
                asked = self._waiting if device_known else self._all
            fired = self._fire(event, at, device, None, asked.get(event.event_type, ()))
            if fired:
                detected = self.clock()
                self.stats.violations += len(fired)
                found += self._made(event, device, fired, detected)
                immediate += self._opened(device, fired, detected)
            self._keep(event, at, immediate)
        self.stats.pending = len(self._pending)
        return found

    # -- revisions -----------------------------------------------------------------------------

    def _keep(self, event: Envelope, at: datetime, opened: tuple[Opened, ...]) -> None:
        if self.evidence is not None:
            self.evidence.keep(event, at, _keys(event), opened, self._watermark)

    def _opened(
        self, device: Registration | None, fired: list[_Entry], detected: datetime
    ) -> tuple[Opened, ...]:
        registration = device.event_id if device is not None else None
        return tuple((entry.order, epoch_ms(detected), registration) for entry in fired)

    def _revise(self, fact: Envelope, at: datetime) -> list[Violation]:
        """Judge again the decided events a late ``fact`` concerns; return what changed."""
        evidence = self.evidence
        if evidence is None:
            return []
        if self._watermark is not None and at < self._watermark - evidence.horizon:
            self.stats.beyond_horizon += 1
            return []
        late = self._watermark is not None and at < self._watermark - self.grace
        if late and evidence.floor is not None and at <= evidence.floor:
            self.stats.beyond_evidence += 1
        found: list[Violation] = []
        for number, event in evidence.since(_fact_key(fact), at):
            found += self._judge_again(number, event, fact)
        return found

    def _judge_again(self, number: int, event: Envelope, fact: Envelope) -> list[Violation]:
        assert self.evidence is not None
        at = parse_timestamp(event.occurred_at)  # the index's milliseconds are for choosing only
        device = self._device_for(event, at)
        previous = None
        if device is None and event.device_id is not None:
            asked = self._unregistered
        else:
            asked = self._all
            if isinstance(event, DeviceRegistered):
                previous = self.facts.before(event.device_id, event.event_id)
        fired = self._fire(event, at, device, previous, asked.get(event.event_type, ()))
        changed, opened = self._revised(
            event, device, self.evidence.opened.get(number, ()), fired, fact.event_id, _describe(fact)
        )
        if opened:
            self.evidence.opened[number] = opened
        else:
            self.evidence.opened.pop(number, None)
        return changed

    def _revised(
        self,
        event: Envelope,
        device: Registration | None,
        opened: tuple[Opened, ...],
        fired: list[_Entry],
        cause_id: str,
        cause: str,
    ) -> tuple[list[Violation], tuple[Opened, ...]]:
        """What changed between the violations ``opened`` on ``event`` and the cases ``fired``
        now: a retraction of each no longer fired (made again as it was published), a late
        detection of each newly fired; and the violations open now."""
        was = {entry[0]: entry for entry in opened}
        now = {entry.order for entry in fired}
        if now == was.keys():
            return [], opened
        revised = self.clock()
        revision = {"revised_at": format_timestamp(revised), "revised_by": [cause_id]}
        changed: list[Violation] = []
        for order, detected, registration in was.values():
            if order not in now:
                self.stats.retractions += 1
                then = self.facts.registration(event.device_id, registration) if registration else None
                (original,) = self._made(event, then, [self._entries[order]], from_epoch_ms(detected))
                changed.append(
                    msgspec.structs.replace(
                        original,
                        status="retracted",
                        explanation=f"No longer stands: {cause}, delivered after the verdict, changes "
                        f"the facts it rested on. The verdict was: {original.explanation}",
                        **revision,
                    )
                )
        late = [entry for entry in fired if entry.order not in was]
        self.stats.late_detections += len(late)
        self.stats.violations += len(late)
        for violation in self._made(event, device, late, revised):
            changed.append(
                msgspec.structs.replace(
                    violation,
                    explanation=f"{violation.explanation} Found late: {cause} was delivered after the "
                    "first verdict.",
                    **revision,
                )
            )
        still = tuple(was[order] for order in sorted(now & was.keys()))
        return changed, still + self._opened(device, late, revised)

    def _fire(
        self,
        event: Envelope,
        at: datetime,
        device: Registration | None,
        previous: Registration | None,
        groups: tuple[plan.Group, ...],
    ) -> list[_Entry]:
        """The cases that hold for ``event``, in the packs' order."""
        fired: list[_Entry] = []
        contexts: dict[str | None, Context] = {}
        for group in groups:
            key = group.pack.name if group.pack is not None else None
            ctx = contexts.get(key)
            if ctx is None:
                pack = group.pack or group.entries[0].pack
                ctx = contexts[key] = Context(event, at, device, previous, self.facts, pack.name, pack.params)
            group.fire(ctx, fired)
        fired.sort(key=_order)
        return fired

    def _made(
        self, event: Envelope, device: Registration | None, fired: list[_Entry], detected: datetime
    ) -> list[Violation]:
        """The violation records of the cases fired."""
        if not fired:
            return []
        fields = _Fields(event, device)
        detected_at = format_timestamp(detected)
        return [self._violation(event, device, entry, fields, detected_at) for entry in fired]

    def _violation(
        self, event: Envelope, device: Registration | None, entry: _Entry, fields: "_Fields", detected_at: str
    ) -> Violation:
        evidence = [event.event_id]
        if device is not None and device.event_id != event.event_id:
            evidence.append(device.event_id)
        return Violation(
            violation_id=violation_id(entry.pack.name, entry.rule.rule_id, event.event_id),
            rule_id=entry.rule.rule_id,
            policy_pack=entry.pack.name,
            severity=entry.rule.severity,
            reference=entry.rule.reference,
            operator_id=event.operator_id,
            site_id=event.site_id,
            device_id=event.device_id,
            subject_ref=getattr(event, "subject_ref", None),
            event_ids=evidence,
            occurred_at=event.occurred_at,
            detected_at=detected_at,
            explanation=entry.case.explanation.format_map(fields),
            ruleset_hash=entry.pack.ruleset_hash,
        )


FACTS = frozenset({"device.registered", "consent.granted", "consent.withdrawn", "registry.snapshot"})


def _fact_key(fact: Envelope) -> Key:
    """The decided events a late fact can change: its subject's, its device's, its registry's."""
    if isinstance(fact, ConsentGranted | ConsentWithdrawn):
        return ("subject", fact.operator_id, fact.subject_ref)
    if isinstance(fact, DeviceRegistered):
        return ("device", fact.device_id)
    return ("registry", fact.operator_id)


def _describe(fact: Envelope) -> str:
    """The late fact, in words, for the revision's explanation."""
    if isinstance(fact, ConsentGranted):
        return f"consent {fact.consent_id} granted at {fact.occurred_at}"
    if isinstance(fact, ConsentWithdrawn):
        return f"the withdrawal of consent {fact.consent_id} at {fact.occurred_at}"
    if isinstance(fact, DeviceRegistered):
        return f"the registration of device {fact.device_id} at {fact.occurred_at}"
    return f"the registry snapshot of {fact.occurred_at}"


def _order(entry: _Entry) -> int:
    return entry.order


class _Fields:
    """Values for an explanation template: the event's fields and the device's as device_*,
    looked up as the template names them (no copy of the event made for each violation)."""

    def __init__(self, event: Envelope, device: Registration | None) -> None:
        self.event, self.device = event, device

    def __getitem__(self, key: str) -> Any:
        device = self.device
        if device is not None and key.startswith("device_") and key[7:] in device.facts:
            value = device.facts[key[7:]]
        elif key in self.event.__struct_fields__:
            value = getattr(self.event, key)
        else:
            raise KeyError(key)
        if isinstance(value, list):
            return ", ".join(map(str, value))
        return "none" if value is None else value


def run_events(engine: Engine, events: Iterator[Envelope]) -> Iterator[Violation]:
    """Every violation of ``events`` in order, then what was still waiting."""
    for event in events:
        yield from engine.process(event)
    yield from engine.flush_all()
