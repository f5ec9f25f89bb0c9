"""The key registry: which key may sign the events of which source.

A source is a device of an operator, or the operator's back office (``device_id`` None). Each
key is bound to one source: an event is checked only against the keys of the source it claims
(its operator_id and device_id), so a key of another device or another operator never passes.

A key's life:
- enrolled: valid;
- rotated: the old key stays valid for events that occurred up to the end of the stated
  overlap (event time, so a device's delayed uploads still pass), a new key is enrolled;
- revoked: refused at once, whatever the event's time (a revoked key may be a stolen one, and
  a thief can backdate).

The registry is one JSON file, written only by `frtwatch keys` (atomically, mode 0600) and
read by the processor and `rules eval`. Whoever may write that file administers the keys:
the CLI refuses a registry that others could read or write, and that is all it enforces.

Schemes: hmac-sha256 (the default; the registry holds the shared secret) and ed25519 (the
registry holds the public key only, so a regulator can check a device's events without
trusting frtwatch).
"""

import hashlib
import json
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from contracts.codec import SigningKey, VerifyingKey
from contracts.files import replace_private
from contracts.timestamps import format_timestamp, parse_timestamp

log = logging.getLogger("frtwatch.keyring")

FORMAT = "frtwatch-keyring/1"
HMAC_SHA256 = "hmac-sha256"
ED25519 = "ed25519"
SCHEMES = (HMAC_SHA256, ED25519)


class KeyringError(ValueError):
    """A registry that cannot be used, or an operation it refuses."""


@dataclass(frozen=True)
class KeyEntry:
    key_id: str
    operator_id: str
    device_id: str | None  # None: the operator's back office
    scheme: str
    key: str  # hex: the HMAC secret, or the Ed25519 public key
    enrolled_at: str
    valid_until: str | None = None  # rotated out: events that occurred later are refused
    revoked_at: str | None = None  # revoked: refused at once

    @property
    def source(self) -> str:
        return f"{self.operator_id}/{self.device_id or 'back-office'}"

    @property
    def state(self) -> str:
        return "revoked" if self.revoked_at else "rotated" if self.valid_until else "active"

    def verifying_key(self) -> VerifyingKey:
        raw = bytes.fromhex(self.key)
        return Ed25519PublicKey.from_public_bytes(raw) if self.scheme == ED25519 else raw


def signing_key(scheme: str, secret: bytes) -> SigningKey:
    """The key a device signs with: the HMAC secret itself, or the Ed25519 private key whose
    seed is ``secret`` (32 bytes)."""
    return Ed25519PrivateKey.from_private_bytes(secret) if scheme == ED25519 else secret


def registered_key(scheme: str, secret: bytes) -> str:
    """What the registry keeps of a device's secret (hex): the HMAC secret, or the public key."""
    if scheme == ED25519:
        public = Ed25519PrivateKey.from_private_bytes(secret).public_key()
        return public.public_bytes(Encoding.Raw, PublicFormat.Raw).hex()
    return secret.hex()


class Keyring:
    def __init__(self, entries: Iterable[KeyEntry] = ()) -> None:
        self.entries: list[KeyEntry] = list(entries)
        self._by_source: dict[tuple[str, str | None], list[tuple[KeyEntry, VerifyingKey]]] = {}
        self._device_operators: dict[str, set[str]] = {}
        self._reindex()

    def _reindex(self) -> None:
        self._by_source.clear()
        self._device_operators.clear()
        for entry in self.entries:
            self._index(entry)

    def _index(self, entry: KeyEntry) -> None:
        keys = self._by_source.setdefault((entry.operator_id, entry.device_id), [])
        keys.insert(0 if entry.state == "active" else len(keys), (entry, entry.verifying_key()))
        if entry.device_id is not None:
            self._device_operators.setdefault(entry.device_id, set()).add(entry.operator_id)

    def current(self) -> "Keyring":
        return self

    def keys_of(self, operator_id: str, device_id: str | None) -> list[tuple[KeyEntry, VerifyingKey]]:
        """Every key ever bound to the source, valid ones first."""
        return self._by_source.get((operator_id, device_id), [])

    def operators_of(self, device_id: str) -> set[str]:
        """The operators a device id is enrolled under (to name a key used for another one)."""
        return self._device_operators.get(device_id, set())

    def enrol(
        self, operator_id: str, device_id: str | None, scheme: str, secret: bytes, at: datetime
    ) -> KeyEntry:
        if scheme not in SCHEMES:
            raise KeyringError(f"unknown scheme {scheme!r}: one of {', '.join(SCHEMES)}")
        if any(e.state == "active" for e, _ in self.keys_of(operator_id, device_id)):
            raise KeyringError(f"{operator_id}/{device_id or 'back-office'} has an active key: rotate it")
        key = registered_key(scheme, secret)
        entry = KeyEntry(
            hashlib.sha256(f"{scheme}:{key}".encode()).hexdigest()[:16],
            operator_id,
            device_id,
            scheme,
            key,
            format_timestamp(at),
        )
        if any(e.key_id == entry.key_id for e in self.entries):
            raise KeyringError(f"key {entry.key_id} is already registered")
        self.entries.append(entry)
        self._index(entry)
        return entry

    def rotate(
        self,
        operator_id: str,
        device_id: str | None,
        secret: bytes,
        at: datetime,
        overlap: timedelta,
        scheme: str | None = None,
    ) -> KeyEntry:
        """End the source's active key ``overlap`` after ``at`` and enrol a new one (the same
        scheme unless told)."""
        active = [e for e, _ in self.keys_of(operator_id, device_id) if e.state == "active"]
        if not active:
            raise KeyringError(f"{operator_id}/{device_id or 'back-office'} has no active key to rotate")
        ended = replace(active[0], valid_until=format_timestamp(at + overlap))
        self._replace(ended)
        return self.enrol(operator_id, device_id, scheme or ended.scheme, secret, at)

    def revoke(self, key_id: str, at: datetime) -> KeyEntry:
        found = [e for e in self.entries if e.key_id == key_id]
        if not found:
            raise KeyringError(f"no key {key_id}")
        if found[0].revoked_at:
            raise KeyringError(f"key {key_id} was revoked at {found[0].revoked_at}")
        revoked = replace(found[0], revoked_at=format_timestamp(at))
        self._replace(revoked)
        return revoked

    def _replace(self, entry: KeyEntry) -> None:
        self.entries = [entry if e.key_id == entry.key_id else e for e in self.entries]
        self._reindex()

    def to_json(self) -> str:
        return json.dumps({"format": FORMAT, "keys": [asdict(e) for e in self.entries]}, indent=1) + "\n"

    @staticmethod
    def from_json(text: str) -> "Keyring":
        try:
            data: Any = json.loads(text)
        except ValueError as error:
            raise KeyringError(f"not a key registry: {error}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise KeyringError(
                f"not a key registry ({FORMAT}); an old keys file binds keys to no operator: "
                "enrol its sources with `frtwatch keys enrol`"
            )
        try:
            entries = [KeyEntry(**entry) for entry in data["keys"]]
            for entry in entries:
                if entry.scheme not in SCHEMES:
                    raise KeyringError(f"key {entry.key_id}: unknown scheme {entry.scheme!r}")
                entry.verifying_key()
                for at in (entry.enrolled_at, entry.valid_until, entry.revoked_at):
                    if at is not None:
                        parse_timestamp(at)
        except (KeyError, TypeError, ValueError) as error:
            raise KeyringError(f"malformed key registry: {error}") from None
        return Keyring(entries)

    @staticmethod
    def load(path: Path) -> "Keyring":
        return Keyring.from_json(path.read_text())

    def save(self, path: Path) -> None:
        """Atomically, mode 0600: a reader sees the old registry or the new one, whole."""
        replace_private(path, self.to_json())


def check_private(path: Path) -> None:
    """Refuse a registry that anyone but its owner may read or write, or that is not ours."""
    info = path.stat()
    if info.st_mode & 0o077:
        raise KeyringError(f"{path} is mode {stat.filemode(info.st_mode)}: a registry must be 0600")
    if info.st_uid != os.getuid():
        raise KeyringError(f"{path} belongs to uid {info.st_uid}, not to this user")


def new_secret() -> bytes:
    return secrets.token_bytes(32)


class KeyringFile:
    """A registry file, read again when it changes (checked at most every ``every`` seconds):
    the gate sees enrolments, rotations and revocations without a restart. A registry that
    cannot be read keeps the last good one in use and says why in ``error``."""

    def __init__(self, path: Path, every: float = 1.0) -> None:
        self.path, self.every = path, every
        self._stamp = self._stat()
        self._keyring = Keyring.load(path)
        self._next = time.monotonic() + every
        self.error: str | None = None

    def _stat(self) -> tuple[int, int, int]:
        info = self.path.stat()
        return info.st_mtime_ns, info.st_size, info.st_ino

    def current(self) -> Keyring:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.every
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._keyring, self._stamp, self.error = Keyring.load(self.path), stamp, None
            except (OSError, KeyringError) as error:
                if self.error != str(error):
                    log.error("key registry %s not read again, the last good one stays: %s", self.path, error)
                self.error = str(error)
        return self._keyring


def write_device_key(path: Path, entry: KeyEntry, secret: bytes) -> None:
    """The secret a source signs with, for its device (mode 0600; never over an existing file)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        record = {**asdict(entry), "key": None, "secret": secret.hex()}
        out.write(json.dumps(record, indent=1) + "\n")


def read_device_key(path: Path) -> SigningKey:
    """What the SDK signs with (EventEmitter's ``key``), from a file `frtwatch keys enrol` wrote."""
    record = json.loads(path.read_text())
    return signing_key(record["scheme"], bytes.fromhex(record["secret"]))
