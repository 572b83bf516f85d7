"""RFC 9162 Merkle tree: Certificate Transparency reference vectors and properties."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    consistency_ok,
    hash_children,
    hash_leaf,
    inclusion_ok,
    root_from_inclusion,
    root_from_leaf_hashes,
)

VECTORS = json.loads((Path(__file__).parent / "data" / "ct_vectors.json").read_text())
LEAVES = [hash_leaf(bytes.fromhex(x)) for x in VECTORS["leaves"]]
ROOTS = [bytes.fromhex(r) for r in VECTORS["roots"]]
TREE = MerkleTree(LEAVES)


def test_hasher_vectors() -> None:
    h = VECTORS["hasher"]
    assert EMPTY_ROOT.hex() == h["empty_root"]
    assert hash_leaf(b"").hex() == h["empty_leaf"]
    assert hash_leaf(b"L123456").hex() == h["leaf_L123456"]
    assert hash_children(b"N123", b"N456").hex() == h["node_N123_N456"]


@pytest.mark.parametrize("size", range(1, 9))
def test_roots(size: int) -> None:
    assert TREE.root(size) == ROOTS[size - 1]
    assert root_from_leaf_hashes(LEAVES[:size]) == ROOTS[size - 1]
    frontier = CompactRange()
    for leaf in LEAVES[:size]:
        frontier.append(leaf)
    assert frontier.root() == ROOTS[size - 1]


def test_empty_tree() -> None:
    assert MerkleTree().root() == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


@pytest.mark.parametrize("case", VECTORS["inclusion"], ids=lambda c: f"{c['leaf_index']}@{c['tree_size']}")
def test_inclusion_vectors(case: dict) -> None:
    index, size = case["leaf_index"], case["tree_size"]
    path = TREE.inclusion_proof(index, size)
    assert [p.hex() for p in path] == case["path"]
    root = ROOTS[size - 1]
    assert inclusion_ok(LEAVES[index], index, size, path, root)
    # corruptions from the reference verifier tests must all fail
    probes = [(index - 1, size, path, LEAVES[index]), (index + 1, size, path, LEAVES[index]),
              (index ^ 2, size, path, LEAVES[index]), (index, size * 2, path, LEAVES[index]),
              (index, size // 2, path, LEAVES[index]), (index, size, path, hash_leaf(b"Wrong")),
              (index, size, [*path, b""], LEAVES[index]), (index, size, [*path, root], LEAVES[index]),
              (index, size, [root, *path], LEAVES[index])]
    for i in range(len(path)):
        bad = list(path)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes.append((index, size, bad, LEAVES[index]))
    if path:
        probes.append((index, size, path[:-1], LEAVES[index]))
    for p_index, p_size, p_path, p_leaf in probes:
        assert not inclusion_ok(p_leaf, p_index, p_size, p_path, root)
    assert not inclusion_ok(LEAVES[index], index, size, path, EMPTY_ROOT)


@pytest.mark.parametrize("case", VECTORS["consistency"], ids=lambda c: f"{c['old_size']}-{c['new_size']}")
def test_consistency_vectors(case: dict) -> None:
    old, new = case["old_size"], case["new_size"]
    path = TREE.consistency_proof(old, new)
    assert [p.hex() for p in path] == case["path"]
    r1, r2 = ROOTS[old - 1], ROOTS[new - 1]
    assert consistency_ok(old, new, r1, r2, path)
    if not path:
        return
    probes = [(old - 1, new, r1, r2, path), (old + 1, new, r1, r2, path),
              (old ^ 2, new, r1, r2, path), (old, new * 2, r1, r2, path),
              (old, new // 2, r1, r2, path), (old, new, hash_leaf(b"x"), r2, path),
              (old, new, r1, hash_leaf(b"x"), path), (old, new, r2, r1, path),
              (old, new, r1, r2, []), (old, new, r1, r2, [*path, r1]),
              (old, new, r1, r2, [r2, *path]), (old, new, r1, r2, path[:-1])]
    for i in range(len(path)):
        bad = list(path)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes.append((old, new, r1, r2, bad))
    for o, n, a, b, p in probes:
        assert not consistency_ok(o, n, a, b, p), (o, n)


def test_consistency_edge_cases() -> None:
    a, b = hash_leaf(b"a"), hash_leaf(b"b")
    assert consistency_ok(0, 0, a, a, [])
    assert consistency_ok(0, 5, a, b, [])
    assert consistency_ok(3, 3, a, a, [])
    assert not consistency_ok(3, 3, a, b, [])
    assert not consistency_ok(3, 2, a, b, [])
    assert not consistency_ok(1, 1, a, a, [EMPTY_ROOT])
    assert root_from_inclusion(a, 0, 0, []) is None
    assert root_from_inclusion(a, 2, 1, []) is None


def test_all_proofs_small_trees() -> None:
    leaves = [hash_leaf(os.urandom(4)) for _ in range(40)]
    tree = MerkleTree(leaves)
    for n in range(1, 41):
        root = root_from_leaf_hashes(leaves[:n])
        assert tree.root(n) == root
        for i in range(n):
            assert inclusion_ok(leaves[i], i, n, tree.inclusion_proof(i, n), root)
        for m in range(n + 1):
            assert consistency_ok(m, n, tree.root(m), root, tree.consistency_proof(m, n))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 3000), st.data())
def test_proofs_property(n: int, data: st.DataObject) -> None:
    leaves = [hash_leaf(i.to_bytes(4, "big")) for i in range(n)]
    tree = MerkleTree(leaves)
    i = data.draw(st.integers(0, n - 1))
    m = data.draw(st.integers(0, n))
    assert inclusion_ok(leaves[i], i, n, tree.inclusion_proof(i, n), tree.root())
    assert consistency_ok(m, n, tree.root(m), tree.root(), tree.consistency_proof(m, n))
    assert len(tree.inclusion_proof(i, n)) <= n.bit_length()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        TREE.inclusion_proof(8, 8)
    with pytest.raises(ValueError):
        TREE.root(9)
    with pytest.raises(ValueError):
        TREE.consistency_proof(5, 3)
    with pytest.raises(ValueError):
        MerkleTree().append(b"short")
