"""Export bundles and the offline verifier: an honest bundle verifies; changing, deleting,
inserting or reordering any entry, another key, or a statement key the log's key did not
endorse, does not."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from audit.bundle import make_bundle, verify_bundle
from audit.checkpoint import (
    ORIGIN,
    STATEMENTS,
    Checkpoint,
    CheckpointError,
    Signer,
    StatementSigner,
    open_endorsement,
    open_note,
    sign_checkpoint,
    statement_key_path,
)
from audit.merkle import Tree, leaf_hash

BODIES = [json.dumps({"n": n, "kind": "violation" if n % 3 == 0 else "event"}) for n in range(50)]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer.load_or_create(tmp_path_factory.mktemp("keys") / "audit.key")


@pytest.fixture(scope="module")
def statements(signer: Signer, tmp_path_factory: pytest.TempPathFactory) -> StatementSigner:
    return StatementSigner.prepare(signer, statement_key_path(tmp_path_factory.mktemp("keys") / "audit.key"))


@pytest.fixture(scope="module")
def honest(signer: Signer, statements: StatementSigner) -> dict[str, Any]:
    tree = Tree([leaf_hash(body.encode()) for body in BODIES])
    note = sign_checkpoint(signer, Checkpoint(ORIGIN, tree.size, tree.root()))
    selected = [(seq, BODIES[seq]) for seq in range(0, 50, 3)]  # "the violations"
    return make_bundle(statements, note, tree, selected, {"kind": "violation"})


def test_an_honest_bundle_verifies(honest: dict[str, Any], signer: Signer) -> None:
    result = verify_bundle(honest, signer.vkey())
    assert result.ok, result.problems
    assert (result.entries, result.tree_size) == (17, 50)


def tampered(bundle: dict[str, Any], change: str) -> dict[str, Any]:
    copy_ = copy.deepcopy(bundle)
    entries = copy_["entries"]
    if change == "change":
        entries[4]["body"] = entries[4]["body"].replace("violation", "event")
    elif change == "delete":
        del entries[7]
    elif change == "insert":
        entries.insert(3, {"seq": 10, "body": BODIES[10], "proof": entries[3]["proof"]})
    elif change == "reorder":
        entries[2], entries[3] = entries[3], entries[2]
    elif change == "checkpoint":
        copy_["checkpoint"] = copy_["checkpoint"].replace("\n50\n", "\n49\n")
    elif change == "query":
        copy_["query"] = {"kind": "event"}
    return copy_


@pytest.mark.parametrize("change", ["change", "delete", "insert", "reorder", "checkpoint", "query"])
def test_any_tampering_fails_verification(honest: dict[str, Any], signer: Signer, change: str) -> None:
    result = verify_bundle(tampered(honest, change), signer.vkey())
    assert not result.ok


def test_an_honest_insert_with_its_true_proof_still_fails_the_statement(
    honest: dict[str, Any], signer: Signer, statements: StatementSigner
) -> None:
    """A row that is in the log but was not exported cannot be slipped in."""
    tree = Tree([leaf_hash(body.encode()) for body in BODIES])
    bundle = copy.deepcopy(honest)
    proof = make_bundle(statements, bundle["checkpoint"], tree, [(10, BODIES[10])], {})["entries"][0]["proof"]
    bundle["entries"].insert(4, {"seq": 10, "body": BODIES[10], "proof": proof})
    result = verify_bundle(bundle, signer.vkey())
    assert [p for p in result.problems if "statement" in p] and len(result.problems) == 1


def test_another_key_is_refused(honest: dict[str, Any], tmp_path: Path) -> None:
    other = Signer.load_or_create(tmp_path / "other.key")
    assert not verify_bundle(honest, other.vkey()).ok


def test_the_key_file_is_private(tmp_path: Path) -> None:
    Signer.load_or_create(tmp_path / "k")
    assert (tmp_path / "k").stat().st_mode & 0o077 == 0


def test_public_keys_whose_base64_holds_a_plus_parse(tmp_path: Path) -> None:
    """The key line is name+id+base64, and base64 has "+" in its alphabet: many keys to be sure."""
    for n in range(40):
        signer = Signer.load_or_create(tmp_path / f"k{n}")
        note = signer.sign("hello\n")
        assert open_note(note, signer.vkey()) == "hello\n"


def test_the_statement_is_signed_by_an_endorsed_key_not_the_logs(
    honest: dict[str, Any], signer: Signer
) -> None:
    """The API holds only the statement key: its statement does not verify by the log's key,
    and the bundle says which key the log's key endorsed."""
    with pytest.raises(CheckpointError):
        open_note(honest["statement"], signer.vkey())
    assert "frtwatch.audit.statement-key.v1" in honest["statement_key"]


def test_a_statement_key_the_log_did_not_endorse_is_refused(
    honest: dict[str, Any], signer: Signer, tmp_path: Path
) -> None:
    """Whoever steals or makes a statement key cannot pass off its own statements: endorsing it
    takes the log's key."""
    forger = Signer.load_or_create(tmp_path / "forger.key")
    forged_key = Signer.load_or_create(tmp_path / "forged.statements", STATEMENTS)
    self_endorsed = StatementSigner.endorsed_by(forger, forged_key)
    tree = Tree([leaf_hash(body.encode()) for body in BODIES])
    rows = [(seq, BODIES[seq]) for seq in range(0, 50, 3)]
    forged = make_bundle(self_endorsed, honest["checkpoint"], tree, rows, {"kind": "violation"})
    assert not verify_bundle(forged, signer.vkey()).ok
    # The true endorsement beside a statement signed by another key: refused too.
    forged["statement_key"] = honest["statement_key"]
    assert not verify_bundle(forged, signer.vkey()).ok
    # Without any endorsement, a statement is checked against the log's key itself: refused.
    del forged["statement_key"]
    assert not verify_bundle(forged, signer.vkey()).ok


def test_a_bundle_from_before_statement_keys_still_verifies(honest: dict[str, Any], signer: Signer) -> None:
    """Statements the log's key signed itself (bundles made before the statement key)."""
    old = copy.deepcopy(honest)
    del old["statement_key"]
    statement_key = open_endorsement(honest["statement_key"], signer.vkey())
    old["statement"] = signer.sign(open_note(honest["statement"], statement_key))
    assert verify_bundle(old, signer.vkey()).ok
