"""The closed vocabularies of contract v1 (../shared/docs/contract.md), as typing Literals."""

from typing import Literal

VenueType = Literal[
    "hotel",
    "bank",
    "railway_station",
    "airport",
    "sports_venue",
    "exhibition_hall",
    "museum",
    "art_gallery",
    "library",
    "residential_building",
    "office",
    "retail",
    "school",
    "hospital",
    "public_space",
    "other",
]
LocationType = Literal[
    "entrance",
    "lobby",
    "counter",
    "checkout",
    "street",
    "hotel_room",
    "public_bathroom",
    "changing_room",
    "toilet",
    "other",
]
Purpose = Literal[
    "access_control",
    "payment",
    "identity_verification",
    "public_safety",
    "attendance",
    "marketing",
    "analytics",
]
Alternative = Literal["card", "pin", "qr_code", "id_document", "staff"]
Storage = Literal["device", "server", "cloud"]
ConsentKind = Literal["separate", "written", "guardian"]
RecognitionMode = Literal["verify_1to1", "identify_1toN"]
LegalBasis = Literal["consent", "law", "public_safety", "national_security", "emergency", "none"]
VerificationChannel = Literal["national_population_db", "national_network_id", "local", "none"]
MediaKind = Literal["raw_image", "video", "face_template", "anonymized"]
EntryMethod = Literal["face", "card", "pin", "qr_code", "id_document", "staff", "none"]
EntryOutcome = Literal["granted", "denied"]
Severity = Literal["critical", "high", "medium", "low", "info"]
