"""Schemathesis against the live registry's own /openapi.json: every operation, valid and invalid inputs.

tests/test_registry_fuzz.py throws hand-built hostile bodies at the signed-write endpoints; this one lets
schemathesis derive requests from the published description, for every endpoint (reads, the log, search,
reputation, watch, the writes), in positive and negative mode, and checks what a client of that description
relies on: never a 5xx, never a traceback, the documented status codes and content types, bodies that match
the documented schemas, and schema-invalid input refused. The store must be exactly as it was afterwards
(every table, and the log head).

The registry runs in its own thread and event loop: schemathesis sends its requests synchronously (requests).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import aiohttp
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from registry_support import LiveRegistry, live_registry, new_org, snapshot
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from guildnet.protocols import signed_write
from guildnet.registry.client import RegistryClient
from guildnet.registry.server import REPUTATION

T = TypeVar("T")
EXAMPLES_PER_OPERATION = 50
# Not negative_data_rejection: the registry reads an empty query value (``?live=``, ``?end=``) as an absent one,
# which schemathesis counts as accepting a non-boolean/non-integer (reported; a leniency, not a fault).
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
MAX_REQUEST_LINE = 8190
"""aiohttp's limit: a longer request line is refused by its HTTP parser (400, text/plain) before the app runs."""
# a signed write is a compact JWS, text on the wire; the generated strings (or, in negative mode, anything) go as is
schemathesis.serializer.alias("application/jose", "text/plain")


class ThreadedRegistry:
    """A live registry on its own event loop in a daemon thread; :meth:`run` runs a coroutine there."""

    def __init__(self, registry: LiveRegistry, loop: asyncio.AbstractEventLoop) -> None:
        self.registry = registry
        self.loop = loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextlib.contextmanager
def registry_in_thread(db_url: str, **config: Any) -> Iterator[ThreadedRegistry]:
    loop = asyncio.new_event_loop()
    ready: asyncio.Future[LiveRegistry] = loop.create_future()
    stop = asyncio.Event()

    async def serve() -> None:
        try:
            async with live_registry(db_url, **config) as registry:
                ready.set_result(registry)
                await stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    try:
        registry = asyncio.run_coroutine_threadsafe(asyncio.wait_for(asyncio.shield(ready), 30), loop).result(35)
        yield ThreadedRegistry(registry, loop)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


@pytest.mark.slow
def test_openapi_fuzz_no_server_errors_conforms_and_changes_nothing(db_url: str) -> None:
    acme = new_org("acme")
    key, facts = acme.agent("a")
    # with a pre-trusted organisation reputation is computed, so its endpoint has no by-design 503 left
    with registry_in_thread(db_url, pretrusted_orgs=(acme.key.did,)) as threaded, requests.Session() as http:
        url = threaded.registry.url

        async def register() -> None:
            async with RegistryClient(url) as client:
                await client.register(facts, key)
                await threaded.registry.app[REPUTATION].refresh(force=True)

        threaded.run(register())
        before = threaded.run(snapshot(threaded.registry))
        head_before = http.get(url + "/v1/log/head", timeout=10).json()
        document = http.get(url + "/openapi.json", timeout=10).json()
        schema = schemathesis.openapi.from_dict(document)
        statuses: set[int] = set()
        operations = [result.ok() for result in schema.get_all_operations()]  # type: ignore[union-attr]
        assert len(operations) >= 14  # every documented operation is exercised
        for operation in operations:
            for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE):
                # a real agent id as well as generated ones, so lookups past the 404 are reached
                ids = [{"agent_id": facts.id}, None] if "{agent_id}" in operation.path else [None]
                for path_parameters in ids:
                    strategy = operation.as_strategy(mode, path_parameters=path_parameters)

                    @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                              suppress_health_check=list(HealthCheck))
                    @given(case=strategy)
                    def exercise(case: schemathesis.Case[Any]) -> None:
                        response = case.call(base_url=url, session=http, timeout=10)
                        statuses.add(response.status_code)
                        assert "Traceback" not in response.text, case.as_curl_command()
                        request_line = len(response.request.method or "") + len(response.request.path_url) + 10
                        if request_line > MAX_REQUEST_LINE:
                            assert response.status_code == 400, case.as_curl_command()
                        else:
                            case.validate_response(response, checks=CHECKS)

                    try:
                        exercise()
                    except Unsatisfiable:
                        # nothing to make invalid (no parameters, or only a fixed or unconstrained path id)
                        assert mode == schemathesis.GenerationMode.NEGATIVE, operation.label
        assert threaded.run(snapshot(threaded.registry)) == before
        assert http.get(url + "/v1/log/head", timeout=10).json() == head_before
        assert {200, 400, 404}.issubset(statuses), statuses  # past the routing: lookups, refusals, answers


async def test_nul_in_a_query_path_or_signed_payload_is_a_400(db_url: str) -> None:
    """PostgreSQL text cannot hold U+0000: found by this fuzzer as 500s; now refused before the store."""
    acme = new_org("acme")
    key, facts = acme.agent("nul")
    async with live_registry(db_url) as registry, aiohttp.ClientSession() as http:
        before = await snapshot(registry)
        for path in ("/v1/agents?skill=%00", "/v1/agents?q=a%00b", "/v1/agents?org=%00", "/v1/agents/%00",
                     "/v1/agents/%00/reputation", f"/v1/agents/{facts.id}/reputation?skill=%05%00%7B"):
            async with http.get(registry.url + path) as response:
                assert response.status == 400, path
        token = signed_write.make(key, {"action": "register", "facts": {**facts.to_json(), "description": "x\x00y"}})
        async with http.post(registry.url + "/v1/agents", data=token,
                             headers={"Content-Type": "application/jose"}) as response:
            assert response.status == 400 and "U+0000" in (await response.json(content_type=None))["detail"]
        assert await snapshot(registry) == before
