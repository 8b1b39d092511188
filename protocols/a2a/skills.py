"""guildnet's convention for calling an agent skill over A2A: a JSON object in, a JSON object out.

The arguments travel as the message's first ``data`` part (``metadata.skill`` names the skill when the agent has
several); the result comes back as one artifact holding the object as ``data`` and as JSON ``text``, so a
client that only reads text still gets it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import JSON, invalid_params
from .model import ROLE_USER, data_part, new_artifact, new_message


def message_text(message: Mapping[str, Any]) -> str:
    return "\n".join(p["text"] for p in message.get("parts", ()) if isinstance(p.get("text"), str))


def message_input(message: Mapping[str, Any]) -> JSON:
    """A skill's arguments: the first ``data`` part holding a JSON object, else ``{"text": <joined text>}``."""
    for part in message.get("parts", ()):
        data = part.get("data")
        if isinstance(data, dict):
            return data
    return {"text": message_text(message)}


def select_skill(message: Mapping[str, Any], skill_ids: Sequence[str]) -> str:
    """``message.metadata.skill`` names the skill; an agent with one skill needs no name."""
    metadata = message.get("metadata") or {}
    wanted = metadata.get("skill") if isinstance(metadata, dict) else None
    if wanted is not None:
        if wanted not in skill_ids:
            raise invalid_params(f"unknown skill {wanted!r}; this agent offers {list(skill_ids)}")
        return str(wanted)
    if len(skill_ids) == 1:
        return skill_ids[0]
    raise invalid_params(f"this agent has several skills {list(skill_ids)}: name one in message.metadata.skill")


def skill_request(arguments: Mapping[str, Any], skill_id: str | None = None, *, context_id: str | None = None,
                  task_id: str | None = None) -> JSON:
    """The user Message that calls a skill with a JSON object (the client side of :func:`message_input`)."""
    return new_message(ROLE_USER, [data_part(dict(arguments))], context_id=context_id, task_id=task_id,
                       metadata={"skill": skill_id} if skill_id else None)


def output_artifact(output: Mapping[str, Any], skill_id: str) -> JSON:
    """A skill's result: one artifact with the JSON object as ``data`` plus the same as ``text``."""
    text = json.dumps(output, separators=(",", ":"), ensure_ascii=False)
    return new_artifact([data_part(dict(output)), {"text": text, "mediaType": "application/json"}],
                        name=f"{skill_id}-result")


def artifact_output(task: Mapping[str, Any]) -> JSON | None:
    """The first JSON-object ``data`` part among a task's artifacts (what :func:`output_artifact` wrote)."""
    for artifact in task.get("artifacts") or ():
        for part in artifact.get("parts", ()):
            if isinstance(part.get("data"), dict):
                return dict(part["data"])
    return None
