"""``rnnjax copy``: the main job.  Trains a set of cells (default: Elman tanh, LSTM, GRU
and every registered orthogonal/unitary cell) on the copy task and writes
``runs/<name>/report.md`` (+ ``report.html``) with a loss-curve plot, a table of final
cross-entropy, cross-entropy / baseline and recall accuracy per cell, and the command
that reproduces it.  ``--preset paper`` is expRNN's recipe (T=1000, hidden 190, batch
128, 4000 steps, RMSprop lr 2e-4, orthogonal lr 2e-5, Henaff initialisation)."""

from __future__ import annotations

import dataclasses

from rnnjax.commands.train import add_deprecated_alias
from rnnjax.commands.train import cell_option as _cell_option
from rnnjax.report import DEFAULT, PAPER, PAPER_CELL_OPTIONS, default_cells, \
    reproduce_command, run_copy_job

PRESETS = {"default": DEFAULT, "paper": PAPER}
_FLAGS = {"seeds": "--num-seeds"}  # Config field -> option, where they differ
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
            words += [_FLAGS.get(k, "--" + k.replace("_", "-")), str(getattr(a, k))]
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
    for flag, kind, extra in (("--T", int, {}), ("--hidden", int, {}), ("--batch", int, {}),
                              ("--steps", int, {}), ("--lr", float, {}),
                              ("--lr-orth", float, {}),
                              ("--optimizer", str, {"choices": ("rmsprop", "adam", "sgd")}),
                              ("--clip", float, {}), ("--seed", int, {}),
                              ("--num-seeds", int, {"dest": "seeds", "metavar": "K"}),
                              ("--log-every", int, {}), ("--eval-batch", int, {}),
                              ("--variant", str, {"choices": ("arjovsky", "exprnn")})):
        field = extra.get("dest", flag[2:].replace("-", "_"))
        p.add_argument(flag, type=kind, **extra,
                       help=f"default {getattr(DEFAULT, field)} "
                            f"(--preset paper: {getattr(PAPER, field)})"
                            + ("; seeds per cell, trained with jax.vmap"
                               if field == "seeds" else ""))
    add_deprecated_alias(p, "--seeds", "--num-seeds", type=int, dest="seeds")
    p.add_argument("--cell-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument passed to every cell factory (repeatable)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is drawn only on a terminal anyway)")
    p.set_defaults(func=run)
