"""A simulated fleet: operators, their sites and devices, and the people they recognise.

Everything is drawn from one seeded RNG, so a seed gives the same fleet every time. A share of
devices is misconfigured on purpose, each with one defect from DEFECTS (assigned round-robin so
every defect appears once the fleet has enough misconfigured devices).
"""

import hashlib
import hmac
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, get_args

from contracts.codec import SigningKey
from contracts.keyring import HMAC_SHA256, signing_key
from contracts.vocabulary import VenueType
from producers.ground_truth import LISTED_VENUES
from producers.pseudonym import subject_ref

LISTED = sorted(LISTED_VENUES)
VENUES = [v for v in get_args(VenueType) if v != "public_space"]  # public_space: the street cameras'
PRIVATE_PLACES = ["hotel_room", "public_bathroom", "changing_room", "toilet"]
TEMPLATE_PURPOSES = {
    "entrance": "access_control",
    "counter": "identity_verification",
    "checkout": "payment",
    "street": "public_safety",
    "lobby": "attendance",
    "other": "analytics",
}
UNLISTED_VENUES = [v for v in get_args(VenueType) if v not in LISTED_VENUES and v != "public_space"]
CONSENTED_PURPOSES = ["access_control", "payment", "identity_verification", "attendance"]

# What a misconfigured device gets wrong. "mandated" is the legal-mandate exception: it looks
# like sole_entry but is required by law, so it must not fire.
DEFECTS = (
    "private_place",
    "no_signage",
    "public_purpose",
    "sole_entry",
    "venue_coercion",
    "venue_coercion_unlisted",
    "remote_storage",
    "mandated",
)

# Registry profiles, cycled over operators: stays under both thresholds; crosses the draft's
# 10,000 unfiled; crosses the final 100,000 and filed in time; crosses 100,000 unfiled.
REGISTRY_PROFILES = ("under", "over_draft_unfiled", "over_final_filed", "over_final_unfiled")


@dataclass(frozen=True)
class Device:
    device_id: str
    operator_id: str
    site_id: str
    key: bytes  # the secret: an HMAC key, or an Ed25519 private key's seed (by ``scheme``)
    registration: dict[str, Any]  # the device.registered payload
    defect: str | None
    registered: bool = True  # False: emits events but never registers
    scheme: str = HMAC_SHA256

    @property
    def signing_key(self) -> SigningKey:
        return signing_key(self.scheme, self.key)

    @property
    def purpose(self) -> str:
        return str(self.registration["purposes"][0])


@dataclass(frozen=True)
class Subject:
    ref: str
    operator_id: str
    minor: bool
    consent: str  # "all" | "none" | "other_purpose"
    consent_kind: str  # separate | written | guardian


@dataclass
class Operator:
    operator_id: str
    key: bytes  # the back office's signing secret (by ``scheme``)
    secret: bytes  # for pseudonymous subject refs
    registry: str
    devices: list[Device] = field(default_factory=list)
    subjects: list[Subject] = field(default_factory=list)
    scheme: str = HMAC_SHA256

    @property
    def signing_key(self) -> SigningKey:
        return signing_key(self.scheme, self.key)


@dataclass(frozen=True)
class FleetShape:
    operators: int = 4
    sites: int = 4  # per operator
    devices: int = 4  # per site
    subjects: int = 200  # per operator
    misconfigured_share: float = 0.25
    unregistered_share: float = 0.05
    minor_share: float = 0.08
    operator_prefix: str = "op"  # operator ids are PREFIX-000, PREFIX-001, ...
    scheme: str = HMAC_SHA256  # every device's and back office's signature scheme


def derive_key(seed: int, name: str) -> bytes:
    """A deterministic per-device / per-back-office key (the simulator's stand-in for a key store)."""
    return hmac.new(f"frtwatch-sim-{seed}".encode(), name.encode(), hashlib.sha256).digest()


def build_fleet(seed: int, shape: FleetShape) -> list[Operator]:
    rng = random.Random(seed)
    operators = []
    total_devices = shape.operators * shape.sites * shape.devices
    misconfigured = set(rng.sample(range(total_devices), round(total_devices * shape.misconfigured_share)))
    clean = [i for i in range(total_devices) if i not in misconfigured]
    unregistered = set(rng.sample(clean, round(total_devices * shape.unregistered_share)))
    defects = iter(DEFECTS * (total_devices // len(DEFECTS) + 1))
    venues = rng.sample(VENUES, len(VENUES))  # every venue type once there are enough sites
    private_places = itertools.cycle(rng.sample(PRIVATE_PLACES, len(PRIVATE_PLACES)))
    index = 0
    for o in range(shape.operators):
        operator_id = f"{shape.operator_prefix}-{o:03d}"
        operator = Operator(
            operator_id,
            derive_key(seed, operator_id),
            derive_key(seed, f"{operator_id}/subjects"),
            REGISTRY_PROFILES[o % len(REGISTRY_PROFILES)],
            scheme=shape.scheme,
        )
        for s in range(shape.sites):
            site_id = f"{operator_id}-site-{s:02d}"
            venue = venues[(o * shape.sites + s) % len(venues)]
            for d in range(shape.devices):
                device_id = f"{site_id}-dev-{d:02d}"
                defect = next(defects) if index in misconfigured else None
                registration = _registration(
                    rng, venue, defect, next(private_places) if defect == "private_place" else ""
                )
                operator.devices.append(
                    Device(
                        device_id,
                        operator_id,
                        site_id,
                        derive_key(seed, device_id),
                        registration,
                        defect,
                        registered=index not in unregistered,
                        scheme=shape.scheme,
                    )
                )
                index += 1
        for n in range(shape.subjects):
            minor = rng.random() < shape.minor_share
            consent = rng.choices(["all", "none", "other_purpose"], weights=[75, 15, 10])[0]
            kind = (
                ("guardian" if rng.random() < 0.5 else "separate")
                if minor
                else rng.choice(["separate", "written"])
            )
            ref = subject_ref(f"{operator_id}/person-{n:06d}", operator.secret)
            operator.subjects.append(Subject(ref, operator_id, minor, consent, kind))
        operators.append(operator)
    return operators


def _registration(rng: random.Random, venue: str, defect: str | None, private_place: str) -> dict[str, Any]:
    """A clean configuration for the venue, then the defect applied on top."""
    template = rng.choice(list(TEMPLATE_PURPOSES))
    config: dict[str, Any] = {
        "venue_type": venue,
        "location_type": template,
        "public_place": False,
        "signage": True,
        "alternatives": ["card", "staff"],
        "legal_mandate": None,
        "storage": "device",
        "purposes": [TEMPLATE_PURPOSES[template]],
    }
    if template == "street":
        config.update(venue_type="public_space", public_place=True, alternatives=[])
    if template == "counter":
        config["alternatives"] = ["id_document", "staff"]
    if defect == "private_place":
        config.update(location_type=private_place, purposes=["access_control"])
        if private_place == "hotel_room":
            config["venue_type"] = "hotel"
    elif defect == "no_signage":
        config.update(
            location_type="street",
            venue_type="public_space",
            public_place=True,
            signage=False,
            purposes=["public_safety"],
            alternatives=[],
        )
    elif defect == "public_purpose":
        config.update(location_type="lobby", public_place=True, purposes=["public_safety", "marketing"])
    elif defect in ("sole_entry", "mandated"):
        config.update(location_type="entrance", purposes=["access_control"], alternatives=[])
        if defect == "mandated":
            config["legal_mandate"] = "simulated statutory mandate #001"
    elif defect == "venue_coercion":
        config.update(
            venue_type=rng.choice(LISTED),
            location_type="counter",
            purposes=["identity_verification"],
            alternatives=[],
        )
    elif defect == "venue_coercion_unlisted":
        config.update(
            venue_type=rng.choice(UNLISTED_VENUES),
            location_type="counter",
            purposes=["identity_verification"],
            alternatives=[],
        )
    elif defect == "remote_storage":
        config["storage"] = rng.choice(["server", "cloud"])
    return config
