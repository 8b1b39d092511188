"""RFC 6962 / RFC 9162 Merkle tree: hashing, audit and consistency proofs, their verifiers, signed checkpoints.

Tree hashing is exactly RFC 9162 §2.1.1: leaf ``H(0x00 || d)``, node ``H(0x01 || left || right)``, split at the
largest power of two below ``n`` (no duplicated nodes, so no Bitcoin-style root collision). Proofs are the RFC's
PATH (§2.1.3.1) and PROOF (§2.1.4.1); the verifiers are the §2.1.3.2 and §2.1.4.2 algorithms, so any CT/C2SP
verifier accepts our proofs and ours accepts theirs.

:class:`MerkleTree` is the incremental form a log server needs. It keeps in memory only the hashes of complete
subtrees of :data:`TILE_LEAVES` leaves and above (1M leaves: ~8k hashes) plus the unfinished last tile, and
reads leaf hashes below that through a ``read_leaves(start, end)`` callable (a list slice in memory, one range
query on the registry's leaf table). Root and proofs for any earlier tree size cost O(log n) hashes plus at
most one tile of leaf hashes per proof level below the tile height.

Signed tree heads are C2SP ``tlog-checkpoint`` bodies (``origin\\nsize\\nbase64(root)\\n``) in a C2SP
``signed-note`` with an Ed25519 signature (key ID = first 4 bytes of SHA-256(name || 0x0A || 0x01 || pubkey)),
the format Go's ``golang.org/x/mod/sumdb/note`` and transparency-dev witnesses read. Verifiers name the
expected key by its did:key, the identity every other guildnet signature uses.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from .did import InvalidDID, public_bytes_from_did, verify_signature
from .keys import SigningKey

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
TILE_HEIGHT = 8
TILE_LEAVES = 1 << TILE_HEIGHT

LeafReader = Callable[[int, int], Sequence[bytes]]
"""``read_leaves(start, end)`` returns the leaf hashes ``[start, end)`` of the log, in order."""


class InvalidProof(ValueError):
    """An inclusion or consistency proof does not prove what it claims."""


class InvalidCheckpoint(ValueError):
    """A signed checkpoint is malformed, for another log, or not signed by the expected key."""


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _mth(hashes: Sequence[bytes]) -> bytes:
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = _split(n)
    return node_hash(_mth(hashes[:k]), _mth(hashes[k:]))


class MerkleTree:
    """Append-only RFC 9162 tree answering roots and proofs for every size it has had."""

    def __init__(self, read_leaves: LeafReader | None = None) -> None:
        self._memory: list[bytes] | None = [] if read_leaves is None else None
        self._read: LeafReader = read_leaves if read_leaves is not None else self._read_memory
        self._size = 0
        self._tail: list[bytes] = []
        self._levels: list[list[bytes]] = []  # _levels[h][i] = hash of leaves [i << (T+h), (i+1) << (T+h))

    @classmethod
    def from_leaf_hashes(cls, hashes: Sequence[bytes], read_leaves: LeafReader | None = None) -> MerkleTree:
        """Rebuild a tree (e.g. at start-up from the stored leaf table); keeps leaves in memory if no reader."""
        tree = cls(read_leaves)
        for value in hashes:
            tree.append(value)
        return tree

    def _read_memory(self, start: int, end: int) -> Sequence[bytes]:
        assert self._memory is not None
        return self._memory[start:end]

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf: bytes) -> int:
        """Add a leaf *hash* (see :func:`leaf_hash`); return its index."""
        if not isinstance(leaf, bytes) or len(leaf) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        if self._memory is not None:
            self._memory.append(leaf)
        self._tail.append(leaf)
        self._size += 1
        if len(self._tail) == TILE_LEAVES:
            value, self._tail, level = _mth(self._tail), [], 0
            while True:
                if level == len(self._levels):
                    self._levels.append([])
                row = self._levels[level]
                row.append(value)
                if len(row) % 2:
                    break
                value, level = node_hash(row[-2], row[-1]), level + 1
        return self._size - 1

    def _subtree(self, level: int, index: int) -> bytes:
        if level >= TILE_HEIGHT:
            return self._levels[level - TILE_HEIGHT][index]
        start, end = index << level, (index + 1) << level
        tail_start = self._size - len(self._tail)
        leaves = self._tail[start - tail_start:end - tail_start] if start >= tail_start else self._read(start, end)
        if len(leaves) != end - start:
            raise RuntimeError(f"leaf reader returned {len(leaves)} hashes for [{start}, {end})")
        return _mth(leaves)

    def _hash(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for the ranges RFC recursion visits (start is aligned to the subtree size)."""
        n = end - start
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:
            level = n.bit_length() - 1
            return self._subtree(level, start >> level)
        k = _split(n)
        return node_hash(self._hash(start, start + k), self._hash(start + k, end))

    def _check_size(self, size: int | None) -> int:
        size = self._size if size is None else size
        if not 0 <= size <= self._size:
            raise ValueError(f"tree size {size} is outside 0..{self._size}")
        return size

    def root(self, size: int | None = None) -> bytes:
        return self._hash(0, self._check_size(size))

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[0:size]), leaf-to-root order (RFC 9162 §2.1.3.1)."""
        size = self._check_size(size)
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is outside 0..{size - 1}")
        proof: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            k = _split(end - start)
            if index < start + k:
                proof.append(self._hash(start + k, end))
                end = start + k
            else:
                proof.append(self._hash(start, start + k))
                start += k
        return proof[::-1]

    def consistency_proof(self, old_size: int, size: int | None = None) -> list[bytes]:
        """PROOF(old_size, D[0:size]) (RFC 9162 §2.1.4.1); empty when old_size is 0 or equals size."""
        size = self._check_size(size)
        if not 0 <= old_size <= size:
            raise ValueError(f"old size {old_size} is outside 0..{size}")
        if old_size in (0, size):
            return []
        proof: list[bytes] = []
        start, end, complete = 0, size, True
        while old_size != end:
            k = _split(end - start)
            if old_size <= start + k:
                proof.append(self._hash(start + k, end))
                end = start + k
            else:
                proof.append(self._hash(start, start + k))
                start, complete = start + k, False
        if not complete:
            proof.append(self._hash(start, end))
        return proof[::-1]


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH over a list of leaf hashes."""
    return MerkleTree.from_leaf_hashes(leaves).root()


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    return MerkleTree.from_leaf_hashes(leaves).inclusion_proof(index)


def consistency_proof(old_size: int, leaves: Sequence[bytes]) -> list[bytes]:
    return MerkleTree.from_leaf_hashes(leaves).consistency_proof(old_size)


def _check_hashes(*values: bytes) -> None:
    if any(not isinstance(v, bytes) or len(v) != HASH_SIZE for v in values):
        raise InvalidProof("hashes are 32 bytes")


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes) -> None:
    """RFC 9162 §2.1.3.2: raise :class:`InvalidProof` unless ``leaf`` (a leaf hash) is at ``index``."""
    _check_hashes(leaf, expected_root, *proof)
    if not 0 <= index < size:
        raise InvalidProof(f"leaf index {index} is not below tree size {size}")
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise InvalidProof("inclusion proof is longer than the tree is deep")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or r != expected_root:
        raise InvalidProof("inclusion proof does not lead to the expected root")


def verify_consistency(old_size: int, size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> None:
    """RFC 9162 §2.1.4.2: raise :class:`InvalidProof` unless tree ``size`` extends tree ``old_size``."""
    _check_hashes(old_root, new_root, *proof)
    if not 0 <= old_size <= size:
        raise InvalidProof(f"old size {old_size} is not in 0..{size}")
    if old_size == 0 or old_size == size:
        if proof:
            raise InvalidProof("a proof between these sizes must be empty")
        if old_size == size and old_root != new_root:
            raise InvalidProof("same size, different roots: the log forked")
        return
    if not proof:
        raise InvalidProof("empty consistency proof")
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    fn, sn = old_size - 1, size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise InvalidProof("consistency proof is too long")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0 or fr != old_root or sr != new_root:
        raise InvalidProof("consistency proof does not connect the two roots")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tree head: which log (``origin``), how many leaves, and the root over them."""

    origin: str
    size: int
    root: bytes

    def body(self) -> str:
        if not self.origin or any(ch in self.origin for ch in "\n\r") or self.size < 0 or len(self.root) != 32:
            raise ValueError("a checkpoint needs a one-line origin, a size >= 0 and a 32-byte root")
        return f"{self.origin}\n{self.size}\n{base64.b64encode(self.root).decode('ascii')}\n"


def _key_id(name: str, public: bytes) -> bytes:
    return hashlib.sha256(name.encode() + b"\n\x01" + public).digest()[:4]


def sign_note(text: str, key: SigningKey, name: str) -> str:
    """C2SP signed note: ``text`` (ending in a newline), a blank line, ``— name base64(keyid || signature)``."""
    if not name or "+" in name or any(ch.isspace() for ch in name):
        raise ValueError("a note key name is non-empty, without spaces or '+'")
    if not text.endswith("\n") or "\n\n" in text:
        raise ValueError("note text ends with a newline and has no blank line")
    signature = _key_id(name, key.public_bytes()) + key.sign(text.encode())
    return f"{text}\n\u2014 {name} {base64.b64encode(signature).decode('ascii')}\n"


def open_note(note: str, *, signer: str, name: str) -> str:
    """Return the text of a signed note once the signature of ``signer`` (a did:key) under ``name`` verifies.

    Other signature lines (witness cosignatures, other keys) are skipped, as C2SP verifiers do.
    """
    try:
        public = public_bytes_from_did(signer)
    except InvalidDID as exc:
        raise InvalidCheckpoint(f"signer is not an Ed25519 did:key: {exc}") from exc
    if not isinstance(note, str) or len(note) > 64 * 1024:
        raise InvalidCheckpoint("a signed note is a text of at most 64 KiB")
    text, sep, signatures = note.partition("\n\n")
    text += "\n"
    if not sep or not signatures.endswith("\n"):
        raise InvalidCheckpoint("not a signed note: text, blank line, signature lines")
    wanted_id = _key_id(name, public)
    for line in signatures[:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            raise InvalidCheckpoint("malformed signature line")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCheckpoint("signature is not base64") from exc
        if parts[1] != name or raw[:4] != wanted_id:
            continue
        try:
            verify_signature(signer, raw[4:], text.encode())
        except InvalidSignature as exc:
            raise InvalidCheckpoint("note signature does not verify") from exc
        return text
    raise InvalidCheckpoint(f"no signature by {name!r} with the expected key")


def sign_checkpoint(checkpoint: Checkpoint, key: SigningKey, *, key_name: str | None = None) -> str:
    """The checkpoint as a C2SP signed note; the key name defaults to the origin, as C2SP logs do."""
    return sign_note(checkpoint.body(), key, key_name or checkpoint.origin)


def verify_checkpoint(note: str, *, origin: str, signer: str, key_name: str | None = None) -> Checkpoint:
    """Parse a signed checkpoint of log ``origin`` signed by ``signer``; extension lines are signed but unused."""
    lines = open_note(note, signer=signer, name=key_name or origin).split("\n")[:-1]
    if len(lines) < 3:
        raise InvalidCheckpoint("a checkpoint has origin, size and root lines")
    if lines[0] != origin:
        raise InvalidCheckpoint(f"checkpoint is for log {lines[0]!r}, expected {origin!r}")
    if not lines[1].isascii() or not lines[1].isdigit() or (lines[1].startswith("0") and lines[1] != "0"):
        raise InvalidCheckpoint("tree size is not a decimal integer")
    try:
        tree_root = base64.b64decode(lines[2], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidCheckpoint("root hash is not base64") from exc
    if len(tree_root) != HASH_SIZE:
        raise InvalidCheckpoint("root hash is not 32 bytes")
    return Checkpoint(origin=origin, size=int(lines[1]), root=tree_root)


MAX_NOTE_BYTES = 64 * 1024
"""Largest signed note read: room for a checkpoint and well over the 16 signatures C2SP verifiers must accept."""


def split_note(note: str) -> tuple[str, list[tuple[str, bytes]]]:
    """A C2SP signed note's text (with its final newline) and its signature lines as ``(key name, raw bytes)``,
    nothing verified: callers pick the lines whose name and key ID they know and check those. The text ends at
    the note's *last* blank line, as the spec says; control characters other than newline are refused."""
    if not isinstance(note, str) or len(note.encode("utf-8", "surrogatepass")) > MAX_NOTE_BYTES:
        raise InvalidCheckpoint(f"a signed note is a text of at most {MAX_NOTE_BYTES} bytes")
    if any(ch < " " and ch != "\n" for ch in note) or any("\ud800" <= ch <= "\udfff" for ch in note):
        raise InvalidCheckpoint("a signed note is UTF-8 without control characters other than newline")
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n") or cut + 2 == len(note):
        raise InvalidCheckpoint("not a signed note: text, blank line, signature lines")
    signatures: list[tuple[str, bytes]] = []
    for line in note[cut + 2:-1].split("\n"):
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014" or not parts[1] or "+" in parts[1]:
            raise InvalidCheckpoint("malformed signature line")
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidCheckpoint("signature is not base64") from exc
        if len(raw) < 5:
            raise InvalidCheckpoint("a signature is a 4-byte key ID and the signature bytes")
        signatures.append((parts[1], raw))
    return note[:cut + 1], signatures

