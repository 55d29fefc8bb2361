"""The ``rnnjax`` command.  Thin: each subcommand lives in ``rnnjax/cli/<name>.py``
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
    already states it (``(default ...``); options without a default (None, off flags) are left as
    written,
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
        importlib.import_module(f"rnnjax.cli.{name}").register(sub)
    for p in sub.choices.values():
        p.formatter_class = HelpFormatter
    return parser


# Errors of the user's input (an argument, a file): one line, exit 2.
USER_ERRORS = (ValueError, TypeError, OSError, KeyError, IndexError)


def main(argv=None) -> int:
    """Run the command line ``argv``.  An error is printed as one line naming the
    argument or file (exit 2; 1 for an unexpected internal error); ``--debug`` shows
    the full traceback instead.  Ctrl-C outside the training loop exits 130."""
    parser = build_parser()
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error")
    args = parser.parse_args(argv)
    # The words as given, for a command that must tell an option given at its default
    # from one left out (``rnnjax train --preset``).
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        if args.debug:
            raise
        print(f"rnnjax {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - every error reaches the user as one line
        if args.debug:
            raise
        user = isinstance(e, USER_ERRORS)
        what = " ".join(str(e).split()) or type(e).__name__
        kind = "error" if user else f"internal error ({type(e).__name__})"
        hint = "" if user else "; rerun with --debug for the traceback and report it"
        print(f"rnnjax {args.command}: {kind}: {what}{hint}", file=sys.stderr)
        return 2 if user else 1


__all__ = ["COMMANDS", "HelpFormatter", "USER_ERRORS", "build_parser", "main"]

