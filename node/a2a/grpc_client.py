"""Calling a peer's A2A gRPC interface (spec §10) on ``grpc.aio``, with a2a-sdk's generated message classes.

:class:`~guildnet.node.a2a.client.A2AClient` uses this for a card's ``GRPC`` interface; params and results are
the same ProtoJSON values its HTTP bindings carry, so the caller cannot tell which binding answered.

The peer is untrusted here as on the HTTP bindings: each reply (each streamed message) is capped by the channel's
``grpc.max_receive_message_length`` (a larger one fails the call, RESOURCE_EXHAUSTED, without being kept), every
call has a deadline, and metadata is grpcio's default 8 KB at most. One channel per peer address is kept
(HTTP/2 multiplexes the calls), at most :data:`MAX_CHANNELS`, the least recently used closed first.

A signed call carries ``authorization: Bearer <token>`` as metadata, the token bound to
``{interface URL}/lf.a2a.v1.A2AService/{Method}`` and the request's deterministic protobuf bytes, which are the
bytes sent (serialised once).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any, Final
from urllib.parse import urlsplit

import grpc

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON

from .client import A2AClientError, Unreachable
from .grpc_wire import RPCS, error_of, path
from .proto_json import to_json, to_message

MAX_CHANNELS: Final = 64
Sign = Callable[[str, bytes], str | None]
"""``(audience URL, request bytes) -> token``, or None for an unsigned call."""


def target(url: str) -> tuple[str, bool]:
    """The channel target of an interface URL (``host:port``, or with a scheme) and whether it wants TLS."""
    if "://" not in url:
        return url.rstrip("/"), False
    parts = urlsplit(url)
    return parts.netloc, parts.scheme in ("https", "grpcs")


class GrpcCaller:
    def __init__(self, *, max_response_bytes: int, timeout: float) -> None:
        self.max_response_bytes = max_response_bytes
        self.timeout = timeout
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()

    async def close(self) -> None:
        channels, self._channels = list(self._channels.values()), OrderedDict()
        for channel in channels:
            await channel.close(None)

    async def _channel(self, url: str) -> grpc.aio.Channel:
        address, secure = target(url)
        key = f"{'s' if secure else ''}:{address}"
        channel = self._channels.get(key)
        if channel is not None:
            self._channels.move_to_end(key)
            return channel
        options = [("grpc.max_receive_message_length", self.max_response_bytes),
                   ("grpc.max_send_message_length", self.max_response_bytes)]
        channel = (grpc.aio.secure_channel(address, grpc.ssl_channel_credentials(), options=options) if secure
                   else grpc.aio.insecure_channel(address, options=options))
        self._channels[key] = channel
        if len(self._channels) > MAX_CHANNELS:
            _, oldest = self._channels.popitem(last=False)
            await oldest.close(None)
        return channel

    def _request(self, url: str, tenant: str | None, method: str, params: JSON,
                 sign: Sign) -> tuple[bytes, list[tuple[str, str]]]:
        rpc = RPCS.get(method)
        if rpc is None:
            raise A2AClientError(f"{method} is not an A2A gRPC method")
        try:
            request = to_message({**params, "tenant": tenant} if tenant else params, rpc.request())
        except (ValueError, TypeError) as exc:
            raise a2a.invalid_params(f"{method}: {exc}") from exc
        body = request.SerializeToString(deterministic=True)
        metadata = [(a2a.VERSION_HEADER.lower(), a2a.PROTOCOL_VERSION)]
        token = sign(url.rstrip("/") + path(method), body)
        if token is not None:
            metadata.append(("authorization", f"Bearer {token}"))
        return body, metadata

    async def call(self, url: str, tenant: str | None, method: str, params: JSON, sign: Sign) -> JSON:
        body, metadata = self._request(url, tenant, method, params, sign)
        channel = await self._channel(url)
        unary = channel.unary_unary(path(method), request_serializer=None,
                                    response_deserializer=RPCS[method].response.FromString)
        try:
            reply = await unary(body, metadata=metadata, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, f"{method} {url}") from exc
        return to_json(reply)

    async def stream(self, url: str, tenant: str | None, method: str, params: JSON, sign: Sign
                     ) -> AsyncIterator[JSON]:
        body, metadata = self._request(url, tenant, method, params, sign)
        channel = await self._channel(url)
        streaming = channel.unary_stream(path(method), request_serializer=None,
                                         response_deserializer=RPCS[method].response.FromString)
        call = streaming(body, metadata=metadata, timeout=self.timeout)
        try:
            async for reply in call:
                yield to_json(reply)
        except grpc.aio.AioRpcError as exc:
            raise _failure(exc, f"{method} {url}") from exc
        finally:
            call.cancel()


def _failure(exc: grpc.aio.AioRpcError, what: str) -> Exception:
    """The peer's A2A error, or :class:`A2AClientError` (:class:`Unreachable` when the peer was never reached)."""
    found = error_of(_trailers(exc), exc.details())
    if found is not None:
        return found
    code = exc.code()
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return A2AClientError(f"{what}: the reply is larger than the bytes this client reads ({exc.details()})")
    failed = Unreachable if code == grpc.StatusCode.UNAVAILABLE else A2AClientError
    return failed(f"{what}: gRPC {code.name}: {exc.details()}")


def _trailers(exc: grpc.aio.AioRpcError) -> list[tuple[str, Any]]:
    return list(exc.trailing_metadata() or ())
