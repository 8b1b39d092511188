"""``guildnet keys ...``: create and inspect Ed25519 identity keys (did:key)."""

from __future__ import annotations

import getpass
import json
import os
import sys

import click


def _passphrase(env_name: str | None, prompt: bool, confirm: bool) -> str | None:
    if env_name:
        value = os.environ.get(env_name)
        if value is None:
            raise click.UsageError(f"environment variable {env_name} is not set")
        return value
    if prompt:
        first = getpass.getpass("passphrase: ")
        if confirm and getpass.getpass("again: ") != first:
            raise click.UsageError("the passphrases differ")
        return first
    return None


@click.group("keys")
def keys_group() -> None:
    """Create and inspect Ed25519 identity keys (did:key)."""


@keys_group.command("new")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--passphrase-env", metavar="VAR", help="Encrypt the key with the passphrase in env VAR.")
@click.option("--passphrase", "ask", is_flag=True, help="Prompt for a passphrase to encrypt the key.")
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@click.option("--json", "as_json", is_flag=True, help='Print {"did", "path"} as JSON.')
def keys_new(path: str, passphrase_env: str | None, ask: bool, force: bool, as_json: bool) -> None:
    """Create a key file (mode 0600) and print its did:key.

    \b
    Example:
      guildnet keys new org.key
      GUILDNET_PASS=... guildnet keys new agent.key --passphrase-env GUILDNET_PASS
    """
    from guildnet.protocols import keyfile
    from guildnet.protocols.keys import KeyFileError, SigningKey

    key = SigningKey.generate()
    try:
        keyfile.save(key, path, _passphrase(passphrase_env, ask, confirm=True), overwrite=force)
    except (KeyFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"did": key.did, "path": path}) if as_json else key.did)


@keys_group.command("show")
@click.argument("path", type=click.Path(dir_okay=False))
@click.option("--passphrase-env", metavar="VAR", help="Passphrase in env VAR, for an encrypted key.")
@click.option("--passphrase", "ask", is_flag=True, help="Prompt for the passphrase.")
@click.option("--json", "as_json", is_flag=True, help='Print {"did", "path"} as JSON.')
def keys_show(path: str, passphrase_env: str | None, ask: bool, as_json: bool) -> None:
    """Print the did:key of a key file (never the secret).

    \b
    Example:
      guildnet keys show org.key
    """
    from guildnet.protocols import keyfile
    from guildnet.protocols.keys import KeyFileError

    try:
        key = keyfile.load(path, _passphrase(passphrase_env, ask, confirm=False))
    except (KeyFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps({"did": key.did, "path": path}) if as_json else key.did)


@keys_group.command("domain-proof")
@click.argument("path", type=click.Path(dir_okay=False))
@click.argument("domain")
@click.option("--passphrase-env", metavar="VAR", help="Passphrase in env VAR, for an encrypted key.")
@click.option("--passphrase", "ask", is_flag=True, help="Prompt for the passphrase.")
@click.option("--lifetime-days", type=click.IntRange(1), help="Let the HTTPS proof expire after this many days.")
@click.option("--json", "as_json", is_flag=True, help='Print {"txt_name", "txt", "url", "document"} as JSON.')
def keys_domain_proof(path: str, domain: str, passphrase_env: str | None, ask: bool, lifetime_days: int | None,
                      as_json: bool) -> None:
    """Print what proves that DOMAIN belongs to the organisation whose key is PATH: a DNS TXT record to publish,
    or a document to serve over HTTPS (either one is enough; docs/domains.md).

    \b
    Example:
      guildnet keys domain-proof org.key acme.example
    """
    import time

    from guildnet.protocols import keyfile
    from guildnet.protocols.domain import (
        is_domain_name,
        sign_proof,
        txt_name,
        txt_record,
        well_known_document,
        well_known_url,
    )
    from guildnet.protocols.keys import KeyFileError

    if not is_domain_name(domain):
        raise click.BadParameter(f"{domain!r} is not a lower-case DNS name such as acme.example", param_hint="DOMAIN")
    try:
        key = keyfile.load(path, _passphrase(passphrase_env, ask, confirm=False))
    except (KeyFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    lifetime = lifetime_days * 86400 if lifetime_days else None
    document = well_known_document([sign_proof(key, domain, now=time.time(), lifetime=lifetime)])
    if as_json:
        click.echo(json.dumps({"txt_name": txt_name(domain), "txt": txt_record(key.did), "url": well_known_url(domain),
                               "document": document}, indent=2))
        return
    click.echo(f"DNS: publish this TXT record\n  {txt_name(domain)}. IN TXT \"{txt_record(key.did)}\"\n")
    click.echo(f"or HTTPS: serve this at {well_known_url(domain)}\n  {json.dumps(document)}")
