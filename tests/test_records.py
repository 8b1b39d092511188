"""protocols/records.py on its own: a record verified once and served again is recognised by exactly what was
verified (its registration token, key events and facts); anything else changed is verified whole, and what
depends on the moment or on the registry's word is checked every time."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from typing import Any

import pytest

from guildnet.protocols import jws, keyhistory, signed_write
from guildnet.protocols.agentfacts import AS_REGISTERED, ENDORSEMENT_TYP, AgentFacts, endorse, facts_digest
from guildnet.protocols.canonical import sha256_hex
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.records import UntrustworthyRecord, verify_record
from guildnet.protocols.signed_write import UnauthorizedWrite
from guildnet.registry.records import parse_registration


def served(*, lifetime: int = 3600) -> tuple[dict[str, Any], SigningKey, SigningKey]:
    """A record as a registry serves it, the agent's key, and its next key (committed to by its inception)."""
    org, key, nxt = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    facts = endorse(org, {"id": key.did, "name": "echo", "version": 1, "organisation": {"id": org.did, "name": "o"},
                          "endpoints": {"a2a": "https://agents.example/echo/a2a"},
                          "skills": [{"id": "echo", "name": "Echo"}]}, lifetime=lifetime)
    return {"facts": facts, "key_events": [keyhistory.incept(key, nxt.did)], "jws": signed_write.make(
        key, {"action": "register", "facts": facts}), "current_key": key.did, "live": True}, key, nxt


def test_a_record_served_again_verifies_alike_and_changed_facts_are_still_refused() -> None:
    record, _, _ = served()
    first = verify_record(record)
    again = verify_record(copy.deepcopy(record))
    assert (again.facts, again.keys, again.endorsement) == (first.facts, first.keys, first.endorsement)
    moved = copy.deepcopy(record)
    moved["facts"]["endpoints"]["a2a"] = "https://attacker.example/a2a"
    with pytest.raises(UntrustworthyRecord, match="differ from its signed registration"):
        verify_record(moved)
    record["facts"]["endpoints"]["a2a"] = "https://attacker.example/a2a"  # the caller's own copy, changed after
    with pytest.raises(UntrustworthyRecord, match="differ from its signed registration"):
        verify_record(record)


def test_the_registrys_word_and_the_time_are_checked_each_time() -> None:
    record, _, _ = served(lifetime=60)
    verify_record(record)
    with pytest.raises(UntrustworthyRecord, match=r"names .* as the key"):
        verify_record({**record, "current_key": SigningKey.generate().did})
    with pytest.raises(UntrustworthyRecord, match="expired"):
        verify_record(record, now=time.time() + 120)
    hidden = verify_record({**record, "live": False, "revoked": True})
    assert not hidden.live and hidden.revoked


def test_other_key_events_with_the_same_registration_are_verified_whole() -> None:
    """After a rotation the registration the old key signed is no longer the agent's word."""
    record, key, nxt = served()
    verify_record(record)
    rotation = keyhistory.rotate(key, keyhistory.replay(key.did, record["key_events"]), nxt.did, None)
    with pytest.raises(UntrustworthyRecord, match="not signed by the key in force"):
        verify_record({**record, "key_events": [*record["key_events"], rotation], "current_key": nxt.did})


def _first_form(org: SigningKey, facts: dict[str, Any]) -> dict[str, Any]:
    """``facts`` endorsed as the first endorsements were (a digest of their RFC 8785 form, claim ``facts``)."""
    unsigned = AgentFacts.model_validate({**facts, "organisation": {**facts["organisation"], "endorsement": ""}})
    token = jws.sign({"agent": unsigned.id, "facts": facts_digest(unsigned), "iat": int(time.time()),
                      "exp": int(time.time()) + 3600}, org, typ=ENDORSEMENT_TYP)
    return {**facts, "organisation": {**facts["organisation"], "endorsement": token}}


def _record(key: SigningKey, facts: dict[str, Any]) -> dict[str, Any]:
    return {"facts": facts, "key_events": [], "current_key": key.did,
            "jws": signed_write.make(key, {"action": "register", "facts": facts})}


def test_endorsements_of_the_first_form_are_still_read_and_still_bind_the_facts() -> None:
    org, key = SigningKey.generate(), SigningKey.generate()
    facts = _first_form(org, {"id": key.did, "name": "echo", "version": 1, "organisation": {"id": org.did, "name": "o"},
                              "skills": [{"id": "echo", "name": "Echo"}]})
    entry = verify_record(_record(key, facts))
    assert entry.endorsement is not None and not entry.endorsement.as_registered
    moved = {**facts, "endpoints": {"a2a": "https://attacker.example/a2a"}}  # a stolen agent key re-registers
    with pytest.raises(UntrustworthyRecord, match="vouches for other facts"):
        verify_record(_record(key, moved))


def test_the_endorsement_binds_the_registered_text_and_the_facts_acted_on_are_the_signed_ones() -> None:
    record, key, _ = served()
    facts = record["facts"]
    assert AgentFacts.model_validate(facts).to_json() == facts  # endorse returns what a registration carries
    entry = verify_record(record)
    assert entry.endorsement is not None and entry.endorsement.as_registered
    # a stolen agent key signs other facts under the organisation's endorsement: refused
    narrowed = {**facts["skills"][0], "input_schema": {"type": "object", "maxProperties": 0}}
    for changed in ({**facts, "endpoints": {"a2a": "https://attacker.example/a2a"}}, {**facts, "version": 2},
                    {**facts, "skills": [narrowed]}):
        with pytest.raises(UntrustworthyRecord, match="vouches for other facts"):
            verify_record({**_record(key, changed), "key_events": record["key_events"]})
    # the same facts spelled out twice over, or with their endorsement hidden in an escape: refused, never guessed
    token = facts["organisation"]["endorsement"]
    twice = {**facts, "skills": [{**facts["skills"][0], "input_schema": {"type": "object", "endorsement": token}}]}
    with pytest.raises(UntrustworthyRecord, match="spell their endorsement out once"):
        verify_record({**_record(key, twice), "key_events": record["key_events"]})
    # a registry serving a copy Python finds equal but JSON does not (true for 1): the signed copy is acted on
    signed = {**facts, "skills": [{**facts["skills"][0], "input_schema": {"type": "object", "maxProperties": 1}}]}
    org = SigningKey.generate()
    signed = endorse(org, {**signed, "organisation": {"id": org.did, "name": "o"}})
    lying = copy.deepcopy(signed)
    lying["skills"][0]["input_schema"]["maxProperties"] = True
    entry = verify_record({**_record(key, signed), "facts": lying, "key_events": record["key_events"]})
    assert entry.facts.skills[0].input_schema["maxProperties"] is not True


def test_an_endorsement_naming_two_digests_is_refused() -> None:
    org, key = SigningKey.generate(), SigningKey.generate()
    facts = endorse(org, {"id": key.did, "name": "echo", "version": 1, "organisation": {"id": org.did, "name": "o"},
                          "skills": [{"id": "echo", "name": "Echo"}]})
    _, claims = jws.verify_json(facts["organisation"]["endorsement"])
    both = jws.sign({**claims, "facts": claims[AS_REGISTERED]}, org, typ=ENDORSEMENT_TYP)
    facts["organisation"]["endorsement"] = both
    with pytest.raises(UntrustworthyRecord, match="two facts digests"):
        verify_record(_record(key, facts))


def test_the_registry_accepts_exactly_the_spellings_verifiers_accept() -> None:
    """Facts another implementation spells in its own member order, endorsed over that text: the registry checks
    the endorsement against the text as registered, as every verifier does, so both accept it; the same
    endorsement over changed facts, neither."""
    org, key, nxt = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    ours = endorse(org, {"id": key.did, "name": "echo", "version": 1, "organisation": {"id": org.did, "name": "o"},
                         "endpoints": {"a2a": "https://agents.example/echo/a2a"},
                         "skills": [{"id": "echo", "name": "Echo"}]})
    unsigned = {member: ours[member] for member in reversed(list(ours))}
    unsigned["organisation"] = {**ours["organisation"], "endorsement": ""}
    issued = int(time.time())
    endorsement = jws.sign({"agent": key.did, AS_REGISTERED: sha256_hex(jws.compact_json(unsigned)), "iat": issued,
                            "exp": issued + 3600}, org, typ=ENDORSEMENT_TYP)
    facts = {**unsigned, "organisation": {**unsigned["organisation"], "endorsement": endorsement}}
    assert jws.compact_json(facts) != jws.compact_json(AgentFacts.model_validate(facts).to_json())

    token = signed_write.make(key, {"action": "register", "facts": facts})
    assert parse_registration(signed_write.open_write(token)).facts.id == key.did
    entry = verify_record({"facts": facts, "key_events": [keyhistory.incept(key, nxt.did)], "jws": token,
                           "current_key": key.did, "live": True})
    assert entry.endorsement is not None and entry.endorsement.as_registered

    changed = {**facts, "version": 2}
    with pytest.raises(UnauthorizedWrite, match="vouches for other facts"):
        parse_registration(signed_write.open_write(signed_write.make(key, {"action": "register", "facts": changed})))
    with pytest.raises(UntrustworthyRecord, match="vouches for other facts"):
        verify_record(_record(key, changed))


def test_a_skill_schema_is_checked_in_every_record_whatever_was_verified_before() -> None:
    """Valid schemas are checked once per distinct text and records once per token: neither lets a record through
    whose facts differ only in a schema that is not one, signed and endorsed as it may be."""
    record, key, _ = served()
    verify_record(record)
    facts = record["facts"]
    org = SigningKey.generate()
    for bad in ({"type": 5}, {"type": "object", "properties": {"x": {"type": "string", "pattern": "(?=a)"}}},
                {"$ref": "https://schemas.example/x.json"}):
        unsigned = {**facts, "organisation": {"id": org.did, "name": "o", "endorsement": ""},
                    "skills": [{**facts["skills"][0], "input_schema": bad}]}
        issued = int(time.time())  # endorse() validates what it signs, so the organisation signs by hand here
        endorsement = jws.sign({"agent": key.did, AS_REGISTERED: sha256_hex(jws.compact_json(unsigned)),
                                "iat": issued, "exp": issued + 3600}, org, typ=ENDORSEMENT_TYP)
        changed = {**unsigned, "organisation": {**unsigned["organisation"], "endorsement": endorsement}}
        with pytest.raises(UntrustworthyRecord, match="not AgentFacts"):
            verify_record({**_record(key, changed), "key_events": record["key_events"]})


def test_a_record_verified_before_lends_nothing_to_a_forged_one() -> None:
    """What was verified is recognised by the registration token itself: the same facts under another signature,
    another signer, or a token whose signature was swapped are verified whole and refused."""
    record, key, _ = served()
    verify_record(record)
    protected, payload, signature = record["jws"].split(".")
    other, _, _ = served()
    for forged in (f"{protected}.{payload}.{other['jws'].split('.')[2]}",  # another registration's signature
                   f"{protected}.{payload}.{signature[:-2]}AA"):  # the same signature, two characters changed
        with pytest.raises(UntrustworthyRecord, match="does not verify"):
            verify_record({**record, "jws": forged})
    thief = SigningKey.generate()  # re-signs the very facts verified above with its own key
    with pytest.raises(UntrustworthyRecord, match="not signed by the key in force"):
        verify_record({**record, "jws": signed_write.make(thief, {"action": "register", "facts": record["facts"]})})
    assert verify_record(record).current_key == key.did


def test_the_registry_checks_the_endorsement_against_the_text_its_one_parse_read() -> None:
    """open_write reads the facts' text from the same parse as the payload, and the registry checks the
    endorsement against that text (it parses the payload once): other text in its place is refused."""
    record, key, _ = served()
    write = signed_write.open_write(record["jws"])
    assert write.facts_text is not None and json.loads(write.facts_text) == record["facts"]
    payload = jws.b64url_decode(record["jws"].split(".")[1]).decode()
    assert payload.startswith('{"action":"register","facts":' + write.facts_text + ',"iat":')
    assert parse_registration(write).facts.id == key.did
    spaced = write.facts_text.replace('"version":1', '"version": 1')
    with pytest.raises(UnauthorizedWrite, match="vouches for other facts"):
        parse_registration(dataclasses.replace(write, facts_text=spaced))
    heartbeat = signed_write.open_write(signed_write.make(key, {"action": "heartbeat", "agent": key.did}))
    assert heartbeat.facts_text is None
