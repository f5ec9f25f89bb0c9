"""The simulator's reference reading of the rules, on small hand-made histories."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from contracts.timestamps import format_timestamp
from producers.builder import EventBuilder
from producers.ground_truth import DRAFT, FINAL, GroundTruth

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # a Monday
DEVICE = EventBuilder(operator_id="op", site_id="s", device_id="cam")
OFFICE = EventBuilder(operator_id="op")
GATE = {
    "venue_type": "office",
    "location_type": "entrance",
    "public_place": False,
    "purposes": ["access_control"],
    "signage": True,
    "alternatives": ["card"],
    "legal_mandate": None,
    "storage": "device",
}


def at(seconds: float) -> str:
    return format_timestamp(T0 + timedelta(seconds=seconds))


def registered(t: float = -100, **changes: Any) -> dict[str, Any]:
    return DEVICE.fields("device.registered", occurred_at=at(t), **{**GATE, **changes})


def consent(
    t: float,
    consent_id: str = "c1",
    purposes: tuple[str, ...] = ("access_control",),
    kind: str = "separate",
    minor: bool = False,
    expires: float | None = None,
) -> dict[str, Any]:
    return OFFICE.fields(
        "consent.granted",
        occurred_at=at(t),
        consent_id=consent_id,
        subject_ref="s1",
        purposes=list(purposes),
        kind=kind,
        subject_minor=minor,
        guardian_ref=None,
        expires_at=at(expires) if expires is not None else None,
    )


def recognition(
    t: float, purpose: str = "access_control", basis: str = "consent", minor: bool | None = None, **extra: Any
) -> dict[str, Any]:
    return DEVICE.fields(
        "recognition.performed",
        occurred_at=at(t),
        **{
            "subject_ref": "s1",
            "purpose": purpose,
            "mode": "verify_1to1",
            "legal_basis": basis,
            "consent_id": None,
            "subject_minor": minor,
            "verification_channel": "local",
            **extra,
        },
    )


def verdicts(*events: dict[str, Any]) -> set[tuple[str, str]]:
    """(rule id, index of the triggering event) fired by both packs, or by the one named."""
    truth = GroundTruth()
    for event in events:
        truth.feed(event)
    index = {e["event_id"]: i for i, e in enumerate(events)}
    fired: dict[tuple[str, int], set[str]] = {}
    for pack, rule, event_id in truth.finish():
        fired.setdefault((rule, index[event_id]), set()).add(pack)
    return {
        (rule if packs == {DRAFT, FINAL} else f"{rule}@{next(iter(packs))}", i)
        for (rule, i), packs in fired.items()
    }


def test_consent_in_time_no_violation_and_none_without_it() -> None:
    assert verdicts(registered(), consent(0), recognition(5)) == set()
    assert verdicts(registered(), recognition(5)) == {("FRT-CONSENT-MISSING", 1)}


def test_a_consent_that_arrives_late_but_occurred_before_still_covers() -> None:
    assert verdicts(registered(), recognition(5), consent(4)) == set()
    assert verdicts(registered(), recognition(5), consent(6)) == {("FRT-CONSENT-MISSING", 1)}


def test_expiry_and_withdrawal() -> None:
    assert verdicts(registered(), consent(0, expires=10), recognition(9), recognition(10)) == {
        ("FRT-CONSENT-MISSING", 3)
    }
    withdrawn = OFFICE.fields("consent.withdrawn", occurred_at=at(20), consent_id="c1", subject_ref="s1")
    assert verdicts(registered(), consent(0), recognition(19), withdrawn, recognition(20)) == {
        ("FRT-CONSENT-MISSING", 4)
    }


def test_consent_for_another_purpose_is_a_mismatch_not_a_missing_consent() -> None:
    assert verdicts(registered(), consent(0, purposes=("marketing",)), recognition(5)) == {
        ("FRT-PURPOSE-MISMATCH", 2)
    }


def test_exempt_legal_bases() -> None:
    assert verdicts(registered(), recognition(5, basis="law"), recognition(6, basis="public_safety")) == set()


def test_minors_need_a_guardian_consent_except_under_law() -> None:
    assert verdicts(registered(), consent(0, minor=True), recognition(5)) == {("FRT-MINOR-NO-GUARDIAN", 2)}
    assert verdicts(registered(), consent(0, kind="guardian"), recognition(5, minor=True)) == set()
    assert verdicts(registered(), recognition(5, minor=True, basis="law")) == set()


def test_device_rules_fire_on_the_registration_and_again_only_when_facts_change() -> None:
    sole = {"alternatives": []}
    assert verdicts(
        registered(**sole), registered(-50, **sole), registered(-10, **{**sole, "signage": False})
    ) == {("FRT-SOLE-ENTRY-METHOD", 0), ("FRT-SOLE-ENTRY-METHOD", 2)}
    assert verdicts(registered(alternatives=[], legal_mandate="statute #1")) == set()


def test_venue_coercion_is_listed_venues_in_the_draft_and_any_venue_in_2025() -> None:
    counter = {"location_type": "counter", "purposes": ["identity_verification"], "alternatives": []}
    assert verdicts(registered(**counter, venue_type="bank")) == {("FRT-VENUE-COERCION", 0)}
    assert verdicts(registered(**counter, venue_type="office")) == {(f"FRT-VENUE-COERCION@{FINAL}", 0)}


def test_every_recognition_in_a_private_place_is_evidence() -> None:
    assert verdicts(registered(location_type="toilet"), consent(0), recognition(5, basis="law")) == {
        ("FRT-PROHIBITED-LOCATION", 0),
        ("FRT-PROHIBITED-LOCATION", 2),
    }


def test_events_from_an_unregistered_device_are_only_that() -> None:
    assert verdicts(recognition(5, basis="none")) == {("FRT-UNREGISTERED-DEVICE", 0)}


def test_remote_storage_is_2025_only_and_separate_consent_exempts() -> None:
    assert verdicts(registered(storage="cloud"), consent(0, kind="written"), recognition(5)) == {
        (f"FRT-REMOTE-STORAGE@{FINAL}", 2)
    }
    assert verdicts(registered(storage="cloud"), consent(0), recognition(5)) == set()


def test_filing_thresholds_and_deadline() -> None:
    def snapshot(days: float, stored: int, filed_days: float | None = None) -> dict[str, Any]:
        return OFFICE.fields(
            "registry.snapshot",
            occurred_at=at(days * 86400),
            stored_individuals=stored,
            filing_id="f" if filed_days is not None else None,
            filed_at=at(filed_days * 86400) if filed_days is not None else None,
        )

    # The 30th Monday-to-Friday day after Monday 2026-03-02 is Monday 2026-04-13.
    assert verdicts(snapshot(0, 12_000), snapshot(42, 12_000), snapshot(43, 12_000)) == {
        (f"FRT-FILING-OVERDUE@{DRAFT}", 2)
    }
    assert verdicts(snapshot(0, 150_000), snapshot(60, 150_000, filed_days=20)) == set()
    assert verdicts(snapshot(0, 150_000), snapshot(60, 150_000)) == {("FRT-FILING-OVERDUE", 1)}


# -- late facts: the final state holds, and the revisions they call for are listed ---------------


def revisions(*events: dict[str, Any]) -> set[tuple[str, str, int, tuple[int, ...]]]:
    """(revision, rule id, index of the revised event, indices of the late facts), both packs."""
    truth = GroundTruth()
    for event in events:
        truth.feed(event, "a story")
    truth.finish()
    index = {e["event_id"]: i for i, e in enumerate(events)}
    listed = truth.revisions_expected()
    assert {story for *_, story in listed} <= {"a story"}
    by_pack: dict[tuple[str, str, int, tuple[int, ...]], set[str]] = {}
    for revision, pack, rule, event_id, _, late, _ in listed:
        key = (revision, rule, index[event_id], tuple(index[e] for e in late))
        by_pack.setdefault(key, set()).add(pack)
    assert all(packs == {DRAFT, FINAL} for packs in by_pack.values())
    return set(by_pack)


def withdrawal(t: float, consent_id: str = "c1") -> dict[str, Any]:
    return OFFICE.fields("consent.withdrawn", occurred_at=at(t), consent_id=consent_id, subject_ref="s1")


def test_a_consent_past_the_grace_still_covers_and_its_missing_consent_is_to_be_retracted() -> None:
    # Sent after traffic 25 s later than the recognition (a registration of the same facts).
    events = (registered(), recognition(5), registered(30), consent(4))
    assert verdicts(*events) == set()
    assert revisions(*events) == {("retraction", "FRT-CONSENT-MISSING", 1, (3,))}


def test_a_consent_inside_the_grace_is_part_of_the_first_verdict() -> None:
    events = (registered(), recognition(5), registered(14), consent(4))
    assert verdicts(*events) == set()
    assert revisions(*events) == set()


def test_a_withdrawal_past_the_grace_makes_a_late_detection() -> None:
    events = (registered(), consent(0), recognition(19), registered(40), withdrawal(18))
    assert verdicts(*events) == {("FRT-CONSENT-MISSING", 2)}
    assert revisions(*events) == {("late_detection", "FRT-CONSENT-MISSING", 2, (4,))}


def test_a_late_consent_for_another_purpose_changes_the_rule() -> None:
    events = (registered(), recognition(5), registered(30), consent(4, purposes=("marketing",)))
    assert verdicts(*events) == {("FRT-PURPOSE-MISMATCH", 1)}
    assert revisions(*events) == {
        ("retraction", "FRT-CONSENT-MISSING", 1, (3,)),
        ("late_detection", "FRT-PURPOSE-MISMATCH", 1, (3,)),
    }


def test_a_late_consent_that_shows_a_minor_without_a_guardian() -> None:
    events = (registered(), recognition(5), registered(30), consent(4, minor=True))
    assert verdicts(*events) == {("FRT-MINOR-NO-GUARDIAN", 1)}
    assert revisions(*events) == {
        ("retraction", "FRT-CONSENT-MISSING", 1, (3,)),
        ("late_detection", "FRT-MINOR-NO-GUARDIAN", 1, (3,)),
    }


def test_a_late_fact_revises_only_what_it_decides() -> None:
    # Occurred after the recognition: no cover, nothing to revise; events sent after the late
    # fact, or more than the grace before the traffic it came after, are judged with it.
    assert verdicts(registered(), recognition(5), registered(30), consent(6)) == {("FRT-CONSENT-MISSING", 1)}
    assert revisions(registered(), recognition(5), registered(30), consent(6)) == set()
    events = (registered(), recognition(5), recognition(25), registered(30), consent(4), recognition(26))
    assert verdicts(*events) == set()
    assert revisions(*events) == {("retraction", "FRT-CONSENT-MISSING", 1, (4,))}


def test_an_event_later_than_the_reorder_window_is_refused_not_misjudged() -> None:
    truth = GroundTruth()
    for event in (registered(), recognition(5), registered(200)):
        truth.feed(event)
    with pytest.raises(ValueError, match="after later events"):
        truth.feed(consent(4))
