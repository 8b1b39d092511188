"""Where a node keeps its fine-tuned models, and the signed record of which one serves each skill.

Layout, one folder per skill under the models directory::

    <skill>/candidates/<id>/   train.jsonl, validation.jsonl, manifest.json (the data), peft/ and adapter.gguf
                               (the model), training.json, card.json + card.jws (after evaluation)
    <skill>/served.json        {"current": id or null, "previous": [older ids, newest last]}
    <skill>/decisions.jsonl    one JWS per promote, refusal and rollback, signed by the organisation key

``served.json`` is replaced atomically (write, fsync, rename) after the decision is appended and synced, so a
crash never leaves a model in service without the signed decision that put it there. ``current: null`` is the
bundled base model.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guildnet.protocols import jws
from guildnet.protocols.keys import SigningKey

CARD_TYPE = "guildnet-model-card+jws"
DECISION_TYPE = "guildnet-model-decision+jws"
_SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class ModelStoreError(ValueError):
    """A candidate, card or decision that cannot be used (missing, tampered with, not better)."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as data:
        for block in iter(lambda: data.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _replace(path: Path, text: str) -> None:
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(out.name, path)


@dataclass(frozen=True, slots=True)
class Served:
    current: str | None
    previous: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ModelStore:
    """The models of one skill (see the module docstring)."""

    root: Path
    skill: str

    def __post_init__(self) -> None:
        if not _SAFE.match(self.skill):
            raise ModelStoreError(f"skill id {self.skill!r} cannot name a folder")

    @property
    def folder(self) -> Path:
        return self.root / self.skill

    def candidate(self, candidate_id: str) -> Path:
        if not _SAFE.match(candidate_id):
            raise ModelStoreError(f"not a candidate id: {candidate_id!r}")
        return self.folder / "candidates" / candidate_id

    def new_candidate(self, now: datetime | None = None) -> tuple[str, Path]:
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%S%fZ")
        path = self.candidate(f"lora-{stamp}")
        path.mkdir(parents=True)
        return path.name, path

    def candidates(self) -> list[str]:
        folder = self.folder / "candidates"
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def adapter(self, candidate_id: str) -> Path:
        path = self.candidate(candidate_id) / "adapter.gguf"
        if not path.is_file():
            raise ModelStoreError(f"candidate {candidate_id} has no adapter.gguf (was it trained?)")
        return path

    # ------------------------------------------------------------------------------------------ cards
    def write_card(self, candidate_id: str, card: dict[str, Any], key: SigningKey) -> str:
        """Sign and store the model card; return the JWS."""
        token = jws.sign(json.dumps(card, sort_keys=True).encode(), key, typ=CARD_TYPE)
        folder = self.candidate(candidate_id)
        _replace(folder / "card.json", json.dumps(card, indent=2, sort_keys=True) + "\n")
        _replace(folder / "card.jws", token + "\n")
        return token

    def card(self, candidate_id: str, *, signer: str | None = None) -> dict[str, Any]:
        """The candidate's card, from its JWS (the signature checked, and the signer if given), with the
        adapter on disk checked against the hash the card names."""
        path = self.candidate(candidate_id) / "card.jws"
        if not path.is_file():
            raise ModelStoreError(f"candidate {candidate_id} has no model card: run guildnet flywheel evaluate")
        try:
            verified = jws.verify(path.read_text().strip())
        except (jws.MalformedJWS, jws.BadSignature) as exc:
            raise ModelStoreError(f"the model card of {candidate_id} does not verify: {exc}") from None
        if verified.header.get("typ") != CARD_TYPE:
            raise ModelStoreError(f"{path} is not a model card")
        if signer is not None and verified.signer != signer:
            raise ModelStoreError(f"the model card of {candidate_id} is signed by {verified.signer}, not {signer}")
        card: dict[str, Any] = json.loads(verified.payload)
        if sha256_file(self.adapter(candidate_id)) != card["hashes"]["adapter_sha256"]:
            raise ModelStoreError(f"the adapter of {candidate_id} is not the one its model card describes")
        return card

    # ------------------------------------------------------------------------------------------ serving
    def served(self) -> Served:
        path = self.folder / "served.json"
        if not path.is_file():
            return Served(None)
        value = json.loads(path.read_text())
        return Served(value["current"], list(value["previous"]))

    def decisions(self) -> list[dict[str, Any]]:
        """Every decision, oldest first, each signature checked."""
        path = self.folder / "decisions.jsonl"
        if not path.is_file():
            return []
        return [json.loads(jws.verify(line).payload) for line in path.read_text().splitlines() if line]

    def _decide(self, action: str, key: SigningKey, served: Served | None, **facts: Any) -> dict[str, Any]:
        decision = {"action": action, "skill": self.skill, "at": datetime.now(UTC).isoformat(), **facts}
        token = jws.sign(json.dumps(decision, sort_keys=True).encode(), key, typ=DECISION_TYPE)
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "decisions.jsonl", "a", encoding="utf-8") as log:
            log.write(token + "\n")
            log.flush()
            os.fsync(log.fileno())
        if served is not None:
            _replace(self.folder / "served.json",
                     json.dumps({"current": served.current, "previous": served.previous}, indent=2) + "\n")
        return decision

    def promote(self, candidate_id: str, key: SigningKey) -> dict[str, Any]:
        """Put the candidate in service if its signed card says it beat the model in service on the same
        held-out tasks, and that model is still the one in service; record the decision either way."""
        card = self.card(candidate_id, signer=key.did)
        served = self.served()
        compared = card["compared_with"]
        facts = {"candidate": candidate_id, "card_sha256": hashlib.sha256(
            json.dumps(card, sort_keys=True).encode()).hexdigest(), "previous": served.current,
            "candidate_scores": card["scores"]["candidate"], "current_scores": card["scores"]["current"]}
        if compared != served.current:
            reason = (f"the card compares with {compared or 'the base model'}, but "
                      f"{served.current or 'the base model'} is in service now: evaluate again")
            self._decide("refused", key, None, reason=reason, **facts)
            raise ModelStoreError(reason)
        if not card["better"]:
            self._decide("refused", key, None, reason=card["verdict"], **facts)
            raise ModelStoreError(f"not promoted: {card['verdict']}")
        if served.current == candidate_id:
            raise ModelStoreError(f"{candidate_id} is already in service")
        previous = [*served.previous, served.current] if served.current else list(served.previous)
        return self._decide("promoted", key, Served(candidate_id, previous), reason=card["verdict"], **facts)

    def rollback(self, key: SigningKey) -> dict[str, Any]:
        """Put the model that served before the current one back in service (the base model at the bottom)."""
        served = self.served()
        if served.current is None:
            raise ModelStoreError("the base model is in service: nothing to roll back")
        back = served.previous[-1] if served.previous else None
        return self._decide("rolled back", key, Served(back, served.previous[:-1]),
                            candidate=back, previous=served.current)
