"""Signed checkpoints of the audit log: the log's size and root hash, as a signed note
(C2SP signed-note, Ed25519), so anyone with the public key can check a copy of the log.

    frtwatch.audit.v1          <- origin: which log
    1234                       <- tree size
    base64(root hash)
    <blank line>
    — frtwatch.audit.v1 base64(key id (4 bytes) || signature)

The public key travels as one line, name+keyid+base64(0x01 || key) ("vkey").
"""

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

ORIGIN = "frtwatch.audit.v1"
_ED25519 = b"\x01"


class CheckpointError(ValueError):
    """A checkpoint or key that does not parse or does not verify."""


@dataclass(frozen=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode()}\n"


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n" + _ED25519 + public).digest()[:4]


class Signer:
    """The log's Ed25519 key, kept in a file only its owner can read."""

    def __init__(self, private: Ed25519PrivateKey, name: str = ORIGIN) -> None:
        self._private, self.name = private, name
        self._public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @classmethod
    def load_or_create(cls, path: Path, name: str = ORIGIN) -> "Signer":
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as file:
                file.write(raw)
        return cls.load(path, name)

    @classmethod
    def load(cls, path: Path, name: str = ORIGIN) -> "Signer":
        """The existing key; only the sink creates one (a stray new key would sign what the
        log's real key cannot vouch for)."""
        if not path.exists():
            raise CheckpointError(f"no audit signing key at {path}: the audit sink creates it on first run")
        return cls(Ed25519PrivateKey.from_private_bytes(path.read_bytes()), name)

    def vkey(self) -> str:
        """The public key as one line, for regulators."""
        key_id = _key_id(self.name, self._public).hex()
        return f"{self.name}+{key_id}+{base64.b64encode(_ED25519 + self._public).decode()}"

    def sign(self, text: str) -> str:
        """``text`` as a signed note."""
        signature = self._private.sign(text.encode())
        stamp = base64.b64encode(_key_id(self.name, self._public) + signature).decode()
        return f"{text}\n\u2014 {self.name} {stamp}\n"


def open_note(note: str, vkey: str) -> str:
    """The text of a signed note, once its signature by ``vkey`` is verified."""
    try:
        name, key_id_hex, key_b64 = vkey.strip().split("+", 2)  # base64 may hold "+" too
        key = base64.b64decode(key_b64, validate=True)
    except ValueError as error:
        raise CheckpointError(f"not a public key line: {error}") from None
    if key[:1] != _ED25519 or len(key) != 33 or _key_id(name, key[1:]).hex() != key_id_hex:
        raise CheckpointError("not an Ed25519 key of this format, or its id does not match")
    text, separator, signatures = note.partition("\n\n")
    if not separator:
        raise CheckpointError("a signed note has its text, a blank line, then signature lines")
    text += "\n"
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or parts[1] != name:
            continue
        stamp = base64.b64decode(parts[2])
        if stamp[:4].hex() != key_id_hex:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(key[1:]).verify(stamp[4:], text.encode())
        except InvalidSignature:
            raise CheckpointError("the signature does not match the note") from None
        return text
    raise CheckpointError(f"the note carries no signature by {name}")


def sign_checkpoint(signer: Signer, checkpoint: Checkpoint) -> str:
    return signer.sign(checkpoint.body())


def open_checkpoint(note: str, vkey: str) -> Checkpoint:
    lines = open_note(note, vkey).splitlines()
    if len(lines) < 3 or not lines[1].isdigit():
        raise CheckpointError("a checkpoint names its origin, size and root hash")
    return Checkpoint(lines[0], int(lines[1]), base64.b64decode(lines[2], validate=True))


# -- the statement key -------------------------------------------------------------------------
# Export statements are signed by a key of their own, which the log's key endorses: the API
# holds only that key, so with a ClickHouse server only the sink can sign checkpoints, and a
# regulator still needs only the log's public key (a bundle carries the endorsement).

STATEMENTS = "frtwatch.audit.statements.v1"
ENDORSEMENT = "frtwatch.audit.statement-key.v1"


def statement_key_path(log_key: Path) -> Path:
    """Where the statement key lives: a folder of its own under the log key's, which the API
    can be given alone (docker-compose mounts only it); its endorsement beside it."""
    return log_key.parent / "statements" / "statement-ed25519.key"


@dataclass(frozen=True)
class StatementSigner:
    signer: Signer
    endorsement: str  # a note by the log's key naming signer.vkey()

    @classmethod
    def endorsed_by(cls, log: Signer, signer: Signer) -> "StatementSigner":
        return cls(signer, log.sign(f"{ENDORSEMENT}\n{signer.vkey()}\n{log.vkey()}\n"))

    @property
    def log_vkey(self) -> str:
        """The log's public key as the endorsement names it (regulators hold their own copy)."""
        return self.endorsement.splitlines()[2]

    @classmethod
    def prepare(cls, log: Signer, path: Path) -> "StatementSigner":
        """The sink's part: the statement key, created and endorsed if need be."""
        signer = Signer.load_or_create(path, STATEMENTS)
        endorsement = path.with_name(path.name + ".endorsement")
        if endorsement.exists() and open_endorsement(endorsement.read_text(), log.vkey()) == signer.vkey():
            return cls(signer, endorsement.read_text())
        made = cls.endorsed_by(log, signer)
        endorsement.write_text(made.endorsement)
        return made

    @classmethod
    def load(cls, path: Path) -> "StatementSigner":
        """The API's part: the key and its endorsement, as the sink left them."""
        endorsement = path.with_name(path.name + ".endorsement")
        if not endorsement.exists():
            raise CheckpointError(f"no endorsed statement key at {path}: the audit sink makes it")
        return cls(Signer.load(path, STATEMENTS), endorsement.read_text())


def open_endorsement(note: str, log_vkey: str) -> str:
    """The statement key a log's key endorsed in ``note`` (its vkey line)."""
    lines = open_note(note, log_vkey).splitlines()
    if len(lines) != 3 or lines[0] != ENDORSEMENT or lines[2] != log_vkey.strip():
        raise CheckpointError("not an endorsement of a statement key")
    return lines[1]
