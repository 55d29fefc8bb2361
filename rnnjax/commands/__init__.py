"""Subcommands of the ``rnnjax`` command, one module each (see :mod:`rnnjax.cli`)."""

__all__: list = []  # subcommand modules are found by rnnjax.cli.COMMANDS
