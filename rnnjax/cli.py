"""The ``rnnjax`` command.  Thin: each subcommand lives in ``rnnjax/commands/<name>.py``
with ``register(subparsers)`` that adds its parser and sets ``func`` to a function of
the parsed arguments, which calls library code."""

from __future__ import annotations

import argparse
import copy
import importlib
import sys

# Subcommand modules, in the order ``rnnjax --help`` lists them.
COMMANDS = ["copy", "train", "gradflow", "bptt_explain", "bench", "colors", "forecast",
            "classify", "seq2seq", "generate", "orthogonality"]


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Every option's help ends with its default (``(default: X)``) unless the help
    already states it (``(default ...``); options without a default (None, off flags) are left as written,
    and an option without help text still shows its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("%(default)" in text or "(default" in text or action.default is None
                or action.default is False or action.default == []
                or action.default is argparse.SUPPRESS or not action.option_strings):
            return text
        return (text + " " if text else "") + "(default: %(default)s)"

    def _format_action(self, action):
        if not action.help and self._get_help_string(action):
            action = copy.copy(action)  # no help text: show the default alone
            action.help = self._get_help_string(action)
        return super()._format_action(action)


def build_parser() -> argparse.ArgumentParser:
    """The ``rnnjax`` parser; every subcommand's ``--help`` shows the defaults
    (:class:`HelpFormatter`, set here once for all of them)."""
    parser = argparse.ArgumentParser(
        prog="rnnjax", description="Recurrent networks in JAX: experiments and tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"rnnjax.commands.{name}").register(sub)
    for p in sub.choices.values():
        p.formatter_class = HelpFormatter
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


__all__ = ["COMMANDS", "HelpFormatter", "build_parser", "main"]


if __name__ == "__main__":
    sys.exit(main())
