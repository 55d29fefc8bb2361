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

from rnnjax.cli.options import add_config_options, add_deprecated_alias, config_values
from rnnjax.experiments.copy_job import (
    DEFAULT,
    PAPER,
    default_cells,
    paper_configs,
    reproduce_command,
    run_copy_job,
    run_copy_sweep,
)
from rnnjax.training.config import flag, parse_cell_option

PRESETS = {"default": DEFAULT, "paper": PAPER, "arjovsky": DEFAULT}
# The Config fields that are options of `rnnjax copy` (generated from their metadata,
# rnnjax.cli.options); an option left out keeps the preset's value.
_FIELDS = ("T", "hidden", "batch", "steps", "lr", "lr_orth", "seed", "seeds", "log_every",
           "eval_batch", "optimizer", "clip", "variant", "grad")
_DESTS = {f: f for f in _FIELDS}  # dest = the field's name (--num-seeds -> seeds)
_NOTES = {"seeds": "; seeds per cell, trained with jax.vmap",
          "grad": "; manual: the cells' hand-written BPTT; auto: the faster of it and "
                  "autodiff on this backend"}


def _help(field: str) -> str:
    return (f"default {getattr(DEFAULT, field)} (--preset paper: {getattr(PAPER, field)})"
            + _NOTES.get(field, ""))


def parse_cells(text):
    """``--cells a,b``: the list of names; None (left out): the default cells; a list
    naming no cell (``--cells ''``, ``--cells ,``) is refused."""
    if text is None:
        return None
    cells = [c.strip() for c in text.split(",") if c.strip()]
    if not cells:
        raise ValueError(f"--cells must name at least one cell (comma-separated), got "
                         f"{text!r}; leave it out for the default cells")
    return cells


__all__ = ["register", "run"]


def run(a) -> int:
    base = PRESETS[a.preset]
    changes = config_values(a, _DESTS, given_only=True)
    base = dataclasses.replace(base, **changes)
    cells = parse_cells(a.cells) or default_cells()
    cell_options = {}
    for text in a.cell_opt:
        k, v = parse_cell_option(text)
        for c in cells:
            cell_options[c] = tuple(cell_options.get(c, ())) + ((k, v),)
    # The reproducing command pins every option given and the cell list.
    words = ["copy", "--name", a.name]
    if a.runs_dir != "runs":
        words += ["--runs-dir", a.runs_dir]
    if a.preset != "default":
        words += ["--preset", a.preset]
    for k, v in changes.items():
        words += [flag(k), str(v)]
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
    add_config_options(p, _FIELDS, help=_help, dests=_DESTS)
    add_deprecated_alias(p, "--seeds", "--num-seeds", type=int, dest="seeds")
    p.add_argument("--cell-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument passed to every cell factory (repeatable)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted job in runs/NAME: skip finished cells, "
                        "resume the interrupted one from its latest checkpoint; a larger "
                        "--steps continues the finished cells to it; any other option "
                        "(or --cell-opt, --preset) that changes a cell's recipe is refused")
    p.add_argument("--overwrite", action="store_true",
                   help="train every cell again in a non-empty runs/NAME, replacing its "
                        "runs (without --resume or --overwrite a non-empty folder is "
                        "refused)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (it is drawn only on a terminal anyway)")
    p.set_defaults(func=run)
