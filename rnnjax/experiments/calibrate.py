"""``rnnjax bench calibrate``: measure what ``grad="auto"``/``scan="auto"`` choose on
this machine for the default shapes, print the choice and the timings behind it, and
store them in the autotune cache (:mod:`rnnjax.engine.autotune`).

The shapes: ``rnnjax train``'s defaults (the copy task, LSTM, T 100, hidden 64, batch
64) and ``rnnjax copy``'s default recipe (T 200, hidden 64, batch 32) for every cell of
its default list that has a choice (a hand-written backward, or an engine besides the
sequential scan that can run it).  Each measurement is a few forward + backward passes
of each candidate after its compilation: seconds per cell.
"""

from __future__ import annotations

import argparse
import dataclasses

from rnnjax.engine import autotune
from rnnjax.engine.table import decide
from rnnjax.experiments.copy_job import DEFAULT, default_cells
from rnnjax.training.autotuned import run_shapes
from rnnjax.training.config import Config, make_task

__all__ = ["calibrate", "describe", "main", "shapes"]

LABELS = {"sequential": "autodiff through lax.scan", "manual": "hand-written BPTT"}


def shapes(cells=None) -> dict:
    """``{label: Config}``: the default ``rnnjax train`` run and the ``rnnjax copy``
    recipe for each of ``cells`` (default: the copy job's default cells)."""
    out = {"train (copy, lstm)": Config()}
    for name in cells or default_cells():
        out[f"copy T={DEFAULT.T} ({name})"] = dataclasses.replace(DEFAULT, cell=name)
    return out


def describe(label: str, config: Config, choice) -> str:
    """One line: what was chosen and why (each candidate's ms per forward + backward)."""
    if not choice.timings:
        why = choice.source
    else:
        why = ", ".join(f"{LABELS.get(n, n)} {1e3 * t:.2f} ms" for n, t in
                        sorted(choice.timings.items(), key=lambda kv: kv[1]))
    return (f"{label}: batch {config.batch}, hidden {config.hidden} -> "
            f"{LABELS.get(choice.engine, choice.engine)} ({why})")


def calibrate(cells=None, print_fn=print) -> list:
    """Measure afresh (:func:`rnnjax.engine.autotune.remeasure`) and print one line per
    shape; returns ``[(label, Config, Choice)]``."""
    rows = []
    print_fn(f"autotune on {autotune.device_name()}; cache {autotune.cache_path()}")
    for label, config in shapes(cells).items():
        cell, params, xs = run_shapes(config, make_task(config))
        with autotune.remeasure():
            choice = decide(cell, params, xs, grad=config.grad)
        print_fn(describe(label, config, choice))
        rows.append((label, config, choice))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="rnnjax bench calibrate", description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", default=None,
                    help="cells of the copy recipe (default: the copy job's default cells)")
    a = ap.parse_args(argv)
    calibrate(a.cells)
    return 0
