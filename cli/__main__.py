"""``python -m guildnet.cli``: the ``guildnet`` command without its console script."""

from .main import main

main()
