"""A hostile A2A callee, as its own process: ``python bench/hostile_peer.py PORT MODE [ARGUMENT]``.

Every JSON-RPC POST is answered as MODE says:

* ``huge``: a JSON reply of 800 MB, streamed (chunked, no length announced);
* ``huge-declared``: the same with its Content-Length announced;
* ``redirect``: 307 to ARGUMENT (a third host), which would make a naive client re-POST the task there;
* ``tarpit``: nothing at all, the connection held open;
* ``malformed``: ``{"result": {"task": "not-an-object"}}``.

Prints ``ready`` once it listens.
"""

from __future__ import annotations

import asyncio
import json
import sys

from aiohttp import web

MEGABYTE = b"a" * (1 << 20)
HUGE_MB = 800


async def answer(request: web.Request) -> web.StreamResponse:
    mode, argument = request.app["mode"], request.app["argument"]
    request_id = json.loads(await request.read()).get("id")
    head = b'{"jsonrpc":"2.0","id":' + json.dumps(request_id).encode() + b',"result":{"task":{"id":"'
    tail = b'"}}}'
    if mode in ("huge", "huge-declared"):
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        if mode == "huge-declared":
            response.content_length = len(head) + HUGE_MB * len(MEGABYTE) + len(tail)
        await response.prepare(request)
        await response.write(head)
        for _ in range(HUGE_MB):
            await response.write(MEGABYTE)
        await response.write(tail)
        await response.write_eof()
        return response
    if mode == "redirect":
        raise web.HTTPTemporaryRedirect(argument)
    if mode == "tarpit":
        await asyncio.sleep(3600)
    if mode == "malformed":
        return web.json_response({"jsonrpc": "2.0", "id": request_id, "result": {"task": "not-an-object"}})
    raise web.HTTPBadRequest(text=f"unknown mode {mode}")


async def main(port: int, mode: str, argument: str) -> None:
    app = web.Application()
    app["mode"], app["argument"] = mode, argument
    app.router.add_post("/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else ""))
