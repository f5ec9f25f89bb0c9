"""Export bundles a regulator can check offline with only the log's public key.

A bundle (one JSON document) holds the selected entries in log order, each with its body and
its inclusion proof in the tree of the covering checkpoint; the checkpoint (a signed note); and
an export statement, signed by the statement key the log's key endorses (the endorsement
travels in the bundle as "statement_key"; bundles without one were signed by the log's key
itself), naming the query, the tree size, the number of entries and a
SHA-256 over their (seq, leaf hash) list. So a changed body fails its proof, and a row
deleted, inserted or moved fails the statement (or the order check) even if its proof holds.
"""

import base64
import hashlib
import io
import json
from binascii import b2a_base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO, Any, Protocol

from audit.checkpoint import (
    ORIGIN,
    CheckpointError,
    StatementSigner,
    open_checkpoint,
    open_endorsement,
    open_note,
)
from audit.merkle import leaf_hash, verify_inclusion

FORMAT = "frtwatch.audit.bundle.v1"
STATEMENT = "frtwatch.audit.export.v1"


def _digest(seqs_and_leaves: list[tuple[int, bytes]]) -> str:
    digest = hashlib.sha256()
    for seq, leaf in seqs_and_leaves:
        digest.update(seq.to_bytes(8, "big") + leaf)
    return digest.hexdigest()


def _statement_text(query: dict[str, Any], tree_size: int, count: int, digest: str) -> str:
    return f"{STATEMENT}\n{tree_size}\n{count}\n{digest}\n{json.dumps(query, sort_keys=True)}\n"


class BundleWriter:
    """A bundle written as it goes, entry by entry: its head, the entries, then the signed
    statement, whose digest covers every entry (so it comes last; JSON keys have no order)."""

    def __init__(
        self, out: IO[bytes], statements: StatementSigner, checkpoint_note: str, tree_size: int,
        query: dict[str, Any],
    ) -> None:  # fmt: skip
        self._out, self._statements, self._query, self.tree_size = out, statements, query, tree_size
        self._digest = hashlib.sha256()
        self.count = 0
        head = {"format": FORMAT, "query": query, "checkpoint": checkpoint_note}
        head["statement_key"] = statements.endorsement
        out.write(json.dumps(head)[:-1].encode() + b', "entries": [')

    def add(self, seq: int, body: str, proof: list[bytes]) -> None:
        """The next entry, in seq order, with its inclusion proof in the checkpoint's tree."""
        self._digest.update(seq.to_bytes(8, "big") + leaf_hash(body.encode()))
        encoded = [b2a_base64(node, newline=False).decode() for node in proof]
        item = {"seq": seq, "body": body, "proof": encoded}
        self._out.write((b", " if self.count else b"") + json.dumps(item).encode())
        self.count += 1

    def close(self) -> None:
        text = _statement_text(self._query, self.tree_size, self.count, self._digest.hexdigest())
        self._out.write(b'], "statement": ' + json.dumps(self._statements.signer.sign(text)).encode() + b"}")


class Proofs(Protocol):
    size: int

    def inclusion_proofs(self, indices: Sequence[int]) -> list[list[bytes]]: ...


def make_bundle(
    statements: StatementSigner, checkpoint_note: str, tree: Proofs, rows: list[tuple[int, str]],
    query: dict[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """A whole bundle at once; ``rows``: (seq, body) in seq order, all inside ``tree`` (the
    checkpoint's tree)."""
    out = io.BytesIO()
    writer = BundleWriter(out, statements, checkpoint_note, tree.size, query)
    for (seq, body), proof in zip(rows, tree.inclusion_proofs([seq for seq, _ in rows]), strict=True):
        writer.add(seq, body, proof)
    writer.close()
    parsed: dict[str, Any] = json.loads(out.getvalue())
    return parsed


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
        endorsed = bundle.get("statement_key")
        statement_vkey = open_endorsement(str(endorsed), vkey) if endorsed is not None else vkey
        statement = open_note(str(bundle.get("statement", "")), statement_vkey).splitlines()
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
