"""Task receipts: a good one verifies; every way of forging, half-signing or bending one is refused by name."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from guildnet.protocols import jws, signed_write
from guildnet.protocols.canonical import canonical_json
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.receipts import (
    CLAIM_TYP,
    VERDICT_TYP,
    BadReceiptSignature,
    InconsistentReceipt,
    MalformedReceipt,
    MissingCountersignature,
    ReceiptRefused,
    SelfDealing,
    TaskClaim,
    WrongSigner,
    callee_sign,
    caller_countersign,
    receipt_id,
    verify_receipt,
)

CALLER = SigningKey.from_seed(b"\x01" * 32)
CALLEE = SigningKey.from_seed(b"\x02" * 32)
STRANGER = SigningKey.from_seed(b"\x03" * 32)


def claim_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_id": "task-1", "caller": CALLER.did, "callee": CALLEE.did, "skill": "translate",
        "input_sha256": hashlib.sha256(b"in").hexdigest(), "output_sha256": hashlib.sha256(b"out").hexdigest(),
        "started_at": 1_700_000_000_000, "ended_at": 1_700_000_000_250, "status": "completed",
    }
    body.update(changes)
    return body


def claim(**changes: Any) -> TaskClaim:
    return TaskClaim.model_validate(claim_body(**changes))


def raw_claim_token(key: SigningKey, **changes: Any) -> str:
    """A claim signed without the library's checks: what an attacker can always produce."""
    return jws.sign(canonical_json(claim_body(**changes)), key, typ=CLAIM_TYP)


def raw_receipt(inner: str, key: SigningKey, verdict: str = "success", **extra: Any) -> str:
    return jws.sign(canonical_json({"receipt": inner, "verdict": verdict, **extra}), key, typ=VERDICT_TYP)


def test_countersigned_receipt_verifies() -> None:
    token = caller_countersign(callee_sign(claim(), CALLEE), CALLER, "success", rating=0.9, reason="fast")
    receipt = verify_receipt(token)
    assert receipt.success and receipt.rating == 0.9 and receipt.reason == "fast"
    assert receipt.claim == claim()
    assert receipt.receipt_id == receipt_id("task-1", CALLER.did, CALLEE.did)
    assert len(receipt.receipt_id) == 64 and receipt.token == token


def test_one_task_has_one_receipt_id_however_it_is_resigned() -> None:
    first = verify_receipt(caller_countersign(callee_sign(claim(), CALLEE), CALLER, "success"))
    again = verify_receipt(caller_countersign(callee_sign(claim(ended_at=1_700_000_000_999), CALLEE),
                                              CALLER, "failure"))
    other = verify_receipt(caller_countersign(callee_sign(claim(task_id="task-2"), CALLEE), CALLER, "success"))
    assert first.token != again.token
    assert first.receipt_id == again.receipt_id != other.receipt_id


def test_callee_signature_alone_is_refused() -> None:
    with pytest.raises(MissingCountersignature):
        verify_receipt(callee_sign(claim(), CALLEE))


def counted(token: str, *, callee_key: str = CALLEE.did, caller_key: str = CALLER.did) -> None:
    """What a registry does with a receipt: verify it, then check each half's signer against the party's key in
    force (here the parties never rotated: their keys are their ids)."""
    verify_receipt(token).check_signers(callee_key=callee_key, caller_key=caller_key)


def test_caller_signature_alone_is_refused() -> None:
    """The caller fabricates the callee's half with its own key: the claim's signer is not the callee."""
    with pytest.raises(WrongSigner):
        counted(raw_receipt(raw_claim_token(CALLER), CALLER))


def test_callee_cannot_countersign_its_own_work() -> None:
    with pytest.raises(WrongSigner):
        counted(raw_receipt(callee_sign(claim(), CALLEE), CALLEE))


def test_non_party_signers_are_refused() -> None:
    with pytest.raises(WrongSigner):  # a stranger countersigns a real claim
        counted(raw_receipt(callee_sign(claim(), CALLEE), STRANGER))
    with pytest.raises(WrongSigner):  # a stranger makes up a claim between two real agents
        counted(raw_receipt(raw_claim_token(STRANGER), CALLER))
    with pytest.raises(WrongSigner):  # the callee's half signed by a key that is no longer in force
        counted(caller_countersign(callee_sign(claim(), CALLEE), CALLER, "success"), callee_key=STRANGER.did)
    counted(caller_countersign(callee_sign(claim(), STRANGER), CALLER, "success"), callee_key=STRANGER.did)


def test_caller_equal_to_callee_is_refused() -> None:
    with pytest.raises(SelfDealing):
        callee_sign(claim(caller=CALLEE.did), CALLEE)
    with pytest.raises(SelfDealing):
        verify_receipt(raw_receipt(raw_claim_token(CALLEE, caller=CALLEE.did), CALLEE))


def _tamper_payload(token: str, change: dict[str, Any]) -> str:
    protected, _payload, signature = token.split(".")
    body = jws.verify_json(token)[1] | change
    return ".".join([protected, jws.b64url_encode(canonical_json(body)), signature])


def test_tampered_fields_are_refused() -> None:
    inner = callee_sign(claim(), CALLEE)
    bent_inner = _tamper_payload(inner, {"output_sha256": hashlib.sha256(b"other").hexdigest()})
    with pytest.raises(BadReceiptSignature):
        verify_receipt(raw_receipt(bent_inner, CALLER))
    outer = caller_countersign(inner, CALLER, "failure")
    with pytest.raises(BadReceiptSignature):
        verify_receipt(_tamper_payload(outer, {"verdict": "success"}))


@pytest.mark.parametrize("change", [
    {"input_sha256": "AB" * 32},              # not lowercase hex
    {"output_sha256": "ab" * 31},             # too short
    {"ended_at": 1_699_999_999_999},          # ends before it starts
    {"started_at": True},                     # a bool is not a time
    {"status": "done"},
    {"caller": "did:web:example.com"},
    {"extra": "field"},
])
def test_malformed_claims_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(MalformedReceipt):
        verify_receipt(raw_receipt(raw_claim_token(CALLEE, **change), CALLER))


def test_malformed_verdicts_and_tokens_are_refused() -> None:
    inner = callee_sign(claim(), CALLEE)
    for bad in [raw_receipt(inner, CALLER, rating=1.5), raw_receipt(inner, CALLER, verdict="maybe"),
                raw_receipt(inner, CALLER, bonus=1), signed_write.make(CALLER, {"receipt": inner}),
                "not.a.jws", "x"]:
        with pytest.raises(MalformedReceipt):
            verify_receipt(bad)
    with pytest.raises(MalformedReceipt):
        caller_countersign(inner, CALLER, "success", rating=-0.1)


def test_success_on_a_failed_task_is_refused() -> None:
    failed = callee_sign(claim(status="failed"), CALLEE)
    with pytest.raises(InconsistentReceipt):
        caller_countersign(failed, CALLER, "success")
    with pytest.raises(InconsistentReceipt):
        verify_receipt(raw_receipt(failed, CALLER, "success"))
    assert not verify_receipt(caller_countersign(failed, CALLER, "failure")).success


def test_refusals_carry_the_registry_problem_shape() -> None:
    with pytest.raises(ReceiptRefused) as caught:
        verify_receipt(callee_sign(claim(), CALLEE))
    assert isinstance(caught.value, signed_write.WriteRefused)
    assert caught.value.status == 422 and "countersign" in caught.value.detail
    assert WrongSigner.status == 403 and BadReceiptSignature.status == 401
