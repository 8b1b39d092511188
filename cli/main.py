"""The ``guildnet`` command: every job's commands, composed in one group.

This package is the edge that may import both the node and the registry; each command imports what it runs
when it runs, so ``guildnet --help`` stays quick.
"""

from __future__ import annotations

import click

from .delegate import delegate
from .flywheel import flywheel_group
from .keys import keys_group
from .node import doctor, node_group
from .registry import registry_group
from .witness import witness_group


@click.group()
@click.version_option(package_name="guildnet")
def main() -> None:
    """guildnet: publish agents as MCP tools and A2A peers, find and trust other organisations' agents.

    \b
    Exit codes: 0 success, 1 the operation failed (the message says why), 2 bad usage.
    """


for command in (keys_group, registry_group, node_group, delegate, doctor, flywheel_group, witness_group):
    main.add_command(command)
