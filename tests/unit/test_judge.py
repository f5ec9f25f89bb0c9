"""The processor's stateful core without Kafka: state kept only in the mappings (the tables in
production) is enough to continue after a restart, with no violation lost or repeated."""

import inspect
import os
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from frtwatch import compiled
from producers.plan import Message
from producers.simulator import Simulation, run
from stream_processors.admission import Gate
from stream_processors.journal import Journal
from stream_processors.judge import Judge
from stream_processors.rules.pack import available_packs, load_packs

PACKS = load_packs(available_packs())


def traffic() -> list[Message]:
    sent: list[Message] = []
    start = datetime.now(UTC) - timedelta(minutes=5)
    run(Simulation(seed=31, events=6000, start=start, bad_share=0.02), sent.append, paced=False)
    return sent


def new_judge(stores: dict[str, dict[str, Any]]) -> Judge:
    gate = Gate(seen=stores["seen"], last_seq=stores["seq"])
    return Judge(PACKS, gate, facts=stores["facts"], pending=stores["pending"], published=stores["published"])


def judge_all(judge: Judge, messages: list[Message], offset: int = 0) -> list[str]:
    found = []
    for n, message in enumerate(messages):
        found += [v.revision_id for v in judge.judge(message.value, f"0:{offset + n}").violations]
    return found


def empty_stores() -> dict[str, dict[str, Any]]:
    return {name: {} for name in ("seen", "seq", "facts", "pending", "published")}


class Table(dict[str, tuple[int, str]]):
    """The changelogged table as the journal writes it, with the keys written in order."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[str] = []

    def write(self, partition: int, key: str, value: str | None) -> None:
        self.writes.append(key)
        if value is None:
            self.pop(key, None)
        else:
            self[key] = (partition, value)


def judge_for(journal: Journal) -> Judge:
    """As the processor makes them: the journal bounds the dedup and publication windows."""
    gate = Gate(seen=journal.seen, last_seq=journal.last_seq, dedup_window=None)
    return Judge(
        PACKS,
        gate,
        facts=journal.facts,
        pending=journal.pending,
        published=journal.published,
        published_window=None,
    )


def test_with_the_journal_bounding_the_windows_the_gate_and_judge_keep_no_order_of_their_own(
    request: pytest.FixtureRequest,
) -> None:
    """Kept, that order grew by every event and violation for the life of a worker."""
    if compiled.active():  # tracemalloc names no lines of compiled code: measure the interpreted
        interpreted = {**os.environ, "FRTWATCH_COMPILED": "0"}
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", request.node.nodeid],
            env=interpreted,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stdout[-3000:]
        return
    journal = Journal(Table().write, window_records=2)
    judge = judge_for(journal)
    messages = traffic()
    tracemalloc.start()
    try:
        for first in range(0, len(messages), 100):
            for n, message in enumerate(messages[first : first + 100], first):
                judge.judge(message.value, f"0:{n}")
            journal.commit(0, first)
        judge.flush_all()
        snapshot = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    lines, start = inspect.getsourcelines(Judge._unpublished)
    held = [
        stat.size
        for stat in snapshot.statistics("lineno")
        if stat.traceback[0].filename.endswith("admission.py")
        or (
            stat.traceback[0].filename.endswith("judge.py")
            and start <= stat.traceback[0].lineno < start + len(lines)
        )
    ]
    assert len(journal.seen) <= 300, "the journal keeps its window"
    assert sum(held) < 16_000, f"{sum(held)} bytes held for {len(messages)} events"


def test_a_restarted_judge_continues_exactly_where_the_first_stopped() -> None:
    messages = traffic()
    whole = new_judge(empty_stores())
    uninterrupted = judge_all(whole, messages) + [v.revision_id for v in whole.flush_all()]

    stores = empty_stores()
    half = len(messages) // 2
    first = new_judge(stores)
    found = judge_all(first, messages[:half])
    second = new_judge(stores)  # a new process: only the stores survive
    found += [v.revision_id for v in second.rebuild()]
    found += judge_all(second, messages[half:], offset=half)
    found += [v.revision_id for v in second.flush_all()]

    assert len(found) == len(set(found)), "a violation was published twice"
    assert_same_but_revisions_of_verdicts_before_the_restart(found, uninterrupted, second)
    assert len(uninterrupted) > 1000


def assert_same_but_revisions_of_verdicts_before_the_restart(
    found: list[str], uninterrupted: list[str], restarted: Judge
) -> None:
    """A restarted judge has its facts and waiting events back, not the verdicts made before
    (stream_processors/judge.py, rebuild): the revisions a late fact would have made of those
    are missing, and only those, each counted as beyond the evidence kept."""
    missing = set(uninterrupted) - set(found)
    assert set(found) <= set(uninterrupted)
    assert all(":" in record_id for record_id in missing), "only revision records may be missing"
    beyond = sum(engine.stats.beyond_evidence for engine in restarted.engines.values())
    assert beyond > 0 or not missing


def test_redelivered_messages_are_not_replays_and_publish_nothing_new() -> None:
    messages = traffic()[:2000]
    judge = new_judge(empty_stores())
    judge_all(judge, messages)
    again = [judge.judge(m.value, f"0:{n}") for n, m in enumerate(messages[-200:], start=1800)]
    assert not any(v.violations for v in again)
    assert not any(p.reason == "duplicate_event_id" for v in again for p in v.problems)


def test_pending_events_are_forgotten_once_decided() -> None:
    judge = new_judge(stores := empty_stores())
    judge_all(judge, traffic()[:3000])
    assert stores["pending"], "recognitions wait for their grace period"
    judge.flush_all()
    assert stores["pending"] == {}


def test_the_journal_records_enough_to_restart_exactly() -> None:
    """As the faust app runs it: batches of one partition, journal records as the only state."""
    table = Table()

    def run_batches(journal: Journal, judge: Judge, messages: list[Message], start: int) -> list[str]:
        found = []
        for first in range(0, len(messages), 250):
            for n, message in enumerate(messages[first : first + 250], start + first):
                found += [v.revision_id for v in judge.judge(message.value, f"0:{n}").violations]
            journal.commit(0, start + first)
        return found

    messages = traffic()
    whole = new_judge(empty_stores())
    uninterrupted = judge_all(whole, messages) + [v.revision_id for v in whole.flush_all()]

    half = len(messages) // 2
    first_journal = Journal(table.write)
    found = run_batches(first_journal, judge_for(first_journal), messages[:half], 0)
    batch_records = [key for key in table.writes if not key.startswith("fact|")]  # facts: one each, for good
    assert len(batch_records) <= 4 * (half // 250) + 10, "a few records per batch, not one per event"

    journal = Journal(table.write)  # a new worker: only the table survives
    journal.recover(dict(table))
    judge = judge_for(journal)
    found += [v.revision_id for v in judge.rebuild()]
    found += run_batches(journal, judge, messages[half:], half)
    found += [v.revision_id for v in judge.flush_all()]
    assert len(found) == len(set(found)), "a violation was published twice"
    assert_same_but_revisions_of_verdicts_before_the_restart(found, uninterrupted, judge)


def test_violations_published_but_not_journalled_are_not_published_again_once_found() -> None:
    """A crash between handing a batch's violations to the producer and journalling them: the
    next owner reads back what was published since the partition's stamp and journals it."""
    table = Table()

    messages = traffic()
    first = Journal(table.write)
    judge = judge_for(first)
    published = judge_all(judge, messages[:2000])
    first.commit(0, 0)
    first.stamp([0], 1_000)
    unjournalled = judge_all(judge, messages[2000:3000], offset=2000)  # then kill -9
    assert unjournalled, "the crashed batch published something"

    journal = Journal(table.write)
    journal.recover(dict(table))
    assert journal.journalled_until([0]) == 1_000
    assert journal.journalled_until([0, 1]) == 0, "a partition never stamped: anything may be missing"
    assert journal.stamp_due([0, 1], 1_500, every_ms=1_000) == [1]
    assert journal.stamp_due([0, 1], 2_000, every_ms=1_000) == [0, 1]
    journal.journal_published({0: unjournalled}, 2_000)
    judge = judge_for(journal)
    again = [v.revision_id for v in judge.rebuild()] + judge_all(judge, messages[2000:3000], offset=2000)
    assert not set(again) & set(published + unjournalled), "a violation was published twice"

    restarted = Journal(table.write)  # the found ones are journalled, for the owner after this one too
    restarted.recover(dict(table))
    assert set(unjournalled) <= set(restarted.published)
