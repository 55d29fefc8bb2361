"""The ``rnnjax`` command: :func:`main` parses, then each subcommand module
(``rnnjax/cli/<name>.py``) calls library code."""

from rnnjax.cli.command import COMMANDS, USER_ERRORS, HelpFormatter, build_parser, main

__all__ = ["COMMANDS", "USER_ERRORS", "HelpFormatter", "build_parser", "main"]
