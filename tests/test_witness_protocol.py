"""C2SP witnessing as values: cosignature/v1 lines, the k-of-n verifier, and the witness's add-checkpoint decision.

Exact vectors come from the specs (C2SP tlog-cosignature, tlog-witness, signed-note) and from
transparency-dev/formats' tests; the rest is made with our own keys and checked to fail when tampered with.
"""

from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from guildnet.protocols.did import did_from_public_bytes
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.merkle import (
    EMPTY_ROOT,
    Checkpoint,
    InvalidCheckpoint,
    MerkleTree,
    leaf_hash,
    open_note,
    sign_checkpoint,
    split_note,
)
from guildnet.protocols.transparency import origin_for
from guildnet.protocols.witness import (
    AddCheckpoint,
    InvalidCosignature,
    QuorumNotMet,
    Refusal,
    Witness,
    WitnessedLog,
    WitnessError,
    WitnessPolicy,
    check_add_checkpoint,
    cosign,
    cosignature_message,
    parse_add_checkpoint,
    parse_cosignature_lines,
    parse_size_body,
    size_body,
    verify_cosignatures,
    verify_witnessed,
)

# c2sp.org/tlog-cosignature: the example checkpoint with a log signature and one cosignature, and the message
# the spec shows for it ("time 1679315147").
SPEC_COSIGNED = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo"
    "+zyWE+xeMcTOAYQ8=\n"
    "\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nN"
    "o0xUe+mbIUBkBIfZ+qnA==\n")
SPEC_MESSAGE = (b"cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\n"
                b"CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
# c2sp.org/tlog-witness: the example add-checkpoint request body.
SPEC_REQUEST = (
    "old 20852014\n"
    "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n"
    "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n"
    "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n"
    "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n"
    "\n"
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo"
    "+zyWE+xeMcTOAYQ8=\n"
    "\u2014 example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Ro"
    "vnzv++qbSzm9Q=\n").encode()
# transparency-dev/formats note/note_cosigv1_test.go: a native cosignature/v1 (type 0x04) verifier key, and a
# cosignature whose timestamp is 1727964367.
REMORA_VKEY = "remora.n621.de+da77ade7+BOvN63jn/bLvkieywe8R6UYAtVtNbZpXh34x7onlmtw2"
FORMATS_COSIGNATURE = ("ZGhGuQAAAABm/qTPeyKXD+R2rzyQsxPiP8mXum7qq/iF0u4vanlqJyocWODBt97w9uL+8qT7S5gxEHWWOwo"
                       "rDcFiEBYJXORmnFBOBA==")
# c2sp.org/signed-note: an Ed25519 (type 0x01) verifier key and the note it verifies.
NOTE_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
NOTE = ("This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Zt"
        "g1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n")

LOG_KEY = SigningKey.from_seed(bytes(range(32)))
ORIGIN = origin_for(LOG_KEY.did)
KEYS = [SigningKey.from_seed(bytes([i]) * 32) for i in (1, 2, 3)]
WITNESSES = [Witness(f"witness.example/w{i}", key.did) for i, key in enumerate(KEYS, 1)]
NOW = 1_760_000_000


def tree(n: int, salt: bytes = b"") -> MerkleTree:
    return MerkleTree.from_leaf_hashes([leaf_hash(salt + i.to_bytes(4, "big")) for i in range(n)])


def signed(t: MerkleTree, size: int | None = None, key: SigningKey = LOG_KEY) -> str:
    return sign_checkpoint(Checkpoint(ORIGIN, t.size if size is None else size, t.root(size)), key,
                           key_name=ORIGIN)


def cosigned(note: str, *indices: int, at: int = NOW) -> str:
    body = split_note(note)[0]
    return note + "".join(cosign(body, KEYS[i], WITNESSES[i].name, at) for i in indices)


# --- exact vectors -------------------------------------------------------------------------------------------


def test_spec_cosignature_line_carries_key_id_and_the_time_of_the_spec_message() -> None:
    text, signatures = split_note(SPEC_COSIGNED)
    assert [name for name, _ in signatures] == ["example.com/behind-the-sofa", "witness.example.com/w1"]
    raw = signatures[1][1]
    assert len(raw) == 76 and raw[:4].hex() == "8d66cf3f"
    assert cosignature_message(text, int.from_bytes(raw[4:12], "big")) == SPEC_MESSAGE
    assert int.from_bytes(base64.b64decode(FORMATS_COSIGNATURE)[4:12], "big") == 1727964367


def test_spec_cosignature_by_a_key_we_do_not_name_is_ignored() -> None:
    # same name as the spec's witness, but our key: its key ID differs, so the line is someone else's
    impostor = Witness("witness.example.com/w1", KEYS[0].did)
    assert verify_cosignatures(SPEC_COSIGNED, [impostor]) == []


def test_verifier_keys_follow_the_key_id_rule() -> None:
    remora = Witness.from_vkey(REMORA_VKEY)
    assert remora.name == "remora.n621.de" and remora.key_id.hex() == "da77ade7"
    assert remora.vkey() == REMORA_VKEY
    assert Witness.from_vkey(WITNESSES[0].vkey()) == WITNESSES[0]
    for bad in (NOTE_VKEY,  # an Ed25519 note key (type 0x01), not a cosigner key
                REMORA_VKEY.replace("da77ade7", "00000000"), REMORA_VKEY.replace("remora", "remorb"),
                "remora.n621.de+da77ade7", "remora.n621.de+zz+BOvN", "a b+da77ade7+" + REMORA_VKEY.split("+")[2]):
        with pytest.raises(WitnessError):
            Witness.from_vkey(bad)


def test_signed_note_spec_example_verifies_with_the_shared_note_code() -> None:
    public = base64.b64decode(NOTE_VKEY.split("+")[2])[1:]
    assert open_note(NOTE, signer=did_from_public_bytes(public), name="example.com/foo") == \
        "This is an example message.\n"
    assert split_note(NOTE)[0] == "This is an example message.\n"


def test_spec_add_checkpoint_request_parses_and_encodes_back() -> None:
    request = parse_add_checkpoint(SPEC_REQUEST)
    assert request.old_size == 20852014 and len(request.proof) == 4
    assert request.proof[0] == base64.b64decode("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=")
    assert request.note.startswith("example.com/behind-the-sofa\n20852163\n")
    assert request.encode() == SPEC_REQUEST


# --- cosignatures and the quorum -----------------------------------------------------------------------------


def test_cosign_then_verify_k_of_n() -> None:
    note = cosigned(signed(tree(5)), 0, 2)
    found = verify_cosignatures(note, WITNESSES)
    assert {(c.witness.name, c.timestamp) for c in found} == {(WITNESSES[0].name, NOW), (WITNESSES[2].name, NOW)}
    result = verify_witnessed(note, log_key=LOG_KEY.did, policy=WitnessPolicy(tuple(WITNESSES), 2))
    assert result.checkpoint == Checkpoint(ORIGIN, 5, tree(5).root())
    with pytest.raises(QuorumNotMet) as missing:
        verify_witnessed(note, log_key=LOG_KEY.did, policy=WitnessPolicy(tuple(WITNESSES), 3))
    assert missing.value.missing == (WITNESSES[1].name,)
    assert "witness.example/w2" in str(missing.value)


def test_a_witness_counts_once_however_many_lines_it_has() -> None:
    body = split_note(signed(tree(3)))[0]
    note = cosigned(signed(tree(3)), 0) + cosign(body, KEYS[0], WITNESSES[0].name, NOW + 5)
    assert len(verify_cosignatures(note, WITNESSES)) == 1
    with pytest.raises(QuorumNotMet):
        verify_witnessed(note, log_key=LOG_KEY.did, policy=WitnessPolicy(tuple(WITNESSES[:2]), 2))


def test_cosignature_by_an_unknown_key_does_not_count() -> None:
    stranger = SigningKey.generate()
    note = cosigned(signed(tree(4)), 0)
    body = split_note(note)[0]
    note += cosign(body, stranger, WITNESSES[1].name, NOW)  # a named witness's name, another key
    assert [c.witness for c in verify_cosignatures(note, WITNESSES)] == [WITNESSES[0]]
    with pytest.raises(QuorumNotMet) as missing:
        verify_witnessed(note, log_key=LOG_KEY.did, policy=WitnessPolicy(tuple(WITNESSES[:2]), 2))
    assert missing.value.missing == (WITNESSES[1].name,)


def test_cosignature_over_another_checkpoint_does_not_count() -> None:
    honest, forked = signed(tree(6)), signed(tree(6, b"fork"))
    moved = split_note(cosigned(honest, 1))[1]  # witness 2's line for the honest tree, pasted onto the fork
    line = f"\u2014 {moved[1][0]} {base64.b64encode(moved[1][1]).decode()}\n"
    with pytest.raises(InvalidCosignature, match="does not verify"):
        verify_witnessed(cosigned(forked, 0) + line, log_key=LOG_KEY.did, policy=WitnessPolicy(tuple(WITNESSES), 2))
    with pytest.raises(InvalidCosignature):  # another time than the one signed
        raw = bytearray(moved[1][1])
        raw[11] ^= 1
        verify_cosignatures(honest + f"\u2014 {moved[1][0]} {base64.b64encode(bytes(raw)).decode()}\n", WITNESSES)


def test_malformed_cosignatures_by_known_witnesses_are_refused() -> None:
    note = signed(tree(2))
    good = split_note(cosigned(note, 0))[1][1][1]
    for raw in (good[:40], good + b"x", good[:4] + bytes(8) + good[12:], good[:4] + b"\xff" * 8 + good[12:]):
        with pytest.raises(InvalidCosignature):
            verify_cosignatures(note + f"\u2014 {WITNESSES[0].name} {base64.b64encode(raw).decode()}\n", WITNESSES)


def test_log_signature_is_required_too() -> None:
    forged = cosigned(signed(tree(4), key=KEYS[2]), 0, 1)  # cosigned, but not signed by the log key
    with pytest.raises(InvalidCheckpoint):
        verify_witnessed(forged, log_key=LOG_KEY.did, policy=WitnessPolicy(tuple(WITNESSES), 2))


def test_policies_and_witnesses_are_checked() -> None:
    with pytest.raises(WitnessError):
        WitnessPolicy(tuple(WITNESSES), 0)
    with pytest.raises(WitnessError):
        WitnessPolicy(tuple(WITNESSES), 4)
    with pytest.raises(WitnessError):
        WitnessPolicy((WITNESSES[0], Witness("other", KEYS[0].did)), 1)  # one key, two names
    for name, key in (("has space", KEYS[0].did), ("a+b", KEYS[0].did), ("", KEYS[0].did), ("ok", "did:web:x")):
        with pytest.raises(WitnessError):
            Witness(name, key)
    with pytest.raises(WitnessError):
        cosign("x\n1\nAA==\n", KEYS[0], "w", 0)


@pytest.mark.parametrize("note", [
    "", "no blank line\n", "a\n\n", "a\n\n\u2014 name\n", "a\n\nname c2ln\n", "a\n\n\u2014 na+me c2lnbmF0dXJl\n",
    "a\n\n\u2014 name not*base64\n", "a\n\n\u2014 name c2lnbmF0dXJl", "a\x01\n\n\u2014 name c2lnbmF0dXJl\n",
    "a\n\n\u2014 name AAAA\n", "x" * 70_000 + "\n\n\u2014 name c2lnbmF0dXJl\n",
])
def test_malformed_notes_are_refused(note: str) -> None:
    with pytest.raises(InvalidCheckpoint):
        split_note(note)


# --- the add-checkpoint exchange -----------------------------------------------------------------------------


@pytest.mark.parametrize("body", [
    b"", b"old 1\n", b"olds 1\n\nx", b"old 01\n\nx", b"old -1\n\nx", b"old 1 \n\nx", b"old \n\nx",
    b"old 1\nnot base64!\n\nx", b"old 1\nAAAA\n\nx", b"\xff\xfe\n\nx",
    ("old 9\n" + "\n".join([base64.b64encode(bytes(32)).decode()] * 64) + "\n\nx").encode(),
    b"old 1\n\n" + b"x" * 200_000,
])
def test_malformed_requests_are_400(body: bytes) -> None:
    with pytest.raises(Refusal) as refusal:
        parse_add_checkpoint(body)
    assert refusal.value.status == 400


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_request_bytes_are_parsed_or_refused_with_400(body: bytes) -> None:
    try:
        parse_add_checkpoint(body)
    except Refusal as refusal:
        assert refusal.status == 400


def test_size_and_response_bodies() -> None:
    assert parse_size_body(size_body(42)) == 42
    for bad in (b"42", b"-1\n", b"01\n", b"x\n"):
        with pytest.raises(Refusal):
            parse_size_body(bad)
    line = cosign("a\n1\nAA==\n", KEYS[0], "w", NOW)
    assert parse_cosignature_lines((line + line).encode()) == line + line
    for bad in (b"", line.encode()[:-1], b"not a line\n", b"\xff\n"):
        with pytest.raises(WitnessError):
            parse_cosignature_lines(bad)


LOGS = {ORIGIN: WitnessedLog(ORIGIN, LOG_KEY.did)}


def decide(old: int, proof: list[bytes], note: str, held: Checkpoint | None) -> Checkpoint:
    return check_add_checkpoint(AddCheckpoint(old, tuple(proof), note), LOGS, lambda origin: held)


def status(old: int, proof: list[bytes], note: str, held: Checkpoint | None) -> tuple[int, int | None]:
    with pytest.raises(Refusal) as refusal:
        decide(old, proof, note, held)
    return refusal.value.status, refusal.value.size


def test_witness_accepts_a_first_checkpoint_and_consistent_growth() -> None:
    t = tree(9)
    first = decide(0, [], signed(t, 4), None)
    assert first == Checkpoint(ORIGIN, 4, t.root(4))
    assert decide(4, t.consistency_proof(4, 9), signed(t), first) == Checkpoint(ORIGIN, 9, t.root())
    assert decide(4, [], signed(t, 4), first) == first  # the same checkpoint again


def test_witness_refusals_follow_the_spec() -> None:
    t, fork = tree(9), tree(9, b"fork")
    held = Checkpoint(ORIGIN, 4, t.root(4))
    other_log = SigningKey.from_seed(b"\x09" * 32)
    other = sign_checkpoint(Checkpoint(origin_for(other_log.did), 1, t.root(1)), other_log)
    assert status(0, [], other, None) == (404, None)  # a log it does not follow
    assert status(4, [], signed(t, key=KEYS[0]), held)[0] == 403  # not signed by the log key
    tampered = signed(t).replace(base64.b64encode(t.root()).decode(), base64.b64encode(fork.root()).decode())
    assert status(4, [], tampered, held)[0] == 403  # the log key's line does not verify
    assert status(4, [], "not a note", held)[0] == 400
    assert status(9, [], signed(t, 4), held)[0] == 400  # old size above the checkpoint's
    assert status(2, t.consistency_proof(2, 9), signed(t), held) == (409, 4)  # not the size it holds
    assert status(4, [], signed(t, 2), held)[0] == 400  # shrunken below the size it holds
    assert status(2, [], signed(t, 2), held) == (409, 4)  # shrunken, claiming the witness held 2
    assert status(0, [], signed(t, 2), held) == (409, 4)
    empty = sign_checkpoint(Checkpoint(ORIGIN, 0, t.root(1)), LOG_KEY)
    assert status(0, [], empty, None)[0] == 422  # size 0 with a root other than the empty tree's
    assert decide(0, [], sign_checkpoint(Checkpoint(ORIGIN, 0, EMPTY_ROOT), LOG_KEY), None).size == 0
    assert status(0, [bytes(32)], signed(t), None)[0] == 422  # a proof from size 0
    assert status(4, fork.consistency_proof(4, 9), signed(fork), held)[0] == 422  # a fork of what it cosigned
    assert status(4, t.consistency_proof(4, 9)[:-1], signed(t), held)[0] == 422  # a truncated proof
    assert status(4, [], signed(fork, 4), held)[0] == 422  # same size, another root
