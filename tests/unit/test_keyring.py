"""The key registry and the gate that fails closed with it: every forged source is refused with
its reason, unsigned traffic passes only from the operators a deployment names (and is marked
as weaker evidence in the audit log), and enrolments, rotations and revocations reach a
running gate through the registry file."""

import json
import os
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from audit import entries
from contracts import canonical_json, sign, topics
from contracts.codec import SigningKey
from contracts.keyring import (
    ED25519,
    HMAC_SHA256,
    Keyring,
    KeyringError,
    KeyringFile,
    read_device_key,
    signing_key,
)
from frtwatch.cli import app
from producers.builder import EventBuilder
from stream_processors.admission import REASONS, Admission, Gate

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ENROLLED = NOW - timedelta(days=30)
SECRETS = {
    name: bytes([n]) * 32 for n, name in enumerate(["a1", "a2", "a3", "a3-new", "b1", "b2", "bo-a"], 1)
}


def keyring() -> Keyring:
    """op-a: devices a1, a2 (revoked), a3 (rotated, overlap to NOW - 1 h) and its back office;
    op-b: b1 (HMAC) and b2 (Ed25519)."""
    ring = Keyring()
    for operator, device, scheme in [
        ("op-a", "a1", HMAC_SHA256),
        ("op-a", "a2", HMAC_SHA256),
        ("op-a", "a3", HMAC_SHA256),
        ("op-a", None, HMAC_SHA256),
        ("op-b", "b1", HMAC_SHA256),
        ("op-b", "b2", ED25519),
    ]:
        ring.enrol(operator, device, scheme, SECRETS[device or "bo-a"], ENROLLED)
    revoked = ring.keys_of("op-a", "a2")[0][0]
    ring.revoke(revoked.key_id, NOW - timedelta(days=1))
    ring.rotate("op-a", "a3", SECRETS["a3-new"], NOW - timedelta(days=2), timedelta(days=1))
    return ring


def key(name: str, scheme: str = HMAC_SHA256) -> SigningKey:
    return signing_key(scheme, SECRETS[name])


def event(operator: str, device: str | None, at: datetime = NOW - timedelta(minutes=1)) -> dict[str, Any]:
    return {
        "schema": "frt.v1",
        "event_id": str(uuid.uuid4()),
        "type": "media.deleted" if device else "consent.withdrawn",
        "occurred_at": at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z",
        "operator_id": operator,
        "site_id": "s1" if device else None,
        "device_id": device,
        "seq": None,
        "sig": None,
        **({"media_id": "m-1"} if device else {"consent_id": "c-1", "subject_ref": "sub-1"}),
    }


def admit(fields: dict[str, Any], signer: SigningKey | None = None, **gate: Any) -> Admission:
    raw = canonical_json(sign(fields, signer) if signer is not None else fields)
    return Gate(keyring(), clock=lambda: NOW, **gate).admit(raw)


def reason(admission: Admission) -> str:
    assert admission.event is None, "admitted"
    assert len(admission.problems) == 1
    assert admission.problems[0].reason in REASONS
    return admission.problems[0].reason


def test_sources_signing_with_their_own_valid_keys_are_admitted() -> None:
    assert admit(event("op-a", "a1"), key("a1")).event is not None
    assert admit(event("op-a", None), key("bo-a")).event is not None
    assert admit(event("op-b", "b2"), key("b2", ED25519)).event is not None
    assert admit(event("op-a", "a3"), key("a3-new")).event is not None


def test_unsigned_from_an_unregistered_device_claiming_a_keyed_operator_is_refused() -> None:
    assert reason(admit(event("op-a", "made-up-cam"))) == "unknown_source"
    # signing with a key of one's own does not help
    assert reason(admit(event("op-a", "made-up-cam"), b"x" * 32)) == "unknown_source"


def test_operator_a_event_signed_with_operator_b_device_key_is_refused() -> None:
    # naming B's device, which is enrolled under B only
    assert reason(admit(event("op-a", "b1"), key("b1"))) == "key_not_bound"
    # naming A's own device, signed with B's device key
    assert reason(admit(event("op-a", "a1"), key("b1"))) == "bad_signature"
    # A's back office, signed with B's device key (or B's Ed25519 key)
    assert reason(admit(event("op-a", None), key("b1"))) == "bad_signature"
    assert reason(admit(event("op-a", None), key("b2", ED25519))) == "bad_signature"


def test_a_revoked_key_is_refused_whatever_the_event_time() -> None:
    assert reason(admit(event("op-a", "a2"), key("a2"))) == "revoked_key"
    backdated = event("op-a", "a2", NOW - timedelta(days=20))  # before the revocation
    assert reason(admit(backdated, key("a2"))) == "revoked_key"


def test_a_rotated_out_key_passes_within_its_overlap_only() -> None:
    # rotated 2 days ago with a day's overlap: events up to a day ago may carry the old key
    assert admit(event("op-a", "a3", NOW - timedelta(days=1, minutes=5)), key("a3")).event is not None
    assert reason(admit(event("op-a", "a3", NOW - timedelta(hours=23)), key("a3"))) == "expired_key"
    assert reason(admit(event("op-a", "a3"), key("a3"))) == "expired_key"


def test_unsigned_is_refused_unless_the_operator_is_named() -> None:
    assert reason(admit(event("op-c", "c1"))) == "unknown_source"
    assert reason(admit(event("op-c", None))) == "unknown_source"
    assert reason(admit(event("op-c", "c1"), unsigned_operators=["op-d"])) == "unknown_source"
    # a keyed source must sign, even of a named operator (else a forger would just drop the sig)
    assert reason(admit(event("op-a", "a1"), unsigned_operators=["op-a"])) == "missing_signature"
    # a device of another operator cannot be claimed by a named one either
    assert reason(admit(event("op-c", "b1"), unsigned_operators=["op-c"])) == "key_not_bound"


def test_unsigned_from_a_named_operator_is_admitted_and_marked_weaker_evidence() -> None:
    fields = event("op-c", "c1")
    admission = admit(fields, unsigned_operators=["op-c"])
    assert admission.event is not None and admission.problems == []
    entry = entries.accepted_event(canonical_json(fields), f"{topics.ACCEPTED}:0:0")
    assert entry.status == "unsigned"
    signed = entries.accepted_event(canonical_json(sign(event("op-a", "a1"), key("a1"))), "x:0:0")
    assert signed.status == ""


def test_without_a_registry_the_gate_checks_no_signature() -> None:
    """Only `rules eval` without --keys builds such a gate (an offline reading of a history)."""
    raw = canonical_json(event("op-a", "made-up-cam"))
    assert Gate(clock=lambda: NOW).admit(raw).event is not None


def test_the_processor_without_a_registry_admits_only_named_unsigned_operators() -> None:
    """The processor's gate without FRTWATCH_KEYS_FILE is an empty registry's (app.py): closed."""
    gate = Gate(Keyring(), unsigned_operators=["op-c"], clock=lambda: NOW)
    assert gate.admit(canonical_json(event("op-c", "c1"))).event is not None
    for fields, signer in [
        (event("op-a", "a1"), key("a1")),
        (event("op-a", "a1"), None),
        (event("op-c", "c1"), key("a1")),
    ]:
        assert (
            reason(gate.admit(canonical_json(sign(fields, signer) if signer else fields))) == "unknown_source"
        )


def test_process_refuses_to_start_on_a_registry_that_is_not_there(tmp_path: Path) -> None:
    missing = tmp_path / "keyring.json"
    env = {"FRTWATCH_KEYS_FILE": str(missing), "FRTWATCH_HOME": str(tmp_path)}
    result = CliRunner().invoke(app, ["process"], env=env)
    assert result.exit_code == 2, result.output
    assert "no key registry at" in result.output and str(missing) in result.output


def test_the_sdk_signs_with_the_key_it_was_enrolled_with(tmp_path: Path) -> None:
    for scheme in (HMAC_SHA256, ED25519):
        registry, key_file = tmp_path / f"{scheme}.json", tmp_path / f"{scheme}.key"
        cli("enrol", "--operator", "op-s", "--device", "cam", "--scheme", scheme, "--key-out", str(key_file),
            "--registry", str(registry))  # fmt: skip
        builder = EventBuilder(
            operator_id="op-s", site_id="s", device_id="cam", key=read_device_key(key_file)
        )
        _, wire = builder.build("media.deleted", media_id="m-1")
        assert len(json.loads(wire)["sig"]) == (128 if scheme == ED25519 else 64)
        assert Gate(Keyring.load(registry)).admit(wire).event is not None
        other = EventBuilder(operator_id="op-s", site_id="s", device_id="cam", key=b"k" * 32)
        assert reason(
            Gate(Keyring.load(registry)).admit(other.build("media.deleted", media_id="m-1")[1])
        ) == ("bad_signature")


def test_a_running_gate_sees_revocations_and_enrolments_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    ring = keyring()
    ring.save(path)
    gate = Gate(KeyringFile(path, every=0), clock=lambda: NOW)
    assert gate.admit(canonical_json(sign(event("op-a", "a1"), key("a1")))).event is not None
    ring.revoke(ring.keys_of("op-a", "a1")[0][0].key_id, NOW)
    ring.enrol("op-c", "c1", HMAC_SHA256, b"c" * 32, NOW)
    ring.save(path)
    assert reason(gate.admit(canonical_json(sign(event("op-a", "a1"), key("a1"))))) == "revoked_key"
    assert gate.admit(canonical_json(sign(event("op-c", "c1"), b"c" * 32))).event is not None
    path.write_text("{not json")  # a broken file keeps the last good registry in use
    assert gate.admit(canonical_json(sign(event("op-c", "c1"), b"c" * 32))).event is not None


def test_an_old_keys_file_binds_no_operator_and_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"devices": {"a1": "00" * 32}, "back_offices": {}}))
    with pytest.raises(KeyringError, match="binds keys to no operator"):
        Keyring.load(path)


def cli(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, ["keys", *args])
    assert result.exit_code == code, result.output
    return result.output


def test_keys_cli_enrols_rotates_revokes_and_lists_without_printing_a_secret(tmp_path: Path) -> None:
    registry = str(tmp_path / "registry.json")
    output = cli("enrol", "--operator", "op-a", "--device", "a1", "--key-out", str(tmp_path / "a1.key"),
                 "--registry", registry)  # fmt: skip
    output += cli("enrol", "--operator", "op-a", "--device", "a1", "--key-out", str(tmp_path / "again.key"),
                  "--registry", registry, code=1)  # fmt: skip
    assert not (tmp_path / "again.key").exists()
    output += cli("rotate", "--operator", "op-a", "--device", "a1", "--overlap", "2", "--scheme", "ed25519",
                  "--key-out", str(tmp_path / "a1-new.key"), "--registry", registry)  # fmt: skip
    ring = Keyring.load(Path(registry))
    old, new = sorted(ring.entries, key=lambda e: e.enrolled_at)
    assert (old.state, new.state, new.scheme) == ("rotated", "active", ED25519)
    output += cli("revoke", new.key_id, "--registry", registry)
    listed = cli("list", "--registry", registry)
    assert f"{new.key_id}  op-a/a1  ed25519  revoked" in listed
    assert f"{old.key_id}  op-a/a1  hmac-sha256  rotated" in listed
    for key_file in ("a1.key", "a1-new.key"):
        assert os.stat(tmp_path / key_file).st_mode & 0o777 == 0o600
        assert json.loads((tmp_path / key_file).read_text())["secret"] not in output + listed
    assert os.stat(registry).st_mode & 0o777 == 0o600


def test_keys_cli_refuses_a_registry_others_may_read(tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    keyring().save(registry)
    registry.chmod(0o644)
    assert "a registry must be 0600" in cli("list", "--registry", str(registry), code=2)
    cli("revoke", keyring().entries[0].key_id, "--registry", str(registry), code=2)
    assert Keyring.load(registry).entries == keyring().entries  # untouched
