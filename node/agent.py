"""Agents: a name, skills with JSON Schemas, and an async handler per skill.

Everything a node serves (A2A peer, MCP tools, AgentFacts in the registry) is derived from this one
description, so the three views can never disagree about what an agent does.

``Agent`` is the interface; ``FunctionAgent`` wraps Python callables with pydantic input/output models.
Model-backed agents (``SLMAgent``) implement the same interface.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

from jsonschema.protocols import Validator
from pydantic import BaseModel, ValidationError

from guildnet.protocols import schema_check
from guildnet.protocols.agentfacts import ModelFacts, Skill

ProgressCallback = Callable[[str], Awaitable[None]]


async def _no_progress(_message: str) -> None:
    return None


@dataclass(slots=True)
class TaskContext:
    """What a handler may know about the call it serves."""

    task_id: str
    skill_id: str
    traceparent: str | None = None
    progress: ProgressCallback = _no_progress
    metadata: dict[str, Any] = field(default_factory=dict)
    """What the caller sent with the request: its word, never the node's."""
    caller: str | None = None
    """The calling agent's id, as its signed request proved it (None: an anonymous caller)."""
    annotations: dict[str, Any] = field(default_factory=dict)
    """What the node itself notes about the call (which model answered, why it escalated): filled by the node's
    agents, read by the process log; the caller's metadata never lands here."""
    input_checked: bool = False
    """The node already checked the input against the skill's input schema (A2A does, before it makes a task, to
    refuse bad input without one): :meth:`Agent.call` does not check it a second time."""


class SkillError(Exception):
    """A failure the handler wants its caller to see (A2A: failed task message; MCP: tool error text)."""


class InvalidInput(ValueError):
    """The input does not match the skill's input schema; nothing is run and no task is created."""


class InvalidOutput(RuntimeError):
    """The handler's output does not match the skill's output schema."""


class Agent(ABC):
    """An agent: a name, one or more skills, and :meth:`run`.

    Subclasses implement :meth:`run`; :meth:`call` adds schema validation around it so every transport
    refuses bad input the same way and never returns output that breaks the declared schema.
    """

    def __init__(self, name: str, *, description: str = "", model: ModelFacts | None = None) -> None:
        self.name = name
        self.description = description
        self.model = model
        self._validators: dict[str, tuple[Validator, Validator]] = {}

    @property
    @abstractmethod
    def skills(self) -> Sequence[Skill]:
        """The skills this agent offers, with their JSON Schemas."""

    @abstractmethod
    async def run(self, skill_id: str, arguments: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        """Do the work of ``skill_id``; return a JSON object matching its output schema."""

    def skill(self, skill_id: str) -> Skill:
        for skill in self.skills:
            if skill.id == skill_id:
                return skill
        raise KeyError(skill_id)

    def _validators_for(self, skill_id: str) -> tuple[Validator, Validator]:
        if skill_id not in self._validators:
            skill = self.skill(skill_id)
            self._validators[skill_id] = (schema_check.checker(skill.input_schema),
                                          schema_check.checker(skill.output_schema))
        return self._validators[skill_id]

    def check_input(self, skill_id: str, arguments: Any) -> None:
        """Raise :class:`InvalidInput` (or ``KeyError`` for an unknown skill) before any work starts."""
        input_validator, _ = self._validators_for(skill_id)
        problem = schema_check.first_error(input_validator, arguments)
        if problem is not None:
            raise InvalidInput(f"input does not match skill {skill_id!r}: {problem}")

    def check_output(self, skill_id: str, output: Any) -> None:
        _, output_validator = self._validators_for(skill_id)
        problem = schema_check.first_error(output_validator, output)
        if problem is not None:
            raise InvalidOutput(f"output of skill {skill_id!r} does not match its schema: {problem}")

    async def call(self, skill_id: str, arguments: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        """Validate input (unless ``ctx.input_checked``), run, validate output."""
        if not ctx.input_checked:
            self.check_input(skill_id, arguments)
        output = await self.run(skill_id, arguments, ctx)
        self.check_output(skill_id, output)
        return output


M = TypeVar("M", bound=BaseModel)
Handler = Callable[..., Awaitable[BaseModel] | BaseModel]


@dataclass(slots=True)
class _FunctionSkill:
    skill: Skill
    handler: Handler
    input_model: type[BaseModel]
    wants_context: bool


class FunctionAgent(Agent):
    """An agent whose skills are Python callables taking and returning pydantic models.

    >>> from pydantic import BaseModel
    >>> class EchoIn(BaseModel):
    ...     text: str
    >>> class EchoOut(BaseModel):
    ...     text: str
    >>> agent = FunctionAgent("echo", description="Echoes text")
    >>> @agent.skill_handler(id="echo", name="Echo", description="Returns its text unchanged", tags=["text"])
    ... async def echo(data: EchoIn) -> EchoOut:
    ...     return EchoOut(text=data.text)
    >>> [skill.id for skill in agent.skills]
    ['echo']

    A handler may take a second parameter annotated :class:`TaskContext`. Sync handlers are allowed. A price is
    ``model=ModelFacts(family=..., cost_per_1k_input=..., cost_per_1k_output=...)``; docs/agents.md has the rest.
    """

    def __init__(self, name: str, *, description: str = "", model: ModelFacts | None = None) -> None:
        super().__init__(name, description=description, model=model)
        self._skills: dict[str, _FunctionSkill] = {}

    @property
    def skills(self) -> Sequence[Skill]:
        return [entry.skill for entry in self._skills.values()]

    def skill(self, skill_id: str) -> Skill:
        return self._skills[skill_id].skill

    def add_skill(self, handler: Handler, *, id: str, name: str | None = None, description: str | None = None,
                  tags: Sequence[str] = ()) -> Skill:
        hints = get_type_hints(handler)
        params = list(inspect.signature(handler).parameters.values())
        if not params:
            raise TypeError(f"skill handler {handler.__name__} needs an input model parameter")
        input_model = hints.get(params[0].name)
        output_model = hints.get("return")
        if not (isinstance(input_model, type) and issubclass(input_model, BaseModel)):
            raise TypeError(f"first parameter of {handler.__name__} must be annotated with a pydantic model")
        if not (isinstance(output_model, type) and issubclass(output_model, BaseModel)):
            raise TypeError(f"{handler.__name__} must declare a pydantic model as its return type")
        wants_context = len(params) > 1 and hints.get(params[1].name) is TaskContext
        skill = Skill(
            id=id,
            name=name or id,
            description=description if description is not None else inspect.getdoc(handler) or "",
            tags=list(tags),
            input_schema=input_model.model_json_schema(),
            output_schema=output_model.model_json_schema(mode="serialization"),
        )
        if id in self._skills:
            raise ValueError(f"agent {self.name!r} already has a skill {id!r}")
        self._skills[id] = _FunctionSkill(skill, handler, input_model, wants_context)
        self._validators.pop(id, None)
        return skill

    def skill_handler(self, *, id: str, name: str | None = None, description: str | None = None,
                      tags: Sequence[str] = ()) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_skill`."""

        def register(handler: Handler) -> Handler:
            self.add_skill(handler, id=id, name=name, description=description, tags=tags)
            return handler

        return register

    async def run(self, skill_id: str, arguments: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        entry = self._skills[skill_id]
        try:
            parsed = entry.input_model.model_validate(arguments)
        except ValidationError as exc:
            raise InvalidInput(str(exc)) from exc
        result = entry.handler(parsed, ctx) if entry.wants_context else entry.handler(parsed)
        if inspect.isawaitable(result):
            result = await result
        if not isinstance(result, BaseModel):
            raise InvalidOutput(f"skill {skill_id!r} returned {type(result).__name__}, not a pydantic model")
        return result.model_dump(mode="json")
