r"""The memory lab behind ``rnnjax lab``: a grid of cells x tasks x training lengths,
each grid cell trained with ``K`` seeds in one vmapped program (``Config(seeds=K)``) by
the runner (:func:`rnnjax.training.train`), then scored at ``1x, 2x, 4x, 8x`` its
training length, and a leaderboard (:mod:`rnnjax.experiments.lab_board`).

``out/`` receives ``runs/<task>_T<L>/<cell>/``, one normal run directory per grid cell
(``config.json``, ``metrics.jsonl``, orbax ``checkpoints/``; ``rnnjax train --resume
--out`` continues one) with ``lab_run.json`` once the grid cell is done, ``grid.json``
(what the grid is), and ``leaderboard.md``, ``.html``, ``.json`` with
``lab_heatmap.png`` and ``lab_lengths.png``.

Each run's entry (``lab_run.json``) holds, per seed: the held-out accuracy and loss at
``1x`` (the runner's last record, :mod:`rnnjax.training.metrics`) and at the longer
lengths (the trained params on ``eval_batch`` fresh sequences of ``f L`` steps from the
task built at ``T = f L``, key ``fold_in(key(seed), 3 << 20 + f)``), the loss over the
task's baseline, the credit ratio ``||dL_target/dz_source|| / ||dL_target/dz_reference||``
per carry field and ``||dz_reference/dz_source||_2`` at the end of training (the
runner's records, :func:`rnnjax.training.credit_metrics`, on the task's
:class:`rnnjax.tasks.CreditSteps`), and the seconds it took.

The out folder is checked like every rnnjax command's (:func:`rnnjax.io.outputs.prepare_out`):
one that holds files is refused before anything is trained unless ``resume`` (finished
grid cells are read back; an interrupted one continues from its latest checkpoint;
the rest train) or ``overwrite``.  SIGTERM during training saves a checkpoint and stops
(:class:`rnnjax.training.checkpointing.Preempted`); ``--resume`` then continues the grid.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import time
from typing import NamedTuple

import jax
import numpy as np

from rnnjax import cells as cells_lib
from rnnjax import tasks as tasks_lib
from rnnjax.experiments.copy_job import check_resume_job, credit_fields
from rnnjax.experiments.lab_board import write_leaderboard
from rnnjax.io.outputs import claim_out, lock_out, prepare_out, write_text
from rnnjax.training.config import make_task, parse_cell_option, validate
from rnnjax.training.runner import Config, train

__all__ = ["DEFAULT_CELLS", "DEFAULT_RECIPE", "DEFAULT_TASKS", "EVAL_FACTORS", "LabCell",
           "QUICK_CELLS", "QUICK_RECIPE", "QUICK_TASKS", "TASK_LENGTHS", "estimate_seconds",
           "grid_configs", "length_metrics", "parse_cell", "run_lab"]

EVAL_FACTORS = (1, 2, 4, 8)


class LabCell(NamedTuple):
    """A column of the grid: ``label`` (as given, e.g. ``deltanet@negative_eigenvalues=true``),
    the cell's registered name or ``module:factory`` and its factory options."""

    label: str
    cell: str
    options: tuple = ()

    @property
    def folder(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.label)


def parse_cell(text: str) -> LabCell:
    """``name[@key=value[@key=value...]]`` -> :class:`LabCell`; values as ``--cell-opt``
    reads them (int, float, ``true``/``false``, else the string)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a lab cell must be a name or 'module:factory' with optional "
                         f"@key=value options, got {text!r}")
    name, *opts = text.strip().split("@")
    cells_lib.check_name(name)
    return LabCell(text.strip(), name, tuple(parse_cell_option(o) for o in opts))


# One or two cells per family: classic, gated, unitary, oscillator, minimal, gated
# diagonal SSM, selective SSM (with and without negative eigenvalues), xLSTM, delta rule
# (with and without negative eigenvalues).
# (expRNN, 6 steps/s here, and the LRU, whose model size must equal the input size, are
# one --cells away.)
DEFAULT_CELLS = ("elman", "lstm", "gru", "eunn", "cornn", "mingru", "rglru", "mamba",
                 "mamba@negative_eigenvalues=true", "slstm", "deltanet",
                 "deltanet@negative_eigenvalues=true")
DEFAULT_TASKS = ("parity", "modadd", "s3", "s5", "cycle", "selective_copy", "mqar",
                 "induction")
# Training length of each task (the whole sequence; a task not listed: --lengths).
TASK_LENGTHS = {"parity": 16, "modadd": 16, "s3": 16, "s5": 16, "cycle": 16,
                "selective_copy": 32, "mqar": 32, "induction": 32, "copy": 20,
                "adding": 50}
QUICK_CELLS = ("elman", "lstm")
QUICK_TASKS = ("parity", "induction")

# The recipe of every grid cell: Adam 3e-3, clipping 1, hidden 32, batch 32, 3 seeds.
DEFAULT_RECIPE = Config(hidden=32, batch=32, steps=400, lr=3e-3, optimizer="adam", clip=1.0,
                        seeds=3, log_every=100, eval_batch=128, seed=0)
QUICK_RECIPE = dataclasses.replace(DEFAULT_RECIPE, hidden=8, batch=16, steps=40, seeds=2,
                                   log_every=20, eval_batch=32)

# The ETA's prior for one grid cell on the 2-core CPU (compilation and evaluation, then
# the steps), measured with the default recipe on the shared 2-core AMD EPYC machine
# (load about 19: 43-90 s per grid cell, mostly compilation); the ETA is re-estimated
# from the grid cells already done after each one.
_PRIOR_FIXED_S, _PRIOR_STEP_S = 55.0, 0.03


def estimate_seconds(configs) -> float:
    """A prior estimate of the grid's seconds (before any grid cell has run)."""
    return float(sum(_PRIOR_FIXED_S + _PRIOR_STEP_S * c.steps * c.T / 16 * c.seeds / 3
                     for c in configs.values()))


def grid_configs(out: str, recipe: Config, cells, task_names, lengths=None) -> dict:
    """``{(task, L, cell label): Config}`` of the grid, in the order it trains (task by
    task, so that a stopped grid has whole tasks done); ``lengths`` (training lengths)
    None: each task's :data:`TASK_LENGTHS` entry."""
    cfgs = {}
    every = min(recipe.steps, 100) or 1
    for t in task_names:
        Ls = lengths or ([TASK_LENGTHS[t]] if t in TASK_LENGTHS else None)
        if not Ls:
            raise ValueError(f"task {t!r} has no default training length: give --lengths")
        for L in Ls:
            for c in cells:
                run = os.path.join(out, "runs", f"{_folder(t)}_T{L}", c.folder)
                cfgs[(t, L, c.label)] = dataclasses.replace(
                    recipe, task=t, cell=c.cell, cell_options=tuple(c.options), T=int(L),
                    out=run, checkpoint_every=every)
    return cfgs


def _folder(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name)


def _check_grid(cfgs: dict, resume: bool, factors) -> None:
    """Every config validated and every evaluation length built before any file is
    touched; on resume, every started run's recipe checked against it."""
    for cfg in cfgs.values():
        validate(cfg)
        for f in factors[1:]:
            make_task(dataclasses.replace(cfg, T=cfg.T * f))
    if resume:
        check_resume_job(cfgs)


def length_metrics(exp, params, factor: int) -> dict:
    """``{"loss": [per seed], "accuracy": [per seed] or None}`` of the stacked ``params``
    on the task built at ``T = factor * L``: ``eval_batch`` sequences per seed, drawn
    with ``fold_in(key(seed), (3 << 20) + factor)``."""
    cfg = exp.config
    task = make_task(dataclasses.replace(cfg, T=cfg.T * factor))
    model = exp.model
    sample = jax.jit(lambda k: task.eval_sample(k, cfg.eval_batch))
    seeds = [cfg.seed + i for i in range(cfg.seeds)]
    data = [sample(jax.random.fold_in(jax.random.key(s), (3 << 20) + factor)) for s in seeds]
    data = jax.tree.map(lambda *a: jax.numpy.stack(a), *data)
    fn = jax.jit(jax.vmap(lambda p, d: task.metrics(model.apply(p, task.encode(d[0])), d[1])))
    m = jax.device_get(fn(params, data))
    acc = m.get("accuracy")
    return {"loss": [float(v) for v in np.asarray(m["loss"]).reshape(-1)],
            "accuracy": None if acc is None else [float(v) for v in
                                                  np.asarray(acc).reshape(-1)]}


def _per_seed(rec: dict, key: str, K: int):
    v = rec["seeds"].get(key) if K > 1 else rec.get(key)
    if v is None:
        return None
    vals = list(v) if isinstance(v, (list, tuple)) else [v]
    return [None if x is None or not math.isfinite(float(x)) else float(x) for x in vals]


def _call_seconds(history) -> float:
    """Training seconds over the calls that made ``history`` (a record's ``time``
    counts from its call's start: each call ends where ``time`` drops)."""
    t = [r["time"] for r in history]
    return float(sum(a for a, b in zip(t, t[1:] + [-1.0]) if b < a))


def _run_one(root: str, key, cfg: Config, cell: LabCell, resume: bool, factors) -> dict:
    done = os.path.join(cfg.out, "lab_run.json")
    if resume and os.path.exists(done):
        with open(done) as f:
            return json.load(f)
    ckpt = os.path.join(cfg.out, "checkpoints")
    again = resume and os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt))
    t0 = time.perf_counter()
    new = []
    result = train(cfg, resume=again, overwrite=not again, progress=False, checked=True,
                   on_record=new.append)
    earlier = _call_seconds(result.history[:len(result.history) - len(new)])
    exp, last, K = result.experiment, result.history[-1], cfg.seeds
    accuracy, loss = {}, {}
    for f in factors:
        if f == 1:  # the runner's own held-out record
            loss["1"] = _per_seed(last, "eval_loss", K)
            accuracy["1"] = _per_seed(last, "eval_accuracy", K)
        else:
            m = length_metrics(exp, result.state.params, f)
            loss[str(f)], accuracy[str(f)] = m["loss"], m["accuracy"]
    baseline = exp.task.baseline
    fields = credit_fields(last)
    credit = None
    if fields:
        credit = {"source": exp.task.credit.source, "reference": exp.task.credit.reference,
                  "ratio": {f: _per_seed(last, f"eval_credit_ratio_{f}", K) for f in fields},
                  "jacobian_norm": _per_seed(last, "eval_credit_jacobian_norm", K)}
    entry = {"task": key[0], "T": key[1], "cell": cell.label, "cell_name": cell.cell,
             "cell_options": [list(kv) for kv in cell.options], "seeds": K,
             "steps": cfg.steps, "baseline": baseline,
             "baseline_note": exp.task.baseline_note, "lengths": [cfg.T * f for f in factors],
             "accuracy": accuracy, "loss": loss,
             "over_baseline": (None if not baseline or loss["1"] is None else
                               [None if v is None else v / baseline for v in loss["1"]]),
             "credit": credit, "run": os.path.relpath(cfg.out, root),
             "seconds": earlier + time.perf_counter() - t0}
    write_text(done, json.dumps(entry))
    return entry


def run_lab(out: str, cells=None, task_names=None, lengths=None, *,
            recipe: Config = DEFAULT_RECIPE, resume: bool = False, overwrite: bool = False,
            command: str | None = None, print_fn=print, factors=EVAL_FACTORS,
            report_only: bool = False) -> dict:
    """Train the grid ``cells`` (:class:`LabCell` or their ``name@k=v`` texts; default
    :data:`DEFAULT_CELLS`) x ``task_names`` (default :data:`DEFAULT_TASKS`; a
    ``module:factory`` is a task of one's own) x training ``lengths`` (default: each
    task's :data:`TASK_LENGTHS`) with ``recipe`` and write the leaderboard in ``out``.
    ``report_only``: train nothing; write the leaderboard of the runs of ``out``
    already finished (``out`` must hold this grid: it implies ``resume``), marked
    ``"partial": "k of n runs"`` when some are missing.  ``factors``: the evaluation
    lengths as multiples of the training length (the first
    must be 1, the runner's own held-out record).  Returns the leaderboard (the
    ``leaderboard.json`` object)."""
    factors = tuple(int(f) for f in factors)
    if not factors or factors[0] != 1 or any(f < 1 for f in factors):
        raise ValueError(f"factors must start with 1 and be positive integers, got "
                         f"{factors}")
    cells = [c if isinstance(c, LabCell) else parse_cell(c)
             for c in (DEFAULT_CELLS if cells is None else cells)]
    task_names = list(DEFAULT_TASKS if task_names is None else task_names)
    if not cells or not task_names:
        raise ValueError("the lab needs at least one cell and one task")
    if len({c.folder for c in cells}) < len(cells):
        raise ValueError(f"cells must be distinct, got {[c.label for c in cells]}")
    for t in task_names:
        if not tasks_lib.is_plugin(t) and t not in tasks_lib.TASKS:
            raise ValueError(f"task must be one of {sorted(tasks_lib.TASKS)} or "
                             f"'module:factory', got {t!r}")
    if lengths is not None:
        lengths = [int(L) for L in lengths]
        if not lengths or any(L < 1 for L in lengths):
            raise ValueError(f"lengths must be positive integers, got {lengths}")
    by_label = {c.label: c for c in cells}
    resume = resume or report_only
    cfgs = grid_configs(out, recipe, cells, task_names, lengths)
    _check_grid(cfgs, resume, factors)
    out = prepare_out(out, resume, overwrite, name="out", command="lab")
    with lock_out(out, name="out"):
        claim_out(out, "lab", overwrite)
        grid = {"cells": [c.label for c in cells], "tasks": task_names,
                "lengths": lengths, "factors": list(factors),
                "recipe": recipe.to_json(), "command": command}
        n = len(cfgs)
        if report_only:
            entries = []
            for cfg in cfgs.values():
                path = os.path.join(cfg.out, "lab_run.json")
                if os.path.exists(path):
                    with open(path) as f:
                        entries.append(json.load(f))
            if not entries:
                raise ValueError(f"out {out!r} holds no finished run of this grid: nothing "
                                 f"to report")
            if len(entries) < n:
                grid["partial"] = f"{len(entries)} of {n} runs"
            board = write_leaderboard(out, entries, grid)
            if print_fn:
                print_fn(f"wrote {os.path.join(out, 'leaderboard.md')} "
                         f"({grid.get('partial', 'all runs')})")
            return board
        write_text(os.path.join(out, "grid.json"), json.dumps(grid, indent=1))
        if print_fn:
            print_fn(f"lab: {n} runs ({len(cells)} cells x {len(task_names)} tasks"
                     f"{'' if lengths is None else f' x {len(lengths)} lengths'}, "
                     f"{recipe.seeds} seeds each, vmapped), about "
                     f"{estimate_seconds(cfgs) / 60:.0f} min on a busy 2-core CPU (a prior "
                     f"estimate; re-estimated after each run)")
        entries, t0, ran = [], time.perf_counter(), 0
        for i, (key, cfg) in enumerate(cfgs.items()):
            was_done = resume and os.path.exists(os.path.join(cfg.out, "lab_run.json"))
            e = _run_one(out, key, cfg, by_label[key[2]], resume, factors)
            entries.append(e)
            ran += not was_done
            if print_fn:
                el = time.perf_counter() - t0
                left = el / ran * (n - i - 1) if ran else 0.0
                acc = " ".join("-" if e["accuracy"][str(f)] is None else
                               f"{np.mean(e['accuracy'][str(f)]):.2f}"
                               for f in factors)
                print_fn(f"[{i + 1}/{n}] {key[0]} T={key[1]} {key[2]}: accuracy at "
                         f"{'/'.join(f'{f}x' for f in factors)} {acc} "
                         f"({e['seconds']:.0f} s{', read back' if was_done else ''}); "
                         f"{el / 60:.1f} min so far, about {left / 60:.1f} min left")
        board = write_leaderboard(out, entries, grid)
        if print_fn:
            print_fn(f"wrote {os.path.join(out, 'leaderboard.md')}")
        return board
