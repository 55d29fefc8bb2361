"""``rnnjax bench SUITE [options]``: the benchmark suites of ``benchmarks/``.

The suites live in the source checkout's ``benchmarks/`` package, not in the installed
library: run this from the repository root (the current directory is searched).  Same
as ``python -m benchmarks SUITE [options]``; ``rnnjax bench --help`` lists the suites.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys


def load_benchmarks():
    """Import ``benchmarks.__main__`` from the current directory (a source checkout)."""
    cwd = os.getcwd()
    if os.path.isfile(os.path.join(cwd, "benchmarks", "__main__.py")) and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module("benchmarks.__main__")
    except ImportError:
        raise FileNotFoundError(
            "the benchmark suites are not installed with rnnjax: run `rnnjax bench` from "
            "the root of an rnnjax source checkout (the directory holding benchmarks/), "
            f"got current directory {cwd}") from None


def run(args) -> int:
    return load_benchmarks().main([args.suite] + list(args.suite_args))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="run a benchmark suite (from a source checkout)",
        description=__doc__.splitlines()[0],
        epilog="suites: peers, roofline, compile, memory, copy_step, bptt, orthogonal, "
               "scan, gradflow, all; summary turns their JSON lines into tables. "
               "`rnnjax bench SUITE --help` shows a suite's options.")
    p.add_argument("suite", help="the suite to run (or all, summary)")
    p.add_argument("suite_args", nargs=argparse.REMAINDER,
                   help="the suite's options: --quick, --out FILE, ...")
    p.set_defaults(func=run)
