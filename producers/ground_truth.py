"""The violations a simulated run must produce, worked out from the events the simulator made.

This is a reference reading of ../shared/docs/rules.md (see docs/rules-semantics.md), written
plainly and independently of the stream processor's rule engine: it sees every accepted event,
replays them in event-time order, and answers each rule from the full history. The processor
is correct when the final state of its verdicts (the last record of each violation) is exactly
these open (policy pack, rule id, triggering event id) triples, whenever the facts arrived.

It also lists, as information, the revisions late facts call for (contract.md, "Verdict
revisions"): a consent granted or withdrawn that arrives after traffic more than GRACE later in
event time than an event it decides, sent before it, changes that event's verdict from what
was known when its grace period ended. Whether the processor then publishes a retraction or a
late detection, or had simply not decided yet, depends on timing; the final state does not.
"""

import heapq
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from contracts.timestamps import parse_timestamp

DRAFT, FINAL = "cn-cac-2023-draft", "cn-cac-2025"
PACKS = (DRAFT, FINAL)
LISTED_VENUES = {
    "hotel",
    "bank",
    "railway_station",
    "airport",
    "sports_venue",
    "exhibition_hall",
    "museum",
    "art_gallery",
    "library",
}
PRIVATE_PLACES = {"hotel_room", "public_bathroom", "changing_room", "toilet"}
SENSITIVE = {"race", "ethnicity", "religion", "health", "social_class"}
INFERENCE_EXEMPT_BASES = {"public_safety", "national_security", "emergency"}
FILING_THRESHOLD = {DRAFT: 10_000, FINAL: 100_000}
FILING_WORKING_DAYS = 30
CHINA = timezone(timedelta(hours=8))
DEVICE_FACTS = (
    "site_id",
    "venue_type",
    "location_type",
    "public_place",
    "purposes",
    "signage",
    "alternatives",
    "legal_mandate",
    "storage",
)
# Events are replayed in event-time order; the simulator never sends one later than this
# after events that occurred after it (its latest, a fact past the grace, about 17 s).
REORDER_WINDOW = timedelta(seconds=120)
# The processor's default grace period (rules.md): a late fact past it revises a verdict.
GRACE = timedelta(seconds=10)
# Ties in event time: facts (registrations, consents) before what they judge.
_FIRST = {"device.registered": 0, "consent.granted": 0, "consent.withdrawn": 0}


@dataclass
class _Consent:
    granted_by: str  # the event_id of the grant
    granted_at: datetime
    purposes: set[str]
    kind: str
    minor: bool
    expires_at: datetime | None
    withdrawals: list[tuple[datetime, str]] = field(default_factory=list)  # (when, event_id)

    def known(self, hidden: frozenset[str], moment: datetime) -> bool:
        return self.granted_at <= moment and self.granted_by not in hidden

    def valid_at(self, moment: datetime, hidden: frozenset[str] = frozenset()) -> bool:
        return (
            self.known(hidden, moment)
            and (self.expires_at is None or moment < self.expires_at)
            and not any(at <= moment and by not in hidden for at, by in self.withdrawals)
        )


@dataclass(frozen=True)
class _LateFact:
    event_id: str
    moment: datetime
    arrival: int
    sent_after: datetime  # the latest occurred_at sent before it
    story: str | None


Revision = tuple[str, str, str, str, str, tuple[str, ...], str | None]
"""(revision, policy pack, rule id, triggering event id, revised event's type, late event ids,
story): revision is "retraction" or "late_detection"."""


def working_days_after(start: datetime, days: int) -> datetime:
    """The end of the ``days``-th Monday-to-Friday day after ``start``'s date, in China time."""
    day = start.astimezone(CHINA).replace(hour=0, minute=0, second=0, microsecond=0)
    while days:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day + timedelta(days=1)


class GroundTruth:
    def __init__(self) -> None:
        self._queue: list[tuple[datetime, int, int, dict[str, Any]]] = []
        self._arrivals = 0
        self._newest: datetime | None = None
        self._judged_until: datetime | None = None
        self._devices: dict[str, dict[str, Any]] = {}
        self._consents: dict[tuple[str, str], list[_Consent]] = defaultdict(list)
        self._consent_by_id: dict[tuple[str, str], _Consent] = {}
        self._first_over: dict[tuple[str, str], datetime] = {}
        # Consent facts that arrived past the grace, by (operator, subject), while events they
        # may decide are still to be judged.
        self._late: dict[tuple[str, str], list[_LateFact]] = defaultdict(list)
        self._hidden: frozenset[str] = frozenset()  # facts judged as not known (see _revise)
        self.violations: set[tuple[str, str, str]] = set()
        self._fired = self.violations  # where _fire adds
        self.revisions: set[Revision] = set()

    def feed(self, event: dict[str, Any], story: str | None = None) -> None:
        """One accepted event, in send order; ``story`` names the plan's story of a late fact."""
        moment = parse_timestamp(event["occurred_at"])
        if self._judged_until is not None and moment < self._judged_until:
            raise ValueError(
                f"event {event['event_id']} arrived more than {REORDER_WINDOW} after later events"
            )
        if (
            event["type"] in ("consent.granted", "consent.withdrawn")
            and self._newest is not None
            and self._newest - moment > GRACE
        ):
            late = _LateFact(event["event_id"], moment, self._arrivals, self._newest, story)
            self._late[(event["operator_id"], event["subject_ref"])].append(late)
        heapq.heappush(self._queue, (moment, _FIRST.get(event["type"], 1), self._arrivals, event))
        self._arrivals += 1
        self._newest = moment if self._newest is None else max(self._newest, moment)
        while self._queue and self._queue[0][0] < self._newest - REORDER_WINDOW:
            self._judge(*self._pop())

    def finish(self) -> list[tuple[str, str, str]]:
        """All (policy pack, rule id, triggering event id), sorted."""
        while self._queue:
            self._judge(*self._pop())
        return sorted(self.violations)

    def revisions_expected(self) -> list[Revision]:
        """The revisions late facts call for (after ``finish``), sorted."""
        return sorted(self.revisions, key=lambda r: (r[0], r[1], r[2], r[3], r[5], r[6] or ""))

    def _pop(self) -> tuple[datetime, dict[str, Any], int]:
        moment, _, arrival, event = heapq.heappop(self._queue)
        self._judged_until = moment
        return moment, event, arrival

    def _fire(self, rule_id: str, event: dict[str, Any], packs: tuple[str, ...] = PACKS) -> None:
        for pack in packs:
            self._fired.add((pack, rule_id, event["event_id"]))

    # -- facts ---------------------------------------------------------------------------------

    def _valid(self, event: dict[str, Any], moment: datetime) -> list[_Consent]:
        subject = event.get("subject_ref")
        if subject is None:
            return []
        return [
            c for c in self._consents[(event["operator_id"], subject)] if c.valid_at(moment, self._hidden)
        ]

    def _is_minor(self, event: dict[str, Any], moment: datetime) -> bool:
        if event.get("subject_minor") is True:
            return True
        subject = event.get("subject_ref")
        return subject is not None and any(
            c.minor and c.known(self._hidden, moment) for c in self._consents[(event["operator_id"], subject)]
        )

    # -- late facts ----------------------------------------------------------------------------

    def _late_for(self, moment: datetime, event: dict[str, Any], arrival: int) -> list[_LateFact]:
        """The late consent facts that decide ``event`` but came after its grace period: sent
        after it, after traffic more than GRACE later than it, and occurred at or before it."""
        key = (event["operator_id"], event["subject_ref"])
        facts = self._late.get(key)
        if facts is None:
            return []
        facts[:] = [f for f in facts if f.sent_after - GRACE > moment]  # later events: never again
        if not facts:
            del self._late[key]
        return [f for f in facts if f.arrival > arrival and f.moment <= moment]

    def _revise(
        self, moment: datetime, event: dict[str, Any], device: dict[str, Any] | None, late: list[_LateFact]
    ) -> None:
        """Judge ``event`` with and without the late facts; the differences are revisions."""
        self._fired, self._hidden = set(), frozenset(f.event_id for f in late)
        try:
            self._judge_event(moment, event, device)
            known_at_grace = self._fired
            self._fired, self._hidden = set(), frozenset()
            self._judge_event(moment, event, device)
            final = self._fired
        finally:
            self._fired, self._hidden = self.violations, frozenset()
        self.violations |= final
        ids = tuple(sorted(f.event_id for f in late))
        stories = sorted({f.story for f in late if f.story is not None})
        story = ",".join(stories) or None
        for revision, changed in (
            ("retraction", known_at_grace - final),
            ("late_detection", final - known_at_grace),
        ):
            for pack, rule_id, event_id in changed:
                self.revisions.add((revision, pack, rule_id, event_id, event["type"], ids, story))

    # -- judging, in event-time order ----------------------------------------------------------

    def _judge(self, moment: datetime, event: dict[str, Any], arrival: int) -> None:
        kind = event["type"]
        if kind == "consent.granted":
            consent = _Consent(
                event["event_id"],
                moment,
                set(event["purposes"]),
                event["kind"],
                event["subject_minor"],
                parse_timestamp(event["expires_at"]) if event["expires_at"] else None,
            )
            self._consents[(event["operator_id"], event["subject_ref"])].append(consent)
            self._consent_by_id[(event["operator_id"], event["consent_id"])] = consent
            return
        if kind == "consent.withdrawn":
            withdrawn = self._consent_by_id.get((event["operator_id"], event["consent_id"]))
            if withdrawn is not None:
                withdrawn.withdrawals.append((moment, event["event_id"]))
            return
        if kind == "registry.snapshot":
            self._judge_snapshot(moment, event)
            return
        if kind == "device.registered":
            self._judge_registration(event)
            return
        device = self._devices.get(event["device_id"]) if event["device_id"] else None
        if event["device_id"] and device is None:
            self._fire("FRT-UNREGISTERED-DEVICE", event)
            return
        late = self._late_for(moment, event, arrival) if event.get("subject_ref") else []
        if late:
            self._revise(moment, event, device, late)
        else:
            self._judge_event(moment, event, device)

    def _judge_event(self, moment: datetime, event: dict[str, Any], device: dict[str, Any] | None) -> None:
        """The verdicts on an event that is judged (not a fact), from the facts known."""
        kind = event["type"]
        if kind == "recognition.performed":
            self._judge_recognition(moment, event, device)
        elif kind == "attributes.inferred":
            self._judge_inference(moment, event)
        elif kind == "media.retained":
            self._judge_media(moment, event, device)
        elif kind == "entry.attempted" and device is not None:
            self._judge_entry(event, device)

    def _judge_registration(self, event: dict[str, Any]) -> None:
        previous = self._devices.get(event["device_id"])
        self._devices[event["device_id"]] = event
        if previous is not None and all(previous[f] == event[f] for f in DEVICE_FACTS):
            return  # the same facts again: nothing new to report
        no_alternative = not event["alternatives"] and event["legal_mandate"] is None
        if event["location_type"] in PRIVATE_PLACES:
            self._fire("FRT-PROHIBITED-LOCATION", event)
        if event["public_place"] and not event["signage"]:
            self._fire("FRT-SIGNAGE-MISSING", event)
        if event["public_place"] and set(event["purposes"]) - {"public_safety"}:
            self._fire("FRT-PUBLIC-PLACE-PURPOSE", event)
        if no_alternative and "access_control" in event["purposes"] and event["location_type"] == "entrance":
            self._fire("FRT-SOLE-ENTRY-METHOD", event)
        if no_alternative and "identity_verification" in event["purposes"]:
            self._fire(
                "FRT-VENUE-COERCION",
                event,
                (DRAFT, FINAL) if event["venue_type"] in LISTED_VENUES else (FINAL,),
            )

    def _judge_recognition(
        self, moment: datetime, event: dict[str, Any], device: dict[str, Any] | None
    ) -> None:
        if device is not None and device["location_type"] in PRIVATE_PLACES:
            self._fire("FRT-PROHIBITED-LOCATION", event)
        if event["purpose"] == "identity_verification" and event["verification_channel"] in ("local", "none"):
            self._fire("FRT-AUTH-CHANNEL", event)
        valid = self._valid(event, moment)
        covering = [c for c in valid if event["purpose"] in c.purposes]
        separate = any(c.kind in ("separate", "guardian") for c in covering)
        if (
            device is not None
            and device["public_place"]
            and set(device["purposes"]) - {"public_safety"}
            and event["purpose"] != "public_safety"
            and not separate
        ):
            self._fire("FRT-PUBLIC-PLACE-PURPOSE", event)
        if event["subject_ref"] is None:
            return
        if event["legal_basis"] in ("consent", "none") and not covering:
            self._fire("FRT-PURPOSE-MISMATCH" if valid else "FRT-CONSENT-MISSING", event)
        if (
            event["legal_basis"] != "law"
            and self._is_minor(event, moment)
            and not any(c.kind == "guardian" for c in covering)
        ):
            self._fire("FRT-MINOR-NO-GUARDIAN", event)
        if (
            device is not None
            and device["storage"] in ("server", "cloud")
            and device["legal_mandate"] is None
            and not separate
        ):
            self._fire("FRT-REMOTE-STORAGE", event, (FINAL,))

    def _judge_inference(self, moment: datetime, event: dict[str, Any]) -> None:
        attributes = {attribute.lower() for attribute in event["attributes"]}
        if (
            attributes & SENSITIVE
            and event["legal_basis"] not in INFERENCE_EXEMPT_BASES
            and not self._valid(event, moment)
        ):
            self._fire("FRT-SENSITIVE-INFERENCE", event)

    def _judge_media(self, moment: datetime, event: dict[str, Any], device: dict[str, Any] | None) -> None:
        valid = self._valid(event, moment)
        if event["kind"] in ("raw_image", "video") and event["legal_basis"] != "law":
            purposes = set(device["purposes"]) if device is not None else None
            if not any(purposes is None or c.purposes & purposes for c in valid):
                self._fire("FRT-RAW-RETENTION", event)
        off_device = device is None or device["storage"] in ("server", "cloud")
        mandated = device is not None and device["legal_mandate"] is not None
        if (
            off_device
            and event["kind"] != "anonymized"
            and not mandated
            and not any(c.kind in ("separate", "guardian") for c in valid)
        ):
            self._fire("FRT-REMOTE-STORAGE", event, (FINAL,))

    def _judge_entry(self, event: dict[str, Any], device: dict[str, Any]) -> None:
        if event["face_refused"] and event["outcome"] == "denied" and device["legal_mandate"] is None:
            self._fire("FRT-SOLE-ENTRY-METHOD", event)
            self._fire(
                "FRT-VENUE-COERCION",
                event,
                (DRAFT, FINAL) if device["venue_type"] in LISTED_VENUES else (FINAL,),
            )

    def _judge_snapshot(self, moment: datetime, event: dict[str, Any]) -> None:
        for pack, threshold in FILING_THRESHOLD.items():
            if event["stored_individuals"] <= threshold:
                continue
            first = self._first_over.setdefault((pack, event["operator_id"]), moment)
            deadline = working_days_after(first, FILING_WORKING_DAYS)
            filed_in_time = event["filed_at"] is not None and parse_timestamp(event["filed_at"]) <= deadline
            if moment > deadline and not filed_in_time:
                self._fire("FRT-FILING-OVERDUE", event, (pack,))
