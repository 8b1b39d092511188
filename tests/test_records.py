"""protocols/records.py on its own: a record verified once and served again is recognised by exactly what was
verified (its registration token, key events and facts); anything else changed is verified whole, and what
depends on the moment or on the registry's word is checked every time."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from guildnet.protocols import keyhistory, signed_write
from guildnet.protocols.agentfacts import endorse
from guildnet.protocols.keys import SigningKey
from guildnet.protocols.records import UntrustworthyRecord, verify_record


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
