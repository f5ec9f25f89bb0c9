"""The stateful heart of the processor, kept free of faust so it can be tested on its own:
admission (dedup, seq) and the rule engine, with every piece of state in mappings that the
faust app backs with changelogged tables.

What is stored: the fact events (registrations, consents, withdrawals, registry snapshots) as
the ledger the engine's facts are rebuilt from; the events still inside their grace period;
the event_ids already accepted; each device's last seq; and the ids of violations already
published, so a restarted worker does not publish one twice.
"""

from collections import deque
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import timedelta

from contracts import decode_event
from contracts.records import Violation
from stream_processors.admission import Gate, Rejection
from stream_processors.rules.engine import Engine
from stream_processors.rules.pack import Pack

FACT_TYPES = frozenset({"device.registered", "consent.granted", "consent.withdrawn", "registry.snapshot"})


@dataclass
class Verdict:
    violations: list[Violation] = field(default_factory=list)
    problems: list[Rejection] = field(default_factory=list)


class Judge:
    def __init__(
        self,
        packs: list[Pack],
        gate: Gate,
        *,
        facts: MutableMapping[str, str],
        pending: MutableMapping[str, str],
        published: MutableMapping[str, str],
        grace: timedelta = timedelta(seconds=10),
        sources: tuple[str, ...] = (),
        published_window: int = 500_000,
        engine_factory: Callable[[], Engine] | None = None,
    ) -> None:
        self.gate = gate
        self._sources = sources
        self.facts, self.pending, self.published = facts, pending, published
        self._published_order: deque[str] = deque()
        self._published_window = published_window
        self._new_engine: Callable[[], Engine] = engine_factory or (
            lambda: Engine(packs, grace=grace, sources=sources)
        )
        self.engine = self._new_engine()

    def swap_packs(self, packs: list[Pack]) -> list[Violation]:
        """Judge with other packs from now on, keeping every fact and waiting event."""
        grace, sources = self.engine.grace, self._sources
        self._new_engine = lambda: Engine(packs, grace=grace, sources=sources)
        return self.rebuild()

    def rebuild(self) -> list[Violation]:
        """A fresh engine from the stored facts and waiting events (after recovery). Returns the
        violations that had not been published yet."""
        self.engine = self._new_engine()
        facts = sorted(
            (decode_event(raw.encode()) for raw in self.facts.values()), key=lambda e: e.occurred_at
        )
        for event in facts:
            self.engine.learn(event)
        waiting = sorted(
            (decode_event(raw.encode()) for raw in self.pending.values()), key=lambda e: e.occurred_at
        )
        found: list[Violation] = []
        for event in waiting:
            found += self.engine.process(event, source=None)
        self.engine.decided.clear()
        return self._unpublished(found)

    def judge(self, raw: bytes, origin: str) -> Verdict:
        admission = self.gate.admit(raw, origin)
        verdict = Verdict(problems=admission.problems)
        event = admission.event
        if event is None:
            return verdict
        if event.event_type in FACT_TYPES:
            self.facts[event.event_id] = raw.decode()
        found = self.engine.process(event, source=origin.rpartition(":")[0])
        if self.engine.last_queued:
            self.pending[event.event_id] = raw.decode()
        self._forget_decided()
        verdict.violations = self._unpublished(found)
        return verdict

    def tick(self) -> list[Violation]:
        found = self.engine.tick()
        self._forget_decided()
        return self._unpublished(found)

    def flush_all(self) -> list[Violation]:
        """Decide everything still waiting (end of input)."""
        found = self.engine.flush_all()
        self._forget_decided()
        return self._unpublished(found)

    def _forget_decided(self) -> None:
        for event_id in self.engine.decided:
            self.pending.pop(event_id, None)
        self.engine.decided.clear()

    def _unpublished(self, violations: list[Violation]) -> list[Violation]:
        fresh = []
        for violation in violations:
            if violation.violation_id in self.published:
                continue
            self.published[violation.violation_id] = "1"
            self._published_order.append(violation.violation_id)
            if len(self._published_order) > self._published_window:
                self.published.pop(self._published_order.popleft(), None)
            fresh.append(violation)
        return fresh
