"""Malformed and hostile messages for the simulator's bad-input mode. Each one must end in the
dead-letter topic with its reason; none may stop the pipeline."""

import json
import random
from typing import Any

from contracts import canonical_json, signature
from contracts.codec import SigningKey

# seq_gap and replayed_event_id are made by the plan (they need a device's history).
KINDS = (
    "not_json",
    "bad_utf8",
    "wrong_type",
    "missing_field",
    "unknown_type",
    "wrong_schema",
    "oversized",
    "bad_signature",
    "future_timestamp",
    "replayed_event_id",
    "seq_gap",
)


def corrupt(kind: str, rng: random.Random, event: dict[str, Any], key: SigningKey | None) -> bytes:
    """The bytes of ``kind`` made from a valid, unsent ``event`` (seq null, signed with ``key``)."""
    event = dict(event)
    if kind == "not_json":
        return b'{"schema": "frt.v1", "event_id": ' + str(rng.getrandbits(32)).encode() + b", oops"
    if kind == "bad_utf8":
        return canonical_json({**event, "sig": None, "note": "x"}).replace(
            b'"note":"x"', b'"note":"\xff\xfe"'
        )
    if kind == "wrong_type":
        name, wrong = rng.choice(
            [
                ("operator_id", 12345),
                ("seq", "7"),
                ("occurred_at", 1763712000),
                ("purpose", ["a"]),
                ("subject_minor", "no"),
                ("site_id", {"nested": True}),
            ]
        )
        event[name] = wrong
    elif kind == "missing_field":
        del event[rng.choice(["occurred_at", "operator_id", "event_id", "device_id"])]
    elif kind == "unknown_type":
        event["type"] = rng.choice(["face.sold", "recognition.deleted", "device.hacked"])
    elif kind == "wrong_schema":
        event["schema"] = rng.choice(["frt.v0", "frt.v2", "FRT.V1"])
    elif kind == "oversized":
        event["padding"] = "x" * (70 * 1024)
    elif kind == "future_timestamp":
        year = int(event["occurred_at"][:4]) + rng.randint(5, 30)
        event["occurred_at"] = f"{year}{event['occurred_at'][4:]}"
    if key is not None:
        event["sig"] = signature(event, key)
    if kind == "bad_signature":
        event["sig"] = f"{rng.getrandbits(256):064x}" * (len(event["sig"] or "x" * 64) // 64)
    return json.dumps(event, separators=(",", ":")).encode()
