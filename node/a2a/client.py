"""An async A2A 1.0 client for delegation: JSON-RPC and HTTP+JSON on aiohttp, gRPC on ``grpc.aio``.

Given a URL, it speaks JSON-RPC there. Given a peer's card (verify it first: :meth:`A2AClient.resolve_card` with
the peer's key), it calls the interfaces the card offers in a binding it speaks, by this rule (:meth:`choices`):

* each offered interface is called once, in the card's order, so each gets a measured round trip;
* then the one with the lowest round trip (an exponentially weighted average of unary calls per interface
  URL, which names both the peer and the binding), except that every :data:`EXPLORE_EVERY`-th call to a peer
  goes to the interface measured longest ago, so an estimate taken on a cold connection or a busy moment is
  taken again;
* an interface that could not be reached (connection refused, gRPC UNAVAILABLE, an HTTP 503 of a proxy in front of
  it) is left aside for :data:`DOWN_SECONDS` and the call goes to the next one at once. Only such
  failures fall back: nothing reached the peer, so the task is not sent twice. An A2A error, a timeout or a
  hostile reply ends the call on the binding that gave it.

A caller that does not want to hold a stream open for a long task passes ``push`` (a
TaskPushNotificationConfig: the webhook URL and its secret) to :meth:`A2AClient.send_message` with
``return_immediately`` and hears of the result at its webhook.

It speaks the wire a2a-sdk 1.3 speaks (``A2A-Version: 1.0`` on every request, ProtoJSON bodies, SSE streams
whose ``data:`` lines are JSON-RPC responses, the SDK's generated gRPC messages), so it works against this node
and against servers built with the official SDK. Results are plain JSON values in ProtoJSON shape (see
:mod:`guildnet.protocols.a2a`), the same on every binding.

Errors: an A2A error from the peer raises :class:`~guildnet.protocols.a2a.A2AError` with the peer's code
(whatever the binding carried it in); a transport failure or a reply that is not A2A raises
:class:`A2AClientError`.

The peer is another organisation's server, so nothing it sends is trusted to be small or sane, on any binding: a
reply larger than ``max_response_bytes`` (or an SSE event, or a gRPC message, larger than it) is refused without
being read further, JSON is parsed with a nesting bound, every call has a deadline, and redirects are never
followed (a 3xx would make the client send the task, and the caller's signature, to a third host). With a
``signer``, every request carries the calling agent's proof (:mod:`guildnet.protocols.callerauth`): ``Authorization:
Bearer <token>`` (gRPC metadata ``authorization``) bound to this method, URL and body.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Final, NamedTuple
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from guildnet.protocols import a2a, bounded_json
from guildnet.protocols.a2a import JSON, rest
from guildnet.protocols.callerauth import sign_call

from ..identity import Signer

if TYPE_CHECKING:
    from .grpc_client import GrpcCaller

MAX_RESPONSE_BYTES = 4 * 1024 * 1024
"""Default cap on one reply (or one streamed event) from a peer: a task result, not a download."""

CARD_PATH = "/.well-known/agent-card.json"


class A2AClientError(Exception):
    """The peer could not be reached, or its reply is not an A2A response."""


class Unreachable(A2AClientError):
    """Nothing reached the peer on this interface (another of its bindings may serve)."""


class Interface(NamedTuple):
    """One interface of a card: its binding, URL and tenant (gRPC names the agent by it)."""

    binding: str
    url: str
    tenant: str | None = None


def _grpc_installed() -> bool:
    try:
        import grpc  # noqa: F401
        from a2a.types import a2a_pb2  # noqa: F401
    except ImportError:
        return False
    return True


CLIENT_BINDINGS: Final = (a2a.BINDING_JSONRPC, a2a.BINDING_HTTP_JSON) + ((a2a.BINDING_GRPC,) if _grpc_installed()
                                                                        else ())
"""The bindings this client speaks: gRPC when the ``grpc`` extra is installed."""
_SMOOTHING: Final = 0.3
EXPLORE_EVERY: Final = 16
"""Every this many calls to a peer, the interface measured longest ago is measured again."""
DOWN_SECONDS: Final = 30.0
"""How long an interface that could not be reached is left aside (unless the peer has no other)."""
_FALLBACK_STATUSES: Final = frozenset({503})
MAX_PEERS: Final = 10_000
"""Interfaces whose round trips (and failures) are remembered; past this the memory starts afresh."""


def interfaces(card: Mapping[str, Any], bindings: tuple[str, ...] = CLIENT_BINDINGS) -> list[Interface]:
    """The card's A2A 1.0 interfaces in ``bindings``, in the card's order."""
    found = []
    for interface in card.get("supportedInterfaces") or ():
        if (isinstance(interface, dict) and interface.get("protocolBinding") in bindings
                and isinstance(interface.get("url"), str)
                and str(interface.get("protocolVersion") or a2a.PROTOCOL_VERSION).startswith(a2a.PROTOCOL_VERSION)):
            tenant = interface.get("tenant")
            found.append(Interface(str(interface["protocolBinding"]), str(interface["url"]),
                                   tenant if isinstance(tenant, str) and tenant else None))
    return found


def card_url(endpoint: str) -> str:
    """Where the card of the agent at a JSON-RPC ``endpoint`` is: ``.well-known/agent-card.json`` beside its last
    path segment (``https://h/agents/x/a2a`` -> ``https://h/agents/x/.well-known/agent-card.json``, ``https://h/``
    -> ``https://h/.well-known/agent-card.json``), as a node and the SDK's servers serve it."""
    parts = urlsplit(endpoint)
    parent = parts.path.rsplit("/", 1)[0] if "/" in parts.path else ""
    return urlunsplit((parts.scheme, parts.netloc, parent + CARD_PATH, "", ""))


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
        """Seconds per unary call, smoothed, by interface URL: what :meth:`choices` prefers the fastest by."""
        self.down: dict[str, float] = {}
        """Interface URLs that could not be reached, with the time (monotonic) until they are left aside."""
        self._measured_at: dict[str, int] = {}
        self._measures = 0
        self._calls: dict[str, int] = {}
        self._grpc: GrpcCaller | None = None

    async def __aenter__(self) -> A2AClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._grpc is not None:
            await self._grpc.close()
            self._grpc = None
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def grpc(self) -> GrpcCaller:
        if self._grpc is None:
            from .grpc_client import GrpcCaller  # the grpc extra: imported when a peer is called over gRPC
            self._grpc = GrpcCaller(max_response_bytes=self.max_response_bytes, timeout=self._timeout.total or 60.0)
        return self._grpc

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
    def choices(self, endpoint: str | Mapping[str, Any], *, peek: bool = False) -> list[Interface]:
        """The interfaces to try, in order (see the module's rule): a URL is JSON-RPC; of a card's interfaces the
        chosen one first, the others after it in the card's order, those left aside as unreachable last. Each
        call counts towards the peer's next re-measure, unless ``peek``."""
        if isinstance(endpoint, str):
            return [Interface(a2a.BINDING_JSONRPC, endpoint)]
        offered = interfaces(endpoint, self.bindings)
        if not offered:
            raise A2AClientError(f"agent card of {endpoint.get('name')!r} offers no A2A 1.0 interface in "
                                 f"{', '.join(self.bindings)}")
        now = time.monotonic()
        up = [i for i in offered if self.down.get(i.url, 0.0) <= now]
        pool = up or offered
        peer = offered[0].url
        calls = self._calls.get(peer, 0) + 1
        if not peek:
            self._calls[peer] = calls
        unmeasured = [i for i in pool if i.url not in self.round_trips]
        if unmeasured:
            first = unmeasured[0]
        elif calls % EXPLORE_EVERY == 0:
            first = min(pool, key=lambda i: self._measured_at.get(i.url, 0))
        else:
            first = min(pool, key=lambda i: self.round_trips[i.url])
        return [first] + [i for i in up if i != first] + [i for i in offered if i not in up and i != first]

    def pick(self, endpoint: str | Mapping[str, Any]) -> Interface:
        """The interface the next call to ``endpoint`` goes to first."""
        return self.choices(endpoint, peek=True)[0]

    def _measured(self, url: str, seconds: float) -> None:
        if len(self.round_trips) >= MAX_PEERS and url not in self.round_trips:  # a bound, not an eviction policy
            self.round_trips.clear()
            self._measured_at.clear()
            self._calls.clear()
        last = self.round_trips.get(url)
        self.round_trips[url] = seconds if last is None else last + _SMOOTHING * (seconds - last)
        self._measures += 1
        self._measured_at[url] = self._measures
        self.down.pop(url, None)

    def _unreachable(self, interface: Interface) -> None:
        if len(self.down) >= MAX_PEERS:
            self.down.clear()
        self.down[interface.url] = time.monotonic() + DOWN_SECONDS

    def _sign(self, verb: str, url: str, body: bytes) -> str | None:
        if self.signer is None:
            return None
        return sign_call(self.signer.id, self.signer.key, method=verb, url=url, body=body)

    def _body(self, method: str, params: JSON) -> bytes:
        self._ids += 1
        body: bytes = a2a.request_body(self._ids, method, params)
        return body

    def _headers(self, url: str, body: bytes, *, stream: bool = False, verb: str = "POST") -> dict[str, str]:
        headers = {**_HEADERS, "Accept": "text/event-stream"} if stream else dict(_HEADERS)
        token = self._sign(verb, url, body)
        if token is not None:
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
        options = self.choices(endpoint)
        for position, interface in enumerate(options):
            started = time.monotonic()
            try:
                result = await self._call_on(interface, method, params)
            except Unreachable:
                self._unreachable(interface)
                if position + 1 == len(options):
                    raise
                continue
            self._measured(interface.url, time.monotonic() - started)
            return result
        raise AssertionError("unreachable: the last interface's failure was raised")

    async def _call_on(self, interface: Interface, method: str, params: JSON) -> JSON:
        """One unary call on one interface."""
        if interface.binding == a2a.BINDING_GRPC:
            return await self.grpc.call(interface.url, interface.tenant, method, params, self._grpc_sign)
        verb, full, body = self._request(interface.binding, interface.url, method, params)
        what = f"{method} {full}"
        try:
            async with self.session.request(verb, full, data=body or None, allow_redirects=False,
                                            headers=self._headers(full, body, verb=verb)) as resp:
                _check_reached(resp.status, what)
                raw = await self._read(resp, what)
                status = resp.status
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"{what}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise A2AClientError(f"{what}: {exc}") from exc
        return _rest_result(raw, what, status) if interface.binding == a2a.BINDING_HTTP_JSON else \
            _result(raw, what, status)

    def _grpc_sign(self, url: str, body: bytes) -> str | None:
        return self._sign("POST", url, body)

    async def _stream(self, endpoint: str | Mapping[str, Any], method: str, params: JSON) -> AsyncIterator[JSON]:
        options = self.choices(endpoint)
        for position, interface in enumerate(options):
            started = False
            try:
                async for event in self._stream_on(interface, method, params):
                    started = True
                    yield event
                return
            except Unreachable:
                if started:
                    raise
                self._unreachable(interface)
                if position + 1 == len(options):
                    raise

    async def _stream_on(self, interface: Interface, method: str, params: JSON) -> AsyncIterator[JSON]:
        """One streaming call on one interface."""
        if interface.binding == a2a.BINDING_GRPC:
            async for event in self.grpc.stream(interface.url, interface.tenant, method, params, self._grpc_sign):
                yield event
            return
        binding = interface.binding
        verb, full, body = self._request(binding, interface.url, method, params)
        what = f"{method} {full}"
        read = _rest_result if binding == a2a.BINDING_HTTP_JSON else _result
        try:
            async with self.session.request(verb, full, data=body or None, allow_redirects=False,
                                            headers=self._headers(full, body, stream=True, verb=verb)) as resp:
                _check_reached(resp.status, what)
                if "text/event-stream" not in resp.headers.get("Content-Type", "").lower():
                    # An error before the stream opened comes back as one response.
                    yield read(await self._read(resp, what), what, resp.status)
                    return
                async for kind, data in _sse_events(resp.content, self.max_response_bytes):
                    if kind == "error":  # raises the peer's A2AError
                        read(data, what, 400 if binding == a2a.BINDING_HTTP_JSON else 200)
                    yield read(data, what, 200)
        except aiohttp.ClientConnectorError as exc:
            raise Unreachable(f"{what}: {exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise A2AClientError(f"{what}: {exc}") from exc


def _check_reached(status: int, what: str) -> None:
    """A 503 says the agent was not reached (a proxy's backend is down, or the server turns calls away):
    :class:`Unreachable`. (502 is A2A's own InvalidAgentResponse on HTTP+JSON, and a 504 may come after the
    peer got the task.)"""
    if status in _FALLBACK_STATUSES:
        raise Unreachable(f"{what}: HTTP {status}")


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
