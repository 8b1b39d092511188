"""RFC 6962/9162 Merkle log: CT test vectors, every proof for small trees, tampering, tiles, signed checkpoints."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.protocols import merkle
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.merkle import (
    Checkpoint,
    InvalidCheckpoint,
    InvalidProof,
    MerkleTree,
    leaf_hash,
    node_hash,
    verify_consistency,
    verify_inclusion,
)

# Certificate Transparency reference data (transparency-dev/merkle proof/verify_test.go, testonly/constants.go).
LEAVES = [bytes.fromhex(h) for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                                     "606162636465666768696a6b6c6d6e6f")]
ROOTS = [bytes.fromhex(h) for h in (
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
)]
H = bytes.fromhex
# (0-based leaf index, tree size, audit path)
INCLUSION = [
    (0, 8, [H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (5, 8, [H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 3, [H("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")]),
    (1, 5, [H("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
]
CONSISTENCY = [
    (1, 8, [H("96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"),
            H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")]),
    (6, 8, [H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
    (2, 5, [H("5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e"),
            H("bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b")]),
    (6, 7, [H("0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a"),
            H("b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f"),
            H("d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7")]),
]
SOME_HASH = H("abacaba000000000000000000000000000000000000000000060061e00123456")
LEAF_HASHES = [leaf_hash(d) for d in LEAVES]


def reference_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH written straight from the text: the oracle for the tiled tree."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(reference_root(hashes[:k]), reference_root(hashes[k:]))


def test_roots_match_ct_vectors_for_every_size() -> None:
    tree = MerkleTree()
    assert tree.root() == ROOTS[0]
    for size, data in enumerate(LEAVES, start=1):
        tree.append(leaf_hash(data))
        assert tree.root() == ROOTS[size]
    for size in range(9):
        assert tree.root(size) == ROOTS[size] == merkle.root(LEAF_HASHES[:size])


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"") == ROOTS[1]
    assert node_hash(LEAF_HASHES[0], LEAF_HASHES[1]) == ROOTS[2]
    assert leaf_hash(LEAF_HASHES[0] + LEAF_HASHES[1]) != ROOTS[2]


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, path: list[bytes]) -> None:
    assert merkle.inclusion_proof(index, LEAF_HASHES[:size]) == path
    verify_inclusion(LEAF_HASHES[index], index, size, path, ROOTS[size])
    root = ROOTS[size]
    corrupt = [
        (index + 1, size, LEAF_HASHES[index], path, root),
        (index ^ 2, size, LEAF_HASHES[index], path, root),
        (index, size * 2, LEAF_HASHES[index], path, root),
        (index, size // 2, LEAF_HASHES[index], path, root),
        (index, size, SOME_HASH, path, root),
        (index, size, LEAF_HASHES[index], path, ROOTS[0]),
        (index, size, LEAF_HASHES[index], [*path, root], root),
        (index, size, LEAF_HASHES[index], [root, *path], root),
        (index, size, LEAF_HASHES[index], path[:-1], root),
        (index, size, LEAF_HASHES[index], [b"", *path], root),
    ]
    if index > 0:
        corrupt.append((index - 1, size, LEAF_HASHES[index], path, root))
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        corrupt.append((index, size, LEAF_HASHES[index], flipped, root))
    for at, tree_size, leaf, proof, expected_root in corrupt:
        with pytest.raises(InvalidProof):
            verify_inclusion(leaf, at, tree_size, proof, expected_root)


@pytest.mark.parametrize(("old", "new", "path"), CONSISTENCY)
def test_consistency_vectors(old: int, new: int, path: list[bytes]) -> None:
    assert merkle.consistency_proof(old, LEAF_HASHES[:new]) == path
    verify_consistency(old, new, ROOTS[old], ROOTS[new], path)
    r1, r2 = ROOTS[old], ROOTS[new]
    corrupt = [
        (old - 1, new, r1, r2, path), (old + 1, new, r1, r2, path), (old ^ 2, new, r1, r2, path),
        (old, new * 2, r1, r2, path), (old, new // 2, r1, r2, path),
        (old, new, SOME_HASH, r2, path), (old, new, r1, SOME_HASH, path), (old, new, r2, r1, path),
        (old, new, r1, r2, []), (old, new, r1, r2, [*path, r1]), (old, new, r1, r2, [*path, r2]),
        (old, new, r1, r2, [r1, *path]), (old, new, r1, r2, [r2, *path]), (old, new, r1, r2, [path[0], *path]),
        (old, new, r1, r2, path[:-1]),
    ]
    for i in range(len(path)):
        flipped = list(path)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        corrupt.append((old, new, r1, r2, flipped))
    for args in corrupt:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)


def test_trivial_consistency_cases() -> None:
    verify_consistency(0, 0, ROOTS[0], ROOTS[0], [])
    verify_consistency(0, 5, ROOTS[0], ROOTS[5], [])  # everything extends the empty log
    verify_consistency(3, 3, ROOTS[3], ROOTS[3], [])
    for args in [(3, 3, ROOTS[3], ROOTS[4], []),          # same size, two roots: a fork
                 (0, 1, ROOTS[0], ROOTS[1], [ROOTS[0]]),   # proof must be empty
                 (2, 1, ROOTS[2], ROOTS[1], []),           # time travel
                 (1, 2, ROOTS[1], ROOTS[2], [])]:
        with pytest.raises(InvalidProof):
            verify_consistency(*args)
    with pytest.raises(InvalidProof):
        verify_inclusion(LEAF_HASHES[0], 0, 0, [], ROOTS[0])


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


def test_every_proof_in_trees_below_64_verifies() -> None:
    hashes = _leaves(63)
    tree = MerkleTree.from_leaf_hashes(hashes)
    for size in range(1, 64):
        root = tree.root(size)
        assert root == reference_root(hashes[:size])
        for index in range(size):
            verify_inclusion(hashes[index], index, size, tree.inclusion_proof(index, size), root)
        for old in range(size + 1):
            verify_consistency(old, size, tree.root(old), root, tree.consistency_proof(old, size))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_tampered_proofs_fail(data: st.DataObject) -> None:
    size = data.draw(st.integers(2, 63))
    hashes = _leaves(size)
    tree = MerkleTree.from_leaf_hashes(hashes)
    root = tree.root()
    index = data.draw(st.integers(0, size - 1))
    path = tree.inclusion_proof(index)
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    with pytest.raises(InvalidProof):
        verify_inclusion(hashes[other], index, size, path, root)  # another leaf at this index
    if path:
        at, bit = data.draw(st.integers(0, len(path) - 1)), data.draw(st.integers(0, 255))
        element = bytearray(path[at])
        element[bit // 8] ^= 1 << (bit % 8)
        bad = [*path[:at], bytes(element), *path[at + 1:]]
        with pytest.raises(InvalidProof):
            verify_inclusion(hashes[index], index, size, bad, root)
    old = data.draw(st.integers(1, size - 1))
    proof = tree.consistency_proof(old)
    forked = MerkleTree.from_leaf_hashes([*hashes[:old - 1], SOME_HASH, *hashes[old:]])
    with pytest.raises(InvalidProof):  # history rewritten: leaf old-1 replaced
        verify_consistency(old, size, tree.root(old), forked.root(), forked.consistency_proof(old))
    with pytest.raises(InvalidProof):
        verify_consistency(old, size, forked.root(old), root, proof)


def test_tiled_tree_with_external_leaf_store() -> None:
    """Above one tile the tree reads leaf hashes through the reader (the registry's SQL table) and agrees."""
    hashes = _leaves(1000)
    reads: list[tuple[int, int]] = []

    def read(start: int, end: int) -> list[bytes]:
        reads.append((start, end))
        return hashes[start:end]

    tree = MerkleTree(read)
    for value in hashes:
        tree.append(value)
    assert tree.size == 1000
    for size in (1, 255, 256, 257, 511, 512, 513, 768, 999, 1000):
        root = reference_root(hashes[:size])
        assert tree.root(size) == root
        for index in (0, size // 3, size - 1):
            verify_inclusion(hashes[index], index, size, tree.inclusion_proof(index, size), root)
        for old in (1, 200, 256, 300, 512, size):
            if old <= size:
                verify_consistency(old, size, tree.root(old), root, tree.consistency_proof(old, size))
    assert reads and all(end - start <= merkle.TILE_LEAVES for start, end in reads)
    reads.clear()
    tree.root(1000)  # 512 + 256 are cached tile hashes; the unfinished last tile (232 leaves) is in memory
    assert reads == []
    tree.root(700)  # 512 cached, then 128+32+16+8+4 below tile height are read back from the store
    assert reads == [(512, 640), (640, 672), (672, 688), (688, 696), (696, 700)]


def test_tree_refuses_bad_input() -> None:
    tree = MerkleTree.from_leaf_hashes(_leaves(3))
    with pytest.raises(ValueError):
        tree.append(b"short")
    with pytest.raises(ValueError):
        tree.root(4)
    with pytest.raises(ValueError):
        tree.inclusion_proof(3, 3)
    with pytest.raises(ValueError):
        tree.consistency_proof(4)
    with pytest.raises(InvalidProof):
        verify_inclusion(b"x", 0, 1, [], ROOTS[1])


# --- signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note) ---

GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_SIG = ("\u2014 PeterNeumann "
          "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n")


def test_signed_note_matches_go_reference_byte_for_byte() -> None:
    """golang.org/x/mod/sumdb/note's example: same key id (c74f20a3) and signature, so Go verifiers accept ours."""
    raw = base64.b64decode(GO_SKEY.split("+", 4)[4])
    assert raw[0] == 1  # Ed25519
    key = SigningKey.from_seed(raw[1:])
    note = merkle.sign_note(GO_TEXT, key, "PeterNeumann")
    assert note == GO_TEXT + "\n" + GO_SIG
    assert merkle.open_note(note, signer=key.did, name="PeterNeumann") == GO_TEXT
    with pytest.raises(InvalidCheckpoint):
        merkle.open_note(note.replace("cryptography", "cryptographY"), signer=key.did, name="PeterNeumann")


def test_checkpoint_sign_verify_and_tamper() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    origin = "registry.example/log"
    head = Checkpoint(origin=origin, size=8, root=ROOTS[8])
    note = merkle.sign_checkpoint(head, key)
    assert note.startswith(f"{origin}\n8\n{base64.b64encode(ROOTS[8]).decode()}\n\n\u2014 {origin} ")
    assert merkle.verify_checkpoint(note, origin=origin, signer=key.did) == head

    witness = merkle.sign_note(head.body(), other, "witness.example")
    cosigned = note + witness.split("\n\n", 1)[1]
    assert merkle.verify_checkpoint(cosigned, origin=origin, signer=key.did) == head  # extra cosignature ignored

    tampered = [
        note.replace("\n8\n", "\n9\n"),
        note.replace(base64.b64encode(ROOTS[8]).decode(), base64.b64encode(ROOTS[7]).decode()),
        note.replace(origin, "registry.example/other"),
        note[:-3] + "AA\n",
        note.replace("\n\n", "\n"),
        merkle.sign_checkpoint(head, other, key_name=origin),
    ]
    for bad in tampered:
        with pytest.raises(InvalidCheckpoint):
            merkle.verify_checkpoint(bad, origin=origin, signer=key.did)
    with pytest.raises(InvalidCheckpoint):
        merkle.verify_checkpoint(note, origin="registry.example/other", signer=key.did)
    with pytest.raises(InvalidCheckpoint):
        merkle.verify_checkpoint(note, origin=origin, signer="did:web:nope")
    with pytest.raises(ValueError):
        Checkpoint(origin="two\nlines", size=1, root=ROOTS[1]).body()
