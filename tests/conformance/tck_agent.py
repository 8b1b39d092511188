"""A test-mode agent for the A2A TCK (a2aproject/a2a-tck, branch 1.0-dev).

The TCK drives behaviour in-band: the ``messageId`` prefix of each message names a scenario from its
``scenarios/*.feature`` files (complete, artifacts of each part kind, a message-only reply, input required,
rejection, streaming lifecycles, chunked artifacts, a long task for resubscription). This executor
implements those scenarios on the node's own A2A service, through the same :class:`TaskRun` hook any agent
uses, so the TCK exercises the real server and task store, not a stand-in.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

from guildnet.node.a2a.executor import Invocation
from guildnet.node.a2a.tasks import TaskRun
from guildnet.node.agent import Agent, TaskContext
from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON
from guildnet.protocols.agentfacts import Skill

#: The TCK's streaming timeout is 2 s; its resubscribe scenario runs for twice that.
LONG_TASK_SECONDS = 4.0

_FILE_PART: JSON = {"raw": base64.b64encode(b"tck").decode(), "mediaType": "text/plain", "filename": "output.txt"}
_URL_PART: JSON = {"url": "https://example.com/output.txt", "mediaType": "text/plain", "filename": "output.txt"}


def _text(text: str) -> list[JSON]:
    return [a2a.text_part(text)]


async def _stream(run: TaskRun, parts: list[JSON]) -> None:
    await run.working()
    await run.artifact(parts)
    await run.finish(a2a.COMPLETED)


async def _artifact_then_complete(run: TaskRun, parts: list[JSON]) -> None:
    await run.artifact(parts)
    await run.finish(a2a.COMPLETED)


async def _chunked(run: TaskRun) -> None:
    await run.working()
    artifact_id = a2a.new_id()
    await run.artifact(_text("chunk-1 "), artifact_id=artifact_id)
    await run.artifact(_text("chunk-2"), artifact_id=artifact_id, append=True, last_chunk=True)
    await run.finish(a2a.COMPLETED)


async def _long(run: TaskRun) -> None:
    await run.working()
    await asyncio.sleep(LONG_TASK_SECONDS)
    await run.finish(a2a.COMPLETED)


Scenario = Callable[[TaskRun], Awaitable[None]]

#: Longest prefixes first: "tck-artifact-file-url" must win over "tck-artifact-file".
SCENARIOS: list[tuple[str, Scenario]] = [
    ("tck-stream-artifact-chunked", _chunked),
    ("tck-stream-artifact-text", lambda run: _stream(run, _text("Streamed text content"))),
    ("tck-stream-artifact-file", lambda run: _stream(run, [dict(_FILE_PART)])),
    ("tck-stream-ordering-001", lambda run: _stream(run, _text("Ordered output"))),
    ("tck-stream-001", lambda run: _stream(run, _text("Stream hello from TCK"))),
    ("tck-stream-002", lambda run: run.finish(a2a.COMPLETED)),
    ("tck-stream-003", lambda run: _stream(run, _text("Stream task lifecycle"))),
    ("test-resubscribe-message-id", _long),
    ("tck-artifact-file-url", lambda run: _artifact_then_complete(run, [dict(_URL_PART)])),
    ("tck-artifact-file", lambda run: _artifact_then_complete(run, [dict(_FILE_PART)])),
    ("tck-artifact-text", lambda run: _artifact_then_complete(run, _text("Generated text content"))),
    ("tck-artifact-data", lambda run: _artifact_then_complete(run, [a2a.data_part({"key": "value", "count": 42})])),
    ("tck-message-response", lambda run: run.reply(_text("Direct message response"))),
    ("tck-input-required", lambda run: run.finish(a2a.INPUT_REQUIRED)),
    ("tck-reject-task", lambda run: run.finish(a2a.REJECTED, "rejected")),
    ("tck-complete-task", lambda run: run.finish(a2a.COMPLETED, "Hello from TCK")),
]


class TckExecutor:
    """Executor that plays the TCK scenario named by the message id's prefix."""

    def accept(self, message: JSON, task: JSON | None) -> Invocation:
        return Invocation("tck", {})

    async def execute(self, invocation: Invocation, run: TaskRun) -> None:
        message_id = str(run.message.get("messageId", ""))
        for prefix, scenario in SCENARIOS:
            if message_id.startswith(prefix):
                await scenario(run)
                return
        await run.finish(a2a.COMPLETED, f"Unhandled messageId prefix: {message_id}")


class TckAgent(Agent):
    """The agent the TCK server publishes (its card); the work is done by :class:`TckExecutor`."""

    def __init__(self, name: str = "tck") -> None:
        super().__init__(name, description="Plays the A2A TCK's messageId scenarios")

    @property
    def skills(self) -> list[Skill]:
        return [Skill(id="tck", name="TCK Conformance", description="Handles TCK conformance test messages",
                      tags=["tck"])]

    async def run(self, skill_id: str, arguments: dict[str, object], ctx: TaskContext) -> dict[str, object]:
        return {"text": str(arguments.get("text", ""))}
