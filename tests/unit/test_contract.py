"""Contract v1: every example decodes; every kind of bad input is refused with the exact error."""

import json
from typing import Any

import pytest

from contracts import (
    EVENT_TYPES,
    MAX_MESSAGE_BYTES,
    ContractError,
    canonical_json,
    decode_event,
    encode_event,
    sign,
    verify,
)
from contracts.artifacts import example_events

EXAMPLES = {event_type: json.loads(raw) for event_type, raw in example_events().items()}
DELETE = object()


def variant(event_type: str, **changes: Any) -> bytes:
    fields = dict(EXAMPLES[event_type])
    for name, value in changes.items():
        if value is DELETE:
            del fields[name]
        else:
            fields[name] = value
    return json.dumps(fields).encode()


def test_there_is_an_example_of_every_type() -> None:
    assert list(EXAMPLES) == list(EVENT_TYPES)
    assert len(EVENT_TYPES) == 9


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_examples_decode_to_their_type_and_reencode_identically(event_type: str) -> None:
    event = decode_event(example_events()[event_type])
    assert event.event_type == event_type
    assert json.loads(encode_event(event)) == EXAMPLES[event_type]


TS_ERROR = "not an RFC 3339 UTC timestamp like 2026-11-21T08:00:00.123Z"
INVALID = [
    ("non-JSON", b'{"schema": "frt.v1",', None, "not valid JSON: Input data was truncated"),
    ("non-JSON garbage", b"hello", None, "not valid JSON: JSON is malformed: invalid character (byte 0)"),
    ("not an object", b"[1, 2]", None, "an event must be a JSON object: Expected `object`, got `array`"),
    ("bad UTF-8", b'{"schema":"frt.v1","note":"\xc3\x28"}', None, "invalid UTF-8 at byte 27"),
    (
        "wrong schema version",
        variant("media.deleted", schema="frt.v2"),
        "schema",
        "unsupported schema version 'frt.v2', expected 'frt.v1'",
    ),
    (
        "unknown type",
        variant("media.deleted", type="media.copied"),
        "type",
        "unknown event type 'media.copied'",
    ),
    ("missing type", variant("media.deleted", type=DELETE), "type", "required field is missing"),
    (
        "missing field",
        variant("recognition.performed", purpose=DELETE),
        "purpose",
        "required field is missing",
    ),
    (
        "missing nullable field",
        variant("recognition.performed", consent_id=DELETE),
        "consent_id",
        "required field is missing",
    ),
    (
        "null for a required field",
        variant("media.deleted", media_id=None),
        "media_id",
        "Expected `str`, got `null`",
    ),
    (
        "wrong-typed int",
        variant("registry.snapshot", stored_individuals="12480"),
        "stored_individuals",
        "Expected `int`, got `str`",
    ),
    (
        "wrong-typed bool",
        variant("device.registered", public_place="yes"),
        "public_place",
        "Expected `bool`, got `str`",
    ),
    (
        "bad enum value",
        variant("device.registered", venue_type="casino"),
        "venue_type",
        "Invalid enum value 'casino'",
    ),
    (
        "bad enum in a list",
        variant("device.registered", purposes=["payment", "spying"]),
        "purposes[1]",
        "Invalid enum value 'spying'",
    ),
    (
        "empty purposes",
        variant("consent.granted", purposes=[]),
        "purposes",
        "Expected `array` of length >= 1",
    ),
    (
        "timestamp not RFC 3339",
        variant("media.deleted", occurred_at="2026-11-21 08:00:00"),
        "occurred_at",
        TS_ERROR,
    ),
    (
        "timestamp not UTC",
        variant("media.deleted", occurred_at="2026-11-21T08:00:00.123+08:00"),
        "occurred_at",
        TS_ERROR,
    ),
    (
        "timestamp not a real date",
        variant("media.deleted", occurred_at="2026-02-30T08:00:00.000Z"),
        "occurred_at",
        "not a real date and time '2026-02-30T08:00:00.000Z'",
    ),
    ("bad optional timestamp", variant("consent.granted", expires_at="tomorrow"), "expires_at", TS_ERROR),
    ("non-UUID event_id", variant("media.deleted", event_id="not-a-uuid"), "event_id", "not a UUID"),
    ("numeric event_id", variant("media.deleted", event_id=42), "event_id", "Expected `str`, got `int`"),
    ("negative seq", variant("media.deleted", seq=-1), "seq", "Expected `int` >= 0"),
    (
        "operator_id too long",
        variant("media.deleted", operator_id="x" * 65),
        "operator_id",
        "Expected `str` of length <= 64",
    ),
    (
        "empty operator_id",
        variant("media.deleted", operator_id=""),
        "operator_id",
        "Expected `str` of length >= 1",
    ),
    (
        "sig not hex",
        variant("media.deleted", sig="XYZ"),
        "sig",
        "not a lowercase hex signature (64 characters, or 128 for Ed25519)",
    ),
]


@pytest.mark.parametrize(
    ("raw", "field", "reason"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID]
)
def test_invalid_input_is_refused_with_the_exact_error(raw: bytes, field: str | None, reason: str) -> None:
    with pytest.raises(ContractError) as refused:
        decode_event(raw)
    assert (refused.value.field, refused.value.reason) == (field, reason)
    assert str(refused.value) == (f"{field}: {reason}" if field else reason)


def test_a_message_over_64_kib_is_refused_before_parsing() -> None:
    raw = variant("media.deleted", padding="x" * MAX_MESSAGE_BYTES)
    with pytest.raises(ContractError) as refused:
        decode_event(raw)
    assert str(refused.value) == f"message too large: {len(raw)} bytes, the limit is 65536"


def test_json_nested_too_deeply_is_refused_not_raised() -> None:
    """msgspec stops at some thousand levels with a RecursionError: a contract error, so a
    hostile message is dead-lettered instead of stopping whoever decodes it."""
    from stream_processors.router import route

    example = json.loads(example_events()["recognition.performed"])
    nested = json.dumps(example)[:-1].encode() + b', "extra": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    for raw in (b'{"a":' * 5000 + b"1" + b"}" * 5000, nested):
        with pytest.raises(ContractError) as error:
            decode_event(raw)
        assert error.value.code == "invalid_json" and "nested too deeply" in str(error.value)
        routed = route([(("frt.events.v1", 0, 1), raw, -1)])
        assert [reason.split(":")[0] for _, reason, _ in routed.dead] == ["invalid_json"]


def test_a_message_of_exactly_64_kib_is_accepted() -> None:
    base = variant("media.deleted", padding="")
    raw = variant("media.deleted", padding="x" * (MAX_MESSAGE_BYTES - len(base)))
    assert len(raw) == MAX_MESSAGE_BYTES
    assert decode_event(raw).event_type == "media.deleted"


def test_unknown_extra_fields_are_accepted() -> None:
    event = decode_event(variant("media.deleted", firmware="4.2.1", vendor={"name": "x"}))
    assert event.event_type == "media.deleted"


def test_a_registration_must_name_its_device() -> None:
    with pytest.raises(ContractError) as refused:
        decode_event(variant("device.registered", device_id=None))
    assert (refused.value.field, refused.value.reason) == ("device_id", "Expected `str`, got `null`")


def test_canonical_json_sorts_keys_and_has_no_whitespace() -> None:
    assert canonical_json({"b": 1, "a": [True, None], "é": "ü"}) == '{"a":[true,null],"b":1,"é":"ü"}'.encode()


def test_a_signed_event_verifies_and_any_change_breaks_it() -> None:
    key = b"device-key-cam-hq-entrance-01"
    signed = sign(EXAMPLES["recognition.performed"], key)
    raw = json.dumps(signed).encode()
    assert decode_event(raw).sig == signed["sig"]
    assert verify(raw, key)
    assert not verify(raw, b"another key")
    assert not verify({**signed, "purpose": "marketing"}, key)
    assert not verify({**signed, "added": 1}, key)  # extra fields are signed content too
    assert not verify(EXAMPLES["recognition.performed"], key)  # unsigned (sig null)


def test_canonical_bytes_verify_as_sent_and_any_change_breaks_them() -> None:
    key = b"k"
    raw = canonical_json(sign(EXAMPLES["recognition.performed"], key))  # as the SDK sends it
    assert verify(raw, key)
    assert not verify(raw, b"another key")
    assert not verify(raw.replace(b'"purpose":"', b'"purpose":"x'), key)
    sig_first = sign({"z": 1}, key)["sig"].encode()
    assert verify(b'{"sig":"' + sig_first + b'","z":1}', key)  # the first member, then a comma
    assert not verify(b'{"sig":"' + sig_first + b'","z":2}', key)
    assert not verify(b'{"sig":"' + sig_first + b'"}', key)  # "z" cut away


def test_a_sig_member_inside_another_field_is_not_taken_for_the_events() -> None:
    key = b"k"
    signed = sign({**EXAMPLES["media.retained"], "ext": {"sig": "0" * 64}}, key)
    raw = canonical_json(signed)
    assert raw.index(b'"sig"') < raw.rindex(b'"sig"')  # the nested one comes first
    assert verify(raw, key)  # by the long way
    forged = canonical_json({**signed, "ext": {"sig": signed["sig"]}, "sig": "1" * 64})
    assert not verify(forged, key)


def test_the_signature_ignores_key_order_and_whitespace() -> None:
    key = b"k"
    signed = sign(EXAMPLES["media.retained"], key)
    reordered = json.dumps(dict(reversed(list(signed.items()))), indent=4).encode()
    assert verify(reordered, key)
