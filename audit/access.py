"""Who may ask the audit log what: API tokens, roles and jurisdictions, from one YAML file.

    jurisdictions:            # which operators each regulator's jurisdiction covers
      shanghai: [op-000, op-001]
    principals:
      - {name: cac-shanghai, role: regulator, jurisdiction: shanghai, token_sha256: ...}
      - {name: op-000-compliance, role: operator, operator_id: op-000, token_sha256: ...}
      - {name: noc, role: ops, token_sha256: ...}
      - {name: dpa-oversight, role: auditor, token_sha256: ...}

A regulator sees the rows of its jurisdiction's operators, an operator only its own, ops only
aggregates (never a row, so never a subject_ref). Query records (who asked the API what) are
seen by the principal who made them and by auditors, who audit the auditors: they read every
query record and no other row. Which operator falls under which jurisdiction is deployment
configuration: events do not carry it. Only SHA-256 hashes of tokens are stored;
`frtwatch api token` makes a token and prints it once.
"""

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROLES = ("regulator", "operator", "ops", "auditor")
log = logging.getLogger("frtwatch.api")


class AccessError(ValueError):
    """The access file is wrong; the message names the entry."""


@dataclass(frozen=True)
class Principal:
    name: str
    role: str  # one of ROLES
    jurisdiction: str | None = None  # regulators
    operator_id: str | None = None  # operators


@dataclass(frozen=True)
class Scope:
    """The rows a principal may read: those of ``operators``, and the query records made by
    ``askers`` (None: by anyone)."""

    operators: tuple[str, ...]
    askers: tuple[str, ...] | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Access:
    jurisdictions: dict[str, frozenset[str]]
    by_token_hash: dict[str, Principal]

    @classmethod
    def load(cls, path: Path) -> "Access":
        if not path.exists():
            raise AccessError(f"{path}: no access file (create tokens with `frtwatch api token`)")
        return cls.parse(_read(path), str(path))

    @classmethod
    def parse(cls, document: Any, where: str = "access") -> "Access":
        try:
            return cls._parse(document, where)
        except (AttributeError, TypeError, ValueError) as error:
            if isinstance(error, AccessError):
                raise
            raise AccessError(f"{where}: not an access document ({error})") from None

    @classmethod
    def _parse(cls, document: dict[str, Any], where: str) -> "Access":
        jurisdictions = {}
        for name, operators in (document.get("jurisdictions") or {}).items():
            if not isinstance(operators, list):
                raise AccessError(f"{where}: jurisdictions.{name} must be a list of operator_ids")
            jurisdictions[str(name)] = frozenset(str(op) for op in operators)
        principals: dict[str, Principal] = {}
        names: set[str] = set()
        for n, item in enumerate(document.get("principals") or []):
            at = f"{where}: principals[{n}]"
            principal = Principal(
                name=str(item.get("name") or ""),
                role=str(item.get("role") or ""),
                jurisdiction=item.get("jurisdiction"),
                operator_id=item.get("operator_id"),
            )
            digest = str(item.get("token_sha256") or "")
            if not principal.name:
                raise AccessError(f"{at}: a principal needs a name")
            if principal.name in names:
                raise AccessError(f"{at} ({principal.name}): the name is taken by another principal")
            if principal.role not in ROLES:
                raise AccessError(f"{at} ({principal.name}): role must be one of {', '.join(ROLES)}")
            if principal.role == "regulator" and principal.jurisdiction not in jurisdictions:
                raise AccessError(f"{at} ({principal.name}): unknown jurisdiction {principal.jurisdiction!r}")
            if principal.role == "operator" and not principal.operator_id:
                raise AccessError(f"{at} ({principal.name}): an operator principal needs operator_id")
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise AccessError(f"{at} ({principal.name}): token_sha256 must be 64 lowercase hex digits")
            if digest in principals:
                raise AccessError(f"{at} ({principal.name}): shares its token with {principals[digest].name}")
            names.add(principal.name)
            principals[digest] = principal
        return cls(jurisdictions, principals)

    def authenticate(self, token: str) -> Principal | None:
        return self.by_token_hash.get(token_hash(token))

    def operators(self, principal: Principal) -> frozenset[str] | None:
        """The operators whose rows ``principal`` may see; None: every operator (ops, whose
        endpoints return aggregates only)."""
        if principal.role == "regulator":
            return self.jurisdictions.get(str(principal.jurisdiction), frozenset())
        if principal.role == "operator":
            return frozenset([str(principal.operator_id)])
        if principal.role == "auditor":
            return frozenset()
        return None

    def scope(self, principal: Principal) -> Scope | None:
        """What ``principal`` may read row by row; None: nothing (ops, aggregates only)."""
        operators = self.operators(principal)
        if operators is None:
            return None
        askers = None if principal.role == "auditor" else (principal.name,)
        return Scope(tuple(sorted(operators)), askers)


class AccessFile:
    """The access file as of its last good version: edits (a new token, a revoked one) apply
    without a restart; an edit that does not parse is logged and the previous version kept.
    No file yet is no access at all: every call is refused until a token is made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = self._mtime()
        self._access = Access.load(path) if self._stamp is not None else Access({}, {})

    def _mtime(self) -> int | None:
        return self.path.stat().st_mtime_ns if self.path.exists() else None

    def current(self) -> Access:
        try:
            stamp = self._mtime()
            if stamp != self._stamp:
                self._stamp = stamp
                self._access = Access.load(self.path) if stamp is not None else Access({}, {})
                log.info("access file %s reloaded", self.path)
        except (OSError, AccessError) as error:
            log.error("access file %s not reloaded, the previous version stays: %s", self.path, error)
        return self._access


def _read(path: Path) -> dict[str, Any]:
    try:
        document = yaml.safe_load(path.read_text()) if path.exists() else None
    except yaml.YAMLError as error:
        raise AccessError(f"{path}: not YAML ({error})") from None
    if document is not None and not isinstance(document, dict):
        raise AccessError(f"{path}: expected a mapping of jurisdictions and principals")
    return document or {}


def _write(path: Path, document: dict[str, Any]) -> None:
    """Atomically, readable by its owner only (it names who may read the log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as file:
        file.write(yaml.safe_dump(document, sort_keys=False))
    temporary.replace(path)


def set_jurisdiction(path: Path, name: str, operators: list[str]) -> None:
    document = _read(path)
    Access.parse(document, str(path))  # a file the API would refuse is not edited either
    document.setdefault("jurisdictions", {})[name] = sorted(set(operators))
    Access.parse(document, str(path))
    _write(path, document)


def add_principal(
    path: Path, name: str, role: str, jurisdiction: str | None = None, operator_id: str | None = None
) -> str:
    """Add (or re-key) a principal; return its new token, which is stored only as a hash."""
    token = secrets.token_urlsafe(32)
    document = _read(path)
    Access.parse(document, str(path))  # a file the API would refuse is not edited either
    entry: dict[str, Any] = {"name": name, "role": role}
    if jurisdiction:
        entry["jurisdiction"] = jurisdiction
    if operator_id:
        entry["operator_id"] = operator_id
    entry["token_sha256"] = token_hash(token)
    others = [p for p in document.get("principals") or [] if p.get("name") != name]
    document["principals"] = [*others, entry]
    Access.parse(document, str(path))  # refuse to write a file the API would refuse
    _write(path, document)
    return token
