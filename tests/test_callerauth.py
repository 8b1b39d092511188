"""Caller tokens on bytes alone: what one proves, and every way a token for something else is refused."""

from __future__ import annotations

import pytest

from guildnet.protocols import jws
from guildnet.protocols.callerauth import CALL_TYP, CallRefused, body_digest, sign_call, verify_call
from guildnet.protocols.keys import SigningKey

URL = "https://node.example/a2a/echo"
BODY = b'{"jsonrpc":"2.0","id":1,"method":"ListTasks","params":{}}'
NOW = 1_790_000_000.0


def test_a_token_proves_its_agent_and_key_for_exactly_this_request() -> None:
    key = SigningKey.generate()
    token = sign_call(key.did, key, method="post", url=URL, body=BODY, now=NOW)
    caller = verify_call(token, method="POST", url=URL, body=BODY, now=NOW + 30)
    assert (caller.agent, caller.key, caller.expires) == (key.did, key.did, int(NOW) + 60)
    rotated = SigningKey.generate()  # an agent that rotated signs with its new key, naming its old id
    caller = verify_call(sign_call(key.did, rotated, method="POST", url=URL, body=BODY, now=NOW),
                         method="POST", url=URL, body=BODY, now=NOW)
    assert (caller.agent, caller.key) == (key.did, rotated.did)  # whether that key is in force: the node's check


@pytest.mark.parametrize(("method", "url", "body", "at", "why"), [
    ("POST", URL, BODY + b" ", NOW, "another body"),
    ("GET", URL, BODY, NOW, "another request"),
    ("POST", URL + "x", BODY, NOW, "another request"),
    ("POST", URL, BODY, NOW + 60 + 61, "expired"),
    ("POST", URL, BODY, NOW - 61, "from the future"),
])
def test_a_token_for_another_request_or_time_is_refused(method: str, url: str, body: bytes, at: float,
                                                         why: str) -> None:
    key = SigningKey.generate()
    token = sign_call(key.did, key, method="POST", url=URL, body=BODY, now=NOW)
    with pytest.raises(CallRefused, match=why):
        verify_call(token, method=method, url=url, body=body, now=at)


def _forged(key: SigningKey, **claims: object) -> str:
    base = {"iss": key.did, "aud": URL, "htm": "POST", "bd": "", "iat": int(NOW), "exp": int(NOW) + 60,
            "jti": "n" * 22}
    base["bd"] = body_digest(BODY)
    base.update(claims)
    return jws.sign({k: v for k, v in base.items() if v is not None}, key, typ=CALL_TYP)


@pytest.mark.parametrize(("claims", "typ", "why"), [
    ({"exp": int(NOW) + 3600}, CALL_TYP, "at most 120 s"),
    ({"iss": "did:web:example.org"}, CALL_TYP, "names no agent"),
    ({"iss": None}, CALL_TYP, "names no agent"),
    ({"jti": "short"}, CALL_TYP, "needs integer iat and exp and a jti"),
    ({"iat": "1790000000"}, CALL_TYP, "needs integer iat and exp and a jti"),
    ({}, "JWT", "not a call token"),
])
def test_malformed_tokens_are_refused(claims: dict[str, object], typ: str, why: str) -> None:
    key = SigningKey.generate()
    token = _forged(key, **claims) if typ == CALL_TYP else jws.sign({"iss": key.did}, key, typ=typ)
    with pytest.raises(CallRefused, match=why):
        verify_call(token, method="POST", url=URL, body=BODY, now=NOW)


def test_a_token_with_a_duplicated_claim_or_another_signature_is_refused() -> None:
    key, other = SigningKey.generate(), SigningKey.generate()
    good = _forged(key)
    protected, payload, _ = good.split(".")
    resigned = f"{protected}.{payload}." + jws.b64url_encode(other.sign(f"{protected}.{payload}".encode()))
    with pytest.raises(CallRefused, match="does not verify"):
        verify_call(resigned, method="POST", url=URL, body=BODY, now=NOW)
    twice = jws.sign(b'{"iss":"%s","iss":"%s"}' % (other.did.encode(), key.did.encode()), key, typ=CALL_TYP)
    with pytest.raises(CallRefused, match="appears twice in one object"):
        verify_call(twice, method="POST", url=URL, body=BODY, now=NOW)
