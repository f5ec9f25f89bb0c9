"""The simulator's traffic plan: a deterministic stream of messages for a fleet.

Message n is sent in slot n, due at ``start + n / rate``; that is also its event time, except
for the history sent at the start (device registrations, standing consents, past registry
snapshots) and for late facts, which occurred before the traffic they are sent after.

Lateness is in event time, never in wall-clock seconds: a late fact is placed a number of
slots after the event it concerns, so it reaches Kafka after traffic whose occurred_at is that
much later, however fast or slow the sender goes. A consent sent IN_GRACE_S after the
recognition it covers is part of the first verdict (inside the processor's grace period); the
revision stories send theirs more than five seconds past the grace (PAST_GRACE_S), so the
processor has decided without them and must revise (contract.md, "Verdict revisions"): a
consent that covers a recognition but comes that late (its CONSENT-MISSING is retracted, or
never published), and a withdrawal that occurred before a recognition relying on the consent
(found late). A seed and a start time give the same bytes every time.
"""

import heapq
import itertools
import math
import random
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from contracts import topics
from contracts.timestamps import format_timestamp
from producers import hostile
from producers.builder import EventBuilder
from producers.fleet import CONSENTED_PURPOSES, Device, Operator, Subject
from producers.ground_truth import GRACE

SCENARIOS = (
    "recognition",
    "inference",
    "media",
    "entry",
    "consent",
    "unregistered",
    "reregistration",
    "registry",
    "revision",
)
DEFAULT_MIX = {
    "recognition": 55,
    "inference": 8,
    "media": 8,
    "entry": 12,
    "consent": 10,
    "unregistered": 2,
    "reregistration": 3,
    "registry": 0.5,
    "revision": 1.5,
}
SENSITIVE_ATTRIBUTES = ("ethnicity", "race", "religion", "health", "social_class")
# How late the late facts are sent, in seconds of event time after the event they concern.
IN_GRACE_S = 3.0  # inside the grace period: part of the first verdict
PAST_GRACE_S = GRACE.total_seconds() + 6.0  # more than 5 s past it: the verdict is revised
# The late consent stories, by the name a late fact's Message carries.
IN_GRACE_STORY = "consent_in_grace"
REVISION_STORIES = ("consent_past_grace", "withdrawal_past_grace")


@dataclass(frozen=True)
class Message:
    key: bytes
    value: bytes
    event: dict[str, Any] | None  # the event the processor must accept; None if it must refuse it
    dead_letter: str | None = None  # the bad-input kind that must reach frt.deadletter.v1
    story: str | None = None  # on a late fact sent on purpose: its story (IN_GRACE_STORY, ...)


@dataclass(frozen=True)
class _Spec:
    builder: EventBuilder
    event_type: str
    payload: dict[str, Any]
    occurred_at: datetime | None = None  # None: the time of the slot it is sent in
    then: tuple["_Then", ...] = ()  # what follows once this one is sent
    story: str | None = None


@dataclass(frozen=True)
class _Then:
    """An event placed after the one just sent: ``delay_s`` seconds of slots after its slot,
    and, if ``occurred_s`` is set, occurred that many seconds after it (negative: before)."""

    delay_s: float
    spec: _Spec
    occurred_s: float | None = None


class _DeviceSeq:
    def __init__(self, first: int) -> None:
        self.next_value = first

    def __call__(self) -> int:
        value = self.next_value
        self.next_value += 1
        return value


def parse_mix(text: str) -> dict[str, float]:
    """'recognition=60,entry=10' -> weights; unnamed scenarios get 0."""
    mix = dict.fromkeys(SCENARIOS, 0.0)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        if name not in mix:
            raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
        mix[name] = float(weight)
    if sum(mix.values()) <= 0:
        raise ValueError("the scenario mix needs a positive weight")
    return mix


class TrafficPlan:
    def __init__(
        self,
        fleet: list[Operator],
        *,
        seed: int,
        rate: float,
        start: datetime,
        mix: dict[str, float] | None = None,
        bad_share: float = 0.0,
        first_seq: int = 0,
    ) -> None:
        self.rng = random.Random(seed ^ 0x5EED)
        self.fleet, self.rate, self.start, self.bad_share = fleet, rate, start, bad_share
        weights = mix or DEFAULT_MIX
        self._scenario_names = [n for n in SCENARIOS if weights.get(n, 0) > 0]
        self._scenario_weights = [weights[n] for n in self._scenario_names]
        self._bad_kinds = itertools.cycle(hostile.KINDS)
        self._pending: list[tuple[int, int, _Spec]] = []
        self._order = itertools.count()
        self._consent_ids = itertools.count()
        self._recent: deque[Message] = deque(maxlen=200)
        self._seqs = {d.device_id: _DeviceSeq(first_seq) for op in fleet for d in op.devices}
        self._builders = {
            d.device_id: EventBuilder(
                operator_id=d.operator_id,
                site_id=d.site_id,
                device_id=d.device_id,
                key=d.signing_key,
                seq=self._seqs[d.device_id],
            )
            for op in fleet
            for d in op.devices
        }
        self._back_offices = {
            op.operator_id: EventBuilder(operator_id=op.operator_id, key=op.signing_key) for op in fleet
        }
        self._registrations = {d.device_id: dict(d.registration) for op in fleet for d in op.devices}
        self._standing_consent: dict[str, str] = {}
        self._registered = {op.operator_id: [d for d in op.devices if d.registered] for op in fleet}
        self._unregistered = [d for op in fleet for d in op.devices if not d.registered]
        self._no_consent = {
            op.operator_id: [s for s in op.subjects if s.consent == "none"] or op.subjects for op in fleet
        }
        self._history()

    # -- the stream ----------------------------------------------------------------------------

    def slot_time(self, slot: int) -> datetime:
        return self.start + timedelta(seconds=slot / self.rate)

    def messages(self, count: int) -> Iterator[Message]:
        for slot in range(count):
            if self.bad_share and slot >= self._history_size and self.rng.random() < self.bad_share:
                yield self._hostile(slot)
                continue
            if not self._pending or self._pending[0][0] > slot:
                self._scenario(slot)
            _, _, spec = heapq.heappop(self._pending)
            yield self._emit(spec, slot)

    def _emit(self, spec: _Spec, slot: int, **overrides: Any) -> Message:
        occurred = spec.occurred_at or self.slot_time(slot)
        event, wire = spec.builder.build(
            spec.event_type,
            occurred_at=format_timestamp(occurred),
            event_id=self._uuid(),
            **{**spec.payload, **overrides},
        )
        message = Message(
            topics.event_key(event["operator_id"], event["device_id"]), wire, event, story=spec.story
        )
        self._recent.append(message)
        for then in spec.then:  # timed from the slot this one went out in, whatever came first
            if then.occurred_s is None:
                self._push(slot, then.delay_s, then.spec)
            else:
                when = occurred + timedelta(seconds=then.occurred_s)
                self._push(slot, then.delay_s, replace(then.spec, occurred_at=when))
        return message

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def _push(self, slot: int, delay_s: float, spec: _Spec) -> None:
        heapq.heappush(self._pending, (slot + math.ceil(delay_s * self.rate), next(self._order), spec))

    # -- history sent first --------------------------------------------------------------------

    def _history(self) -> None:
        """Registrations, standing consents and past registry snapshots, sent first and in
        event-time order (snapshots months back, then yesterday's registrations and consents)."""
        day_before = self.start - timedelta(days=1)
        history: list[_Spec] = []
        for op in self.fleet:
            for device in self._registered[op.operator_id]:
                history.append(
                    _Spec(
                        self._builders[device.device_id],
                        "device.registered",
                        self._registrations[device.device_id],
                        day_before,
                    )
                )
        for op in self.fleet:
            for subject in op.subjects:
                if subject.consent != "none":
                    purposes = CONSENTED_PURPOSES if subject.consent == "all" else ["marketing"]
                    spec = self._grant(op, subject, purposes, day_before + timedelta(minutes=1))
                    self._standing_consent[subject.ref] = spec.payload["consent_id"]
                    history.append(spec)
            for days_ago in (120, 60):
                history.append(self._snapshot(op, self.start - timedelta(days=days_ago)))
        for spec in sorted(history, key=lambda spec: spec.occurred_at or self.start):  # stable
            self._push(0, 0, spec)
        self._history_size = len(self._pending)

    # -- scenarios -----------------------------------------------------------------------------

    def _scenario(self, slot: int) -> None:
        name = self.rng.choices(self._scenario_names, self._scenario_weights)[0]
        if name == "unregistered" and not self._unregistered:
            name = "recognition"
        op = self.rng.choice(self.fleet)
        getattr(self, f"_scenario_{name}")(slot, op)

    def _scenario_recognition(self, slot: int, op: Operator) -> None:
        device = self.rng.choice(self._registered[op.operator_id])
        self._push(slot, 0, self._recognition(op, device))

    def _scenario_unregistered(self, slot: int, op: Operator) -> None:
        device = self.rng.choice(self._unregistered)
        self._push(slot, 0, self._recognition(self._operator(device.operator_id), device))

    def _scenario_inference(self, slot: int, op: Operator) -> None:
        device = self.rng.choice(self._registered[op.operator_id])
        subject = self.rng.choice(op.subjects) if self.rng.random() < 0.8 else None
        sensitive = self.rng.random() < 0.35
        attributes = (
            ["age", self.rng.choice(SENSITIVE_ATTRIBUTES)]
            if sensitive
            else self.rng.choice([["age", "gender"], ["emotion"], ["age"]])
        )
        basis = "public_safety" if self.rng.random() < 0.2 else "consent"
        self._push(
            slot,
            0,
            _Spec(
                self._builders[device.device_id],
                "attributes.inferred",
                {
                    "subject_ref": subject.ref if subject else None,
                    "attributes": attributes,
                    "legal_basis": basis,
                    "consent_id": self._standing_consent.get(subject.ref)
                    if subject and basis == "consent"
                    else None,
                },
            ),
        )

    def _scenario_media(self, slot: int, op: Operator) -> None:
        device = self.rng.choice(self._registered[op.operator_id])
        subject = self.rng.choice(op.subjects)
        media_id = f"media-{self._uuid()[:13]}"
        basis = "law" if self.rng.random() < 0.15 else "consent"
        builder = (
            self._builders[device.device_id]
            if self.rng.random() < 0.8
            else self._back_offices[op.operator_id]
        )
        self._push(
            slot,
            0,
            _Spec(
                builder,
                "media.retained",
                {
                    "media_id": media_id,
                    "subject_ref": subject.ref,
                    "kind": self.rng.choice(["raw_image", "video", "face_template", "anonymized"]),
                    "legal_basis": basis,
                    "consent_id": self._standing_consent.get(subject.ref) if basis == "consent" else None,
                    "retention_days": self.rng.choice([None, 7, 30]),
                },
            ),
        )
        self._push(slot, 2.0, _Spec(builder, "media.deleted", {"media_id": media_id}))

    def _scenario_entry(self, slot: int, op: Operator) -> None:
        gates = [
            d
            for d in self._registered[op.operator_id]
            if {"access_control", "identity_verification"} & set(self._registrations[d.device_id]["purposes"])
        ]
        if not gates:
            self._scenario_recognition(slot, op)
            return
        device = self.rng.choice(gates)
        alternatives = self._registrations[device.device_id]["alternatives"]
        refused = self.rng.random() < 0.35
        if refused:
            method, outcome = (alternatives[0], "granted") if alternatives else ("none", "denied")
        else:
            method, outcome = "face", "granted"
        subject = self.rng.choice(op.subjects) if not refused else None
        self._push(
            slot,
            0,
            _Spec(
                self._builders[device.device_id],
                "entry.attempted",
                {
                    "subject_ref": subject.ref if subject else None,
                    "methods_offered": ["face", *alternatives],
                    "method_used": method,
                    "face_refused": refused,
                    "outcome": outcome,
                },
            ),
        )

    def _consent_story_cast(self, slot: int, op: Operator) -> tuple[Subject, Device] | None:
        """A subject without standing consent and a device that asks for one; None (and a plain
        recognition instead) when the operator has no such device."""
        subject = self.rng.choice(self._no_consent[op.operator_id])
        devices = [d for d in self._registered[op.operator_id] if d.purpose != "public_safety"]
        if not devices:
            self._scenario_recognition(slot, op)
            return None
        return subject, self.rng.choice(devices)

    def _scenario_consent(self, slot: int, op: Operator) -> None:
        chosen = self._consent_story_cast(slot, op)
        if chosen is None:
            return
        subject, device = chosen
        now = self.slot_time(slot)
        story = self.rng.choice(["expiry", "withdrawal", "late", "grant"])
        if story == "late":  # the consent occurred a second before, but arrives three seconds after
            grant = replace(self._grant(op, subject, [device.purpose], None), story=IN_GRACE_STORY)
            recognition = self._recognition(op, device, subject, grant.payload["consent_id"])
            self._push(slot, 0, replace(recognition, then=(_Then(IN_GRACE_S, grant, -1.0),)))
            return
        expires = now + timedelta(seconds=2) if story == "expiry" else None
        grant = self._grant(
            op, subject, [device.purpose] if story != "grant" else CONSENTED_PURPOSES, None, expires
        )
        consent_id = grant.payload["consent_id"]
        self._push(slot, 0, grant)
        self._push(slot, 0.3, self._recognition(op, device, subject, consent_id))
        if story == "expiry":
            self._push(slot, 4.0, self._recognition(op, device, subject, consent_id))
        elif story == "withdrawal":
            self._push(
                slot,
                1.0,
                _Spec(
                    self._back_offices[op.operator_id],
                    "consent.withdrawn",
                    {"consent_id": consent_id, "subject_ref": subject.ref},
                ),
            )
            self._push(slot, 2.0, self._recognition(op, device, subject, consent_id))

    def _scenario_revision(self, slot: int, op: Operator) -> None:
        """A late fact past the grace period that changes a recognition's verdict."""
        chosen = self._consent_story_cast(slot, op)
        if chosen is None:
            return
        subject, device = chosen
        story = self.rng.choice(REVISION_STORIES)
        grant = self._grant(op, subject, [device.purpose], None)
        consent_id = grant.payload["consent_id"]
        recognition = self._recognition(op, device, subject, consent_id)
        if story == "consent_past_grace":  # occurred a second before the recognition
            late = _Then(PAST_GRACE_S, replace(grant, story=story), -1.0)
            self._push(slot, 0, replace(recognition, then=(late,)))
            return
        # withdrawal_past_grace: granted, withdrawn a second before the recognition relying on it
        withdrawal = _Spec(
            self._back_offices[op.operator_id],
            "consent.withdrawn",
            {"consent_id": consent_id, "subject_ref": subject.ref},
            story=story,
        )
        recognition = replace(recognition, then=(_Then(PAST_GRACE_S, withdrawal, -1.0),))
        self._push(slot, 0, replace(grant, then=(_Then(2.0, recognition),)))

    def _scenario_reregistration(self, slot: int, op: Operator) -> None:
        device = self.rng.choice(self._registered[op.operator_id])
        registration = dict(self._registrations[device.device_id])
        if self.rng.random() < 0.5:
            registration["signage"] = not registration["signage"]  # the facts change
        self._registrations[device.device_id] = registration
        self._push(slot, 0, _Spec(self._builders[device.device_id], "device.registered", registration))

    def _scenario_registry(self, slot: int, op: Operator) -> None:
        self._push(slot, 0, self._snapshot(op, None))

    # -- event makers --------------------------------------------------------------------------

    def _recognition(
        self, op: Operator, device: Device, subject: Subject | None = None, consent_id: str | None = None
    ) -> _Spec:
        purpose = self._registrations[device.device_id]["purposes"][0]
        if subject is None and purpose == "public_safety":
            subject = self.rng.choice(op.subjects) if self.rng.random() < 0.4 else None
            basis = "public_safety"
        elif subject is None:
            subject = self.rng.choice(op.subjects)
            basis = "consent" if subject.consent != "none" or self.rng.random() < 0.5 else "none"
            consent_id = self._standing_consent.get(subject.ref) if basis == "consent" else None
        else:
            basis = "consent"
        channel = "local"
        if purpose == "identity_verification":
            channel = "local" if self.rng.random() < 0.2 else "national_population_db"
        return _Spec(
            self._builders[device.device_id],
            "recognition.performed",
            {
                "subject_ref": subject.ref if subject else None,
                "purpose": purpose,
                "mode": "identify_1toN" if purpose == "public_safety" else "verify_1to1",
                "legal_basis": basis,
                "consent_id": consent_id,
                "subject_minor": (subject.minor if self.rng.random() < 0.7 else None) if subject else None,
                "verification_channel": channel,
            },
        )

    def _grant(
        self,
        op: Operator,
        subject: Subject,
        purposes: list[str],
        occurred_at: datetime | None,
        expires_at: datetime | None = None,
    ) -> _Spec:
        return _Spec(
            self._back_offices[op.operator_id],
            "consent.granted",
            {
                "consent_id": f"consent-{op.operator_id}-{next(self._consent_ids):07d}",
                "subject_ref": subject.ref,
                "purposes": purposes,
                "kind": subject.consent_kind,
                "subject_minor": subject.minor,
                "guardian_ref": f"guardian-of-{subject.ref[4:16]}"
                if subject.consent_kind == "guardian"
                else None,
                "expires_at": format_timestamp(expires_at) if expires_at else None,
            },
            occurred_at,
        )

    def _snapshot(self, op: Operator, occurred_at: datetime | None) -> _Spec:
        base = {
            "under": 8_000,
            "over_draft_unfiled": 12_000,
            "over_final_filed": 150_000,
            "over_final_unfiled": 140_000,
        }[op.registry]
        filed = op.registry == "over_final_filed"
        return _Spec(
            self._back_offices[op.operator_id],
            "registry.snapshot",
            {
                "stored_individuals": base + self.rng.randint(0, 500),
                "filing_id": f"filing-{op.operator_id}" if filed else None,
                "filed_at": format_timestamp(self.start - timedelta(days=115)) if filed else None,
            },
            occurred_at,
        )

    def _operator(self, operator_id: str) -> Operator:
        return next(op for op in self.fleet if op.operator_id == operator_id)

    # -- bad input -----------------------------------------------------------------------------

    def _hostile(self, slot: int) -> Message:
        kind = next(self._bad_kinds)
        if kind == "replayed_event_id":  # the history is sent first, so there is always one
            original = self.rng.choice(list(self._recent))
            return Message(original.key, original.value, None, kind)
        op = self.rng.choice(self.fleet)
        device = self.rng.choice(self._registered[op.operator_id])
        if kind == "seq_gap":  # a valid event after lost ones: accepted, and the gap reported
            self._seqs[device.device_id].next_value += self.rng.randint(3, 50)
            message = self._emit(self._recognition(op, device), slot)
            return Message(message.key, message.value, message.event, kind)
        spec = self._recognition(op, device)
        template = spec.builder.fields(
            spec.event_type,
            occurred_at=format_timestamp(self.slot_time(slot)),
            event_id=self._uuid(),
            **spec.payload,
        )
        value = hostile.corrupt(kind, self.rng, template, device.signing_key)
        return Message(topics.event_key(op.operator_id, device.device_id), value, None, kind)
