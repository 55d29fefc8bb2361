"""The ``rnnjax`` command: :func:`main` parses, then each subcommand module
(``rnnjax/cli/<name>.py``) calls library code."""

from rnnjax.cli.main import main

__all__ = ["main"]
