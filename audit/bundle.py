"""Export bundles a regulator can check offline with only the log's public key.

A bundle (one JSON document) holds the selected entries in log order, each with its body and
its inclusion proof in the tree of the covering checkpoint; the checkpoint (a signed note); and
an export statement, also signed, naming the query, the tree size, the number of entries and a
SHA-256 over their (seq, leaf hash) list. So a changed body fails its proof, and a row
deleted, inserted or moved fails the statement (or the order check) even if its proof holds.
"""

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from audit.checkpoint import ORIGIN, CheckpointError, Signer, open_checkpoint, open_note
from audit.merkle import Tree, leaf_hash, verify_inclusion

FORMAT = "frtwatch.audit.bundle.v1"
STATEMENT = "frtwatch.audit.export.v1"


def _digest(seqs_and_leaves: list[tuple[int, bytes]]) -> str:
    digest = hashlib.sha256()
    for seq, leaf in seqs_and_leaves:
        digest.update(seq.to_bytes(8, "big") + leaf)
    return digest.hexdigest()


def _statement_text(query: dict[str, Any], tree_size: int, count: int, digest: str) -> str:
    return f"{STATEMENT}\n{tree_size}\n{count}\n{digest}\n{json.dumps(query, sort_keys=True)}\n"


def make_bundle(
    signer: Signer, checkpoint_note: str, tree: Tree, rows: list[tuple[int, str]], query: dict[str, Any]
) -> dict[str, Any]:
    """``rows``: (seq, body) in seq order, all inside ``tree`` (the checkpoint's tree)."""
    items = []
    pairs = []
    for seq, body in rows:
        leaf = leaf_hash(body.encode())
        pairs.append((seq, leaf))
        proof = [base64.b64encode(node).decode() for node in tree.inclusion_proof(seq)]
        items.append({"seq": seq, "body": body, "proof": proof})
    statement = signer.sign(_statement_text(query, tree.size, len(rows), _digest(pairs)))
    return {
        "format": FORMAT,
        "query": query,
        "checkpoint": checkpoint_note,
        "statement": statement,
        "entries": items,
    }


@dataclass
class Verification:
    entries: int
    tree_size: int
    problems: list[str]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(bundle: dict[str, Any], vkey: str) -> Verification:
    """Check everything a bundle claims; every problem found is listed."""
    try:
        return _verify(bundle, vkey)
    except (KeyError, TypeError, ValueError) as error:  # malformed: say so, never crash
        return Verification(0, 0, [f"malformed bundle: {error!r}"])


def _verify(bundle: dict[str, Any], vkey: str) -> Verification:
    problems: list[str] = []
    entries = bundle.get("entries") or []
    if bundle.get("format") != FORMAT:
        return Verification(len(entries), 0, [f"not a {FORMAT} bundle"])
    try:
        checkpoint = open_checkpoint(str(bundle.get("checkpoint", "")), vkey)
        statement = open_note(str(bundle.get("statement", "")), vkey).splitlines()
    except CheckpointError as error:
        return Verification(len(entries), 0, [f"signature: {error}"])
    if checkpoint.origin != ORIGIN or len(checkpoint.root) != 32:
        return Verification(len(entries), 0, [f"not a checkpoint of {ORIGIN}"])
    pairs: list[tuple[int, bytes]] = []
    previous = -1
    for n, item in enumerate(entries):
        seq, body = int(item["seq"]), str(item["body"])
        leaf = leaf_hash(body.encode())
        pairs.append((seq, leaf))
        if seq <= previous:
            problems.append(f"entry {n}: seq {seq} is out of log order (after {previous})")
        previous = seq
        proof = [base64.b64decode(node) for node in item.get("proof", [])]
        if not verify_inclusion(leaf, seq, checkpoint.size, proof, checkpoint.root):
            problems.append(f"entry {n} (seq {seq}): not in the checkpoint's tree as given")
    expected = _statement_text(bundle.get("query", {}), checkpoint.size, len(entries), _digest(pairs))
    if "\n".join(statement) + "\n" != expected:
        problems.append(
            "the signed export statement does not match the entries (rows deleted, added or moved)"
        )
    return Verification(len(entries), checkpoint.size, problems)
