"""What the rule engine remembers between events: device registrations, consents, and each
operator's first snapshot over a filing threshold. Every lookup is "as of" an event time, so
the order in which events arrive never decides validity."""

import bisect
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

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


@dataclass(slots=True)  # many of each are held, and read on every event
class Registration:
    at: datetime
    event_id: str
    facts: dict[str, Any]


def _at(registration: Registration) -> datetime:
    return registration.at


@dataclass(slots=True)
class Consent:
    consent_id: str
    granted_at: datetime
    purposes: frozenset[str]
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


@dataclass
class Facts:
    registrations: dict[str, list[Registration]] = field(default_factory=dict)  # by device, in event time
    consents: dict[tuple[str, str], list[Consent]] = field(default_factory=dict)  # by (operator, subject)
    consent_ids: dict[tuple[str, str], Consent] = field(default_factory=dict)  # by (operator, consent_id)
    early_withdrawals: dict[tuple[str, str], datetime] = field(default_factory=dict)  # before their grant
    first_over: dict[tuple[str, str, int], datetime] = field(
        default_factory=dict
    )  # (pack, operator, threshold)

    # -- devices -------------------------------------------------------------------------------

    def register(
        self, device_id: str, at: datetime, event_id: str, facts: dict[str, Any]
    ) -> Registration | None:
        """Record a registration; return the one it follows in event time (None if first).
        Learning the same event twice (a redelivery) changes nothing."""
        history = self.registrations.setdefault(device_id, [])
        for index, known in enumerate(history):
            if known.event_id == event_id:
                return history[index - 1] if index else None
        index = bisect.bisect_right(history, at, key=_at)
        history.insert(index, Registration(at, event_id, facts))
        return history[index - 1] if index else None

    def registration(self, device_id: str | None, event_id: str) -> Registration | None:
        """The device's registration made by ``event_id``."""
        for known in self.registrations.get(device_id or "", []):
            if known.event_id == event_id:
                return known
        return None

    def before(self, device_id: str, event_id: str) -> Registration | None:
        """The registration in force before the one made by ``event_id``."""
        history = self.registrations.get(device_id, [])
        for index, known in enumerate(history):
            if known.event_id == event_id:
                return history[index - 1] if index else None
        return None

    def device(self, device_id: str, at: datetime) -> Registration | None:
        """The device's registration in force at ``at``."""
        history = self.registrations.get(device_id)
        if not history:
            return None
        index = bisect.bisect_right(history, at, key=_at)
        return history[index - 1] if index else None

    # -- consents ------------------------------------------------------------------------------

    def grant(self, operator_id: str, subject_ref: str, consent: Consent) -> None:
        # A consent_id is granted once; a second copy (a redelivered grant) would stay valid
        # after the withdrawal that reached only the first.
        if (operator_id, consent.consent_id) in self.consent_ids:
            return
        withdrawn = self.early_withdrawals.pop((operator_id, consent.consent_id), None)
        if withdrawn is not None:
            consent.withdrawn_at = withdrawn
        self.consents.setdefault((operator_id, subject_ref), []).append(consent)
        self.consent_ids[(operator_id, consent.consent_id)] = consent

    def withdraw(self, operator_id: str, consent_id: str, at: datetime) -> None:
        consent = self.consent_ids.get((operator_id, consent_id))
        if consent is None:
            previous = self.early_withdrawals.get((operator_id, consent_id))
            self.early_withdrawals[(operator_id, consent_id)] = min(at, previous) if previous else at
        elif consent.withdrawn_at is None or at < consent.withdrawn_at:
            consent.withdrawn_at = at

    def subject_consents(self, operator_id: str, subject_ref: str | None) -> list[Consent]:
        if subject_ref is None:
            return []
        return self.consents.get((operator_id, subject_ref), [])

    # -- filings -------------------------------------------------------------------------------

    def over_threshold(self, pack: str, operator_id: str, threshold: int, at: datetime) -> datetime:
        """Note a snapshot over ``threshold``; return the earliest such snapshot's time."""
        key = (pack, operator_id, threshold)
        first = self.first_over.get(key)
        if first is None or at < first:
            self.first_over[key] = first = at
        return first
