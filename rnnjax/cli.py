"""The ``rnnjax`` command.  Thin: each subcommand lives in ``rnnjax/commands/<name>.py``
with ``register(subparsers)`` that adds its parser and sets ``func`` to a function of
the parsed arguments, which calls library code."""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order ``rnnjax --help`` lists them.
COMMANDS = ["copy", "train", "gradflow", "bptt_explain", "bench", "colors", "forecast",
            "classify", "seq2seq", "generate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rnnjax", description="Recurrent networks in JAX: experiments and tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"rnnjax.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"rnnjax {args.command}: error: {e}", file=sys.stderr)
        return 2


__all__ = ["COMMANDS", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
