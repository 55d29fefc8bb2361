"""``rnnjax bench SUITE [options]``: the benchmark suites of ``benchmarks/``.

The suites live in the ``benchmarks/`` folder of an rnnjax source checkout, beside the
``rnnjax`` package (an editable install, ``pip install -e .``, or running from the
checkout); they are not installed with the package, and the command says so when it
cannot find them.  The current directory is not searched.  Same as
``python -m benchmarks SUITE [options]``; ``rnnjax bench --help`` lists the suites.
``rnnjax bench calibrate`` needs no checkout: it measures what ``grad="auto"`` and
``scan="auto"`` choose here for the default shapes and prints why
(:mod:`rnnjax.experiments.calibrate`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

from rnnjax.experiments import calibrate

# rnnjax/cli/bench.py -> the checkout holding rnnjax/ and benchmarks/
CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_benchmarks():
    """Import ``benchmarks.__main__`` from the source checkout holding this rnnjax
    (``CHECKOUT/benchmarks``), without touching ``sys.path``."""
    pkg = os.path.join(CHECKOUT, "benchmarks")
    init = os.path.join(pkg, "__init__.py")
    if "benchmarks" not in sys.modules and os.path.isfile(init):
        spec = importlib.util.spec_from_file_location("benchmarks", init,
                                                      submodule_search_locations=[pkg])
        module = importlib.util.module_from_spec(spec)
        sys.modules["benchmarks"] = module
        spec.loader.exec_module(module)
    try:
        return importlib.import_module("benchmarks.__main__")
    except ImportError:
        raise FileNotFoundError(
            "rnnjax bench needs a source checkout of rnnjax: the benchmark suites live "
            f"in its benchmarks/ folder, which is not installed with the package (looked "
            f"for {pkg}); clone the repository and `pip install -e .` there, or run "
            "`python -m benchmarks` from its root") from None


def run(args) -> int:
    if args.suite == "calibrate":
        return calibrate.main(list(args.suite_args))
    return load_benchmarks().main([args.suite] + list(args.suite_args))


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="run a benchmark suite (from a source checkout)",
        description=__doc__.splitlines()[0],
        epilog="calibrate: what grad/scan='auto' choose here, and why. suites: peers, "
               "roofline, compile, memory, copy_step, bptt, orthogonal, scan, gradflow, "
               "newton, cpu_options, seeds, chunked, device, all; summary turns their JSON lines "
               "into tables. `rnnjax bench SUITE --help` shows a suite's options.")
    p.add_argument("suite", help="the suite to run (or all, summary)")
    p.add_argument("suite_args", nargs=argparse.REMAINDER,
                   help="the suite's options: --quick, --out FILE, ...")
    p.set_defaults(func=run)


__all__ = ["CHECKOUT", "load_benchmarks", "register", "run"]
