"""``rnnjax lab``: the memory lab.  Trains a grid of cells x tasks x training lengths,
each grid cell with several seeds in one vmapped program and as a normal run directory
(``--out/runs/<task>_T<L>/<cell>/``, checkpoints included), scores every run at 1x, 2x,
4x and 8x its training length and writes ``--out/leaderboard.md`` (+ ``.html``,
``.json``, a heatmap and length-generalisation curves) with the published results
beside the rows (:mod:`rnnjax.experiments.lab`).

``--quick``: elman and lstm on parity and induction heads, tiny sizes (a smoke test of a
few minutes).  Without it: the default grid (12 cells across the families x 8 memory
and state-tracking tasks x 3 seeds; about an hour on a 2-core CPU, the ETA printed
first says how long).  ``--cells`` entries are registered names or ``module:factory``,
with factory options after ``@`` (``deltanet@negative_eigenvalues=true``); ``--tasks``
entries are task names or ``module:factory``.  ``--resume`` continues a stopped grid
where it stopped; a used ``--out`` is refused otherwise (``--overwrite`` replaces a
lab's folder)."""

from __future__ import annotations

import dataclasses

from rnnjax.cli.options import add_config_options, config_values
from rnnjax.experiments.copy_job import reproduce_command
from rnnjax.experiments.lab import (
    DEFAULT_CELLS,
    DEFAULT_RECIPE,
    DEFAULT_TASKS,
    QUICK_CELLS,
    QUICK_RECIPE,
    QUICK_TASKS,
    run_lab,
)
from rnnjax.io.outputs import default_out

_FIELDS = ("hidden", "batch", "steps", "lr", "seeds", "eval_batch", "log_every", "seed")
_DESTS = {f: f for f in _FIELDS}

__all__ = ["register", "run"]


def _items(text, what):
    if text is None:
        return None
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{what} must name at least one entry (comma-separated), got "
                         f"{text!r}; leave it out for the default")
    return items


def _lengths(text):
    items = _items(text, "lengths")
    if items is None:
        return None
    try:
        return [int(t) for t in items]
    except ValueError:
        raise ValueError(f"--lengths must be comma-separated positive integers, got "
                         f"{text!r}") from None


def run(a) -> int:
    recipe = QUICK_RECIPE if a.quick else DEFAULT_RECIPE
    changes = config_values(a, _DESTS, given_only=True)
    recipe = dataclasses.replace(recipe, **changes)
    cells = _items(a.cells, "cells") or list(QUICK_CELLS if a.quick else DEFAULT_CELLS)
    tasks = _items(a.tasks, "tasks") or list(QUICK_TASKS if a.quick else DEFAULT_TASKS)
    lengths = _lengths(a.lengths)
    out = a.out or default_out("lab")
    words = ["lab", "--out", out] + (["--quick"] if a.quick else [])
    for k, v in changes.items():
        words += [f"--{'num-seeds' if k == 'seeds' else k.replace('_', '-')}", str(v)]
    words += ["--cells", ",".join(cells), "--tasks", ",".join(tasks)]
    if lengths:
        words += ["--lengths", ",".join(map(str, lengths))]
    run_lab(out, cells, tasks, lengths, recipe=recipe, resume=a.resume,
            overwrite=a.overwrite, command=reproduce_command(words),
            report_only=a.report_only)
    return 0


def register(sub):
    p = sub.add_parser("lab", help="the memory lab: cells x memory and state-tracking "
                                   "tasks, length generalisation, a leaderboard",
                       description=__doc__)
    p.add_argument("--out", default=None,
                   help="new (or empty) output folder (default runs/lab/YYYYmmdd-HHMMSS)")
    p.add_argument("--quick", action="store_true",
                   help="the smoke grid: elman,lstm x parity,induction, tiny sizes")
    p.add_argument("--cells", default=None,
                   help="comma-separated cells: names or module:factory, options after @ "
                        f"(default {','.join(DEFAULT_CELLS)})")
    p.add_argument("--tasks", default=None,
                   help=f"comma-separated tasks: names or module:factory (default "
                        f"{','.join(DEFAULT_TASKS)})")
    p.add_argument("--lengths", default=None,
                   help="comma-separated training lengths for every task (default: each "
                        "task's own, rnnjax.experiments.lab.TASK_LENGTHS)")
    add_config_options(p, _FIELDS, dests=_DESTS,
                       help=lambda f: f"default {getattr(DEFAULT_RECIPE, f)} (--quick: "
                                      f"{getattr(QUICK_RECIPE, f)})")
    p.add_argument("--resume", action="store_true",
                   help="continue a stopped grid in --out: finished runs are read back, an "
                        "interrupted one continues from its checkpoint")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing: write the leaderboard of the runs of --out that "
                        "have finished (marked partial when some have not)")
    p.add_argument("--overwrite", action="store_true",
                   help="train the whole grid again in a non-empty --out (a lab's folder)")
    p.set_defaults(func=run)
