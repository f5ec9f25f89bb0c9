"""The violations a simulated run must produce, worked out from the events the simulator made.

This is a reference reading of ../shared/docs/rules.md (see docs/rules-semantics.md), written
plainly and independently of the stream processor's rule engine: it sees every accepted event,
replays them in event-time order, and answers each rule from the full history. The processor
is correct when it finds exactly these (policy pack, rule id, triggering event id) triples.
"""

import heapq
from collections import defaultdict
from dataclasses import dataclass
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
# after events that occurred after it.
REORDER_WINDOW = timedelta(seconds=120)
# Ties in event time: facts (registrations, consents) before what they judge.
_FIRST = {"device.registered": 0, "consent.granted": 0, "consent.withdrawn": 0}


@dataclass
class _Consent:
    granted_at: datetime
    purposes: set[str]
    kind: str
    minor: bool
    expires_at: datetime | None
    withdrawn_at: datetime | None = None

    def valid_at(self, moment: datetime) -> bool:
        return (
            self.granted_at <= moment
            and (self.expires_at is None or moment < self.expires_at)
            and (self.withdrawn_at is None or moment < self.withdrawn_at)
        )


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
        self._devices: dict[str, dict[str, Any]] = {}
        self._consents: dict[tuple[str, str], list[_Consent]] = defaultdict(list)
        self._consent_by_id: dict[tuple[str, str], _Consent] = {}
        self._first_over: dict[tuple[str, str], datetime] = {}
        self.violations: set[tuple[str, str, str]] = set()

    def feed(self, event: dict[str, Any]) -> None:
        """One accepted event, in send order."""
        moment = parse_timestamp(event["occurred_at"])
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

    def _pop(self) -> tuple[datetime, dict[str, Any]]:
        moment, _, _, event = heapq.heappop(self._queue)
        return moment, event

    def _fire(self, rule_id: str, event: dict[str, Any], packs: tuple[str, ...] = PACKS) -> None:
        for pack in packs:
            self.violations.add((pack, rule_id, event["event_id"]))

    # -- facts ---------------------------------------------------------------------------------

    def _valid(self, event: dict[str, Any], moment: datetime) -> list[_Consent]:
        subject = event.get("subject_ref")
        if subject is None:
            return []
        return [c for c in self._consents[(event["operator_id"], subject)] if c.valid_at(moment)]

    def _is_minor(self, event: dict[str, Any], moment: datetime) -> bool:
        if event.get("subject_minor") is True:
            return True
        subject = event.get("subject_ref")
        return subject is not None and any(
            c.minor and c.granted_at <= moment for c in self._consents[(event["operator_id"], subject)]
        )

    # -- judging, in event-time order ----------------------------------------------------------

    def _judge(self, moment: datetime, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "consent.granted":
            consent = _Consent(
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
            if withdrawn is not None and (withdrawn.withdrawn_at is None or moment < withdrawn.withdrawn_at):
                withdrawn.withdrawn_at = moment
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
