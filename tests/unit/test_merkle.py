"""The audit log's Merkle tree against RFC 6962's definition, computed the slow way."""

import hashlib

from audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 2.1, literally: MTH(D[n]) = HASH(0x01 || MTH(D[0:k]) || MTH(D[k:n]))."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


LEAVES = [leaf_hash(f"entry {i}".encode()) for i in range(70)]


def test_roots_match_the_definition_and_the_frontier() -> None:
    frontier = Frontier()
    assert frontier.root() == root([]) == EMPTY_ROOT
    for n in range(1, len(LEAVES) + 1):
        frontier.append(LEAVES[n - 1])
        assert root(LEAVES[:n]) == reference_root(LEAVES[:n]) == frontier.root()


def test_extending_by_batches_of_any_size_builds_the_same_tree() -> None:
    for batch in (1, 2, 3, 5, 8, 13, 64, 70):
        frontier = Frontier()
        for start in range(0, len(LEAVES), batch):
            frontier.extend(LEAVES[start : start + batch])
            end = min(start + batch, len(LEAVES))
            assert frontier.size == end and frontier.root() == reference_root(LEAVES[:end]), (batch, end)
    frontier = Frontier()
    frontier.extend([])
    assert frontier.size == 0 and frontier.root() == EMPTY_ROOT


def test_every_inclusion_proof_verifies_and_a_wrong_one_does_not() -> None:
    for n in range(1, 40):
        tree_root = root(LEAVES[:n])
        for m in range(n):
            proof = inclusion_proof(LEAVES[:n], m)
            assert verify_inclusion(LEAVES[m], m, n, proof, tree_root)
            assert not verify_inclusion(LEAVES[m], (m + 1) % n, n, proof, tree_root) or n == 1
            assert not verify_inclusion(leaf_hash(b"forged"), m, n, proof, tree_root)


def test_every_consistency_proof_verifies_and_a_rewritten_log_fails() -> None:
    for n in range(1, 40):
        for m in range(1, n + 1):
            proof = consistency_proof(LEAVES[:n], m)
            assert verify_consistency(m, n, root(LEAVES[:m]), root(LEAVES[:n]), proof)
            rewritten = [*LEAVES[: m - 1], leaf_hash(b"rewritten"), *LEAVES[m:n]]
            assert not verify_consistency(m, n, root(LEAVES[:m]), root(rewritten), proof)


def test_the_levelled_tree_gives_the_same_roots_and_proofs() -> None:
    from audit.merkle import Tree

    for n in range(1, len(LEAVES) + 1):
        tree = Tree(LEAVES[:n])
        assert tree.root() == root(LEAVES[:n])
        for m in range(n):
            assert tree.inclusion_proof(m) == inclusion_proof(LEAVES[:n], m)
