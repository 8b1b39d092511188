"""What runs behind an A2A task: an :class:`Executor` accepts a message, then executes it, reporting through
a :class:`~guildnet.node.a2a.tasks.TaskRun`. The node's default runs an agent's skill (:class:`SkillExecutor`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

from guildnet.protocols import a2a, receipts
from guildnet.protocols.a2a import JSON
from guildnet.protocols.canonical import content_hash

from ..agent import Agent, InvalidInput, InvalidOutput, SkillError, TaskContext
from ..identity import Signer

if TYPE_CHECKING:
    from .tasks import TaskRun

log = logging.getLogger(__name__)

RECEIPT_KEY = "guildnet.receipt"
"""``task.metadata`` key of the callee's signed claim about the task (the first half of a receipt)."""


@dataclass(frozen=True, slots=True)
class Invocation:
    """What an executor accepted: the skill to run and its (already validated) arguments."""

    skill_id: str | None
    arguments: JSON = field(default_factory=dict)


class Executor(Protocol):
    """Turns accepted messages into task events. The node's default is :class:`SkillExecutor`."""

    def accept(self, message: JSON, task: JSON | None) -> Invocation:
        """Check the message (``task`` is the task it continues, if any); raise :class:`A2AError` to refuse."""
        ...

    async def execute(self, invocation: Invocation, run: TaskRun) -> None:
        """Do the work, reporting through ``run``. Returning without settling completes the task."""
        ...


class SkillExecutor:
    """Runs an :class:`Agent` skill: input from the message's first JSON ``data`` part (else its text),
    output as one artifact with a ``data`` part and a ``text`` part.

    With the agent's identity, a task of an authenticated caller (its signed request proved which agent it is)
    ends with a claim the callee signed with its key in force (task ids, parties, skill, SHA-256 of canonical
    input and output, times, status) in ``task.metadata["guildnet.receipt"]``, for the caller to countersign.
    Nothing the caller merely says (in its metadata) is named in a claim.
    """

    def __init__(self, agent: Agent, identity: Signer | None = None) -> None:
        self.agent = agent
        self.identity = identity
        self._skill_ids = [s.id for s in agent.skills]

    def accept(self, message: JSON, task: JSON | None) -> Invocation:
        skill_id = a2a.select_skill(message, self._skill_ids)
        arguments = a2a.message_input(message)
        try:
            self.agent.check_input(skill_id, arguments)
        except InvalidInput as exc:
            raise a2a.invalid_params(str(exc)) from exc
        return Invocation(skill_id, arguments)

    async def execute(self, invocation: Invocation, run: TaskRun) -> None:
        skill_id = invocation.skill_id or self._skill_ids[0]
        metadata = dict(run.message.get("metadata") or {})
        traceparent = metadata.get("traceparent")
        ctx = TaskContext(task_id=run.task_id, skill_id=skill_id, progress=run.working, metadata=metadata,
                          traceparent=traceparent if isinstance(traceparent, str) else None, caller=run.caller,
                          input_checked=True)  # accept() checked it
        started = int(time.time() * 1000)
        try:
            # call(), not run(): wrappers such as the node's process-data recorder hook in there
            output = await self.agent.call(skill_id, invocation.arguments, ctx)
        except (SkillError, InvalidInput) as exc:
            await self._sign_receipt(run, skill_id, invocation.arguments, None, started, "failed")
            await run.finish(a2a.FAILED, str(exc))
            return
        except InvalidOutput as exc:
            log.warning("agent %s: %s", self.agent.name, exc)
            await self._sign_receipt(run, skill_id, invocation.arguments, None, started, "failed")
            await run.finish(a2a.FAILED, "the agent produced output that does not match its schema")
            return
        except a2a.A2AError:
            raise  # a protocol answer the agent chose: the task machinery reports it
        except Exception as exc:  # a bug in the skill: the caller gets a signed failure, never the traceback
            log.exception("agent %s: skill %s failed in task %s", self.agent.name, skill_id, run.task_id)
            await self._sign_receipt(run, skill_id, invocation.arguments, None, started, "failed")
            await run.finish(a2a.FAILED, f"internal error ({type(exc).__name__})")
            return
        await run.artifact(a2a.output_artifact(output, skill_id)["parts"], name=f"{skill_id}-result")
        await self._sign_receipt(run, skill_id, invocation.arguments, output, started, "completed")
        await run.finish(a2a.COMPLETED)

    async def _sign_receipt(self, run: TaskRun, skill_id: str, arguments: Any, output: Any, started: int,
                            status: Literal["completed", "failed"]) -> None:
        caller = run.caller
        if self.identity is None or caller is None or caller == self.identity.id:
            return
        claim = receipts.TaskClaim(task_id=run.task_id, caller=caller, callee=self.identity.id, skill=skill_id,
                                   input_sha256=content_hash(arguments), output_sha256=content_hash(output),
                                   started_at=started, ended_at=max(started, int(time.time() * 1000)),
                                   status=status)
        await run.annotate(RECEIPT_KEY, receipts.callee_sign(claim, self.identity.key))
