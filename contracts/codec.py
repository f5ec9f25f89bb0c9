"""Bytes in, typed event out (or one clear error); canonical JSON and its signatures:
HMAC-SHA256 (a key shared by the device and the registry) or Ed25519 (the device holds the
private key, the registry and anyone checking the log only the public one), per key.

``decode_event`` is the only way raw input becomes an event: size limit, UTF-8, JSON, schema,
types, enums, timestamps and ids are all checked in one call, and a failure is a ContractError
that names the field and the reason.
"""

import binascii
import functools
import hashlib
import hmac
import re
from typing import Any, Protocol

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from contracts.events import SIG_PATTERN, Envelope, Event
from contracts.timestamps import TIMESTAMP_PATTERN

MAX_MESSAGE_BYTES = 64 * 1024

_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)
_encoder = msgspec.json.Encoder()

# msgspec reports a failed pattern by quoting the regex (repr-escaped); say what the field
# should be instead.
_PATTERN_MEANINGS = {
    repr(TIMESTAMP_PATTERN)[1:-1]: "not an RFC 3339 UTC timestamp like 2026-11-21T08:00:00.123Z",
    repr(SIG_PATTERN)[1:-1]: "not a lowercase hex signature (64 characters, or 128 for Ed25519)",
}
_UUID_FIELDS = {"event_id"}
_AT_PATH = re.compile(r"^(?P<reason>.*?) - at `\$(?P<path>[^`]*)`$", re.S)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_REGEX_MISMATCH = re.compile(r"^Expected `str` matching regex '(?P<regex>.*)'$", re.S)


class ContractError(ValueError):
    """An input that breaks contract v1. ``field`` is a JSON path like ``event_id`` or
    ``purposes[0]``, or None when the message as a whole is unusable. ``code`` is a stable
    category for counting: too_large, invalid_utf8, invalid_json, unsupported_schema,
    unknown_type or invalid_event."""

    def __init__(self, reason: str, field: str | None = None, code: str = "invalid_event") -> None:
        self.reason = reason
        self.field = field
        self.code = code
        super().__init__(f"{field}: {reason}" if field else reason)


def decode_event(raw: bytes) -> Event:
    """Decode and validate one message value. Raises ContractError."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ContractError(
            f"message too large: {len(raw)} bytes, the limit is {MAX_MESSAGE_BYTES}", code="too_large"
        )
    if not raw.isascii():
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(f"invalid UTF-8 at byte {exc.start}", code="invalid_utf8") from None
    try:
        return _decoder.decode(raw)
    except msgspec.ValidationError as exc:
        raise _contract_error(str(exc)) from None
    except msgspec.DecodeError as exc:
        raise ContractError(f"not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # msgspec's own depth limit, some thousand levels in
        raise ContractError("JSON nested too deeply", code="invalid_json") from None


def _contract_error(message: str) -> ContractError:
    path = ""
    match = _AT_PATH.match(message)
    if match:
        message, path = match["reason"], match["path"]
    missing = _MISSING.match(message)
    if missing:
        field = f"{path}.{missing['name']}" if path else missing["name"]
        return ContractError("required field is missing", field.lstrip("."))
    field = path.lstrip(".") or None
    code = "invalid_event"
    regex = _REGEX_MISMATCH.match(message)
    if regex:
        message = "not a UUID" if field in _UUID_FIELDS else _PATTERN_MEANINGS.get(regex["regex"], message)
    elif field == "type" and message.startswith("Invalid value"):
        message, code = f"unknown event type {message.removeprefix('Invalid value ')}", "unknown_type"
    elif field == "schema" and message.startswith("Invalid enum value"):
        version = message.removeprefix("Invalid enum value ")
        message, code = f"unsupported schema version {version}, expected 'frt.v1'", "unsupported_schema"
    elif field is None and message.startswith("Expected `object`"):
        message = f"an event must be a JSON object: {message}"
    return ContractError(message, field, code)


def encode_event(event: Envelope) -> bytes:
    """The wire form of a typed event (the ``type`` tag included)."""
    return _encoder.encode(event)


def canonical_json(fields: dict[str, Any]) -> bytes:
    """Canonical JSON (RFC 8785 for the value types the contract uses): keys sorted, no
    whitespace, UTF-8, minimal escapes. Signatures are computed over it."""
    return msgspec.json.encode(fields, order="sorted")


SigningKey = bytes | Ed25519PrivateKey  # bytes: an HMAC-SHA256 key
VerifyingKey = bytes | Ed25519PublicKey


def signature(fields: dict[str, Any], key: SigningKey) -> str:
    """The signature (hex) of the canonical JSON of the event without its ``sig`` field:
    HMAC-SHA256 with a bytes key, Ed25519 with a private key."""
    unsigned = canonical_json({name: value for name, value in fields.items() if name != "sig"})
    if isinstance(key, Ed25519PrivateKey):
        return key.sign(unsigned).hex()
    return _hmac_hex(key, unsigned)


_SIG = b'"sig":"'


def _verify_canonical(raw: bytes, key: VerifyingKey) -> bool:
    """The SDK sends canonical JSON with its ``sig`` in place, so the signed bytes are the
    message without that member: checked so, without decoding and encoding it again (some
    40% of the signature check). Whatever else fails here is checked the long way: a
    message that is not canonical, or whose first "sig" member is not the event's own.
    Only bytes the key signed pass, and the signed bytes never hold a top-level sig, so
    the member cut out can only be the one the decoder reads as ``sig``."""
    at = raw.find(_SIG)
    if at < 1:
        return False
    end = raw.find(b'"', at + len(_SIG))
    if end < 0:
        return False
    if raw[at - 1] == ord(","):
        head, tail = at - 1, end + 1
    elif raw[at - 1] == ord("{") and raw[end + 1 : end + 2] == b",":
        head, tail = at, end + 2
    else:
        return False
    sig = raw[at + len(_SIG) : end]
    if isinstance(key, bytes):  # HMAC: fed the two parts, not a copy of the message joined
        view = memoryview(raw)
        return hmac.compare_digest(sig, _hmac_hex(key, view[:head], view[tail:]).encode())
    return _check(sig, raw[:head] + raw[tail:], key)


def _check(sig: bytes, signed: bytes, key: VerifyingKey) -> bool:
    """``sig`` as sent (hex) against the ``signed`` bytes."""
    if isinstance(key, Ed25519PublicKey):
        if len(sig) != 128:
            return False
        try:
            key.verify(binascii.unhexlify(sig), signed)
        except (InvalidSignature, binascii.Error):
            return False
        return True
    return hmac.compare_digest(sig, _hmac_hex(key, signed).encode())


class _Sha256(Protocol):
    def copy(self) -> "_Sha256": ...
    def update(self, data: bytes | memoryview, /) -> None: ...
    def digest(self) -> bytes: ...
    def hexdigest(self) -> str: ...


_BLOCK = 64  # SHA-256's block size


@functools.lru_cache(maxsize=100_000)
def _keyed(key: bytes) -> tuple[_Sha256, _Sha256]:
    """HMAC-SHA256 (RFC 2104) with ``key`` taken in: the SHA-256 states after its inner and
    outer padded blocks. Copies of these cost about half as much as a copy of an hmac.HMAC
    (an OpenSSL 3 MAC context), which was most of an event's signature check."""
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    block = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(bytes(b ^ 0x36 for b in block)), hashlib.sha256(bytes(b ^ 0x5C for b in block))


def _hmac_hex(key: bytes, *parts: bytes | memoryview) -> str:
    """HMAC-SHA256 of the concatenated ``parts`` (hex)."""
    inner, outer = _keyed(key)
    mac = inner.copy()
    for part in parts:
        mac.update(part)
    result = outer.copy()
    result.update(mac.digest())
    return result.hexdigest()


def sign(fields: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    """A copy of the event fields with ``sig`` set."""
    return {**fields, "sig": signature(fields, key)}


def verify(raw: bytes | dict[str, Any], key: VerifyingKey) -> bool:
    """True when the event's ``sig`` matches its content under ``key`` (an HMAC key, or an
    Ed25519 public key). Extra fields the models do not know are part of the signed content,
    so this reads the raw JSON."""
    if isinstance(raw, bytes) and _verify_canonical(raw, key):
        return True
    fields = msgspec.json.decode(raw) if isinstance(raw, bytes) else dict(raw)
    if not isinstance(fields, dict):
        return False
    sig = fields.pop("sig", None)
    if not isinstance(sig, str):
        return False
    return _check(sig.encode(), canonical_json(fields), key)
