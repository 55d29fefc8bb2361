"""``rnnjax copy``: the main job.  Trains a set of cells (default: Elman tanh, LSTM, GRU
and every registered orthogonal/unitary cell) on the copy task at T=200 and writes
``runs/<name>/report.md`` (+ ``report.html``) with the loss curves, the gradient norms
||dL/dh_t|| against t at initialisation and after training, the orthogonality error, a
table per cell and the command that reproduces it.  Each cell checkpoints (orbax) and
keeps its trained params; ``--resume`` continues an interrupted job cell by cell.

Presets: ``default`` (T=200, about five minutes on an idle 2-core CPU); ``arjovsky``
(the default recipe at T = 100, 200, 300, 500, one panel per T, Arjovsky et al. 2016
Fig. 1); ``paper`` (expRNN's copy task: its layout, T=1000, hidden 190, batch 128, 4000
steps, RMSprop 2e-4 / 2e-5; every cell with its own paper's init and optimiser,
``rnnjax.optim.PAPER_RECIPES``; hours on a CPU)."""

from __future__ import annotations

import dataclasses

from rnnjax.cli.train import add_deprecated_alias, cell_option
from rnnjax.engine.bptt import GRADS
from rnnjax.experiments.copy_job import (
    DEFAULT,
    PAPER,
    default_cells,
    paper_configs,
    reproduce_command,
    run_copy_job,
    run_copy_sweep,
)
from rnnjax.optim import OPTIMIZERS

PRESETS = {"default": DEFAULT, "paper": PAPER, "arjovsky": DEFAULT}
_FLAGS = {"seeds": "--num-seeds"}  # Config field -> option, where they differ
_FIELDS = ("T", "hidden", "batch", "steps", "lr", "lr_orth", "seed", "seeds", "log_every",
           "eval_batch", "optimizer", "clip", "variant", "grad")


__all__ = ["register", "run"]


def run(a) -> int:
    base = PRESETS[a.preset]
    changes = {k: getattr(a, k) for k in _FIELDS if getattr(a, k) is not None}
    base = dataclasses.replace(base, **changes)
    cells = [c.strip() for c in a.cells.split(",") if c.strip()] if a.cells else default_cells()
    cell_options = {}
    for text in a.cell_opt:
        k, v = cell_option(text)
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
    kw = dict(runs_dir=a.runs_dir, cell_options=cell_options, command=command,
              progress=not a.no_progress, resume=a.resume, overwrite=a.overwrite)
    if a.preset == "arjovsky" and a.T is None:
        run_copy_sweep(a.name, base, cells, **kw)
        return 0
    configs = paper_configs(base, cells) if a.preset == "paper" else None
    run_copy_job(a.name, base, cells, configs=configs, **kw)
    return 0


def register(sub):
    p = sub.add_parser("copy", help="train several cells on the copy task and write a report",
                       description=__doc__)
    p.add_argument("--name", default="copy",
                   help="report directory RUNS_DIR/NAME (default copy)")
    p.add_argument("--runs-dir", default="runs", help="folder of the report directories")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS))
    p.add_argument("--cells", default=None,
                   help="comma-separated cell names (default: elman,lstm,gru + the "
                        "registered cells whose W stays orthogonal/unitary)")
    for flag, kind, extra in (("--T", int, {}), ("--hidden", int, {}), ("--batch", int, {}),
                              ("--steps", int, {}), ("--lr", float, {}),
                              ("--lr-orth", float, {}),
                              ("--optimizer", str, {"choices": OPTIMIZERS}),
                              ("--clip", float, {}), ("--seed", int, {}),
                              ("--num-seeds", int, {"dest": "seeds", "metavar": "K"}),
                              ("--log-every", int, {}), ("--eval-batch", int, {}),
                              ("--variant", str, {"choices": ("arjovsky", "exprnn")}),
                              ("--grad", str, {"choices": GRADS})):
        field = extra.get("dest", flag[2:].replace("-", "_"))
        p.add_argument(flag, type=kind, **extra,
                       help=f"default {getattr(DEFAULT, field)} "
                            f"(--preset paper: {getattr(PAPER, field)})"
                            + ("; seeds per cell, trained with jax.vmap"
                               if field == "seeds" else "")
                            + ("; manual: the cells' hand-written BPTT; auto: the "
                               "faster of it and autodiff on this backend"
                               if field == "grad" else ""))
    add_deprecated_alias(p, "--seeds", "--num-seeds", type=int, dest="seeds")
    p.add_argument("--cell-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument passed to every cell factory (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted job in runs/NAME: skip finished cells, "
                        "resume the interrupted one from its latest checkpoint")
    p.add_argument("--overwrite", action="store_true",
                   help="train every cell again in a non-empty runs/NAME, replacing its "
                        "runs (without --resume or --overwrite a non-empty folder is "
                        "refused)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is drawn only on a terminal anyway)")
    p.set_defaults(func=run)
