"""The stateful heart of the processor, kept free of faust so it can be tested on its own:
admission (dedup, seq) and the rule engine, with every piece of state in mappings that the
faust app backs with changelogged tables.

What is stored: the fact events (registrations, consents, withdrawals, registry snapshots) as
the ledger the engine's facts are rebuilt from; the events still inside their grace period;
the event_ids already accepted; each device's last seq; and the ids of violations already
published, so a restarted worker does not publish one twice.
"""

from collections import deque
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from contracts import decode_event
from contracts.events import Envelope
from contracts.records import Violation
from contracts.timestamps import parse_timestamp
from stream_processors.admission import Gate, Rejection
from stream_processors.rules.engine import DEFAULT_EVIDENCE_LIMIT, DEFAULT_HORIZON, Engine
from stream_processors.rules.pack import Pack

FACT_TYPES = frozenset({"device.registered", "consent.granted", "consent.withdrawn", "registry.snapshot"})


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    problems: list[Rejection] = field(default_factory=list)
    accepted: Envelope | None = None  # the event, if admitted


class Judge:
    """One rule engine per lane (a partition of the judge's input): a lane holds whole
    operators, and its event time must follow only what that lane has read, or a lane read
    ahead would decide another lane's events before their facts arrived."""

    def __init__(
        self,
        packs: list[Pack],
        gate: Gate,
        *,
        facts: MutableMapping[str, str],
        pending: MutableMapping[str, str],
        published: MutableMapping[str, str],
        grace: timedelta = timedelta(seconds=10),
        horizon: timedelta = DEFAULT_HORIZON,
        evidence_limit: int = DEFAULT_EVIDENCE_LIMIT,
        sources: tuple[str, ...] = (),
        published_window: int | None = 500_000,
        marks_only: bool = False,
    ) -> None:
        self.gate = gate
        self._grace, self._sources, self._packs = grace, sources, packs
        self._horizon, self._evidence_limit = horizon, evidence_limit
        # Stored facts and waiting events are "lane|raw event", so a rebuild knows their lane.
        self.facts, self.pending, self.published = facts, pending, published
        # Publication order, to bound ``published``; None: its owner bounds it (the journal).
        self._published_order: deque[str] | None = deque() if published_window is not None else None
        self._published_window = published_window or 0
        self.engines: dict[int, Engine] = {}
        self._judged_lanes: set[int] = set()  # lanes this judge has judged an event of
        # In the processor event time follows the router's marks alone: a batch reaches a lane
        # as one bundle per operator, and one operator's bundle, judged first, would carry
        # event time past the events of another's bundle still to come (after a backlog: ten
        # seconds and more). Offline, in file order, every event moves it.
        self._marks_only = marks_only

    def engine(self, lane: int) -> Engine:
        engine = self.engines.get(lane)
        if engine is None:
            engine = self.engines[lane] = Engine(
                self._packs,
                grace=self._grace,
                sources=self._sources,
                horizon=self._horizon,
                evidence_limit=self._evidence_limit,
            )
        return engine

    def swap_packs(self, packs: list[Pack]) -> list[Violation]:
        """Judge with other packs from now on, keeping every fact and waiting event."""
        self._packs = packs
        return self.rebuild()

    def rebuild(self) -> list[Violation]:
        """Fresh engines from the stored facts and waiting events (after recovery). Returns the
        violations that had not been published yet."""
        self.engines, self._judged_lanes = {}, set()
        for lane, event in _by_time(self.facts.values()):
            self.engine(lane).learn(event)
        found: list[Violation] = []
        for lane, event in _by_time(self.pending.values()):
            found += self.engine(lane).process(event, source=None)
        for engine in self.engines.values():
            engine.decided.clear()
        return self._unpublished(found)

    def judge(self, raw: bytes, origin: str, lane: int = 0) -> Verdict:
        admission = self.gate.admit(raw, origin)
        verdict = Verdict(problems=admission.problems, accepted=admission.event)
        event = admission.event
        if event is None:
            return verdict
        engine = self.engine(lane)
        at = admission.at if admission.at is not None else parse_timestamp(event.occurred_at)
        if lane not in self._judged_lanes:
            # The verdicts made before this judge's first event of the lane (by another worker,
            # or by this one before a restart) are not in its evidence: only facts and waiting
            # events are stored. A fact older than that cannot revise them, and is counted.
            self._judged_lanes.add(lane)
            engine.evidence_from(at)
        stored = None
        if event.event_type in FACT_TYPES:
            stored = self.facts[event.event_id] = f"{lane}|{raw.decode()}"
        source = None if self._marks_only else origin.rpartition(":")[0]
        found = engine.process(event, source, at)
        if engine.last_queued:
            self.pending[event.event_id] = stored or f"{lane}|{raw.decode()}"
        self._forget_decided((engine,))  # only this lane's engine has decided anything
        verdict.violations = self._unpublished(found)
        return verdict

    def expect(self, lane: int, sources: Iterable[str]) -> None:
        """A bundle with events of these sources is next (see Engine.expect)."""
        self.engine(lane).expect(sources)

    def mark(
        self, lane: int, source: str, reached: datetime | None, caught_up_at: datetime | None
    ) -> list[Violation]:
        """A source's progress as the lane's reader reported it (see Engine.mark)."""
        found = self.engine(lane).mark(source, reached, caught_up_at)
        self._forget_decided()
        return self._unpublished(found)

    def tick(self) -> list[Violation]:
        found = [v for engine in self.engines.values() for v in engine.tick()]
        self._forget_decided()
        return self._unpublished(found)

    def flush_all(self) -> list[Violation]:
        """Decide everything still waiting (end of input)."""
        found = [v for engine in self.engines.values() for v in engine.flush_all()]
        self._forget_decided()
        return self._unpublished(found)

    def _forget_decided(self, engines: Iterable[Engine] | None = None) -> None:
        for engine in self.engines.values() if engines is None else engines:
            for event_id in engine.decided:
                self.pending.pop(event_id, None)
            engine.decided.clear()

    def _unpublished(self, violations: list[Violation]) -> list[Violation]:
        fresh = []
        for violation in violations:
            # A revision is a record of its own: keyed apart from the violation it revises.
            record_id = violation.revision_id
            if record_id in self.published:
                continue
            self.published[record_id] = "1"
            if self._published_order is not None:
                self._published_order.append(record_id)
                if len(self._published_order) > self._published_window:
                    self.published.pop(self._published_order.popleft(), None)
            fresh.append(violation)
        return fresh


def _by_time(stored: Iterable[str]) -> list[tuple[int, Envelope]]:
    """Stored "lane|raw event" values as (lane, event), in event time."""
    events = []
    for value in stored:
        lane, raw = value.split("|", 1)
        events.append((int(lane), decode_event(raw.encode())))
    return sorted(events, key=lambda item: parse_timestamp(item[1].occurred_at))
