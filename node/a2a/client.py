"""An async A2A 1.0 client (JSON-RPC and HTTP+JSON bindings) for delegation, on aiohttp.

Given a URL, it speaks JSON-RPC there. Given a peer's card, it picks among the interfaces the card offers in a
binding it speaks: each one once (in the card's order), then the one with the lowest measured round trip
(an exponentially weighted average per interface URL), so a peer that serves both is called on its faster one.
A caller that does not want to hold a stream open for a long task passes ``push`` (a
TaskPushNotificationConfig: the webhook URL and its secret) to :meth:`A2AClient.send_message` with
``return_immediately`` and hears of the result at its webhook.

It speaks the wire a2a-sdk 1.3 speaks (``A2A-Version: 1.0`` on every request, ProtoJSON bodies, SSE streams
whose ``data:`` lines are JSON-RPC responses), so it works against this node and against servers built with
the official SDK. Results are plain JSON values in ProtoJSON shape (see :mod:`guildnet.protocols.a2a`).

Errors: a JSON-RPC error from the peer raises :class:`~guildnet.protocols.a2a.A2AError` with the peer's code;
a transport failure or a reply that is not A2A raises :class:`A2AClientError`.

The peer is another organisation's server, so nothing it sends is trusted to be small or sane: a reply larger
than ``max_response_bytes`` (or an SSE event larger than it) is refused without being read further, JSON is
parsed with a nesting bound, and redirects are never followed (a 3xx would make the client send the task, and
the caller's signature, to a third host). With a ``signer``, every request carries the calling agent's proof
(:mod:`guildnet.protocols.callerauth`): ``Authorization: Bearer <token>`` bound to this method, URL and body.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp

from guildnet.protocols import a2a, bounded_json
from guildnet.protocols.a2a import JSON, rest
from guildnet.protocols.callerauth import sign_call

from ..identity import Signer

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Default cap on one reply (or one streamed event) from a peer: a task result, not a download."""

CARD_PATH = "/.well-known/agent-card.json"


class A2AClientError(Exception):
    """The peer could not be reached, or its reply is not an A2A JSON-RPC response."""


CLIENT_BINDINGS = (a2a.BINDING_JSONRPC, a2a.BINDING_HTTP_JSON)
"""The bindings this client speaks (gRPC needs generated stubs and is left to a2a-sdk's client)."""
_SMOOTHING = 0.3


def interfaces(card: Mapping[str, Any], bindings: tuple[str, ...] = CLIENT_BINDINGS) -> list[tuple[str, str]]:
    """``(binding, url)`` of the card's A2A 1.0 interfaces in ``bindings``, in the card's order."""
    found = []
    for interface in card.get("supportedInterfaces") or ():
        if (isinstance(interface, dict) and interface.get("protocolBinding") in bindings
                and isinstance(interface.get("url"), str)
                and str(interface.get("protocolVersion") or a2a.PROTOCOL_VERSION).startswith(a2a.PROTOCOL_VERSION)):
            found.append((str(interface["protocolBinding"]), str(interface["url"])))
    return found


class A2AClient:
    """One client for many peers; pass an endpoint URL (or a resolved card) to each call.

    Give it your own :class:`aiohttp.ClientSession` to share connections, or let it own one (then use it
    as an async context manager or call :meth:`close`).
    """

    def __init__(self, session: aiohttp.ClientSession | None = None, *, timeout: float = 60.0,
                 signer: Signer | None = None, max_response_bytes: int = MAX_RESPONSE_BYTES,
                 bindings: tuple[str, ...] = CLIENT_BINDINGS) -> None:
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._ids = 0
        self.signer = signer
        self.max_response_bytes = max_response_bytes
        self.bindings = bindings
        self.round_trips: dict[str, float] = {}
        """Seconds per unary call, smoothed, by interface URL: what :meth:`pick` prefers the fastest by."""

    async def __aenter__(self) -> A2AClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    # ---- discovery -----------------------------------------------------------------------------------------
    async def resolve_card(self, url: str, *, expected_did: str | None = None) -> JSON:
        """Fetch an agent card from a base URL (or the card's own URL); verify it when ``expected_did`` is set.

        With ``expected_did`` the card must carry a valid signature by that did:key, else
        :class:`~guildnet.protocols.a2a.CardSignatureError` is raised.
        """
        card_url = url if url.endswith(".json") else url.rstrip("/") + CARD_PATH
        try:
            async with self.session.get(card_url, headers={a2a.VERSION_HEADER: a2a.PROTOCOL_VERSION},
                                        allow_redirects=False) as resp:
                if resp.status != 200:
                    raise A2AClientError(f"GET {card_url}: HTTP {resp.status}")
                card = bounded_json.loads(await self._read(resp, f"GET {card_url}"))
        except (aiohttp.ClientError, ValueError, UnicodeDecodeError, TimeoutError) as exc:
            raise A2AClientError(f"GET {card_url}: {exc}") from exc
        if not isinstance(card, dict):
            raise A2AClientError(f"GET {card_url}: the agent card is not a JSON object")
        if expected_did is not None:
            a2a.verify_agent_card(card, expected_did)
        return card

    # ---- unary calls ---------------------------------------------------------------------------------------
    async def send_message(self, endpoint: str | Mapping[str, Any], message: JSON, *,
                           return_immediately: bool = False, history_length: int | None = None,
                           push: Mapping[str, Any] | None = None) -> JSON:
        """SendMessage; returns the result: ``{"task": ...}`` or ``{"message": ...}``. With ``push`` (a
        TaskPushNotificationConfig: ``url``, and ``authentication``/``token`` the webhook checks) the peer
        posts the task's events there."""
        params = _send_params(message, return_immediately, history_length)
        if push is not None:
            params.setdefault("configuration", {})["taskPushNotificationConfig"] = dict(push)
        result = await self._call(endpoint, "SendMessage", params)
        if "task" not in result and "message" not in result:
            raise A2AClientError("SendMessage result holds neither a task nor a message")
        return result

    async def get_task(self, endpoint: str | Mapping[str, Any], task_id: str, *,
                       history_length: int | None = None) -> JSON:
        params: JSON = {"id": task_id}
        if history_length is not None:
            params["historyLength"] = history_length
        return await self._call(endpoint, "GetTask", params)

    async def cancel_task(self, endpoint: str | Mapping[str, Any], task_id: str) -> JSON:
        return await self._call(endpoint, "CancelTask", {"id": task_id})

    async def list_tasks(self, endpoint: str | Mapping[str, Any], *, context_id: str | None = None,
                         status: str | None = None, page_size: int | None = None, page_token: str | None = None,
                         include_artifacts: bool = False) -> JSON:
        """ListTasks; returns ``{tasks, nextPageToken, pageSize, totalSize}``."""
        params: JSON = {}
        for key, value in (("contextId", context_id), ("status", status), ("pageSize", page_size),
                           ("pageToken", page_token)):
            if value is not None:
                params[key] = value
        if include_artifacts:
            params["includeArtifacts"] = True
        return await self._call(endpoint, "ListTasks", params)

    async def call_skill(self, endpoint: str | Mapping[str, Any], skill_id: str | None,
                         arguments: Mapping[str, Any]) -> tuple[JSON, JSON | None]:
        """Run a skill on a peer and wait: ``(task, output)`` where output is the result's JSON object."""
        result = await self.send_message(endpoint, a2a.skill_request(arguments, skill_id))
        if "message" in result:
            return result["message"], a2a.message_input(result["message"])
        task = result["task"]
        return task, a2a.artifact_output(task)

    # ---- streams -------------------------------------------------------------------------------------------
    async def stream(self, endpoint: str | Mapping[str, Any], message: JSON) -> AsyncIterator[JSON]:
        """SendStreamingMessage; yields StreamResponse objects (``task``/``message``/``statusUpdate``/...)."""
        async for event in self._stream(endpoint, "SendStreamingMessage", _send_params(message, False, None)):
            yield event

    async def subscribe(self, endpoint: str | Mapping[str, Any], task_id: str) -> AsyncIterator[JSON]:
        """SubscribeToTask; yields the task first, then its updates until it settles."""
        async for event in self._stream(endpoint, "SubscribeToTask", {"id": task_id}):
            yield event

    # ---- plumbing ------------------------------------------------------------------------------------------
    def pick(self, endpoint: str | Mapping[str, Any]) -> tuple[str, str]:
        """``(binding, url)`` to call: a URL is JSON-RPC; of a card's interfaces, each once, then the fastest."""
        if isinstance(endpoint, str):
            return a2a.BINDING_JSONRPC, endpoint
        offered = interfaces(endpoint, self.bindings)
        if not offered:
            raise A2AClientError(f"agent card of {endpoint.get('name')!r} offers no A2A 1.0 interface in "
                                 f"{', '.join(self.bindings)}")
        unmeasured = [choice for choice in offered if choice[1] not in self.round_trips]
        return unmeasured[0] if unmeasured else min(offered, key=lambda choice: self.round_trips[choice[1]])

    def _measured(self, url: str, seconds: float) -> None:
        last = self.round_trips.get(url)
        self.round_trips[url] = seconds if last is None else last + _SMOOTHING * (seconds - last)

    def _body(self, method: str, params: JSON) -> bytes:
        self._ids += 1
        body: bytes = a2a.request_body(self._ids, method, params)
        return body

    def _headers(self, url: str, body: bytes, *, stream: bool = False, verb: str = "POST") -> dict[str, str]:
        headers = {**_HEADERS, "Accept": "text/event-stream"} if stream else dict(_HEADERS)
        if self.signer is not None:
            token = sign_call(self.signer.id, self.signer.key, method=verb, url=url, body=body)
            headers["Authorization"] = f"Bearer {token}"
        return headers

    async def _read(self, resp: aiohttp.ClientResponse, what: str) -> bytes:
        """The whole reply, or :class:`A2AClientError` as soon as it passes the cap."""
        if resp.content_length is not None and resp.content_length > self.max_response_bytes:
            raise A2AClientError(f"{what}: the reply is {resp.content_length} bytes, more than the "
                                 f"{self.max_response_bytes} this client reads")
        raw = await bounded_json.read_at_most(resp.content, self.max_response_bytes + 1)
        if len(raw) > self.max_response_bytes:
            raise A2AClientError(f"{what}: the reply is larger than the {self.max_response_bytes} bytes this client "
                                 "reads")
        return raw

    def _request(self, binding: str, url: str, method: str, params: JSON) -> tuple[str, str, bytes]:
        """``(verb, full URL, body)`` of one call on ``binding``."""
        if binding == a2a.BINDING_HTTP_JSON:
            request = rest.request_for(method, params)
            full = f"{url.rstrip('/')}/{request.path}"
            if request.query:
                full += "?" + urlencode(request.query)
            return request.verb, full, rest.body(request.body) if request.body is not None else b""
        return "POST", url, self._body(method, params)

    async def _call(self, endpoint: str | Mapping[str, Any], method: str, params: JSON) -> JSON:
        binding, url = self.pick(endpoint)
        verb, full, body = self._request(binding, url, method, params)
        what = f"{method} {full}"
        started = time.monotonic()
        try:
            async with self.session.request(verb, full, data=body or None, allow_redirects=False,
                                            headers=self._headers(full, body, verb=verb)) as resp:
                raw = await self._read(resp, what)
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise A2AClientError(f"{what}: {exc}") from exc
        result = _rest_result(raw, what, status) if binding == a2a.BINDING_HTTP_JSON else _result(raw, what, status)
        self._measured(url, time.monotonic() - started)
        return result

    async def _stream(self, endpoint: str | Mapping[str, Any], method: str, params: JSON) -> AsyncIterator[JSON]:
        binding, url = self.pick(endpoint)
        verb, full, body = self._request(binding, url, method, params)
        what = f"{method} {full}"
        read = _rest_result if binding == a2a.BINDING_HTTP_JSON else _result
        try:
            async with self.session.request(verb, full, data=body or None, allow_redirects=False,
                                            headers=self._headers(full, body, stream=True, verb=verb)) as resp:
                if "text/event-stream" not in resp.headers.get("Content-Type", "").lower():
                    # An error before the stream opened comes back as one response.
                    yield read(await self._read(resp, what), what, resp.status)
                    return
                async for kind, data in _sse_events(resp.content, self.max_response_bytes):
                    if kind == "error":  # raises the peer's A2AError
                        read(data, what, 400 if binding == a2a.BINDING_HTTP_JSON else 200)
                    yield read(data, what, 200)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise A2AClientError(f"{what}: {exc}") from exc


_HEADERS = {"Content-Type": "application/json", a2a.VERSION_HEADER: a2a.PROTOCOL_VERSION}


def _send_params(message: JSON, return_immediately: bool, history_length: int | None) -> JSON:
    params: JSON = {"message": message}
    config: JSON = {}
    if return_immediately:
        config["returnImmediately"] = True
    if history_length is not None:
        config["historyLength"] = history_length
    if config:
        params["configuration"] = config
    return params


def _parse(raw: bytes, what: str, status: int) -> Any:
    """A reply's JSON, or :class:`A2AClientError` for a redirect (never followed) or a body that is not JSON."""
    if 300 <= status < 400:
        raise A2AClientError(f"{what}: HTTP {status}: the peer redirects, and a task is never sent elsewhere")
    try:
        return bounded_json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise A2AClientError(f"{what}: HTTP {status}, not JSON ({exc})") from exc


def _result(raw: bytes, what: str, status: int) -> JSON:
    doc = _parse(raw, what, status)
    if not isinstance(doc, dict):
        raise A2AClientError(f"{what}: HTTP {status}, not a JSON-RPC response")
    if "error" in doc:
        raise a2a.error_from_json(doc["error"])
    result = doc.get("result")
    if not isinstance(result, dict):
        raise A2AClientError(f"{what}: HTTP {status}, JSON-RPC response without a result object")
    return result


def _rest_result(raw: bytes, what: str, status: int) -> JSON:
    """An HTTP+JSON reply: the result object itself, or an AIP-193 error raised as the peer's A2AError."""
    doc = _parse(raw, what, status)
    if status >= 400 or (isinstance(doc, dict) and isinstance(doc.get("error"), dict)):
        raise rest.error_from_status_json(status, doc)
    if not isinstance(doc, dict):
        raise A2AClientError(f"{what}: HTTP {status}, not a JSON object")
    return doc


async def _sse_events(content: aiohttp.StreamReader, limit: int) -> AsyncIterator[tuple[str, bytes]]:
    """Server-sent events as ``(event type, data)``; multi-line data is joined with newlines (per the spec).

    Lines are split from raw chunks, not with ``readline``, so an event up to ``limit`` bytes is read whole; a
    larger one ends the stream with :class:`A2AClientError`.
    """
    kind, buffer = "message", b""
    data: list[bytes] = []
    pending = 0
    async for chunk in content.iter_any():
        buffer += chunk
        pending += len(chunk)
        if pending > limit and b"\n\n" not in buffer:
            raise A2AClientError(f"a streamed event is larger than the {limit} bytes this client reads")
        *lines, buffer = buffer.split(b"\n")
        for raw_line in lines:
            line = raw_line.rstrip(b"\r")
            if not line:
                if data:
                    yield kind, b"\n".join(data)
                kind, data, pending = "message", [], len(buffer)
            elif line.startswith(b"data:"):
                data.append(line[6:] if line[5:6] == b" " else line[5:])
            elif line.startswith(b"event:"):
                kind = line[6:].strip().decode(errors="replace")
    if data:
        yield kind, b"\n".join(data)
