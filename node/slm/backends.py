"""Chat backends: the one interface every model sits behind, and its OpenAI-compatible implementation.

Every server worth supporting (vLLM, llama.cpp's server and xllamacpp, Ollama ``/v1``, LM Studio, TGI,
hosted APIs) speaks OpenAI Chat Completions, so :class:`OpenAIChatBackend` is the production path and the
embedded SmolLM2 goes through it too. Servers differ in which extras they accept; :class:`Capabilities`
says which to send instead of guessing (llama-cpp-python's server answers HTTP 500 to an OpenAI
``json_schema`` response format, for example, but accepts ``json_object`` with a ``schema``).

:class:`ScriptedBackend` answers from a list, for tests of code that merely *uses* a model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import aiohttp

from guildnet.protocols.agentfacts import ModelFacts

log = logging.getLogger(__name__)

ErrorKind = Literal["timeout", "connection", "http", "response"]
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Price:
    """Price per 1,000 tokens, as providers quote it (usually per 1M: divide by 1,000)."""

    input_per_1k: float = 0.0
    output_per_1k: float = 0.0
    currency: str = "USD"

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return tokens_in / 1000.0 * self.input_per_1k + tokens_out / 1000.0 * self.output_per_1k


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the server accepts. ``structured_output``: ``json_schema`` (OpenAI, vLLM, llama.cpp, LM
    Studio), ``json_object`` (``{"type": "json_object", "schema": ...}``, llama-cpp-python) or ``none``
    (the schema then goes into the prompt and is only checked afterwards)."""

    structured_output: Literal["json_schema", "json_object", "none"] = "json_schema"
    logprobs: bool = True
    tools: bool = True


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: Sequence[Mapping[str, Any]]
    schema: Mapping[str, Any] | None = None
    schema_name: str = "output"
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    logprobs: bool = False
    top_logprobs: int = 0
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ChatResult:
    content: str | None
    model: str
    finish_reason: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    tokens_in: int = 0
    tokens_out: int = 0
    token_logprobs: list[float] | None = None
    cost: float = 0.0
    latency_ms: float = 0.0

    @property
    def mean_logprob(self) -> float | None:
        """Mean log-probability of the generated tokens, ``None`` if the server gave none."""
        if not self.token_logprobs:
            return None
        return math.fsum(self.token_logprobs) / len(self.token_logprobs)


class BackendError(Exception):
    """The model gave no usable answer: ``kind`` is timeout, connection, http or response (malformed)."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None, latency_ms: float = 0.0) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.status = status
        self.latency_ms = latency_ms


@runtime_checkable
class ChatBackend(Protocol):
    """A chat model: ``model`` names it, ``price`` prices it, ``chat`` calls it."""

    model: str
    price: Price
    capabilities: Capabilities

    def model_facts(self) -> ModelFacts: ...

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    async def aclose(self) -> None: ...


def _body(model: str, request: ChatRequest, capabilities: Capabilities) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    if request.schema is not None:
        if capabilities.structured_output == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": request.schema_name, "schema": dict(request.schema), "strict": True}}
        elif capabilities.structured_output == "json_object":
            body["response_format"] = {"type": "json_object", "schema": dict(request.schema)}
    if request.tools and capabilities.tools:
        body["tools"] = [dict(t) for t in request.tools]
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
    if request.logprobs and capabilities.logprobs:
        body["logprobs"] = True
        if request.top_logprobs:
            body["top_logprobs"] = request.top_logprobs
    return body


def parse_completion(data: Any, *, model: str, price: Price, latency_ms: float) -> ChatResult:
    """A :class:`ChatResult` from an OpenAI chat-completion JSON body (raises :class:`BackendError`)."""
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        logprobs = choice.get("logprobs") or {}
        token_logprobs = [float(t["logprob"]) for t in logprobs.get("content") or []] or None
        usage = data.get("usage") or {}
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        content = message.get("content")
        tool_calls = [dict(t) for t in message.get("tool_calls") or []]
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise BackendError("response", f"malformed chat completion: {exc!r}", latency_ms=latency_ms) from exc
    if content is not None and not isinstance(content, str):
        raise BackendError("response", "message content is not a string", latency_ms=latency_ms)
    return ChatResult(
        content=content, model=str(data.get("model") or model), finish_reason=choice.get("finish_reason"),
        tool_calls=tool_calls, tokens_in=tokens_in, tokens_out=tokens_out, token_logprobs=token_logprobs,
        cost=price.cost(tokens_in, tokens_out), latency_ms=latency_ms,
    )


class OpenAIChatBackend:
    """Any ``/v1/chat/completions`` endpoint over aiohttp.

    ``timeout`` bounds each attempt; connection errors, 429 and 5xx are retried ``retries`` times with
    exponential backoff; a timeout is not retried (the caller's escalation is the better use of the time).
    The API key is sent as a bearer token and appears in no repr, log line or error.
    """

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None, timeout: float = 30.0,
                 retries: int = 2, backoff: float = 0.25, price: Price | None = None,
                 capabilities: Capabilities | None = None, family: str | None = None,
                 parameters: int | None = None) -> None:
        if retries < 0 or timeout <= 0:
            raise ValueError("retries must be >= 0 and timeout > 0")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.price = price or Price()
        self.capabilities = capabilities or Capabilities()
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.family = family
        self.parameters = parameters
        self.__api_key = api_key
        self._session: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        key = "set" if self.__api_key else "none"
        return f"OpenAIChatBackend(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    def model_facts(self) -> ModelFacts:
        return ModelFacts(family=self.family or self.model, parameters=self.parameters,
                          cost_per_1k_input=self.price.input_per_1k, cost_per_1k_output=self.price.output_per_1k,
                          currency=self.price.currency)

    async def __aenter__(self) -> OpenAIChatBackend:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self.__api_key:
            headers["Authorization"] = f"Bearer {self.__api_key}"
        return headers

    async def chat(self, request: ChatRequest) -> ChatResult:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        url = f"{self.base_url}/chat/completions"
        body = _body(self.model, request, self.capabilities)
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        start = time.perf_counter()
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                async with self._session.post(url, json=body, headers=self._headers(), timeout=timeout) as resp:
                    text = await resp.text()
                    status = resp.status
            except TimeoutError as exc:
                raise BackendError("timeout", f"{self.model}: no answer within {self.timeout:g} s",
                                   latency_ms=_since(start)) from exc
            except aiohttp.ClientError as exc:
                if last:
                    raise BackendError("connection", f"{self.model}: {type(exc).__name__}",
                                       latency_ms=_since(start)) from exc
                log.warning("model %s: %s, retrying (%d/%d)", self.model, type(exc).__name__, attempt + 1,
                            self.retries)
            else:
                if status < 400:
                    try:
                        data = json.loads(text)
                    except ValueError as exc:
                        raise BackendError("response", f"{self.model}: body is not JSON",
                                           latency_ms=_since(start)) from exc
                    return parse_completion(data, model=self.model, price=self.price, latency_ms=_since(start))
                if last or status not in RETRY_STATUSES:
                    raise BackendError("http", f"{self.model}: HTTP {status}: {text[:200]}", status=status,
                                       latency_ms=_since(start))
                log.warning("model %s: HTTP %d, retrying (%d/%d)", self.model, status, attempt + 1, self.retries)
            await asyncio.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable: the last attempt returns or raises")


def _since(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


ScriptedReply = str | Mapping[str, Any] | BackendError


class ScriptedBackend:
    """Answers with the next scripted reply: a string (raw content), a JSON object (serialised) or a
    :class:`BackendError` (raised). Records every request. For tests of code around a model; the
    backend code itself is tested against HTTP servers."""

    def __init__(self, replies: Iterable[ScriptedReply], *, model: str = "scripted", price: Price | None = None,
                 token_logprob: float | None = None, tokens_in: int = 10) -> None:
        self._replies = list(replies)
        self.model = model
        self.price = price or Price()
        self.capabilities = Capabilities(logprobs=token_logprob is not None)
        self.token_logprob = token_logprob
        self.tokens_in = tokens_in
        self.requests: list[ChatRequest] = []

    def model_facts(self) -> ModelFacts:
        return ModelFacts(family=self.model, cost_per_1k_input=self.price.input_per_1k,
                          cost_per_1k_output=self.price.output_per_1k, currency=self.price.currency)

    async def chat(self, request: ChatRequest) -> ChatResult:
        self.requests.append(request)
        if not self._replies:
            raise BackendError("response", f"{self.model}: script exhausted")
        reply = self._replies.pop(0)
        if isinstance(reply, BackendError):
            raise reply
        content = reply if isinstance(reply, str) else json.dumps(reply)
        tokens_out = max(1, len(content) // 4)
        logprobs = [self.token_logprob] * tokens_out if self.token_logprob is not None else None
        return ChatResult(content=content, model=self.model, finish_reason="stop", tokens_in=self.tokens_in,
                          tokens_out=tokens_out, token_logprobs=logprobs,
                          cost=self.price.cost(self.tokens_in, tokens_out))

    async def aclose(self) -> None:
        return None
