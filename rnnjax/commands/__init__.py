"""Subcommands of the ``rnnjax`` command, one module each (see :mod:`rnnjax.cli`)."""
