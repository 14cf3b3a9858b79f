"""RFC 9162 (Certificate Transparency v2) Merkle trees: hashing, an append-only compact tree, proofs. Pure.

* ``leaf_hash(data) = SHA-256(0x00 || data)``, ``node_hash(l, r) = SHA-256(0x01 || l || r)``; the root of
  n leaves splits at the largest power of two below n (RFC 9162 §2.1.1). The empty tree's root is
  SHA-256 of nothing.
* :class:`CompactTree` keeps only the roots of the perfect subtrees a tree of ``size`` leaves is made of
  (at most 64 hashes): appending a leaf costs one SHA-256 amortised, the root costs log2(size). This is
  what the processor holds per partition.
* ``inclusion_proof`` / ``consistency_proof`` build proofs from the leaf hashes (RFC 6962 §2.1.1,
  §2.1.2 PATH and PROOF); ``verify_inclusion`` / ``verify_consistency`` check them exactly as RFC 9162
  §2.1.3.2 and §2.1.4.2 say, and return False (never raise) on any malformed or falsified proof: a
  verifier that accepts a proof it should not (immudb's GHSA-672p-m5jq-mrh8) proves nothing. The unit
  tests pin the RFC 6962 reference vectors (tests/unit/processors/test_merkle.py).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_of(leaves: Sequence[bytes]) -> bytes:
    """MTH of the leaf hashes ``leaves`` (RFC 9162 §2.1.1)."""
    n = len(leaves)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root_of(leaves[:k]), root_of(leaves[k:]))


class CompactTree:
    """An append-only Merkle tree that keeps only its perfect subtrees' roots, largest first."""

    __slots__ = ("size", "nodes")

    def __init__(self, size: int = 0, nodes: Sequence[bytes] = ()) -> None:
        if len(nodes) != bin(size).count("1"):
            raise ValueError(f"a tree of {size} leaves has {bin(size).count('1')} subtree roots, not {len(nodes)}")
        self.size = size
        self.nodes = list(nodes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash."""
        nodes = self.nodes
        nodes.append(leaf)
        n = self.size
        while n & 1:  # each trailing 1-bit of the old size is a perfect subtree the new leaf completes
            right = nodes.pop()
            nodes[-1] = node_hash(nodes[-1], right)
            n >>= 1
        self.size += 1

    def root(self) -> bytes:
        if not self.nodes:
            return EMPTY_ROOT
        r = self.nodes[-1]
        for left in reversed(self.nodes[:-1]):
            r = node_hash(left, r)
        return r

    def copy(self) -> CompactTree:
        return CompactTree(self.size, self.nodes)

    def to_bytes(self) -> bytes:
        return b"".join(self.nodes)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactTree:
        if len(data) % HASH_SIZE:
            raise ValueError(f"subtree roots: {len(data)} bytes is not a multiple of {HASH_SIZE}")
        return cls(size, [bytes(data[i:i + HASH_SIZE]) for i in range(0, len(data), HASH_SIZE)])


# -- proofs ---------------------------------------------------------------------------------------------

def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``leaves`` (RFC 6962 §2.1.1 PATH)."""
    n = len(leaves)
    if not 0 <= index < n:
        raise ValueError(f"index: {index} is not a leaf of a tree of {n}")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return inclusion_proof(index, leaves[:k]) + [root_of(leaves[k:])]
    return inclusion_proof(index - k, leaves[k:]) + [root_of(leaves[:k])]


def consistency_proof(first: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of the first ``first`` leaves is a prefix of the tree of ``leaves``
    (RFC 6962 §2.1.2 PROOF)."""
    n = len(leaves)
    if not 0 < first <= n:
        raise ValueError(f"first: {first} must be in 1..{n}")
    return _subproof(first, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [root_of(leaves)]
    k = _split(n)
    if m <= k:
        return _subproof(m, leaves[:k], whole) + [root_of(leaves[k:])]
    return _subproof(m - k, leaves[k:], False) + [root_of(leaves[:k])]


def _ok_hashes(*hashes) -> bool:
    return all(isinstance(h, (bytes, bytearray)) and len(h) == HASH_SIZE for h in hashes)


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes) -> bool:
    """Whether ``proof`` proves leaf hash ``leaf`` is leaf ``index`` of the tree of ``size`` with ``root``
    (RFC 9162 §2.1.3.2). False on any malformed input."""
    if not (isinstance(index, int) and isinstance(size, int) and 0 <= index < size):
        return False
    if not _ok_hashes(leaf, root, *proof):
        return False
    fn, sn, r = index, size - 1, bytes(leaf)
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first: int, second: int, proof: Sequence[bytes], first_root: bytes,
                       second_root: bytes) -> bool:
    """Whether ``proof`` proves the tree of ``second`` leaves with ``second_root`` extends the tree of
    ``first`` leaves with ``first_root`` (RFC 9162 §2.1.4.2). False on any malformed input."""
    if not (isinstance(first, int) and isinstance(second, int) and 0 < first <= second):
        return False
    if not _ok_hashes(first_root, second_root, *proof):
        return False
    if first == second:
        return len(proof) == 0 and first_root == second_root
    if not proof:
        return False
    path = list(proof)
    if first & (first - 1) == 0:  # an exact power of two: the old root is a node of the new tree
        path.insert(0, bytes(first_root))
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_root and sr == second_root and sn == 0
