"""The ``rnnjax`` command's first seconds: importing JAX takes seconds, before
:func:`rnnjax.cli.command.main` can install its handlers.  ``import rnnjax`` imports this
module first; when the process is the ``rnnjax`` command (the console script or
``python -m rnnjax.cli``, never a program that imports rnnjax), SIGTERM and Ctrl-C
(SIGINT) until ``main`` takes over print one line and end the process at once with
143 / 130: nothing has been written yet, and no ``KeyboardInterrupt`` traceback, no
interpreter teardown under XLA's threads.  Standard library only."""

from __future__ import annotations

import os
import signal
import sys
import threading


def is_command(argv0=None, orig_argv=None) -> bool:
    """Whether this process runs the ``rnnjax`` command (``argv0``/``orig_argv``:
    ``sys.argv[0]`` and ``sys.orig_argv`` unless given)."""
    argv0 = (sys.argv[0] if sys.argv else "") if argv0 is None else argv0
    orig = list(getattr(sys, "orig_argv", []) if orig_argv is None else orig_argv)
    if os.path.basename(argv0) == "rnnjax":
        return True
    return "-m" in orig[1:] and orig[orig.index("-m", 1) + 1:][:1] == ["rnnjax.cli"]


def _exit_now(signum, frame):
    words = [a for a in sys.argv[1:] if not a.startswith("-")]
    name = "rnnjax" + (f" {words[0]}" if words else "")
    os.write(2, f"{name}: stopped by {signal.Signals(signum).name} during start-up, "
                f"before anything was written\n".encode())
    os._exit(128 + signum)


def install() -> bool:
    """Install the start-up handlers if this process is the command; return whether."""
    if not is_command() or threading.current_thread() is not threading.main_thread():
        return False
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_now)
    return True


INSTALLED = install()

__all__ = ["INSTALLED", "install", "is_command"]
