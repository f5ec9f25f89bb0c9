"""Consistency proofs between two signed checkpoints, as Certificate Transparency logs serve
them: a regulator who kept an old checkpoint asks for a newer one with the proof that the old
tree is a prefix of it, and checks both offline with only the log's public key. A log rewritten
after the old checkpoint cannot produce such a proof.

The document (GET /v1/proofs/consistency?from=OLD&to=NEW):

    {"format": "frtwatch.audit.consistency.v1",
     "from": {"size": OLD, "note": "<signed checkpoint>"},
     "to": {"size": NEW, "note": "<signed checkpoint>"},
     "proof": ["<base64 hash>", ...]}
"""

import base64
from typing import Any

from audit.checkpoint import ORIGIN, CheckpointError, open_checkpoint
from audit.merkle import verify_consistency
from audit.store import Store

FORMAT = "frtwatch.audit.consistency.v1"


class NotSigned(LookupError):
    """No checkpoint was signed at a size asked for."""


def consistency_document(store: Store, old_size: int, new_size: int | None = None) -> dict[str, Any]:
    """The proof between the checkpoints signed at these sizes (new: the latest)."""
    old_note = _signed(store, old_size)  # first: a size never signed is unknown (404), not bad
    if new_size is None:
        latest = store.latest_checkpoint()
        if latest is None:
            raise NotSigned("the audit log has no signed checkpoint yet")
        new_size, new_note = latest
    else:
        new_note = _signed(store, new_size)
    if not 0 < old_size <= new_size:
        raise ValueError(
            f"a consistency proof goes from a size of 1 or more to one as large: {old_size} to {new_size}"
        )
    proof = store.tree(new_size).consistency_proof(old_size)
    return {
        "format": FORMAT,
        "from": {"size": old_size, "note": old_note},
        "to": {"size": new_size, "note": new_note},
        "proof": [base64.b64encode(node).decode() for node in proof],
    }


def _signed(store: Store, size: int) -> str:
    note = store.checkpoint_at(size)
    if note is None:
        raise NotSigned(f"no checkpoint was signed at size {size}")
    return note


def check_consistency(old_note: str, document: dict[str, Any], vkey: str) -> list[str]:
    """Problems with ``document`` as a proof that the log only grew since ``old_note`` (the
    checkpoint its holder kept); none: the newer checkpoint extends it."""
    try:
        kept = open_checkpoint(old_note, vkey)
        old = open_checkpoint(str(document["from"]["note"]), vkey)
        new = open_checkpoint(str(document["to"]["note"]), vkey)
        proof = [base64.b64decode(node, validate=True) for node in document["proof"]]
    except CheckpointError as error:
        return [f"signature: {error}"]
    except (KeyError, TypeError, ValueError) as error:
        return [f"malformed consistency proof: {error!r}"]
    if document.get("format") != FORMAT:
        return [f"not a {FORMAT} document"]
    if {kept.origin, old.origin, new.origin} != {ORIGIN}:
        return [f"not checkpoints of {ORIGIN}"]
    if old.size != kept.size:
        return [f"the proof starts from size {old.size}, not from the size kept ({kept.size})"]
    if old.root != kept.root:
        return [f"two different trees were signed at size {kept.size}: the log was rewritten"]
    if not verify_consistency(kept.size, new.size, kept.root, new.root, proof):
        return [
            f"the checkpoint of size {new.size} does not extend the one kept of size {kept.size}: "
            "the log was rewritten, or the proof is wrong"
        ]
    return []
