"""A violation's records as audit entries: each record (the original, a retraction, a late
detection) is an entry of its own, named by its revision id, so the log keeps every record once
and a redelivered record is a repeat; an original keeps the id it always had."""

import json

import msgspec

from audit import entries
from contracts import Violation, canonical_json, sign, topics
from contracts.artifacts import example_violation

ORIGINAL = msgspec.json.decode(example_violation(), type=Violation)
LATE_FACT = "7c1e9a52-2f4b-4d0a-9a51-2b8f3c0d6e11"
RETRACTION = msgspec.structs.replace(
    ORIGINAL,
    status="retracted",
    revised_at="2026-11-21T09:30:00.000Z",
    revised_by=[LATE_FACT],
    explanation="A consent given before the recognition arrived late: the violation no longer stands.",
)


def entry(record: Violation, offset: int = 0) -> entries.Entry:
    return entries.violation(msgspec.json.encode(record), f"{topics.VIOLATIONS}:0:{offset}")


def test_an_original_keeps_its_violation_id_as_entry_id_and_its_body() -> None:
    original = entry(ORIGINAL)
    assert original.entry_id == original.violation_id == ORIGINAL.violation_id
    assert original.status == "open"
    assert b"status" not in original.body and b"revised" not in original.body  # as before revisions


def test_a_retraction_is_an_entry_of_its_own_of_the_same_violation() -> None:
    original, retraction = entry(ORIGINAL), entry(RETRACTION, 1)
    assert retraction.entry_id == RETRACTION.revision_id != original.entry_id
    assert retraction.entry_id.startswith(f"{ORIGINAL.violation_id}:")
    assert retraction.violation_id == original.violation_id and retraction.status == "retracted"
    assert retraction.body != original.body
    assert (retraction.rule_id, retraction.operator_id, retraction.occurred_at) == (
        original.rule_id,
        original.operator_id,
        original.occurred_at,
    )


def test_a_redelivered_record_has_the_same_entry_id() -> None:
    assert entry(RETRACTION, 1).entry_id == entry(RETRACTION, 7).entry_id
    assert entry(ORIGINAL, 0).entry_id == entry(ORIGINAL, 5).entry_id


def test_a_late_detection_and_a_later_retraction_are_distinct_entries() -> None:
    late = msgspec.structs.replace(
        ORIGINAL, revised_at="2026-11-21T09:30:00.000Z", revised_by=["e-withdrawal"]
    )
    withdrawn_again = msgspec.structs.replace(late, status="retracted", revised_by=["e-consent"])
    ids = {entry(record).entry_id for record in (ORIGINAL, late, withdrawn_again, RETRACTION)}
    assert len(ids) == 4
    assert entry(late).status == "open"


def test_other_entries_name_no_violation() -> None:
    from contracts.artifacts import example_events

    raw = canonical_json(sign(json.loads(next(iter(example_events().values()))), b"k" * 32))
    event = entries.accepted_event(raw, f"{topics.ACCEPTED}:0:0")
    assert (event.violation_id, event.status) == ("", "")
    assert event.row(0, event.occurred_at)[-2:] == ("", "")


def test_an_unsigned_event_is_marked_as_weaker_evidence() -> None:
    from contracts.artifacts import example_events

    raw = next(iter(example_events().values()))
    assert json.loads(raw)["sig"] is None
    event = entries.accepted_event(raw, f"{topics.ACCEPTED}:0:0")
    assert event.status == "unsigned"
    assert json.loads(event.body)["sig"] is None  # the body hashed into the log says so too
