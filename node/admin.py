"""The node's local administration: a small HTTP app on a Unix socket (mode 0600), for commands run by the
node's operator on the same machine (``guildnet node rotate``), never reachable from the network.

    POST /agents/{name}/rotate   rotate the agent's key in the running node -> {"agent", "key"}
    GET  /agents                 the node's agents: name, id, key in force, rotations, whether it can rotate
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from guildnet.registry.client import RegistryError

from .identity import AgentIdentity, IdentityError

if TYPE_CHECKING:
    from .node import Node

NODE: web.AppKey[Node] = web.AppKey("node")


def admin_app(node: Node) -> web.Application:
    app = web.Application()
    app[NODE] = node
    app.router.add_get("/agents", _agents)
    app.router.add_post("/agents/{name}/rotate", _rotate)
    return app


def _node(request: web.Request) -> Node:
    return request.app[NODE]


async def _agents(request: web.Request) -> web.Response:
    rows = []
    for published in _node(request).agents:
        identity = published.identity
        rotates = isinstance(identity, AgentIdentity) and identity.can_rotate
        rotations = identity.state.seq if isinstance(identity, AgentIdentity) else 0
        rows.append({"name": published.agent.name, "id": identity.id, "key": identity.key.did,
                     "rotations": max(rotations, 0), "can_rotate": rotates})
    return web.json_response({"agents": rows})


async def _rotate(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        key = await _node(request).rotate(name)
    except (ValueError, IdentityError) as exc:
        return web.json_response({"error": str(exc)}, status=409)
    except (RegistryError, OSError) as exc:
        return web.json_response({"error": f"the registry did not take the rotation: {type(exc).__name__}: {exc}"},
                                 status=502)
    published = next(p for p in _node(request).agents if p.agent.name == name)
    return web.json_response({"agent": published.identity.id, "key": key})
