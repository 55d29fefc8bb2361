"""The ``rnnjax`` command.  Thin: each subcommand lives in ``rnnjax/cli/<name>.py``
with ``register(subparsers)`` that adds its parser and sets ``func`` to a function of
the parsed arguments, which calls library code."""

from __future__ import annotations

import argparse
import copy
import importlib
import os
import signal
import sys
import threading

# Subcommand modules, in the order ``rnnjax --help`` lists them.
COMMANDS = ["copy", "train", "gradflow", "bptt_explain", "bench", "colors", "forecast",
            "classify", "seq2seq", "generate", "orthogonality", "lab"]


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

# Optional packages -> the extra of pyproject.toml that installs them.
EXTRAS = {"sklearn": "data", "statsmodels": "data", "mnist1d": "data",
          "tensorboardX": "tensorboard", "torch": "peers", "equinox": "peers"}


class Stopped(BaseException):
    """SIGTERM or SIGINT outside the training steps (which save a checkpoint and raise
    :class:`rnnjax.training.checkpointing.Preempted` themselves): raised by the
    command's handler wherever Python runs; not an ``Exception``, so nothing on the way
    swallows it.  ``exit_code`` is ``128 + signum`` (143, 130)."""

    def __init__(self, signum):
        self.signum, self.exit_code = int(signum), 128 + int(signum)
        super().__init__(signal.Signals(self.signum).name)


def _stop(signum, frame):
    # Later signals wait (ignored) while the first one unwinds the command: cleanup
    # (closing a checkpoint manager, releasing the lock) is not cut short.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signum)


def import_error_line(e: ImportError) -> str:
    """One line for a missing package: the library's own message when it names the
    install command, else the package and the extra (and command) that install it."""
    text = " ".join(str(e).split())
    if "pip install" in text:
        return text
    top = (e.name or "").split(".")[0]
    if top in EXTRAS:
        extra = EXTRAS[top]
        return (f"the optional package {top!r} is not installed ({text}); it comes with "
                f"the [{extra}] extra: pip install \"rnnjax[{extra}]\" (in a source "
                f"checkout: pip install -e \".[{extra}]\")")
    return f"{text} (a package rnnjax needs is missing: reinstall rnnjax)"


def _stopped_line(command, e) -> str:
    if type(e).__name__ == "Preempted":  # the training steps saved a checkpoint
        return f"rnnjax {command}: {e}"
    name = signal.Signals(getattr(e, "signum", signal.SIGINT)).name
    resume = ("; --resume continues from the latest checkpoint, if one was saved"
              if command in ("train", "copy") else "")
    return (f"rnnjax {command}: stopped by {name} outside the training steps (no file is "
            f"half-written){resume}")


def main(argv=None) -> int:
    """Run the command line ``argv``.  An error is printed as one line naming the
    argument or file (exit 2; 1 for an unexpected internal error); ``--debug`` shows
    the full traceback instead.  SIGTERM and Ctrl-C (SIGINT) at any moment stop the
    command with one line and exit 143 / 130 (the training steps save a checkpoint
    first); as the process's own command (``argv`` None) it then ends at once
    (``os._exit``), so no interpreter teardown races XLA's threads."""
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            handlers[sig] = signal.signal(sig, _stop)
    command, debug = "", False
    try:
        parser = build_parser()
        parser.add_argument("--debug", action="store_true",
                            help="show the full traceback of an error")
        args = parser.parse_args(argv)
        command, debug = args.command or "", args.debug
        # The words as given, for a command that must tell an option given at its
        # default from one left out (``rnnjax train --preset``).
        args.argv = list(sys.argv[1:] if argv is None else argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.func(args) or 0
    except (Stopped, KeyboardInterrupt) as e:
        if debug:
            raise
        code = getattr(e, "exit_code", 130)
        print(_stopped_line(command or "(start-up)", e), file=sys.stderr, flush=True)
        return _end(code, argv)
    except Exception as e:  # noqa: BLE001 - every error reaches the user as one line
        if debug:
            raise
        if type(e).__name__ == "Preempted":  # a job of several runs (rnnjax copy)
            print(_stopped_line(command, e), file=sys.stderr, flush=True)
            return _end(e.exit_code, argv)
        if isinstance(e, ImportError):
            print(f"rnnjax {command}: error: {import_error_line(e)}", file=sys.stderr)
            return 2
        user = isinstance(e, USER_ERRORS)
        what = " ".join(str(e).split()) or type(e).__name__
        kind = "error" if user else f"internal error ({type(e).__name__})"
        hint = "" if user else "; rerun with --debug for the traceback and report it"
        print(f"rnnjax {command}: {kind}: {what}{hint}", file=sys.stderr)
        return 2 if user else 1
    finally:
        for sig, previous in handlers.items():
            signal.signal(sig, previous)


def _end(code: int, argv) -> int:
    """After SIGTERM/SIGINT: the process's own command ends now (its files are complete
    and closed); a caller of :func:`main` gets the code."""
    if argv is None:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


__all__ = ["COMMANDS", "EXTRAS", "HelpFormatter", "Stopped", "USER_ERRORS", "build_parser",
           "import_error_line", "main"]

