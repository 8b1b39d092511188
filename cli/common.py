"""What every ``guildnet`` command shares: logging (text or JSON, secrets masked), running a server, and the
checks of URLs typed on a command line."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import re
import signal
import sys
from collections.abc import Callable
from typing import Any, TextIO, TypeVar
from urllib.parse import urlsplit

import click
import uvloop

DEFAULT_REGISTRY = "http://127.0.0.1:8400"
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger(__name__)

_SECRETS = (
    (re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@", re.IGNORECASE), r"\1***@"),
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.DOTALL),
     "[private key redacted]"),
)


def redact(text: str) -> str:
    """``text`` without URL passwords (``postgresql://user:***@host``) and PEM private keys."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """The last line of defence on the log handler: the code never logs keys or passphrases, and a database
    URL's password or a PEM block that slips into a message or a traceback is masked before it is written."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def log_handler(log_format: str, stream: TextIO | None = None) -> logging.Handler:
    """A handler writing ``json`` (one object per line: time, level, logger, message and any ``extra=``
    fields) or ``text`` to ``stream`` (default stderr), secrets masked."""
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("{levelname}{name}{message}", style="{", timestamp="time",
                                           rename_fields={"levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    return handler


def setup_logging(log_format: str, level: str) -> None:
    """Route every log record to one stderr :func:`log_handler`. The level applies to guildnet's own loggers;
    libraries log warnings and errors only, so their chatter (and debug output, which can hold SQL
    parameters) stays out."""
    handler = log_handler(log_format)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    logging.basicConfig(level=max(numeric, logging.WARNING), handlers=[handler], force=True)
    logging.getLogger("guildnet").setLevel(numeric)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The event loop every server runs on: uvloop's (libuv), not asyncio's own selector loop.

    Why: a gRPC call through ``grpc.aio`` is a dozen event-loop turns and thread wake-ups (its completion-queue
    poller hands each event to the loop), and the loop's own cost is a large part of the node's CPU per call;
    on uvloop a node spends about a fifth less CPU per gRPC SendMessage, a bare ``grpc.aio`` handler too
    (docs/a2a-bindings.md, measured with ``bench/node.py``). aiohttp and SQLAlchemy's async drivers run on it
    unchanged.
    """
    return uvloop.new_event_loop()


def freeze_startup_heap() -> int:
    """Collect once, then move every object alive now into the collector's permanent generation; how many moved.

    Why, for a server process once it has loaded (modules, pydantic schemas, agents, its database engine):
    CPython's full collections walk every tracked object each time the heap grows by a quarter, and a node's
    start-up heap (~200,000 objects) is most of what they walk while it meets agents and caches their verified
    records, for nothing: that heap lives as long as the process. Frozen, it is never walked again; new objects
    are collected as before, and reference counting still frees frozen ones. The cost is that a cycle among
    start-up objects left to die later is never reclaimed (the collection just before leaves no garbage frozen).
    Measured with bench/verify_records.py, which calls this: docs/trust-model.md "What verifying a record costs".
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def run_server(run_app: Callable[..., None], app: Any, host: str, port: int, *, logger: logging.Logger = log,
               started: str | None = None) -> None:
    """``run_app`` until stopped. ``started`` is logged (by ``logger``, the server's own) once the socket is bound,
    never before; a failure to start (port taken, database down) is one line by that logger saying what to do,
    and exit status 1, not a traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    async def finish_in_peace(_app: Any) -> None:
        # a second SIGTERM (GNU timeout, a supervisor's retry) during cleanup cancelled the database pool's
        # dispose mid-way: a traceback and exit 1 instead of a clean stop
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_IGN)

    app.on_shutdown.append(finish_in_peace)
    try:
        # idle keep-alive connections close after 15 s (aiohttp's default is 75 s): a thousand idle sockets from
        # one client must not be free to hold; slow headers need a reverse proxy (aiohttp has no timeout for them)
        run_app(app, host=host, port=port, access_log=None, keepalive_timeout=15, loop=new_event_loop(),
                print=lambda *_: logger.info("%s", started) if started else None)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            logger.error("cannot listen on %s:%d: the port is taken (another process listens there); stop that "
                         "process, or choose another port (--port)", host, port)
        elif exc.errno == errno.EADDRNOTAVAIL:
            logger.error("cannot listen on %s:%d: this machine has no such address (--host)", host, port)
        else:
            logger.error("stopped: %s: %s", type(exc).__name__, exc)
        sys.exit(1)
    except SQLAlchemyError as exc:
        logger.error("stopped: %s: %s", type(exc).__name__, exc)
        sys.exit(1)


def log_options(command: F) -> F:
    """``--log-format`` and ``--log-level`` (env ``GUILDNET_LOG_FORMAT``, ``GUILDNET_LOG_LEVEL``)."""
    command = click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"],
                                                            case_sensitive=False),
                           default="info", show_default=True, envvar="GUILDNET_LOG_LEVEL",
                           help="Least severe messages logged (env GUILDNET_LOG_LEVEL).")(command)
    return click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                        envvar="GUILDNET_LOG_FORMAT",
                        help="Log lines on stderr: text, or one JSON object per line (env GUILDNET_LOG_FORMAT)."
                        )(command)


def check_http_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An ``http(s)://host[:port]`` base URL, or a usage error (exit 2) naming what is wrong with it."""
    if value is None:
        return None
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port outside 0-65535)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a URL: {exc}", ctx, param) from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL with a host", ctx, param)
    return value


def check_db_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A SQLite or PostgreSQL URL (the two back ends guildnet runs on), or a usage error (exit 2)."""
    if value is None:
        return None
    scheme = value.split("://", 1)[0].split("+", 1)[0] if "://" in value else ""
    if scheme not in ("sqlite", "postgresql", "postgres"):
        raise click.BadParameter(f"{value!r}: use sqlite:///FILE or postgresql://USER@HOST/DB", ctx, param)
    return value


def registry_hint(exc: BaseException) -> str | None:
    """What to check when a command could not use the registry, or None where the registry refused and said why
    itself (its problem detail is the message)."""
    from guildnet.registry.client import NOT_A_REGISTRY, RegistryError

    if NOT_A_REGISTRY in str(exc):
        return ("give the registry's own URL (`guildnet registry serve` prints it), not a node's: --registry URL or "
                "GUILDNET_REGISTRY ([node] registry in a node's config)")
    if isinstance(exc, RegistryError):
        return None
    return ("start the registry (`guildnet registry serve`), or give the URL of one that runs: --registry URL or "
            "GUILDNET_REGISTRY ([node] registry in a node's config)")


def registry_option() -> Callable[[F], F]:
    return click.option("--registry", "registry_url", envvar="GUILDNET_REGISTRY", default=DEFAULT_REGISTRY,
                        show_default=True, callback=check_http_url,
                        help="Base URL of the registry (env GUILDNET_REGISTRY).")
