"""Export bundles and the offline verifier: an honest bundle verifies; changing, deleting,
inserting or reordering any entry, or another key, does not."""

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from audit.bundle import make_bundle, verify_bundle
from audit.checkpoint import ORIGIN, Checkpoint, Signer, open_note, sign_checkpoint
from audit.merkle import Tree, leaf_hash

BODIES = [json.dumps({"n": n, "kind": "violation" if n % 3 == 0 else "event"}) for n in range(50)]


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    return Signer.load_or_create(tmp_path_factory.mktemp("keys") / "audit.key")


@pytest.fixture(scope="module")
def honest(signer: Signer) -> dict[str, Any]:
    tree = Tree([leaf_hash(body.encode()) for body in BODIES])
    note = sign_checkpoint(signer, Checkpoint(ORIGIN, tree.size, tree.root()))
    selected = [(seq, BODIES[seq]) for seq in range(0, 50, 3)]  # "the violations"
    return make_bundle(signer, note, tree, selected, {"kind": "violation"})


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
    honest: dict[str, Any], signer: Signer
) -> None:
    """A row that is in the log but was not exported cannot be slipped in."""
    tree = Tree([leaf_hash(body.encode()) for body in BODIES])
    bundle = copy.deepcopy(honest)
    proof = make_bundle(signer, bundle["checkpoint"], tree, [(10, BODIES[10])], {})["entries"][0]["proof"]
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
