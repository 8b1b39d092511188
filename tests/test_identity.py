"""Identity primitives against published vectors: RFC 8032 §7.1, RFC 8785, the did:key spec; JWS interop."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import base58
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.protocols import jws, keyfile, signed_write
from guildnet.protocols.canonical import canonical_json
from guildnet.protocols.did import InvalidDID, did_from_public_bytes, public_bytes_from_did
from guildnet.protocols.keys import KeyFileError, SigningKey

# RFC 8032 §7.1, TEST 1-3: (secret key, public key, message, signature)
RFC8032 = [
    ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_rfc8032_vectors(secret: str, public: str, message: str, signature: str) -> None:
    key = SigningKey.from_seed(bytes.fromhex(secret))
    assert key.public_bytes().hex() == public
    assert key.sign(bytes.fromhex(message)).hex() == signature
    assert public_bytes_from_did(key.did).hex() == public


# did:key spec test vectors (ed25519-x25519.json): publicKeyBase58 -> did
DID_KEY_VECTORS = [("4zvwRjXUKGfvwnParsHAS3HuSVzV5cA4McphgmoCtajS",
                    "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp")]
DID_KEY_EXAMPLES = ["did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
                    "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK",
                    "did:key:z6MknGc3ocHs3zdPiJbnaaqDi58NGb4pk1Sp9WxWufuXSdxf"]


@pytest.mark.parametrize(("public_b58", "did"), DID_KEY_VECTORS)
def test_did_key_vectors(public_b58: str, did: str) -> None:
    raw = base58.b58decode(public_b58)
    assert did_from_public_bytes(raw) == did
    assert public_bytes_from_did(did) == raw
    for other_spelling in (did + "#" + did.split(":")[2], did + "#clone0", " " + did, did.upper()):
        with pytest.raises(InvalidDID):  # one key is one id: no fragments, no other forms
            public_bytes_from_did(other_spelling)


def _by_base58(did: str) -> bytes | None:
    """The decoding guildnet used before its own: ``base58`` decodes, encodes again, and only its own spelling
    counts."""
    if not did.startswith("did:key:z") or len(did) != 56:
        return None
    try:
        decoded = base58.b58decode(did[9:])
    except ValueError:
        return None
    if len(decoded) != 34 or decoded[:2] != b"\xed\x01" or did_from_public_bytes(decoded[2:]) != did:
        return None
    return decoded[2:]


def _decoded(did: str) -> bytes | None:
    try:
        return public_bytes_from_did.__wrapped__(did)
    except InvalidDID:
        return None


@settings(max_examples=500, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(0, 46), st.sampled_from(
    list("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0OIl +/#\n\u00e9")))
def test_did_key_decoding_refuses_and_accepts_exactly_what_base58_did(raw: bytes, where: int, char: str) -> None:
    did = did_from_public_bytes(raw)
    assert _decoded(did) == _by_base58(did) == raw
    changed = did[:9 + where] + char + did[10 + where:]  # one character of the key replaced
    assert _decoded(changed) == _by_base58(changed)
    for edge in ("did:key:z1" + did[10:], "did:key:z" + "z" * 47, "did:key:z" + "1" * 47, did[:-1] + " "):
        assert _decoded(edge) == _by_base58(edge)


@pytest.mark.parametrize("did", DID_KEY_EXAMPLES)
def test_did_key_examples_round_trip(did: str) -> None:
    assert did_from_public_bytes(public_bytes_from_did(did)) == did


@pytest.mark.parametrize("bad", ["", "did:web:example.com", "did:key:abc", "did:key:zabc",
                                 "did:key:z6LSbysY2xFMRpGMhb7tFTLMpeuPRaqaWM1yECx2AtzE3KCc",  # X25519, not Ed25519
                                 "did:key:z0OIl"])
def test_did_key_rejects_others(bad: str) -> None:
    with pytest.raises(InvalidDID):
        public_bytes_from_did(bad)


def test_rfc8785_canonicalisation_vector() -> None:
    # RFC 8785 §3.2.2 (numbers, escapes, literals)
    source = ('{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],'
              '"string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",'
              '"literals": [null, true, false]}')
    expected = ('{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
                '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}')
    assert canonical_json(json.loads(source)).decode() == expected


def test_rfc8785_key_order_is_utf16() -> None:
    # RFC 8785 §3.2.3: properties sort by UTF-16 code units, so the emoji sorts before U+FB33
    value = {"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\U0001F600": 5, "\u0080": 6, "\u00f6": 7}
    keys = list(json.loads(canonical_json(value)).keys())
    assert keys == ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001F600", "\ufb33"]


def test_key_file_is_0600_and_never_shows_the_secret(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "agent.key"
    keyfile.save(key, path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert keyfile.load(path).did == key.did
    assert key.did in repr(key) and "PRIVATE" not in repr(key)
    with pytest.raises(KeyFileError):
        keyfile.save(key, path)  # never silently overwrite a key
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(key)


def test_passphrase_protected_key(tmp_path: Path) -> None:
    key = SigningKey.generate()
    path = tmp_path / "org.key"
    keyfile.save(key, path, passphrase="correct horse")
    assert b"ENCRYPTED" in path.read_bytes()
    assert keyfile.load(path, passphrase="correct horse").did == key.did
    for wrong in (None, "wrong"):
        with pytest.raises(KeyFileError):
            keyfile.load(path, passphrase=wrong)


def test_jws_interoperates_with_pyjwt_both_ways() -> None:
    key = SigningKey.generate()
    ours = jws.sign({"hello": "world"}, key)
    assert json.loads(jwt.PyJWS().decode(ours, key=key.public_key, algorithms=["EdDSA"])) == {"hello": "world"}
    theirs = jwt.PyJWS().encode(b'{"x":1}', key.private_key, algorithm="EdDSA", headers={"kid": key.did})
    assert jws.verify(theirs).payload == b'{"x":1}'
    detached = jws.sign(b"card bytes", key, typ="JOSE", detached=True)
    assert detached.split(".")[1] == ""
    assert jws.verify(detached, detached_payload=b"card bytes").signer == key.did
    with pytest.raises(jws.BadSignature):
        jws.verify(detached, detached_payload=b"other bytes")


def test_jws_refuses_alg_confusion_and_foreign_kid() -> None:
    key = SigningKey.generate()
    token = jws.sign({"a": 1}, key)
    _, body, sig = token.split(".")
    none_head = jws.b64url_encode(json.dumps({"alg": "none", "kid": key.did}).encode())
    with pytest.raises(jws.MalformedJWS):
        jws.verify(f"{none_head}.{body}.")
    other = SigningKey.generate()
    swapped = jws.b64url_encode(json.dumps({"alg": "EdDSA", "kid": other.did}).encode())
    with pytest.raises(jws.BadSignature):
        jws.verify(f"{swapped}.{body}.{sig}")


def test_signed_write_freshness_and_nonce_shape() -> None:
    key = SigningKey.generate()
    token = signed_write.make(key, {"action": "heartbeat"}, now=1_000_000)
    assert signed_write.open_write(token, now=1_000_000 + 299).signer == key.did
    with pytest.raises(signed_write.UnauthorizedWrite):
        signed_write.open_write(token, now=1_000_000 + 301)
    short = jws.sign({"iat": 1_000_000, "nonce": "c2hvcnQ"}, key)
    with pytest.raises(signed_write.MalformedWrite):
        signed_write.open_write(short, now=1_000_000)
