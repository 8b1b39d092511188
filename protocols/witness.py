"""Witnessed checkpoints: C2SP ``tlog-cosignature`` (cosignature/v1, Ed25519) and ``tlog-witness``, as values.

A registry signs its log's checkpoints itself, so a registry that lies can sign two different trees and show
each to a different client (a *split view*); each client, checking only consistency with what it saw before,
would never notice. A **witness** is an independent party that keeps, per log, the latest checkpoint it
verified, and cosigns a new checkpoint only if it extends that one. A client that requires cosignatures from
``k`` of ``n`` witnesses it names accepts only trees that ``k`` of them saw grow append-only: to split views,
the registry must now have at least ``k`` witnesses sign both forks (docs/witness.md gives the argument).

**Cosignatures** (``c2sp.org/tlog-cosignature``): a note signature line ``— <witness name> base64(key ID ||
u64 timestamp || Ed25519 signature)`` on the checkpoint note, where the key ID is ``SHA-256(name || 0x0A ||
0x04 || public key)[:4]`` and the signed message is ``cosignature/v1\\ntime <timestamp>\\n`` followed by the
checkpoint body. The timestamp is in the signed message, so a cosignature moved onto another checkpoint, or
another time, does not verify. Witnesses are named here by their name and did:key (every guildnet signer is a
did:key), and read from or written as C2SP verifier keys (``vkey``), the form other witness tooling prints.

**The witness protocol** (``c2sp.org/tlog-witness``): ``POST <prefix>/add-checkpoint`` with ``old <size>``,
up to 63 base64 consistency-proof lines, a blank line and the signed checkpoint; the answer is the
cosignature line(s), or ``409`` with the size the witness holds (``text/x.tlog.size``) when the old size is
not it. :func:`check_add_checkpoint` is the witness's whole decision, without I/O, so the service only stores
what it returns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature

from .did import InvalidDID, did_from_public_bytes, public_bytes_from_did, public_key_from_did
from .keys import SigningKey
from .merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Checkpoint,
    InvalidCheckpoint,
    InvalidProof,
    split_note,
    verify_checkpoint,
    verify_consistency,
)
from .transparency import origin_for

COSIGNATURE_V1 = 0x04
"""The signed-note signature type of timestamped Ed25519 checkpoint cosignatures."""
MAX_PROOF_LINES = 63
"""A consistency proof has at most 63 hashes (one per level of a 2^64-leaf tree, less one); more is refused."""
MAX_TIMESTAMP = (1 << 63) - 1
SIZE_CONTENT_TYPE = "text/x.tlog.size"
"""The media type of a 409 answer: the witness's tree size for that log, in decimal, and a newline."""
MAX_REQUEST_BYTES = 128 * 1024
_SIGNATURE_BYTES = 4 + 8 + 64


class WitnessError(ValueError):
    """Something about witnessing is wrong; the subclasses say what."""


class InvalidCosignature(WitnessError):
    """A cosignature line by a known witness is malformed or does not verify: the note was tampered with."""


class QuorumNotMet(WitnessError):
    """Fewer than the required number of named witnesses cosigned the checkpoint."""

    def __init__(self, quorum: int, cosigned: Sequence[str], missing: Sequence[str]) -> None:
        self.quorum = quorum
        self.cosigned = tuple(cosigned)
        self.missing = tuple(missing)
        have = ", ".join(self.cosigned) or "none"
        super().__init__(f"the checkpoint needs cosignatures from {quorum} of the configured witnesses and has "
                         f"{len(self.cosigned)} ({have}); missing: {', '.join(self.missing)}")


class Refusal(WitnessError):
    """A witness refuses an add-checkpoint request: ``status`` is the HTTP status tlog-witness prescribes, and
    ``size`` (for 409) the tree size the witness holds for that log."""

    def __init__(self, status: int, detail: str, *, size: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.size = size


def check_key_name(name: str, what: str) -> None:
    """A signed-note key name: non-empty, no spaces, no '+', no control characters."""
    if not isinstance(name, str) or not name or "+" in name or any(ch.isspace() for ch in name) or \
            any(ch < " " for ch in name):
        raise WitnessError(f"{what} {name!r} must be non-empty, without spaces or '+'")


def key_id(name: str, public: bytes) -> bytes:
    """A cosigner's key ID: ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``."""
    return hashlib.sha256(name.encode() + b"\n" + bytes([COSIGNATURE_V1]) + public).digest()[:4]


@dataclass(frozen=True, slots=True)
class Witness:
    """A witness as a verifier knows it: its key name and its Ed25519 key (a did:key)."""

    name: str
    key: str
    public: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key_name(self.name, "a witness name")
        try:
            object.__setattr__(self, "public", public_bytes_from_did(self.key))
        except InvalidDID as exc:
            raise WitnessError(f"witness {self.name!r}: its key is not an Ed25519 did:key: {exc}") from exc

    @property
    def key_id(self) -> bytes:
        return key_id(self.name, self.public)

    def vkey(self) -> str:
        """The C2SP verifier key: ``<name>+<hex key ID>+base64(0x04 || public key)``."""
        material = base64.b64encode(bytes([COSIGNATURE_V1]) + self.public).decode("ascii")
        return f"{self.name}+{self.key_id.hex()}+{material}"

    @classmethod
    def from_vkey(cls, vkey: str) -> Witness:
        """Read a cosignature/v1 verifier key; its key ID must match its name and key."""
        parts = vkey.split("+") if isinstance(vkey, str) else []
        if len(parts) != 3:
            raise WitnessError("a verifier key is <name>+<hex key ID>+<base64 key>")
        name, hex_id, material = parts
        try:
            raw = base64.b64decode(material, validate=True)
            wanted = bytes.fromhex(hex_id)
        except (binascii.Error, ValueError) as exc:
            raise WitnessError("a verifier key's ID is hex and its key base64") from exc
        if len(raw) != 33 or raw[0] != COSIGNATURE_V1:
            raise WitnessError("not a cosignature/v1 verifier key (type 0x04 and a 32-byte Ed25519 key)")
        witness = cls(name, did_from_public_bytes(raw[1:]))
        if len(wanted) != 4 or witness.key_id != wanted:
            raise WitnessError(f"verifier key {name!r}: the key ID does not match the name and key")
        return witness


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """Which witnesses a verifier names, and how many of them must have cosigned a checkpoint."""

    witnesses: tuple[Witness, ...]
    quorum: int

    def __post_init__(self) -> None:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names) or len({w.key for w in self.witnesses}) != len(names):
            raise WitnessError("each witness needs its own name and its own key")
        if not 1 <= self.quorum <= len(self.witnesses):
            raise WitnessError(f"a quorum of {self.quorum} is not between 1 and the {len(names)} witnesses named")


def cosignature_message(body: str, timestamp: int) -> bytes:
    """What a cosignature/v1 signs: the header, the time line and the whole checkpoint body."""
    if not 0 <= timestamp <= MAX_TIMESTAMP:
        raise WitnessError("a cosignature timestamp is between 0 and 2^63 - 1")
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def cosign(body: str, key: SigningKey, name: str, timestamp: int) -> str:
    """One cosignature/v1 line (ending in a newline) by ``key`` under ``name`` on the checkpoint ``body``."""
    check_key_name(name, "a witness name")
    if timestamp <= 0:
        raise WitnessError("a witness's cosignature carries a non-zero time")
    signature = key.sign(cosignature_message(body, timestamp))
    raw = key_id(name, key.public_bytes()) + timestamp.to_bytes(8, "big") + signature
    return f"\u2014 {name} {base64.b64encode(raw).decode('ascii')}\n"


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A verified cosignature: by which witness, at what time (POSIX seconds)."""

    witness: Witness
    timestamp: int


def verify_cosignatures(note: str, witnesses: Iterable[Witness]) -> list[Cosignature]:
    """The cosignatures of the named ``witnesses`` on a signed checkpoint note, each verified, one per witness.

    Lines whose name and key ID match no named witness are ignored (the log's own signature, unknown witnesses);
    a line that matches a named witness but does not verify (another checkpoint's, a forged or altered one)
    makes the whole note :class:`InvalidCosignature`, as C2SP signed-note verifiers reject it.
    """
    known = {(w.name, w.key_id): w for w in witnesses}
    text, signatures = split_note(note)
    found: dict[str, Cosignature] = {}
    for name, raw in signatures:
        witness = known.get((name, raw[:4]))
        if witness is None:
            continue
        if len(raw) != _SIGNATURE_BYTES:
            raise InvalidCosignature(f"the cosignature of {name!r} is not 76 bytes (key ID, time, signature)")
        timestamp = int.from_bytes(raw[4:12], "big")
        if not 0 < timestamp <= MAX_TIMESTAMP:
            raise InvalidCosignature(f"the cosignature of {name!r} has no valid time")
        try:
            public_key_from_did(witness.key).verify(raw[12:], cosignature_message(text, timestamp))
        except InvalidSignature as exc:
            raise InvalidCosignature(f"the cosignature of {name!r} does not verify over this checkpoint") from exc
        found.setdefault(name, Cosignature(witness, timestamp))
    return list(found.values())


@dataclass(frozen=True, slots=True)
class WitnessedCheckpoint:
    """A checkpoint whose log signature and witness quorum were verified."""

    checkpoint: Checkpoint
    note: str
    cosignatures: tuple[Cosignature, ...]


def verify_witnessed(note: str, *, log_key: str, policy: WitnessPolicy, origin: str | None = None,
                     key_name: str | None = None) -> WitnessedCheckpoint:
    """Verify a checkpoint note as ``GET /v1/log/head`` serves it: signed by the log key (``origin`` defaults to
    the registry's, ``guildnet-registry/<log key>``), and cosigned by at least ``policy.quorum`` of the named
    witnesses. Raises :class:`~guildnet.protocols.merkle.InvalidCheckpoint`, :class:`InvalidCosignature`, or
    :class:`QuorumNotMet` naming the witnesses whose cosignatures are missing."""
    checkpoint = verify_checkpoint(note, origin=origin or origin_for(log_key), signer=log_key, key_name=key_name)
    cosignatures = verify_cosignatures(note, policy.witnesses)
    if len(cosignatures) < policy.quorum:
        signed = {c.witness.name for c in cosignatures}
        raise QuorumNotMet(policy.quorum, sorted(signed), [w.name for w in policy.witnesses if w.name not in signed])
    return WitnessedCheckpoint(checkpoint, note, tuple(cosignatures))


# -- tlog-witness: add-checkpoint --------------------------------------------------------------------------


def _decimal(value: str, what: str) -> int:
    if not value.isascii() or not value.isdigit() or (value.startswith("0") and value != "0") or len(value) > 20:
        raise Refusal(400, f"{what} is not a decimal number without leading zeros")
    return int(value)


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    """An add-checkpoint request: the size the submitter believes the witness holds, the consistency proof from
    that size, and the signed checkpoint note."""

    old_size: int
    proof: tuple[bytes, ...]
    note: str

    def encode(self) -> bytes:
        if self.old_size < 0 or len(self.proof) > MAX_PROOF_LINES or any(len(h) != HASH_SIZE for h in self.proof):
            raise WitnessError("an add-checkpoint request has an old size >= 0 and at most 63 32-byte hashes")
        lines = [f"old {self.old_size}"] + [base64.b64encode(h).decode("ascii") for h in self.proof]
        return ("\n".join(lines) + "\n\n" + self.note).encode()


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    """Read an add-checkpoint body; anything malformed is a :class:`Refusal` with status 400."""
    if len(body) > MAX_REQUEST_BYTES:
        raise Refusal(400, f"an add-checkpoint body is at most {MAX_REQUEST_BYTES} bytes")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refusal(400, "the body is not UTF-8") from exc
    head, blank, note = text.partition("\n\n")
    if not blank:
        raise Refusal(400, "the body is an old size line, proof lines, a blank line and a checkpoint")
    lines = head.split("\n")
    if not lines[0].startswith("old "):
        raise Refusal(400, "the first line is 'old <size>'")
    old_size = _decimal(lines[0][4:], "the old size")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise Refusal(400, f"a consistency proof has at most {MAX_PROOF_LINES} lines")
    proof = []
    for line in lines[1:]:
        try:
            value = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise Refusal(400, "a proof line is one base64 hash") from exc
        if len(value) != HASH_SIZE:
            raise Refusal(400, "a proof line is one base64 hash of 32 bytes")
        proof.append(value)
    return AddCheckpoint(old_size, tuple(proof), note)


def size_body(size: int) -> bytes:
    """The body of a 409 answer."""
    return f"{size}\n".encode()


def parse_size_body(body: bytes) -> int:
    """The witness's tree size from a 409 answer's body."""
    text = body.decode("ascii", "replace")
    if not text.endswith("\n"):
        raise Refusal(400, "a size answer is a decimal number and a newline")
    return _decimal(text[:-1], "the witness's size")


def parse_cosignature_lines(body: bytes) -> str:
    """A 200 answer: one or more note signature lines, each ``— <name> <base64>`` and a newline."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WitnessError("the witness answered with a body that is not UTF-8") from exc
    if not text.endswith("\n") or len(text) > MAX_REQUEST_BYTES:
        raise WitnessError("the witness's answer is not signature lines")
    lines = text[:-1].split("\n")
    if any(not line.startswith("\u2014 ") or len(line.split(" ")) != 3 for line in lines):
        raise WitnessError("the witness's answer is not signature lines")
    return text


@dataclass(frozen=True, slots=True)
class WitnessedLog:
    """A log a witness follows: its origin line and the key that signs its checkpoints (a did:key); the note
    key name is the origin unless ``key_name`` says otherwise."""

    origin: str
    key: str
    key_name: str | None = None

    def __post_init__(self) -> None:
        if not self.origin or any(ch < " " for ch in self.origin):
            raise WitnessError("a log's origin is one non-empty line")
        try:
            public_bytes_from_did(self.key)
        except InvalidDID as exc:
            raise WitnessError(f"log {self.origin!r}: its key is not an Ed25519 did:key: {exc}") from exc


def check_add_checkpoint(request: AddCheckpoint, logs: Mapping[str, WitnessedLog],
                         latest: Callable[[str], Checkpoint | None]) -> Checkpoint:
    """The witness's decision on ``request``, in the order tlog-witness gives: the checkpoint it may now cosign
    (and must store before answering), or a :class:`Refusal` with the status to answer.

    ``latest(origin)`` is the checkpoint the witness last cosigned for that log (``None``: never). The caller
    makes reading it, this check and storing the result one atomic step, or two concurrent requests could roll
    the witness back (the race the spec describes).
    """
    try:
        text, _ = split_note(request.note)
    except InvalidCheckpoint as exc:
        raise Refusal(400, f"the checkpoint is not a signed note: {exc}") from exc
    origin = text.split("\n", 1)[0]
    log = logs.get(origin)
    if log is None:
        raise Refusal(404, f"this witness does not follow the log {origin!r}")
    try:
        checkpoint = verify_checkpoint(request.note, origin=origin, signer=log.key, key_name=log.key_name)
    except InvalidCheckpoint as exc:
        raise Refusal(403, f"the checkpoint does not verify under the key of {origin!r}: {exc}") from exc
    if request.old_size > checkpoint.size:
        raise Refusal(400, f"the old size {request.old_size} is larger than the checkpoint's {checkpoint.size}")
    held = latest(origin)
    held_size = held.size if held is not None else 0
    if request.old_size != held_size:
        raise Refusal(409, f"this witness holds size {held_size} of {origin!r}, not {request.old_size}",
                      size=held_size)
    if checkpoint.size == 0 and checkpoint.root != EMPTY_ROOT:
        raise Refusal(422, "a checkpoint of size 0 has the empty tree's root")
    if request.old_size == 0:
        if request.proof:
            raise Refusal(422, "from size 0 the consistency proof is empty")
        return checkpoint
    assert held is not None
    try:
        verify_consistency(held.size, checkpoint.size, held.root, checkpoint.root, list(request.proof))
    except InvalidProof as exc:
        raise Refusal(422, f"the checkpoint of size {checkpoint.size} does not extend the one of size "
                           f"{held.size} this witness cosigned: {exc}") from exc
    return checkpoint
