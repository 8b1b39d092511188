"""The A2A operations of one agent, by method name: what every binding (JSON-RPC, HTTP+JSON, gRPC) calls.

A binding reads its request into the JSON-RPC shape (a method name, params as a ProtoJSON object), calls
:meth:`AgentEndpoint.call` or :meth:`AgentEndpoint.stream`, and writes the result or the :class:`A2AError` in its
own shape. Nothing here knows which binding called, so the bindings behave the same by construction.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Final

from guildnet.protocols import a2a
from guildnet.protocols.a2a import JSON, A2AError
from guildnet.protocols.a2a.push import parse_push_config

from .push import PushService
from .tasks import AgentTasks

STREAMING: Final = a2a.STREAMING_METHODS
EXTENSIONS_HEADER: Final = "A2A-Extensions"


class AgentEndpoint:
    """One agent's operations over its tasks, its webhooks (``push``) and its extended card.

    ``required_extensions``: extension URIs the card declares ``required``; a request whose ``A2A-Extensions``
    does not name each of them is refused (-32008) before anything else happens.
    """

    def __init__(self, tasks: AgentTasks, *, push: PushService | None = None,
                 extended_card: Callable[[], JSON] | None = None,
                 required_extensions: frozenset[str] = frozenset()) -> None:
        self.tasks = tasks
        self.push = push
        tasks.push = push
        self.extended_card = extended_card
        self.required_extensions = required_extensions
        self._unary: dict[str, Callable[[JSON, str | None], Awaitable[JSON]]] = {
            "SendMessage": self._send,
            "GetTask": self._get,
            "ListTasks": self._list,
            "CancelTask": self._cancel,
            "GetExtendedAgentCard": self._extended_card,
            "CreateTaskPushNotificationConfig": self._create_push,
            "GetTaskPushNotificationConfig": self._get_push,
            "ListTaskPushNotificationConfigs": self._list_push,
            "DeleteTaskPushNotificationConfig": self._delete_push,
        }

    @property
    def name(self) -> str:
        return self.tasks.name

    def check_extensions(self, header: str | None) -> None:
        """Refuse (-32008) a request that does not activate every extension this agent requires."""
        if not self.required_extensions:
            return
        named = {part.strip() for part in (header or "").split(",") if part.strip()}
        missing = sorted(self.required_extensions - named)
        if missing:
            raise A2AError(a2a.EXTENSION_SUPPORT_REQUIRED,
                           f"this agent requires the extension(s) {', '.join(missing)} in {EXTENSIONS_HEADER}")

    async def call(self, method: str, params: JSON, caller: str | None) -> JSON:
        """A unary operation's result (a ProtoJSON object); :class:`A2AError` for anything refused."""
        operation = self._unary.get(method)
        if operation is None:
            raise A2AError(a2a.METHOD_NOT_FOUND, f"Method not found: {method}")
        return await operation(params, caller)

    async def stream(self, method: str, params: JSON, caller: str | None) -> AsyncGenerator[JSON, None]:
        """A streaming operation's events; errors before the first event are raised here, not in the stream."""
        if method == "SendStreamingMessage":
            return await self.tasks.stream(a2a.parse_send_params(params), caller)
        if method == "SubscribeToTask":
            return await self.tasks.subscribe(a2a.parse_task_query(params), caller)
        raise A2AError(a2a.METHOD_NOT_FOUND, f"Method not found: {method}")

    # ---- tasks ---------------------------------------------------------------------------------------------
    async def _send(self, params: JSON, caller: str | None) -> JSON:
        return await self.tasks.send(a2a.parse_send_params(params), caller)

    async def _get(self, params: JSON, caller: str | None) -> JSON:
        return await self.tasks.get(a2a.parse_task_query(params), caller)

    async def _list(self, params: JSON, caller: str | None) -> JSON:
        return await self.tasks.list(a2a.parse_list_query(params), caller)

    async def _cancel(self, params: JSON, caller: str | None) -> JSON:
        return await self.tasks.cancel(a2a.parse_task_query(params), caller)

    async def _extended_card(self, params: JSON, caller: str | None) -> JSON:
        if self.extended_card is None:
            raise A2AError(a2a.EXTENDED_CARD_NOT_CONFIGURED, "This agent declares no extended agent card")
        return self.extended_card()

    # ---- push notification configs -------------------------------------------------------------------------
    async def _push_task(self, params: JSON, caller: str | None) -> tuple[PushService, str]:
        """The push service and the caller's task the request names (another caller's is not found)."""
        if self.push is None:
            raise A2AError(a2a.PUSH_NOT_SUPPORTED)
        task_id = params.get("taskId", params.get("task_id"))
        if not isinstance(task_id, str) or not task_id or len(task_id) > a2a.MAX_ID_LENGTH:
            raise a2a.invalid_params("'taskId' is required")
        await self.tasks.find(task_id, caller)
        return self.push, task_id

    @staticmethod
    def _config_id(params: JSON) -> str:
        config_id = params.get("id")
        if not isinstance(config_id, str) or not config_id or len(config_id) > a2a.MAX_ID_LENGTH:
            raise a2a.invalid_params("'id' is required")
        return config_id

    async def _create_push(self, params: JSON, caller: str | None) -> JSON:
        push, task_id = await self._push_task(params, caller)
        return await push.create(self.name, caller, parse_push_config(params, task_id=task_id))

    async def _get_push(self, params: JSON, caller: str | None) -> JSON:
        push, task_id = await self._push_task(params, caller)
        return await push.get(self.name, task_id, self._config_id(params))

    async def _list_push(self, params: JSON, caller: str | None) -> JSON:
        push, task_id = await self._push_task(params, caller)
        return await push.list(self.name, task_id)

    async def _delete_push(self, params: JSON, caller: str | None) -> JSON:
        push, task_id = await self._push_task(params, caller)
        await push.delete(self.name, task_id, self._config_id(params))
        return {}
