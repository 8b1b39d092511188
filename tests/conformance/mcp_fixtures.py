"""Test-mode fixtures for the official MCP conformance suite's server scenarios.

The suite (npm ``@modelcontextprotocol/conformance``) calls tools, prompts and resources by fixed names
(``test_simple_text``, ``test_error_handling``, ``test://static-text``, ...). Two sources provide them:

* :class:`ConformanceAgent`, a real guildnet :class:`Agent`, serves every fixture an agent can express:
  a plain result (``test_simple_text``), a :class:`SkillError` (``test_error_handling``) and progress
  through :attr:`TaskContext.progress` (``test_tool_with_progress``). These go through exactly the code
  path production agents use.
* :func:`fixture_server` is the documented extension for what the ``Agent`` interface deliberately does
  not model, because it is MCP-specific: non-text content blocks (image, audio, embedded resources),
  log notifications, server-to-client sampling and elicitation, multi-round ``InputRequiredResult``,
  a required client capability, ``x-mcp-header`` parameters, list-changed notifications, resources,
  prompts and completion. It is an ``MCPServer`` from the SDK; :func:`guildnet.node.mcp_server.setup_mcp`
  takes its low-level server as ``server=`` and lists the agent tools in front of these.

Nothing here is used outside tests and ``tests/conformance/mcp_conformance_server.py``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from mcp.server import Server, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer, RequestStateSecurity
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp.server.streamable_http import EventCallback, EventMessage, EventStore
from mcp.shared.exceptions import MCPError
from mcp.types import (
    INTERNAL_ERROR,
    MISSING_REQUIRED_CLIENT_CAPABILITY,
    AudioContent,
    CompleteRequestParams,
    CompleteResult,
    Completion,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    EmbeddedResource,
    EmptyResult,
    ImageContent,
    InputRequest,
    InputRequiredResult,
    JSONRPCMessage,
    ListRootsRequest,
    ListRootsResult,
    SamplingMessage,
    SetLevelRequestParams,
    SubscribeRequestParams,
    TextContent,
    TextResourceContents,
    UnsubscribeRequestParams,
)
from pydantic import BaseModel, Field

from guildnet.node.agent import Agent, SkillError, TaskContext
from guildnet.protocols.agentfacts import Skill

PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV_EMPTY = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
_NO_ARGS: dict[str, Any] = {"type": "object", "properties": {}, "additionalProperties": False}
_TEXT_OUT: dict[str, Any] = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}
# Every JSON Schema 2020-12 keyword the suite checks survives tools/list unchanged (SEP-2106).
SCHEMA_2020_12: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {"address": {"$anchor": "addressDef", "type": "object",
                          "properties": {"street": {"type": "string"}, "city": {"type": "string"}}}},
    "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"},
                   "contactMethod": {"type": "string", "enum": ["phone", "email"]},
                   "phone": {"type": "string"}, "email": {"type": "string"}},
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


class ConformanceAgent(Agent):
    """The fixture tools an ordinary agent can provide."""

    def __init__(self) -> None:
        super().__init__("conformance", description="Fixtures for the MCP conformance suite")
        self._skills = [
            Skill(id="test_simple_text", name="Simple text", description="Returns a simple text result",
                  input_schema=_NO_ARGS, output_schema=_TEXT_OUT),
            Skill(id="test_error_handling", name="Error", description="Always fails with a SkillError",
                  input_schema=_NO_ARGS, output_schema=_TEXT_OUT),
            Skill(id="test_tool_with_progress", name="Progress", description="Reports three progress steps",
                  input_schema=_NO_ARGS, output_schema=_TEXT_OUT),
            Skill(id="json_schema_2020_12_tool", name="2020-12 schema",
                  description="Has an input schema using 2020-12 keywords", input_schema=SCHEMA_2020_12,
                  output_schema=_TEXT_OUT),
        ]

    @property
    def skills(self) -> Sequence[Skill]:
        return self._skills

    async def run(self, skill_id: str, arguments: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        if skill_id == "test_error_handling":
            raise SkillError("This tool intentionally returns an error for testing")
        if skill_id == "test_tool_with_progress":
            for step in ("step 1 of 3", "step 2 of 3", "step 3 of 3"):
                await ctx.progress(step)
                await asyncio.sleep(0.02)
            return {"text": "progress reported"}
        if skill_id == "json_schema_2020_12_tool":
            return {"text": "ok"}
        return {"text": "This is a simple text response for testing."}


class _Answer(BaseModel):
    response: str = Field(description="User's response")


class _Defaults(BaseModel):
    name: str = Field(default="John Doe", description="User name")
    age: int = Field(default=30, description="User age")
    score: float = Field(default=95.5, description="User score")
    status: str = Field(default="active", description="User status",
                        json_schema_extra={"enum": ["active", "inactive", "pending"]})
    verified: bool = Field(default=True, description="Verification status")


class _Enums(BaseModel):
    untitledSingle: str = Field(description="Plain enum", json_schema_extra={"enum": ["active", "inactive", "pending"]})
    titledSingle: str = Field(description="Titled enum", json_schema_extra={"oneOf": [
        {"const": "low", "title": "Low Priority"}, {"const": "medium", "title": "Medium Priority"},
        {"const": "high", "title": "High Priority"}]})
    untitledMulti: list[str] = Field(description="Plain multi-select", json_schema_extra={
        "items": {"type": "string", "enum": ["read", "write", "execute"]}})
    titledMulti: list[str] = Field(description="Titled multi-select", json_schema_extra={"items": {"anyOf": [
        {"const": "feature", "title": "New Feature"}, {"const": "bug", "title": "Bug Fix"},
        {"const": "docs", "title": "Documentation"}]}})
    legacyEnum: str = Field(description="Enum with enumNames", json_schema_extra={
        "enum": ["small", "medium", "large"], "enumNames": ["Small Size", "Medium Size", "Large Size"]})


def _schema(*fields: str, kind: str = "string") -> dict[str, Any]:
    return {"type": "object", "properties": {f: {"type": kind} for f in fields}, "required": list(fields)}


def _ask(message: str, schema: dict[str, Any]) -> ElicitRequest:
    return ElicitRequest(params=ElicitRequestFormParams(message=message, requested_schema=schema))


def _sample(text: str, max_tokens: int = 50) -> CreateMessageRequest:
    return CreateMessageRequest(params=CreateMessageRequestParams(
        messages=[SamplingMessage(role="user", content=TextContent(type="text", text=text))], max_tokens=max_tokens))


def _field(result: object, name: str) -> Any:
    return result.content.get(name) if isinstance(result, ElicitResult) and result.content else None


def _add_content_tools(mcp: MCPServer) -> None:
    @mcp.tool()
    def test_image_content() -> list[ImageContent]:
        """Returns image content"""
        return [ImageContent(type="image", data=PNG_1PX, mime_type="image/png")]

    @mcp.tool()
    def test_audio_content() -> list[AudioContent]:
        """Returns audio content"""
        return [AudioContent(type="audio", data=WAV_EMPTY, mime_type="audio/wav")]

    @mcp.tool()
    def test_embedded_resource() -> list[EmbeddedResource]:
        """Returns an embedded resource"""
        return [EmbeddedResource(type="resource", resource=TextResourceContents(
            uri="test://embedded-resource", mime_type="text/plain", text="This is an embedded resource content."))]

    @mcp.tool()
    def test_multiple_content_types() -> list[TextContent | ImageContent | EmbeddedResource]:
        """Returns text, image and resource content"""
        return [TextContent(type="text", text="Multiple content types test:"),
                ImageContent(type="image", data=PNG_1PX, mime_type="image/png"),
                EmbeddedResource(type="resource", resource=TextResourceContents(
                    uri="test://mixed-content-resource", mime_type="application/json",
                    text='{"test": "data", "value": 123}'))]

    @mcp.tool()
    def test_x_mcp_header(region: Annotated[str, Field(description="Mirrored into Mcp-Param-Region",
                                                       json_schema_extra={"x-mcp-header": "Region"})] = "<none>"
                          ) -> str:
        """Echoes a parameter that clients mirror into a header (SEP-2243)"""
        return f"region={region}"


def _add_back_channel_tools(mcp: MCPServer) -> None:
    @mcp.tool()
    async def test_tool_with_logging(ctx: Context) -> str:
        """Emits three log notifications"""
        for text in ("Tool execution started", "Tool processing data", "Tool execution completed"):
            await ctx.log("info", text)
            await asyncio.sleep(0.02)
        return "Tool with logging executed successfully"

    @mcp.tool()
    async def test_sampling(prompt: str, ctx: Context) -> str:
        """Asks the client's model (2025-era sampling/createMessage)"""
        result = await ctx.session.create_message(  # pyright: ignore[reportDeprecated]
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))],
            max_tokens=100, related_request_id=ctx.request_id)
        return f"LLM response: {result.content.text if result.content.type == 'text' else 'No response'}"

    async def elicited(ctx: Context, message: str, schema: type[BaseModel], label: str) -> str:
        result = await ctx.elicit(message=message, schema=schema)
        content = result.data.model_dump_json() if result.action == "accept" else "{}"
        return f"{label}: action={result.action}, content={content}"

    @mcp.tool()
    async def test_elicitation(message: str, ctx: Context) -> str:
        """Asks the user (2025-era elicitation/create)"""
        return await elicited(ctx, message, _Answer, "User response")

    @mcp.tool()
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        """Elicitation whose schema has defaults for every primitive type (SEP-1034)"""
        return await elicited(ctx, "Please provide user information", _Defaults, "Elicitation result")

    @mcp.tool()
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        """Elicitation with every enum schema variant (SEP-1330)"""
        return await elicited(ctx, "Please select values", _Enums, "Elicitation completed")

    @mcp.tool()
    async def test_missing_capability(ctx: Context) -> str:
        """Needs the client's sampling capability; without it, the protocol error -32021"""
        caps = ctx.session.client_capabilities
        if caps is None or caps.sampling is None:
            raise MCPError(code=MISSING_REQUIRED_CLIENT_CAPABILITY,
                           message="This tool requires the client 'sampling' capability",
                           data={"requiredCapabilities": {"sampling": {}}})
        return "Client declared sampling capability; proceeding."

    @mcp.tool()
    async def test_trigger_tool_change(ctx: Context) -> str:
        """Announces a tools list change to subscriptions/listen streams"""
        await ctx.notify_tools_changed()
        return "tool list changed"

    @mcp.tool()
    async def test_trigger_prompt_change(ctx: Context) -> str:
        """Announces a prompts list change to subscriptions/listen streams"""
        await ctx.notify_prompts_changed()
        return "prompt list changed"


class MemoryEventStore(EventStore):
    """2025-era SSE resumption for the ``server-sse-polling`` scenario: events kept in a list."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, JSONRPCMessage | None]] = []

    async def store_event(self, stream_id: str, message: JSONRPCMessage | None) -> str:
        event_id = str(len(self._events) + 1)
        self._events.append((stream_id, event_id, message))
        return event_id

    async def replay_events_after(self, last_event_id: str, send_callback: EventCallback) -> str | None:
        stream = next((sid for sid, eid, _ in self._events if eid == last_event_id), None)
        if stream is None:
            return None
        for sid, eid, message in self._events[int(last_event_id):]:
            if sid == stream and message is not None:
                await send_callback(EventMessage(message, eid))
        return stream


def _add_reconnection_tool(mcp: MCPServer) -> None:
    @mcp.tool()
    async def test_reconnection(ctx: Context) -> str:
        """Closes its SSE stream mid-call; the client resumes with Last-Event-ID (SEP-1699)"""
        await ctx.log("info", "Before disconnect")
        await ctx.close_sse_stream()
        await asyncio.sleep(0.2)
        await ctx.log("info", "After reconnect")
        return "Reconnection test completed"


def _add_input_required_tools(mcp: MCPServer) -> None:
    name_schema = _schema("name")

    @mcp.tool()
    async def test_input_required_result_elicitation(ctx: Context) -> str | InputRequiredResult:
        """One elicitation round (SEP-2322)"""
        responses = ctx.input_responses or {}
        if "user_name" in responses:
            return f"Hello, {_field(responses['user_name'], 'name') or 'stranger'}!"
        return InputRequiredResult(input_requests={"user_name": _ask("What is your name?", name_schema)})

    @mcp.tool()
    async def test_input_required_result_sampling(ctx: Context) -> str | InputRequiredResult:
        """One sampling round (SEP-2322)"""
        answer = (ctx.input_responses or {}).get("capital_question")
        if answer is not None:
            ok = isinstance(answer, CreateMessageResult) and answer.content.type == "text"
            return f"Model said: {answer.content.text if ok else '?'}"  # type: ignore[union-attr]
        return InputRequiredResult(input_requests={"capital_question": _sample("What is the capital of France?", 100)})

    @mcp.tool()
    async def test_input_required_result_list_roots(ctx: Context) -> str | InputRequiredResult:
        """One roots/list round (SEP-2322)"""
        answer = (ctx.input_responses or {}).get("client_roots")
        if answer is not None:
            return f"Client exposed {len(answer.roots) if isinstance(answer, ListRootsResult) else 0} root(s)."
        return InputRequiredResult(input_requests={"client_roots": ListRootsRequest()})

    @mcp.tool()
    async def test_input_required_result_request_state(ctx: Context) -> str | InputRequiredResult:
        """requestState round trip (SEP-2322)"""
        if "confirm" in (ctx.input_responses or {}) and ctx.request_state == "request-state-nonce":
            return "state-ok: confirmation received"
        return InputRequiredResult(input_requests={"confirm": _ask("Please confirm", _schema("ok", kind="boolean"))},
                                   request_state="request-state-nonce")

    @mcp.tool()
    async def test_input_required_result_multiple_inputs(ctx: Context) -> str | InputRequiredResult:
        """Elicitation, sampling and roots requests in one round (SEP-2322)"""
        if {"user_name", "greeting", "client_roots"} <= (ctx.input_responses or {}).keys():
            return "All inputs received."
        return InputRequiredResult(input_requests={
            "user_name": _ask("What is your name?", name_schema), "greeting": _sample("Generate a greeting"),
            "client_roots": ListRootsRequest()}, request_state="multiple-inputs")

    @mcp.tool()
    async def test_input_required_result_multi_round(ctx: Context) -> str | InputRequiredResult:
        """Three rounds with evolving requestState (SEP-2322)"""
        state = json.loads(ctx.request_state) if ctx.request_state else {"round": 0}
        responses = ctx.input_responses or {}
        if state["round"] == 1 and "step1" in responses:
            return InputRequiredResult(
                input_requests={"step2": _ask("Step 2: What is your favorite color?", _schema("color"))},
                request_state=json.dumps({"round": 2, "name": _field(responses["step1"], "name")}))
        if state["round"] == 2 and "step2" in responses:
            return f"{state.get('name')} likes {_field(responses['step2'], 'color')}."
        return InputRequiredResult(input_requests={"step1": _ask("Step 1: What is your name?", name_schema)},
                                   request_state=json.dumps({"round": 1}))

    @mcp.tool()
    async def test_input_required_result_tampered_state(ctx: Context) -> str | InputRequiredResult:
        """The SDK's request-state boundary rejects a tampered requestState (SEP-2322)"""
        if ctx.request_state is None:
            confirm = _ask("Please confirm", _schema("ok", kind="boolean"))
            return InputRequiredResult(input_requests={"confirm": confirm}, request_state="round-1")
        return f"state-ok: {ctx.request_state}"

    @mcp.tool()
    async def test_input_required_result_capabilities(ctx: Context) -> InputRequiredResult:
        """Asks only for inputs the client declared it supports (SEP-2322)"""
        caps = ctx.client_capabilities
        requests: dict[str, InputRequest] = {}
        if caps is None or caps.sampling is not None:
            requests["sample"] = _sample("Say hello")
        if caps is None or caps.elicitation is not None:
            requests["ask"] = _ask("What is your name?", name_schema)
        return InputRequiredResult(input_requests=requests, request_state="capability-gated")


TASK_SUPPORT: dict[str, Literal["optional", "required"]] = {
    "slow_compute": "optional", "failing_job": "required", "protocol_error_job": "optional",
    "confirm_delete": "optional", "multi_input": "optional", "test_tool_with_task": "required"}
"""The tasks-extension fixtures that run as MCP tasks (pass as ``task_support`` to ``setup_mcp``)."""
INPUT_FIRST = ("test_tool_with_task",)
"""Fixtures that gather input by MRTR before their task is created (``input_first`` of ``setup_mcp``)."""


def _add_task_tools(mcp: MCPServer) -> None:
    """The fixtures the tasks-extension scenarios (SEP-2663) call; which run as tasks is :data:`TASK_SUPPORT`."""
    confirm = _schema("confirm", kind="boolean")

    @mcp.tool()
    def greet(name: str) -> str:
        """Sync only: greets"""
        return f"Hello, {name}!"

    @mcp.tool()
    async def slow_compute(seconds: float, label: str = "") -> str:
        """Sleeps ``seconds``, then answers (a task when the client has the tasks extension)"""
        await asyncio.sleep(seconds)
        return f"computed {label} after {seconds:g} s"

    @mcp.tool()
    async def failing_job() -> str:
        """Always ends in a tool error (a task only)"""
        await asyncio.sleep(0.2)
        raise ToolError("failing_job always fails")

    @mcp.tool()
    async def protocol_error_job() -> str:
        """Always ends in a protocol error"""
        raise MCPError(INTERNAL_ERROR, "protocol_error_job always breaks")

    @mcp.tool()
    async def confirm_delete(filename: str, ctx: Context) -> str | InputRequiredResult:
        """Asks for confirmation (one elicitation), then deletes nothing"""
        answer = (ctx.input_responses or {}).get("confirm")
        if answer is None:
            return InputRequiredResult(input_requests={"confirm": _ask(f"Delete {filename}?", confirm)})
        return f"{filename}: {'deleted' if _field(answer, 'confirm') else 'kept'}"

    @mcp.tool()
    async def multi_input(ctx: Context) -> str | InputRequiredResult:
        """Asks two questions at once"""
        answers = ctx.input_responses or {}
        if {"first", "second"} <= answers.keys():
            return f"{_field(answers['first'], 'name')} and {_field(answers['second'], 'name')}"
        return InputRequiredResult(input_requests={"first": _ask("First name?", _schema("name")),
                                                   "second": _ask("Second name?", _schema("name"))})

    @mcp.tool()
    async def test_tool_with_task(ctx: Context) -> str | InputRequiredResult:
        """Asks for a name by MRTR, then runs as a task (a task only)"""
        answer = (ctx.input_responses or {}).get("user_name")
        if answer is None:
            return InputRequiredResult(input_requests={"user_name": _ask("What is your name?", _schema("name"))})
        await asyncio.sleep(0.1)
        return f"Hello, {_field(answer, 'name')}!"


def _add_resources_and_prompts(mcp: MCPServer) -> None:
    @mcp.resource("test://static-text")
    def static_text() -> str:
        """A static text resource"""
        return "This is the content of the static text resource."

    @mcp.resource("test://static-binary")
    def static_binary() -> bytes:
        """A static binary resource (a PNG)"""
        return base64.b64decode(PNG_1PX)

    @mcp.resource("test://template/{id}/data")
    def template(id: str) -> str:
        """A resource template with one parameter"""
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    @mcp.resource("test://watched-resource")
    def watched() -> str:
        """A resource clients may subscribe to"""
        return "Watched resource content"

    @mcp.prompt()
    def test_simple_prompt() -> list[UserMessage]:
        """A prompt without arguments"""
        return [UserMessage(role="user", content=TextContent(type="text", text="This is a simple prompt for testing."))]

    @mcp.prompt()
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[UserMessage]:
        """A prompt with two required arguments"""
        text = f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
        return [UserMessage(role="user", content=TextContent(type="text", text=text))]

    @mcp.prompt()
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:
        """A prompt carrying an embedded resource"""
        resource = TextResourceContents(uri=resourceUri, mime_type="text/plain",
                                        text="Embedded resource content for testing.")
        return [UserMessage(role="user", content=EmbeddedResource(type="resource", resource=resource)),
                UserMessage(role="user", content=TextContent(type="text", text="Please process the resource above."))]

    @mcp.prompt()
    def test_prompt_with_image() -> list[UserMessage]:
        """A prompt carrying an image"""
        return [UserMessage(role="user", content=ImageContent(type="image", data=PNG_1PX, mime_type="image/png")),
                UserMessage(role="user", content=TextContent(type="text", text="Please analyze the image above."))]

    @mcp.prompt()
    async def test_input_required_result_prompt(ctx: Context) -> list[UserMessage] | InputRequiredResult:
        """prompts/get that needs client input first (SEP-2322)"""
        answer = (ctx.input_responses or {}).get("user_context")
        if answer is not None:
            text = f"Use the following context: {_field(answer, 'context') or '?'}"
            return [UserMessage(role="user", content=TextContent(type="text", text=text))]
        return InputRequiredResult(input_requests={"user_context": _ask("What context?", _schema("context"))})



async def _complete(ctx: ServerRequestContext[Any], params: CompleteRequestParams) -> CompleteResult:
    """completion/complete: a valid, empty completion (what the scenario checks)."""
    return CompleteResult(completion=Completion(values=[], total=0, has_more=False))


async def _accept(ctx: ServerRequestContext[Any], params: Any) -> EmptyResult:
    """logging/setLevel and resources/(un)subscribe: accepted; the fixtures keep no per-client state."""
    return EmptyResult()


def fixture_server() -> Server[Any]:
    """The low-level server with every fixture an agent cannot express (pass it to ``setup_mcp``)."""
    mcp: MCPServer = MCPServer(name="guildnet-conformance", version="0.1.0",
                               request_state_security=RequestStateSecurity(keys=[secrets.token_bytes(32)]))
    _add_content_tools(mcp)
    _add_back_channel_tools(mcp)
    _add_input_required_tools(mcp)
    _add_reconnection_tool(mcp)
    _add_task_tools(mcp)
    _add_resources_and_prompts(mcp)
    # MCPServer has no public hook for these methods nor for its low-level server (as in the
    # SDK's own everything-server); they exist only for the 2025-era scenarios.
    low: Server[Any] = mcp._lowlevel_server
    low.add_request_handler("completion/complete", CompleteRequestParams, _complete)
    low.add_request_handler("logging/setLevel", SetLevelRequestParams, _accept)
    low.add_request_handler("resources/subscribe", SubscribeRequestParams, _accept)
    low.add_request_handler("resources/unsubscribe", UnsubscribeRequestParams, _accept)
    return low
