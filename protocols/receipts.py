"""Task receipts: the only evidence that moves a reputation.

A receipt is two nested compact JWS (``guildnet.protocols.jws``, EdDSA, ``kid`` = signer's did:key):

1. the **callee** signs :class:`TaskClaim` (task id, caller, callee, skill, SHA-256 of input and output, start
   and end times, status) as RFC 8785 canonical JSON, ``typ`` :data:`CLAIM_TYP`;
2. the **caller** checks that token, then signs :class:`Verdict` = {the callee's token, its verdict, an optional
   rating and reason}, ``typ`` :data:`VERDICT_TYP`. That outer token is the receipt a registry accepts.

So the caller cannot invent work the callee never signed, and the callee cannot grade itself. Each half is
signed by its party's key *in force* (its id's key until it rotates; see :mod:`.keyhistory`): the verifier,
who knows the keys (a registry from its index, a node from the verified record), checks the signers against
them with :meth:`Receipt.check_signers`; a key that was rotated away signs nothing that counts. The distinct
``typ`` values keep a receipt from being confused with any other guildnet signature (a signed write, an
endorsement) and let a half-signed receipt be named for what it is.

``receipt_id`` is SHA-256 over the canonical JSON of ``{task_id, caller, callee}``, not over either signature:
the two parties could sign the same task again with a shifted time stamp or another verdict, and the task must
still be counted once. Times are integer unix **milliseconds**.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import jws
from .canonical import canonical_json, sha256_hex
from .did import is_did_key
from .keys import SigningKey
from .signed_write import WriteRefused

CLAIM_TYP = "guildnet-receipt-claim+jws"
VERDICT_TYP = "guildnet-receipt+jws"
MAX_TIME_MS = 2**53 - 1

Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
TimeMs = Annotated[int, Field(ge=0, le=MAX_TIME_MS)]


class ReceiptRefused(WriteRefused):
    """A receipt that must not count. Subclasses say why; ``status``/``title`` give the problem+json shape."""

    status = 422
    title = "Receipt refused"


class MalformedReceipt(ReceiptRefused):
    title = "Malformed receipt"


class MissingCountersignature(ReceiptRefused):
    title = "Receipt not countersigned by the caller"


class BadReceiptSignature(ReceiptRefused):
    status = 401
    title = "Receipt signature does not verify"


class WrongSigner(ReceiptRefused):
    status = 403
    title = "Receipt signed by someone other than the named party"


class SelfDealing(ReceiptRefused):
    title = "Caller and callee are the same agent"


class InconsistentReceipt(ReceiptRefused):
    title = "Receipt contradicts itself"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class TaskClaim(_Strict):
    """What the callee states about the work it did (and signs)."""

    task_id: Annotated[str, Field(min_length=1, max_length=128)]
    caller: str
    callee: str
    skill: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    input_sha256: Sha256Hex
    output_sha256: Sha256Hex
    started_at: TimeMs
    ended_at: TimeMs
    status: Literal["completed", "failed", "canceled", "rejected"]

    @field_validator("caller", "callee")
    @classmethod
    def _dids(cls, value: str) -> str:
        if not is_did_key(value):
            raise ValueError("must be an Ed25519 did:key")
        return value

    @model_validator(mode="after")
    def _coherent(self) -> TaskClaim:
        if self.ended_at < self.started_at:
            raise ValueError("ended_at is before started_at")
        return self


class Verdict(_Strict):
    """What the caller adds: the callee's token, success or failure, an optional rating in [0, 1] and reason."""

    receipt: Annotated[str, Field(min_length=1, max_length=16 * 1024)]
    verdict: Literal["success", "failure"]
    rating: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None = None
    reason: Annotated[str, Field(max_length=1024)] | None = None


@dataclass(frozen=True, slots=True)
class Receipt:
    """A receipt whose both signatures and fields were checked by :func:`verify_receipt`; who signed each half
    is in :attr:`callee_signer` and :attr:`caller_signer`, for :meth:`check_signers`."""

    receipt_id: str
    claim: TaskClaim
    verdict: Literal["success", "failure"]
    rating: float | None
    reason: str | None
    token: str
    callee_signer: str
    caller_signer: str

    @property
    def success(self) -> bool:
        return self.verdict == "success"

    def check_signers(self, *, callee_key: str, caller_key: str) -> None:
        """Refuse unless the claim was signed by the callee's key in force and the verdict by the caller's."""
        if self.callee_signer != callee_key:
            raise WrongSigner("the task claim is not signed by the key in force of the callee it names")
        if self.caller_signer != caller_key:
            raise WrongSigner("the verdict is not signed by the key in force of the caller the claim names")


def receipt_id(task_id: str, caller: str, callee: str) -> str:
    """The identity of a task between two parties: the key a registry counts once."""
    return sha256_hex(canonical_json({"task_id": task_id, "caller": caller, "callee": callee}))


def parse_claim(token: str) -> tuple[TaskClaim, str]:
    """The callee's claim, its signature verified, and the did:key that signed it (for the reader to check
    against the callee's key in force)."""
    try:
        verified, body = jws.verify_json(token)
    except jws.MalformedJWS as exc:
        raise MalformedReceipt(f"callee token: {exc}") from exc
    except jws.BadSignature as exc:
        raise BadReceiptSignature(f"callee signature: {exc}") from exc
    if verified.header.get("typ") != CLAIM_TYP:
        raise MalformedReceipt(f"the inner token must have typ {CLAIM_TYP!r}")
    try:
        claim = TaskClaim.model_validate(body)
    except ValidationError as exc:
        raise MalformedReceipt(f"task claim: {_first_error(exc)}") from exc
    if claim.caller == claim.callee:
        raise SelfDealing("an agent cannot issue a receipt for work done for itself")
    return claim, verified.signer


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "body"
    return f"{where}: {error['msg']}"


def callee_sign(claim: TaskClaim, key: SigningKey) -> str:
    """The callee's half: sign the claim with the callee's key in force."""
    if claim.caller == claim.callee:
        raise SelfDealing("an agent cannot issue a receipt for work done for itself")
    return jws.sign(canonical_json(claim.model_dump()), key, typ=CLAIM_TYP)


def caller_countersign(claim_token: str, key: SigningKey, verdict: Literal["success", "failure"], *,
                       rating: float | None = None, reason: str | None = None) -> str:
    """The caller's half: check the callee's token, then sign it with the verdict (with the caller's key in
    force; whoever counts the receipt checks both signers against the parties' keys)."""
    claim, _ = parse_claim(claim_token)
    try:
        body = Verdict(receipt=claim_token, verdict=verdict, rating=rating, reason=reason)
    except ValidationError as exc:
        raise MalformedReceipt(f"verdict: {_first_error(exc)}") from exc
    _check_verdict(claim, body)
    return jws.sign(canonical_json(body.model_dump(exclude_none=True)), key, typ=VERDICT_TYP)


def _check_verdict(claim: TaskClaim, body: Verdict) -> None:
    if body.verdict == "success" and claim.status != "completed":
        raise InconsistentReceipt(f"a task the callee reports as {claim.status!r} cannot be a success")


def verify_receipt(token: str) -> Receipt:
    """Check a countersigned receipt completely; raise a :class:`ReceiptRefused` subclass naming the fault.

    Checks: both signatures; caller != callee; hashes are 64 lowercase hex digits; ended_at >= started_at; the
    verdict fits the status. Whether each half is signed by its party's key in force
    (:meth:`Receipt.check_signers`), whether both parties are registered, and whether ``receipt_id`` was seen
    before, is the counting registry's check.
    """
    try:
        verified, body = jws.verify_json(token)
    except jws.MalformedJWS as exc:
        raise MalformedReceipt(str(exc)) from exc
    except jws.BadSignature as exc:
        raise BadReceiptSignature(f"caller signature: {exc}") from exc
    if verified.header.get("typ") == CLAIM_TYP:
        raise MissingCountersignature("this is the callee's claim alone; the caller must countersign it")
    if verified.header.get("typ") != VERDICT_TYP:
        raise MalformedReceipt(f"a receipt must have typ {VERDICT_TYP!r}")
    try:
        outer = Verdict.model_validate(body)
    except ValidationError as exc:
        raise MalformedReceipt(f"verdict: {_first_error(exc)}") from exc
    claim, callee_signer = parse_claim(outer.receipt)
    _check_verdict(claim, outer)
    return Receipt(receipt_id=receipt_id(claim.task_id, claim.caller, claim.callee), claim=claim,
                   verdict=outer.verdict, rating=outer.rating, reason=outer.reason, token=token,
                   callee_signer=callee_signer, caller_signer=verified.signer)
