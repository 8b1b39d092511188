"""``guildnet witness ...``: run a C2SP tlog-witness for registries' logs, and print a witness's identity."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import click

from .common import log_options, run_server, setup_logging

if TYPE_CHECKING:
    from guildnet.protocols.witness import WitnessedLog


def _name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from guildnet.protocols.witness import WitnessError, check_key_name

    try:
        check_key_name(value, "the witness name")
    except WitnessError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    return value


def _logs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> tuple[WitnessedLog, ...]:
    """``DID`` (a guildnet registry: its origin is ``guildnet-registry/<DID>``) or ``ORIGIN=DID`` (any C2SP log
    whose checkpoints that key signs under the origin as key name)."""
    from guildnet.protocols.did import is_did_key
    from guildnet.protocols.transparency import origin_for
    from guildnet.protocols.witness import WitnessedLog, WitnessError

    logs = []
    for value in values:
        origin, _, key = value.rpartition("=")
        if not is_did_key(key):
            raise click.BadParameter(f"{value!r}: give a log key as an Ed25519 did:key, or ORIGIN=did:key", ctx, param)
        try:
            logs.append(WitnessedLog(origin or origin_for(key), key))
        except WitnessError as exc:
            raise click.BadParameter(f"{value!r}: {exc}", ctx, param) from exc
    if not logs:
        raise click.BadParameter("name at least one log to follow", ctx, param)
    if len({entry.origin for entry in logs}) != len(logs):
        raise click.BadParameter("each log once", ctx, param)
    return tuple(logs)


@click.group("witness")
def witness_group() -> None:
    """Run a witness that cosigns registries' log checkpoints (C2SP tlog-witness), so a registry cannot show
    different parties different logs. See docs/witness.md."""


@witness_group.command("serve")
@click.option("--name", required=True, envvar="GUILDNET_WITNESS_NAME", callback=_name,
              help="This witness's name in its cosignatures, e.g. witness.example.org/w1 (env GUILDNET_WITNESS_NAME).")
@click.option("--key", "key_path", default="witness.key", show_default=True, envvar="GUILDNET_WITNESS_KEY",
              type=click.Path(dir_okay=False),
              help="Its Ed25519 key file, created 0600 if missing; one key per witness name "
                   "(env GUILDNET_WITNESS_KEY).")
@click.option("--db", "db_path", default="witness.db", show_default=True, envvar="GUILDNET_WITNESS_DB",
              type=click.Path(dir_okay=False),
              help="Its SQLite file: the latest checkpoint cosigned per log (env GUILDNET_WITNESS_DB).")
@click.option("--follow", "logs", multiple=True, metavar="[ORIGIN=]DID", envvar="GUILDNET_WITNESS_FOLLOW",
              callback=_logs,
              help="A log to witness: a registry's log key (guildnet registry key), or ORIGIN=KEY for another "
                   "C2SP log; repeatable (env GUILDNET_WITNESS_FOLLOW, space-separated).")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="GUILDNET_WITNESS_HOST", help="Address to bind.")
@click.option("--port", default=8500, show_default=True, type=click.IntRange(1, 65535), envvar="GUILDNET_WITNESS_PORT",
              help="Port to listen on.")
@log_options
def serve(name: str, key_path: str, db_path: str, logs: tuple[WitnessedLog, ...], host: str, port: int,
          log_format: str, log_level: str) -> None:
    """Serve POST /add-checkpoint (C2SP tlog-witness) for the logs named with --follow.

    \b
    Example:
      guildnet witness serve --name witness.example.org/w1 --follow did:key:z6Mk... --port 8500
    """
    from aiohttp import web

    from guildnet.witness.server import WitnessConfig, create_app

    setup_logging(log_format, log_level)
    app = create_app(WitnessConfig(name=name, key_path=key_path, db_path=db_path, logs=logs))
    run_server(web.run_app, app, host, port, logger=logging.getLogger(__name__),
               started=f"guildnet witness {name} on http://{host}:{port} following {len(logs)} log(s)")


@witness_group.command("id")
@click.option("--name", required=True, envvar="GUILDNET_WITNESS_NAME", callback=_name, help="The witness's name.")
@click.option("--key", "key_path", default="witness.key", show_default=True, envvar="GUILDNET_WITNESS_KEY",
              type=click.Path(dir_okay=False), help="The witness's key file.")
def identity(name: str, key_path: str) -> None:
    """Print what a registry or a node configures for this witness: name, did:key and C2SP verifier key.

    \b
    Example:
      guildnet witness id --name witness.example.org/w1 --key witness.key
    """
    from guildnet.protocols import keyfile
    from guildnet.protocols.keys import KeyFileError
    from guildnet.protocols.witness import Witness

    try:
        key = keyfile.load(key_path)
    except KeyFileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    witness = Witness(name, key.did)
    click.echo(f"name: {witness.name}\nkey:  {witness.key}\nvkey: {witness.vkey()}")
