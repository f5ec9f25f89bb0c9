"""Verdict revisions in the pure engine and the processor's judge: what a late fact changes,
what it leaves alone, and the memory the horizon may hold."""

import hashlib
from datetime import timedelta
from typing import Any

import msgspec

from contracts import canonical_json
from contracts.events import Envelope
from contracts.timestamps import parse_timestamp
from stream_processors.admission import Gate
from stream_processors.judge import Judge
from stream_processors.rules.engine import Engine
from stream_processors.rules.evidence import CHUNK, Evidence
from stream_processors.rules.examples import build_events, load_examples
from stream_processors.rules.pack import load_packs

DOCUMENT = load_examples()
PACK = load_packs(["cn-cac-2025"])


def events(*specs: dict[str, Any]) -> list[Envelope]:
    name = hashlib.sha256(repr(specs).encode()).hexdigest()  # event ids differ between histories
    return build_events(DOCUMENT, {"name": name, "events": list(specs)})


def recognitions(count: int, first_at: float = 0.0) -> list[dict[str, Any]]:
    """Recognitions of different subjects without consent, one a second."""
    return [
        {"type": "recognition.performed", "at": first_at + n, "subject_ref": f"s{n}", "consent_id": None}
        for n in range(count)
    ]


def test_the_evidence_kept_is_bounded_by_count_and_a_fact_beyond_it_is_counted() -> None:
    engine = Engine(PACK, grace=timedelta(seconds=10), evidence_limit=2 * CHUNK)
    stream = events({"type": "device.registered", "at": -100}, *recognitions(2000))
    for event in stream:
        engine.process(event)
    # whole chunks come and go: the limit, and the chunk being filled
    assert engine.evidence is not None and CHUNK <= len(engine.evidence) <= 3 * CHUNK
    (late,) = events({"type": "consent.granted", "at": 3, "subject_ref": "s3"})
    assert engine.process(late) == []  # its recognition's evidence was pushed out by the limit
    assert engine.stats.beyond_evidence == 1 and engine.stats.beyond_horizon == 0


def test_the_evidence_kept_is_bounded_by_the_horizon_and_a_fact_beyond_it_is_counted() -> None:
    engine = Engine(PACK, grace=timedelta(seconds=10), horizon=timedelta(seconds=60))
    stream = events({"type": "device.registered", "at": -100}, *recognitions(2000))
    for event in stream:
        engine.process(event)
    assert engine.evidence is not None and 50 <= len(engine.evidence) <= 70 + 2 * CHUNK  # whole chunks
    (late,) = events({"type": "consent.granted", "at": 3, "subject_ref": "s3"})
    assert engine.process(late) == []
    assert engine.stats.beyond_horizon == 1 and engine.stats.beyond_evidence == 0
    (in_time,) = events({"type": "consent.granted", "at": 1970, "subject_ref": "s1970", "consent_id": "c2"})
    (retraction,) = engine.process(in_time)
    assert retraction.status == "retracted" and retraction.revised_by == [in_time.event_id]
    assert retraction.event_ids[0] == stream[1971].event_id


def test_without_a_horizon_nothing_is_kept() -> None:
    engine = Engine(PACK, horizon=timedelta(0))
    for event in events({"type": "device.registered", "at": -100}, *recognitions(100)):
        engine.process(event)
    assert engine.evidence is None


def test_a_retraction_keeps_the_original_fields_and_says_why() -> None:
    engine = Engine(PACK, grace=timedelta(seconds=10))
    registration, recognition, snapshot, consent = events(
        {"type": "device.registered", "at": -100},
        {"type": "recognition.performed", "at": 5},
        {"type": "registry.snapshot", "at": 30},
        {"type": "consent.granted", "at": 4},
    )
    found = [v for e in (registration, recognition, snapshot) for v in engine.process(e)]
    (original,) = found
    (retraction,) = engine.process(consent)
    assert retraction.violation_id == original.violation_id
    assert retraction.detected_at == original.detected_at and retraction.event_ids == original.event_ids
    assert retraction.status == "retracted" and retraction.revised_at is not None
    assert retraction.explanation.startswith(
        "No longer stands: consent c1 granted at 2026-03-02T09:00:04.000Z"
    )
    assert retraction.revision_id != original.revision_id == original.violation_id
    assert engine.stats.retractions == 1


def test_the_judge_publishes_each_revision_once() -> None:
    stores: dict[str, dict[str, Any]] = {
        name: {} for name in ("seen", "seq", "facts", "pending", "published")
    }
    gate = Gate(seen=stores["seen"], last_seq=stores["seq"], max_age=None)
    judge = Judge(PACK, gate, facts=stores["facts"], pending=stores["pending"], published=stores["published"])
    stream = events(
        {"type": "device.registered", "at": -100},
        {"type": "recognition.performed", "at": 5},
        {"type": "registry.snapshot", "at": 30},
        {"type": "consent.granted", "at": 4},
    )
    records = []
    for n, event in enumerate(stream):
        records += judge.judge(canonical_json(msgspec.to_builtins(event)), f"0:{n}").violations
    assert [(r.rule_id, r.status) for r in records] == [
        ("FRT-CONSENT-MISSING", "open"),
        ("FRT-CONSENT-MISSING", "retracted"),
    ]
    assert set(stores["published"]) == {r.revision_id for r in records}


def test_the_evidence_index_forgets_the_records_gone() -> None:
    """Memory stays flat: keys whose records all left the evidence leave its index too."""
    evidence = Evidence(timedelta(hours=24), limit=2 * CHUNK)
    stream = events(*recognitions(70 * CHUNK))
    for event in stream:
        key = ("subject", "op-1", event.subject_ref)
        evidence.keep(event, parse_timestamp(event.occurred_at), (key,), (), None)
    assert len(evidence) <= 3 * CHUNK
    assert len(evidence._by_key) <= 2 * CHUNK + 64 * CHUNK  # pruned every 64 chunks gone
    last = stream[-1]
    found = list(evidence.since(("subject", "op-1", last.subject_ref), parse_timestamp(last.occurred_at)))
    assert [event.event_id for _, event in found] == [last.event_id]
    assert evidence.floor is not None


def test_events_are_judged_again_at_their_own_time_to_the_last_digit() -> None:
    """The evidence indexes milliseconds; an event of 05.0004 is judged again at 05.0004, after
    the consent of 05.0003 that covers it, and an unrelated late fact revises nothing."""
    engine = Engine(PACK, grace=timedelta(seconds=10))
    stream = events(
        {"type": "device.registered", "at": -100},
        {"type": "consent.granted", "occurred_at": "2026-03-02T09:00:05.0003Z"},
        {"type": "recognition.performed", "occurred_at": "2026-03-02T09:00:05.0004Z"},
        {"type": "registry.snapshot", "at": 30},
        {"type": "consent.granted", "at": 4, "consent_id": "c2", "purposes": ["marketing"]},
    )
    assert [v for e in stream for v in engine.process(e)] == []
    assert engine.stats.retractions == engine.stats.late_detections == 0
