"""An RFC 6962 / RFC 9162 Merkle tree over the audit log's entries in sequence order.

Leaves are SHA-256(0x00 || entry), interior nodes SHA-256(0x01 || left || right); a tree of n
leaves splits at the largest power of two below n. Inclusion proofs show one entry is in a tree
of a given size; consistency proofs show a smaller tree is a prefix of a larger one, so a log
that was rewritten after a checkpoint cannot produce one.
"""

import hashlib
from collections.abc import Callable, Collection, Iterable, Sequence


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()
# The log stores the roots of its perfect subtrees of 2**6 leaves and more (audit_nodes, about
# one row per 32 leaves): any subtree's root is then a few stored nodes and at most 64 leaves
# away, so a proof costs O(log n) nodes and one block of 64 leaves.
STORED_HEIGHT = 6
Span = tuple[int, int]  # the subtree over leaves [start, end)


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The root of the tree over these leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    level = list(leaves)
    # Pairing left to right, carrying an odd last node up, gives RFC 6962's split tree.
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree over ``leaves`` (RFC 9162 2.1.3)."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _split(len(leaves))
    if index < k:
        return [*inclusion_proof(leaves[:k], index), root(leaves[k:])]
    return [*inclusion_proof(leaves[k:], index - k), root(leaves[:k])]


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` put ``leaf`` at ``index`` in the tree with that root?"""
    if not 0 <= index < size:
        return False
    fn, sn, node = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            node = node_hash(sibling, node)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            node = node_hash(node, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and node == expected_root


def consistency_proof(leaves: Sequence[bytes], old_size: int) -> list[bytes]:
    """Proof that the first ``old_size`` leaves form a prefix of ``leaves`` (RFC 9162 2.1.4)."""
    if not 0 < old_size <= len(leaves):
        raise ValueError(f"no consistency proof from size {old_size} to {len(leaves)}")
    return _subproof(leaves, old_size, True)


def _subproof(leaves: Sequence[bytes], m: int, complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(leaves[:k], m, complete), root(leaves[k:])]
    return [*_subproof(leaves[k:], m - k, False), root(leaves[:k])]


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree of ``old_size`` with ``old_root`` a prefix of the new one?"""
    if not 0 < old_size <= new_size:
        return False
    if old_size == new_size:
        return not proof and old_root == new_root
    path = list(proof)
    if old_size & (old_size - 1) == 0:  # a power of two: the old root is itself on the path
        path = [old_root, *path]
    if not path:
        return False
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == old_root and sr == new_root


def inclusion_spans(index: int, size: int) -> list[Span]:
    """The subtrees whose roots are leaf ``index``'s audit path in a tree of ``size``: the
    spans inclusion_proof takes the roots of, in the same order."""
    if not 0 <= index < size:
        raise IndexError(f"leaf {index} is not in a tree of {size}")
    spans = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            spans.append((start + k, end))
            end = start + k
        else:
            spans.append((start, start + k))
            start += k
    return spans[::-1]


def consistency_spans(old_size: int, size: int) -> list[Span]:
    """The subtrees whose roots prove the tree of ``old_size`` a prefix of the tree of ``size``:
    the spans consistency_proof takes the roots of, in the same order."""
    if not 0 < old_size <= size:
        raise ValueError(f"no consistency proof from size {old_size} to {size}")
    spans = []
    start, end, m, complete = 0, size, old_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            spans.append((start + k, end))
            end = start + k
        else:
            spans.append((start, start + k))
            start, m, complete = start + k, m - k, False
    if not complete:
        spans.append((start, end))
    return spans[::-1]


def perfect_parts(span: Span) -> list[tuple[int, int]]:
    """A subtree of the log as perfect subtrees (height, index), left to right: its size's
    binary digits, largest first (every span of the proofs above starts aligned to them)."""
    start, end = span
    parts = []
    while start < end:
        height = (end - start).bit_length() - 1
        parts.append((height, start >> height))
        start += 1 << height
    return parts


def _fold(parts: Sequence[bytes]) -> bytes:
    """The root of a subtree from its perfect parts' roots (RFC 6962's split, right to left)."""
    node = parts[-1]
    for left in reversed(parts[:-1]):
        node = node_hash(left, node)
    return node


NodeFetch = Callable[[Collection[tuple[int, int]]], dict[tuple[int, int], bytes]]
LeafFetch = Callable[[Collection[int]], dict[int, bytes]]  # blocks of 2**STORED_HEIGHT -> {seq: leaf}


class StoredTree:
    """The log's tree of ``size`` leaves (any size up to the log's) read from its stored nodes:
    each proof costs O(log n) stored nodes and one block of 2**STORED_HEIGHT leaves, fetched
    once for a whole batch of proofs."""

    def __init__(self, size: int, nodes: NodeFetch, leaves: LeafFetch) -> None:
        self.size, self._nodes, self._leaves = size, nodes, leaves

    def root(self) -> bytes:
        return self.roots([(0, self.size)])[(0, self.size)] if self.size else EMPTY_ROOT

    def inclusion_proofs(self, indices: Sequence[int]) -> list[list[bytes]]:
        paths = [inclusion_spans(index, self.size) for index in indices]
        found = self.roots(span for path in paths for span in path)
        return [[found[span] for span in path] for path in paths]

    def consistency_proof(self, old_size: int) -> list[bytes]:
        spans = consistency_spans(old_size, self.size)
        found = self.roots(spans)
        return [found[span] for span in spans]

    def roots(self, spans: Iterable[Span]) -> dict[Span, bytes]:
        wanted = {span: perfect_parts(span) for span in set(spans)}
        parts = {part for listed in wanted.values() for part in listed}
        high = [p for p in parts if p[0] >= STORED_HEIGHT]
        blocks = {(index << height) >> STORED_HEIGHT for height, index in parts if height < STORED_HEIGHT}
        nodes = self._nodes(high) if high else {}
        if len(nodes) < len(high):
            raise LookupError(f"stored nodes missing: {sorted(set(high) - set(nodes))[:5]}")
        below = _block_levels(self._leaves(blocks)) if blocks else {}
        for height, index in parts:
            if height < STORED_HEIGHT:
                block = (index << height) >> STORED_HEIGHT
                nodes[height, index] = below[block][height][index - (block << (STORED_HEIGHT - height))]
        return {span: _fold([nodes[part] for part in listed]) for span, listed in wanted.items()}


def _block_levels(leaves: dict[int, bytes]) -> dict[int, list[list[bytes]]]:
    """Each block's levels below STORED_HEIGHT, built once however many proofs pass through it
    (a partial last block: the perfect subtrees it holds)."""
    found: dict[int, list[list[bytes]]] = {}
    for block in {seq >> STORED_HEIGHT for seq in leaves}:
        first = block << STORED_HEIGHT
        level = [leaves[seq] for seq in range(first, first + (1 << STORED_HEIGHT)) if seq in leaves]
        levels = [level]
        while len(level) > 1:
            level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            levels.append(level)
        found[block] = levels
    return found


class Frontier:
    """The log's tree kept as its perfect subtrees' roots (at most log2 n hashes), so the sink
    learns the root after every append without holding the leaves. Every perfect subtree of
    STORED_HEIGHT or more completed on the way is kept in ``completed`` (height, index, root)
    until the sink stores it."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (height, root), largest first
        self.completed: list[tuple[int, int, bytes]] = []

    def append(self, leaf: bytes) -> None:
        self._push(0, leaf)

    def extend(self, leaves: Sequence[bytes]) -> None:
        """Append many: as whole perfect subtrees, each built a level at a time (the same
        hashes as one append after another, without a Python step per node)."""
        done = 0
        while done < len(leaves):
            aligned = (self.size & -self.size).bit_length() - 1 if self.size else 64
            height = min(aligned, (len(leaves) - done).bit_length() - 1)
            level = list(leaves[done : done + (1 << height)])
            below = 0
            while len(level) > 1:
                level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
                below += 1
                if below >= STORED_HEIGHT and below < height:  # the top one is kept by _push
                    first = self.size >> below
                    self.completed += [(below, first + i, node) for i, node in enumerate(level)]
            self._push(height, level[0])
            done += 1 << height

    def _push(self, height: int, node: bytes) -> None:
        """A perfect subtree of 2**height leaves, starting at ``size`` (which it divides)."""
        start = self.size
        self.size += 1 << height
        while True:
            if height >= STORED_HEIGHT:
                self.completed.append((height, start >> height, node))
            if not self._peaks or self._peaks[-1][0] != height:
                break
            _, left = self._peaks.pop()
            start -= 1 << height
            node, height = node_hash(left, node), height + 1
        self._peaks.append((height, node))

    def take_completed(self) -> list[tuple[int, int, bytes]]:
        taken, self.completed = self.completed, []
        return taken

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        node = self._peaks[-1][1]
        for _, left in reversed(self._peaks[:-1]):
            node = node_hash(left, node)
        return node


class Tree:
    """Every level of the tree over ``leaves`` in memory, for many proofs at once: pairing
    left to right and carrying an odd last node up builds RFC 6962's tree, and a leaf's audit
    path is then its existing siblings, level by level. Each level is one bytes object of
    32-byte hashes (10 M leaves: about 640 MB in all, not a Python object per node)."""

    def __init__(self, leaves: Iterable[bytes]) -> None:
        level = b"".join(leaves)
        self.levels = [level]
        while len(level) > 32:
            count = len(level) // 32
            paired = [
                node_hash(level[i : i + 32], level[i + 32 : i + 64]) for i in range(0, (count - 1) * 32, 64)
            ]
            if count % 2:
                paired.append(level[-32:])
            level = b"".join(paired)
            self.levels.append(level)

    @property
    def size(self) -> int:
        return len(self.levels[0]) // 32

    def root(self) -> bytes:
        return self.levels[-1][:32] if self.size else EMPTY_ROOT

    def inclusion_proof(self, index: int) -> list[bytes]:
        if not 0 <= index < self.size:
            raise IndexError(f"leaf {index} is not in a tree of {self.size}")
        proof = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level) // 32:
                proof.append(level[sibling * 32 : sibling * 32 + 32])
            index //= 2
        return proof

    def inclusion_proofs(self, indices: Sequence[int]) -> list[list[bytes]]:
        return [self.inclusion_proof(index) for index in indices]
