"""``rnnjax copy``: the main job.  Trains a set of cells (default: Elman tanh, LSTM, GRU
and every registered orthogonal/unitary cell) on the copy task and writes
``runs/<name>/report.md`` (+ ``report.html``) with a loss-curve plot, a table of final
cross-entropy, cross-entropy / baseline and recall accuracy per cell, and the command
that reproduces it.  ``--preset paper`` is expRNN's recipe (T=1000, hidden 190, batch
128, 4000 steps, RMSprop lr 2e-4, orthogonal lr 2e-5, Henaff initialisation)."""

from __future__ import annotations

import dataclasses

from rnnjax.commands.train import cell_option as _cell_option
from rnnjax.report import DEFAULT, PAPER, PAPER_CELL_OPTIONS, default_cells, \
    reproduce_command, run_copy_job

PRESETS = {"default": DEFAULT, "paper": PAPER}
_FIELDS = ("T", "hidden", "batch", "steps", "lr", "lr_orth", "seed", "seeds", "log_every",
           "eval_batch", "optimizer", "clip", "variant")


def run(a) -> int:
    base = PRESETS[a.preset]
    changes = {k: getattr(a, k) for k in _FIELDS if getattr(a, k) is not None}
    base = dataclasses.replace(base, **changes)
    cells = [c.strip() for c in a.cells.split(",") if c.strip()] if a.cells else default_cells()
    cell_options = dict(PAPER_CELL_OPTIONS) if a.preset == "paper" else {}
    for text in a.cell_opt:
        k, v = _cell_option(text)
        for c in cells:
            cell_options[c] = tuple(cell_options.get(c, ())) + ((k, v),)
    # The reproducing command pins every option given and the cell list.
    words = ["copy", "--name", a.name]
    if a.runs_dir != "runs":
        words += ["--runs-dir", a.runs_dir]
    if a.preset != "default":
        words += ["--preset", a.preset]
    for k in _FIELDS:
        if getattr(a, k) is not None:
            words += ["--" + k.replace("_", "-"), str(getattr(a, k))]
    for text in a.cell_opt:
        words += ["--cell-opt", text]
    command = reproduce_command(words + ["--cells", ",".join(cells)])
    run_copy_job(a.name, base, cells, runs_dir=a.runs_dir, cell_options=cell_options,
                 command=command, progress=not a.no_progress)
    return 0


def register(sub):
    p = sub.add_parser("copy", help="train several cells on the copy task and write a report",
                       description=__doc__)
    p.add_argument("--name", default="copy", help="report directory runs/NAME (default copy)")
    p.add_argument("--runs-dir", default="runs")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--cells", default=None,
                   help="comma-separated cell names (default: elman,lstm,gru + the "
                        "orthogonal/unitary cells registered)")
    p.add_argument("--T", type=int)
    p.add_argument("--hidden", type=int)
    p.add_argument("--batch", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--lr-orth", type=float)
    p.add_argument("--optimizer", choices=("rmsprop", "adam", "sgd"))
    p.add_argument("--clip", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--seeds", type=int, help="seeds per cell, trained with jax.vmap")
    p.add_argument("--log-every", type=int)
    p.add_argument("--eval-batch", type=int)
    p.add_argument("--variant", choices=("arjovsky", "exprnn"))
    p.add_argument("--cell-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument passed to every cell factory (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)
