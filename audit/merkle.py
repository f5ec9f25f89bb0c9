"""An RFC 6962 / RFC 9162 Merkle tree over the audit log's entries in sequence order.

Leaves are SHA-256(0x00 || entry), interior nodes SHA-256(0x01 || left || right); a tree of n
leaves splits at the largest power of two below n. Inclusion proofs show one entry is in a tree
of a given size; consistency proofs show a smaller tree is a prefix of a larger one, so a log
that was rewritten after a checkpoint cannot produce one.
"""

import hashlib
from collections.abc import Iterable, Sequence


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


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


class Frontier:
    """The log's tree kept as its perfect subtrees' roots (at most log2 n hashes), so the sink
    learns the root after every append without holding the leaves."""

    def __init__(self) -> None:
        self.size = 0
        self._peaks: list[tuple[int, bytes]] = []  # (height, root), largest first

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
            while len(level) > 1:
                level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
            self._push(height, level[0])
            done += 1 << height

    def _push(self, height: int, node: bytes) -> None:
        """A perfect subtree of 2**height leaves, starting at ``size`` (which it divides)."""
        self.size += 1 << height
        while self._peaks and self._peaks[-1][0] == height:
            _, left = self._peaks.pop()
            node, height = node_hash(left, node), height + 1
        self._peaks.append((height, node))

    def root(self) -> bytes:
        if not self._peaks:
            return EMPTY_ROOT
        node = self._peaks[-1][1]
        for _, left in reversed(self._peaks[:-1]):
            node = node_hash(left, node)
        return node


class Tree:
    """Every level of the tree over ``leaves``, for many proofs at once (an export): pairing
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
