"""The audit log's Merkle tree against RFC 6962's definition, computed the slow way."""

import hashlib
from collections.abc import Collection

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    STORED_HEIGHT,
    Frontier,
    StoredTree,
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


# -- proofs from stored nodes ------------------------------------------------------------------

LOG = [leaf_hash(f"entry {i}".encode()) for i in range(5 * 256 + 37)]  # stored nodes up to height 10
BLOCK = 1 << STORED_HEIGHT


def stored_log(batches: list[int]) -> tuple[Frontier, dict[tuple[int, int], bytes]]:
    """LOG appended in batches of these sizes (cycled), as the sink does: its stored nodes."""
    frontier, stored, done, n = Frontier(), {}, 0, 0
    while done < len(LOG):
        step = batches[n % len(batches)]
        frontier.extend(LOG[done : done + step])
        done, n = min(len(LOG), done + step), n + 1
        stored |= {(h, i): node for h, i, node in frontier.take_completed()}
    return frontier, stored


def stored_tree(size: int, stored: dict[tuple[int, int], bytes]) -> StoredTree:
    def leaves(blocks: Collection[int]) -> dict[int, bytes]:
        return {s: LOG[s] for b in blocks for s in range(b * BLOCK, min(len(LOG), (b + 1) * BLOCK))}

    return StoredTree(size, lambda keys: {k: stored[k] for k in keys if k in stored}, leaves)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=5))
def test_the_frontier_keeps_every_complete_subtree_of_a_block_and_more(batches: list[int]) -> None:
    frontier, stored = stored_log(batches)
    assert frontier.root() == root(LOG)
    expected = {
        (h, i): root(LOG[i << h : (i + 1) << h])
        for h in range(STORED_HEIGHT, len(LOG).bit_length())
        for i in range(len(LOG) >> h)
    }
    assert stored == expected


def test_stored_node_proofs_equal_the_in_memory_ones_for_every_size() -> None:
    _, stored = stored_log([300, 1, 77])
    for size in range(1, len(LOG) + 1):
        tree = stored_tree(size, stored)
        assert tree.root() == root(LOG[:size])
        indices = sorted({0, size - 1, size // 2, (size * 7) // 11})
        assert tree.inclusion_proofs(indices) == [inclusion_proof(LOG[:size], i) for i in indices]
        for old in sorted({1, size, size // 3 + 1, max(1, size - BLOCK), BLOCK if size >= BLOCK else 1}):
            assert tree.consistency_proof(old) == consistency_proof(LOG[:size], old), (old, size)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_stored_node_proofs_equal_the_in_memory_ones(data: st.DataObject) -> None:
    _, stored = STORED
    size = data.draw(st.integers(1, len(LOG)))
    old = data.draw(st.integers(1, size))
    index = data.draw(st.integers(0, size - 1))
    tree = stored_tree(size, stored)
    assert tree.inclusion_proofs([index]) == [inclusion_proof(LOG[:size], index)]
    assert tree.consistency_proof(old) == consistency_proof(LOG[:size], old)
    assert verify_consistency(old, size, root(LOG[:old]), tree.root(), tree.consistency_proof(old))


STORED = stored_log([256 * 3, 1000])


def test_a_missing_stored_node_is_an_error_not_a_wrong_proof() -> None:
    _, stored = stored_log([len(LOG)])
    del stored[8, 1]  # the sibling of leaf 0's first 256
    with pytest.raises(LookupError):
        stored_tree(len(LOG), stored).inclusion_proofs([0])
