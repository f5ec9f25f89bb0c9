"""Typed models of contract v1: the envelope and the nine event types.

One msgspec Struct per event type, tagged by the ``type`` field, so a single decoder call turns
raw bytes into the right class and validates every field in C. Unknown extra fields are accepted
(the contract keeps them): they are not attributes of the model, but the original bytes travel
with the event wherever it is stored or forwarded, and signatures cover them.
"""

from typing import Annotated, ClassVar, Literal

import msgspec

from contracts.timestamps import TIMESTAMP_PATTERN, parse_timestamp
from contracts.vocabulary import (
    Alternative,
    ConsentKind,
    EntryMethod,
    EntryOutcome,
    LegalBasis,
    LocationType,
    MediaKind,
    Purpose,
    RecognitionMode,
    Storage,
    VenueType,
    VerificationChannel,
)

SCHEMA_VERSION = "frt.v1"

Timestamp = Annotated[
    str, msgspec.Meta(pattern=TIMESTAMP_PATTERN, description="RFC 3339 UTC, e.g. 2026-11-21T08:00:00.123Z")
]
OperatorId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
# 64 hex characters for HMAC-SHA256, 128 for Ed25519: the scheme is the signing key's (its registry entry).
SIG_PATTERN = r"^[0-9a-f]{64}([0-9a-f]{64})?$"
HexSignature = Annotated[
    str, msgspec.Meta(pattern=SIG_PATTERN, description="HMAC-SHA256 or Ed25519, lowercase hex")
]
Seq = Annotated[int, msgspec.Meta(ge=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Purposes = Annotated[list[Purpose], msgspec.Meta(min_length=1)]
Attributes = Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)]
OfferedMethod = Literal["face", "card", "pin", "qr_code", "id_document", "staff"]


class Envelope(msgspec.Struct, kw_only=True, tag_field="type", frozen=True):
    """Fields every event carries. Fields typed ``X | None`` are nullable but still required."""

    # Timestamp fields whose calendar values are checked after decoding (the pattern checks shape).
    timestamp_fields: ClassVar[tuple[str, ...]] = ("occurred_at",)
    # The type tag, set for each event class below: a class attribute, because the judge reads
    # it several times an event and a property is a call each time.
    event_type: ClassVar[str] = ""

    schema: Literal["frt.v1"]
    event_id: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            description="UUID",
        ),
    ]
    occurred_at: Timestamp
    operator_id: OperatorId
    site_id: str | None
    device_id: str | None
    seq: Seq | None
    sig: HexSignature | None

    def __post_init__(self) -> None:
        for name in self.timestamp_fields:
            value = getattr(self, name)
            if value is None:
                continue
            try:
                parse_timestamp(value)
            except ValueError:
                raise ValueError(f"not a real date and time {value!r} - at `$.{name}`") from None



class DeviceRegistered(Envelope, tag="device.registered", frozen=True):
    device_id: str  # a registration always names its device
    venue_type: VenueType
    location_type: LocationType
    public_place: bool
    purposes: Purposes
    signage: bool
    alternatives: list[Alternative]
    legal_mandate: str | None
    storage: Storage


class ConsentGranted(Envelope, tag="consent.granted", frozen=True):
    timestamp_fields: ClassVar[tuple[str, ...]] = ("occurred_at", "expires_at")

    consent_id: str
    subject_ref: str
    purposes: Purposes
    kind: ConsentKind
    subject_minor: bool
    guardian_ref: str | None
    expires_at: Timestamp | None


class ConsentWithdrawn(Envelope, tag="consent.withdrawn", frozen=True):
    consent_id: str
    subject_ref: str


class RecognitionPerformed(Envelope, tag="recognition.performed", frozen=True):
    subject_ref: str | None
    purpose: Purpose
    mode: RecognitionMode
    legal_basis: LegalBasis
    consent_id: str | None
    subject_minor: bool | None
    verification_channel: VerificationChannel


class AttributesInferred(Envelope, tag="attributes.inferred", frozen=True):
    subject_ref: str | None
    attributes: Attributes
    legal_basis: LegalBasis
    consent_id: str | None


class MediaRetained(Envelope, tag="media.retained", frozen=True):
    media_id: str
    subject_ref: str | None
    kind: MediaKind
    legal_basis: LegalBasis
    consent_id: str | None
    retention_days: Count | None


class MediaDeleted(Envelope, tag="media.deleted", frozen=True):
    media_id: str


class EntryAttempted(Envelope, tag="entry.attempted", frozen=True):
    subject_ref: str | None
    methods_offered: list[OfferedMethod]
    method_used: EntryMethod
    face_refused: bool
    outcome: EntryOutcome


class RegistrySnapshot(Envelope, tag="registry.snapshot", frozen=True):
    timestamp_fields: ClassVar[tuple[str, ...]] = ("occurred_at", "filed_at")

    stored_individuals: Count
    filing_id: str | None
    filed_at: Timestamp | None


Event = (
    DeviceRegistered
    | ConsentGranted
    | ConsentWithdrawn
    | RecognitionPerformed
    | AttributesInferred
    | MediaRetained
    | MediaDeleted
    | EntryAttempted
    | RegistrySnapshot
)

EVENT_CLASSES: tuple[type[Envelope], ...] = (
    DeviceRegistered,
    ConsentGranted,
    ConsentWithdrawn,
    RecognitionPerformed,
    AttributesInferred,
    MediaRetained,
    MediaDeleted,
    EntryAttempted,
    RegistrySnapshot,
)
EVENT_TYPES: tuple[str, ...] = tuple(str(cls.__struct_config__.tag) for cls in EVENT_CLASSES)
for _class, _type in zip(EVENT_CLASSES, EVENT_TYPES, strict=True):
    _class.event_type = _type
