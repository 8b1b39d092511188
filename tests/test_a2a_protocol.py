"""A2A wire helpers, byte for byte: envelopes, errors, versions, messages, skill mapping, signed cards."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from a2a.types import AgentCard, StreamResponse, Task
from a2a.utils.signing import create_signature_verifier
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from google.protobuf.json_format import MessageToDict, ParseDict

from guildnet.protocols import a2a
from guildnet.protocols.jws import b64url_decode
from guildnet.protocols.keys import SigningKey


def _error(exc: pytest.ExceptionInfo[a2a.A2AError]) -> int:
    code: int = exc.value.code
    return code


def test_error_response_bytes_carry_error_info() -> None:
    body = a2a.error_response(7, a2a.A2AError(a2a.TASK_NOT_FOUND))
    assert body == (b'{"jsonrpc":"2.0","id":7,"error":{"code":-32001,"message":"Task not found","data":'
                    b'[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"TASK_NOT_FOUND",'
                    b'"domain":"a2a-protocol.org","metadata":{}}]}}')
    # Standard JSON-RPC errors other than invalid params carry no A2A ErrorInfo.
    assert "data" not in json.loads(a2a.error_response(None, a2a.A2AError(a2a.PARSE_ERROR)))["error"]
    reasons = {code: json.loads(a2a.error_response(1, a2a.A2AError(code)))["error"]["data"][0]["reason"]
               for code in range(-32009, -32000)}
    assert reasons[-32003] == "PUSH_NOTIFICATION_NOT_SUPPORTED" and reasons[-32009] == "VERSION_NOT_SUPPORTED"


@pytest.mark.parametrize(("body", "code"), [
    (b"{not json", a2a.PARSE_ERROR),
    (b"[]", a2a.INVALID_REQUEST),
    (b'{"jsonrpc":"1.0","id":1,"method":"GetTask"}', a2a.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":true,"method":"GetTask"}', a2a.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1,"method":""}', a2a.INVALID_REQUEST),
    (b'{"jsonrpc":"2.0","id":1,"method":"GetTask","params":[1]}', a2a.INVALID_PARAMS),
])
def test_parse_request_refuses_bad_envelopes(body: bytes, code: int) -> None:
    with pytest.raises(a2a.A2AError) as exc:
        a2a.parse_request(body)
    assert _error(exc) == code


def test_parse_request_and_id_recovery() -> None:
    rpc = a2a.parse_request(b'{"jsonrpc":"2.0","id":"x","method":"GetTask","params":{"id":"t"}}')
    assert (rpc.id, rpc.method, rpc.params) == ("x", "GetTask", {"id": "t"})
    assert a2a.request_id_of(b'{"jsonrpc":"1.0","id":5}') == 5
    assert a2a.request_id_of(b"garbage") is None


def test_version_negotiation() -> None:
    assert a2a.check_version("1.0") == "1.0"
    assert a2a.check_version("1.0.1") == "1.0"
    for value in (None, "", "0.3", "99.0"):
        with pytest.raises(a2a.A2AError) as exc:
            a2a.check_version(value)
        assert _error(exc) == a2a.VERSION_NOT_SUPPORTED
    assert "SendMessage" in a2a.METHODS_V1 and "message/send" not in a2a.METHODS_V1


def test_parse_message_accepts_proto_names_and_refuses_bad_parts() -> None:
    msg = a2a.parse_message({"message_id": "m", "role": "ROLE_USER", "parts": [{"text": "a"}], "context_id": "c",
                             "unknownField": 1})
    assert msg == {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "a"}], "contextId": "c"}
    bad: list[Any] = [
        None,
        {"role": "ROLE_USER", "parts": [{"text": "a"}]},
        {"messageId": "m", "role": "user", "parts": [{"text": "a"}]},
        {"messageId": "m", "role": "ROLE_USER", "parts": []},
        {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "a", "data": {}}]},
        {"messageId": "m", "role": "ROLE_USER", "parts": [{"raw": "%%%"}]},
    ]
    for message in bad:
        with pytest.raises(a2a.A2AError) as exc:
            a2a.parse_message(message)
        assert _error(exc) == a2a.INVALID_PARAMS


def test_send_and_list_params() -> None:
    params = a2a.parse_send_params({"message": {"messageId": "m", "role": "ROLE_USER", "parts": [{"text": "a"}]},
                                    "configuration": {"returnImmediately": True, "history_length": "2"}})
    assert params.return_immediately and params.history_length == 2
    query = a2a.parse_list_query({"context_id": "c", "pageSize": 10, "status": a2a.WORKING})
    assert (query.context_id, query.page_size, query.status) == ("c", 10, a2a.WORKING)
    for bad in ({"pageSize": 0}, {"pageSize": 101}, {"status": "done"}, {"pageToken": "!!"},
                {"statusTimestampAfter": "yesterday"}):
        with pytest.raises(a2a.A2AError) as exc:
            query = a2a.parse_list_query(bad)
            if query.page_token:
                a2a.decode_page_token(query.page_token)
        assert _error(exc) == a2a.INVALID_PARAMS
    assert a2a.decode_page_token(a2a.encode_page_token(12.5, "t1")) == (12.5, "t1")


def test_skill_mapping() -> None:
    data_msg = a2a.skill_request({"x": 1}, "sum")
    assert a2a.message_input(data_msg) == {"x": 1}
    assert a2a.select_skill(data_msg, ["echo", "sum"]) == "sum"
    text_msg = a2a.new_message(a2a.ROLE_USER, [a2a.text_part("a"), a2a.data_part([1]), a2a.text_part("b")])
    assert a2a.message_input(text_msg) == {"text": "a\nb"}
    assert a2a.select_skill(text_msg, ["only"]) == "only"
    with pytest.raises(a2a.A2AError):
        a2a.select_skill(text_msg, ["one", "two"])
    with pytest.raises(a2a.A2AError):
        a2a.select_skill(data_msg, ["echo"])
    artifact = a2a.output_artifact({"y": 2}, "sum")
    assert artifact["parts"] == [{"data": {"y": 2}}, {"text": '{"y":2}', "mediaType": "application/json"}]
    assert a2a.artifact_output({"artifacts": [artifact]}) == {"y": 2}


def test_history_length() -> None:
    task = a2a.new_task("t", "c", [a2a.skill_request({"n": i}) for i in range(3)])
    task["artifacts"] = [a2a.new_artifact([a2a.text_part("x")])]
    assert len(a2a.with_history_length(task, None)["history"]) == 3
    assert a2a.with_history_length(task, 1)["history"] == task["history"][-1:]
    trimmed = a2a.with_history_length(task, 0, include_artifacts=False)
    assert "history" not in trimmed and "artifacts" not in trimmed and len(task["history"]) == 3


def test_objects_parse_strictly_as_sdk_protos() -> None:
    """What we build is exact ProtoJSON: the SDK's proto classes accept it with unknown fields forbidden."""
    task = a2a.new_task("t", "c", [a2a.skill_request({"x": 1}, "s")])
    task["artifacts"] = [a2a.output_artifact({"y": 2}, "s")]
    task["status"] = a2a.new_status(a2a.COMPLETED, a2a.new_message(a2a.ROLE_AGENT, [a2a.text_part("ok")]))
    parsed = ParseDict(task, Task())
    assert MessageToDict(parsed)["status"]["state"] == a2a.COMPLETED
    for event in (a2a.status_update("t", "c", task["status"]),
                  a2a.artifact_update("t", "c", task["artifacts"][0], append=True, last_chunk=True),
                  {"task": task}, {"message": a2a.new_message(a2a.ROLE_AGENT, [a2a.text_part("m")])}):
        ParseDict(event, StreamResponse())


def _card() -> dict[str, Any]:
    card: dict[str, Any] = a2a.build_agent_card(name="echo", description="Echoes", version="1.0.0", url="http://127.0.0.1:1/a2a",
                                skills=[a2a.CardSkill("echo", "Echo", "Returns text", ("text",))],
                                provider=("Org", "https://org.example"))
    return card


def test_card_shape_and_signature_verify_with_sdk() -> None:
    key = SigningKey.from_seed(bytes(range(32)))
    signed = a2a.sign_agent_card(_card(), key)
    header = json.loads(b64url_decode(signed["signatures"][0]["protected"]))
    assert header == {"alg": "EdDSA", "kid": key.did, "typ": "JOSE"}
    assert a2a.verify_agent_card(signed, key.did) == key.did

    proto = ParseDict(signed, AgentCard())  # strict: every field we write is a proto field
    assert MessageToDict(proto) == signed  # and nothing changes on the SDK's round trip
    pem = key.public_key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    create_signature_verifier(lambda _kid, _jku: pem, ["EdDSA"])(proto)

    tampered = {**signed, "description": "Evil"}
    with pytest.raises(a2a.CardSignatureError):
        a2a.verify_agent_card(tampered)
    with pytest.raises(a2a.CardSignatureError):
        a2a.verify_agent_card(signed, SigningKey.generate().did)
    with pytest.raises(a2a.CardSignatureError):
        a2a.verify_agent_card(_card())
    # Empty values are outside the signed payload (spec §8.4 default-value rule), so adding one is harmless.
    assert a2a.card_signing_payload({**signed, "iconUrl": ""}) == a2a.card_signing_payload(signed)


def test_new_ids_are_random_version_4_uuids_in_their_canonical_text() -> None:
    ids = {a2a.new_id() for _ in range(2000)}
    assert len(ids) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert {text[19] for text in ids} == set("89ab")  # the variant digit keeps its two random bits
