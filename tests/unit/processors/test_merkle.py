"""RFC 9162 Merkle trees: the RFC 6962 reference vectors (the CT project's 8 leaves, as transparency-dev/merkle
tests them), every proof of many tree sizes, and falsified proofs rejected (attack 27)."""

from __future__ import annotations

import random

import pytest

from modelog.processors import merkle
from modelog.processors.merkle import (EMPTY_ROOT, CompactTree, consistency_proof, inclusion_proof, leaf_hash,
                                       root_of, verify_consistency, verify_inclusion)

h = bytes.fromhex

LEAVES = [leaf_hash(h(x)) for x in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                       "606162636465666768696a6b6c6d6e6f")]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
INCLUSION = [  # (leaf index, tree size, path)
    (0, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (5, 8, ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, ["6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]
CONSISTENCY = [  # (first size, second size, proof)
    (1, 1, []),
    (1, 8, ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"]),
    (6, 8, ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"]),
    (2, 5, ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"]),
]


def flip(b: bytes, i: int = 0) -> bytes:
    return b[:i] + bytes([b[i] ^ 1]) + b[i + 1:]


def test_roots_of_the_reference_tree_every_size_batch_and_incremental():
    assert EMPTY_ROOT.hex() == ROOTS[0] == root_of([]).hex()
    tree = CompactTree()
    assert tree.root() == EMPTY_ROOT
    for n in range(1, 9):
        tree.append(LEAVES[n - 1])
        assert root_of(LEAVES[:n]).hex() == ROOTS[n], f"MTH of {n} leaves"
        assert tree.root().hex() == ROOTS[n], f"compact tree of {n} leaves"
        assert len(tree.nodes) == bin(n).count("1")


def test_compact_tree_round_trips_through_bytes_and_matches_root_of_for_many_sizes():
    rng = random.Random(9162)
    leaves = [leaf_hash(rng.randbytes(rng.randint(0, 40))) for _ in range(300)]
    tree = CompactTree()
    for n, leaf in enumerate(leaves, 1):
        tree.append(leaf)
        if n % 37 == 0 or n < 20:
            again = CompactTree.from_bytes(tree.size, tree.to_bytes())
            assert again.root() == tree.root() == root_of(leaves[:n])
    with pytest.raises(ValueError):
        CompactTree(3, [leaves[0]])  # a tree of 3 leaves has two subtree roots
    with pytest.raises(ValueError):
        CompactTree.from_bytes(1, b"\x00" * 31)


@pytest.mark.parametrize("index, size, path", INCLUSION)
def test_inclusion_vectors(index, size, path):
    proof = inclusion_proof(index, LEAVES[:size])
    assert [p.hex() for p in proof] == path
    root = h(ROOTS[size])
    assert verify_inclusion(index, size, LEAVES[index], proof, root)
    # falsified: another leaf, another index, another size, a changed or truncated or padded path, another root
    assert not verify_inclusion(index, size, LEAVES[(index + 1) % size], proof, root)
    assert not verify_inclusion((index + 1) % size, size, LEAVES[index], proof, root)
    assert not verify_inclusion(index, 2 * size + 1, LEAVES[index], proof, root)  # a deeper tree: a longer path
    assert not verify_inclusion(index, size, LEAVES[index], [flip(proof[0])] + proof[1:], root)
    assert not verify_inclusion(index, size, LEAVES[index], proof[:-1], root)
    assert not verify_inclusion(index, size, LEAVES[index], proof + [proof[-1]], root)
    assert not verify_inclusion(index, size, LEAVES[index], proof, flip(root, 31))


@pytest.mark.parametrize("first, second, path", CONSISTENCY)
def test_consistency_vectors(first, second, path):
    proof = consistency_proof(first, LEAVES[:second])
    assert [p.hex() for p in proof] == path
    r1, r2 = h(ROOTS[first]), h(ROOTS[second])
    assert verify_consistency(first, second, proof, r1, r2)
    assert not verify_consistency(first, second, proof, flip(r1), r2)
    assert not verify_consistency(first, second, proof, r1, flip(r2))
    if proof:
        assert not verify_consistency(first, second, [flip(proof[-1], 5)] + proof[:-1], r1, r2)
        assert not verify_consistency(first, second, proof[:-1], r1, r2)
        assert not verify_consistency(first, second, proof + [proof[0]], r1, r2)
        assert not verify_consistency(first, 2 * second + 1, proof, r1, r2)  # a deeper tree: a longer proof
    else:
        assert not verify_consistency(first, second, [r1], r1, r2)


def test_malformed_proofs_are_rejected_never_raise():
    root = h(ROOTS[8])
    for bad in ([b"short"], [None], ["not bytes"], [b"\x00" * 33]):
        assert not verify_inclusion(0, 8, LEAVES[0], bad, root)
        assert not verify_consistency(1, 8, bad, h(ROOTS[1]), root)
    assert not verify_inclusion(-1, 8, LEAVES[0], [], root)
    assert not verify_inclusion(8, 8, LEAVES[0], [], root)
    assert not verify_inclusion(0, 0, LEAVES[0], [], EMPTY_ROOT)
    assert not verify_consistency(0, 8, [], EMPTY_ROOT, root)
    assert not verify_consistency(5, 4, [], h(ROOTS[5]), h(ROOTS[4]))
    assert not verify_consistency(4, 8, [], h(ROOTS[4]), root)  # an empty path proves nothing
    # a one-leaf tree: the root is the leaf, the path is empty; a "proof" for it must be empty
    assert verify_inclusion(0, 1, LEAVES[0], [], LEAVES[0])
    assert not verify_inclusion(0, 1, LEAVES[0], [LEAVES[1]], LEAVES[0])


def test_every_proof_of_every_size_verifies_and_a_changed_leaf_never_does():
    rng = random.Random(6962)
    for n in range(1, 34):
        leaves = [leaf_hash(rng.randbytes(8)) for _ in range(n)]
        root = root_of(leaves)
        for i in range(n):
            proof = inclusion_proof(i, leaves)
            assert verify_inclusion(i, n, leaves[i], proof, root), (i, n)
            assert not verify_inclusion(i, n, flip(leaves[i]), proof, root)
        for m in range(1, n + 1):
            proof = consistency_proof(m, leaves)
            assert verify_consistency(m, n, proof, root_of(leaves[:m]), root), (m, n)
            if m < n:  # a history that changed one leaf of the old tree is not an extension of it
                forked = leaves[:m - 1] + [flip(leaves[m - 1])] + leaves[m:]
                assert not verify_consistency(m, n, consistency_proof(m, forked), root_of(leaves[:m]),
                                              root_of(forked))
    assert merkle.HASH_SIZE == 32
