"""The copy-task job behind ``rnnjax copy``: train several cells on the copy task
(Arjovsky et al. 2016) with one recipe and write a report.

``runs/<name>/`` receives one run directory per cell (``<cell>/metrics.jsonl``,
``metrics.csv``, ``config.json``, orbax ``checkpoints/`` with the trained params, readable
by ``rnnjax gradflow --checkpoint runs/<name>/<cell>``, and ``cell_summary.json`` once
the cell is done), ``copy_loss.png`` (held-out cross-entropy per cell on a log scale with
the memoryless baseline ``10 ln 8 / (T+20)``), ``copy_credit_profile.png`` (the
recall-loss gradient ``||dL_recall/dz^f_t||`` per carry field against ``t``, one panel
per cell, at initialisation and after training), ``copy_credit_history.png`` (the
credit ratio ``||dL_recall/dz^f_9|| / ||dL_recall/dz^f_{T+9}||`` per field and
``||dz_{T+9}/dz_9||_2`` against training step, one panel per cell; the runner's records,
:func:`rnnjax.training.credit_metrics`), ``copy_orth_error.png``
(``||W^H W - I||_F`` over training), ``summary.json``, ``report.md`` and ``report.html``.
The job writes through :func:`rnnjax.io.outputs.prepare_out`: a ``runs/<name>`` that already
holds files is refused before anything is trained or written, unless ``resume=True``
(skip the cells already done and continue an interrupted one from its latest
checkpoint) or ``overwrite=True`` (train every cell again, replacing its run); one
writer at a time holds the folder's lock (:func:`rnnjax.io.outputs.lock_out`).

With ``K = config.seeds > 1`` seeds per cell (one ``jax.vmap``-ed program), the table
shows ``mean ± std`` over the seeds (population std) of the losses and accuracies and
the mean over seeds of the credit numbers, the loss and orthogonality figures shade
``mean ± std`` and the credit profile is the geometric mean over seeds.  Every figure
draws a cell in its own colour and marker (:func:`rnnjax.plots.figures.cell_style`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import time

import jax
import numpy as np

from rnnjax import analysis, optim
from rnnjax import cells as cells_lib
from rnnjax.experiments.copy_report import write_copy_report, write_sweep_report
from rnnjax.io.outputs import claim_out, lock_out, prepare_out, write_text
from rnnjax.training.config import (
    RESUME_FIELDS,
    check_resume_options,
    flag,
    orthogonal_cells,
    validate,
)
from rnnjax.training.metrics import format_loss
from rnnjax.training.runner import (
    CREDIT_SETTINGS,
    Config,
    credit_loss,
    credit_metrics,
    credit_values,
    initial_state,
    train,
)

__all__ = ["ARJOVSKY_TS", "BASE_CELLS", "DEFAULT", "PAPER", "credit_entry",
           "check_resume_job", "credit_fields", "credit_measurement", "default_cells", "log_spread",
           "paper_configs", "profile_lists",
           "reproduce_command", "run_copy_job", "run_copy_sweep", "stays_orthogonal"]

# Cells that are always compared; the cells of rnnjax.cells.REGISTRY whose W stays
# orthogonal/unitary join them (default_cells()).
BASE_CELLS = ("elman", "lstm", "gru")

# Default recipe: T=200 (Arjovsky's second delay), hidden 64, batch 32, 800 steps,
# RMSprop lr 1e-3 / orthogonal 1e-4, clipping 1.  Chosen by measurement at T=200:
# hidden 32 leaves expRNN at 0.66x the baseline after 1000 steps (recall 0.50, a
# capacity limit), hidden 64 takes it to 0.10x (recall 0.93) in 800 steps; the
# orthogonal lr 1e-3 is worse for expRNN/scoRNN (0.74x, 0.96x at 600 steps).
DEFAULT = Config(task="copy", T=200, hidden=64, batch=32, steps=800, lr=1e-3, lr_orth=1e-4,
                 optimizer="rmsprop", clip=1.0, log_every=50, eval_batch=128, seed=0)

# expRNN's recipe (Lezcano-Casado & Martinez-Rubio 2019, lezcano/expRNN 1_copying.py):
# its copy layout (variant="exprnn"), T=1000, hidden 190, batch 128, 4000 steps, RMSprop
# lr 2e-4 / orthogonal 2e-5, no clipping.  Each cell then takes its own paper's init and
# optimiser from rnnjax.optim.PAPER_RECIPES (paper_configs).
PAPER = Config(task="copy", T=1000, hidden=190, batch=128, steps=4000, lr=2e-4, lr_orth=2e-5,
               optimizer="rmsprop", log_every=50, eval_batch=256, seed=0, variant="exprnn")

# The delays of Arjovsky et al. (2016), Fig. 1 (``--preset arjovsky``: one panel per T).
ARJOVSKY_TS = (100, 200, 300, 500)


def stays_orthogonal(name: str, hidden: int = 4, tol: float = 1e-3) -> bool:
    """Whether registered cell ``name``'s recurrent matrix is orthogonal (unitary) for
    any params, not only at initialisation: ``||W^H W - I||_max < tol`` after every
    floating param is moved by ``N(0, 0.5^2)`` noise.  True for expRNN, scoRNN,
    Householder, uRNN, EUNN and fcuRNN; False for nnRNN and the spectral-margin RNN,
    whose ``W`` leaves the group by design."""
    cell = cells_lib.REGISTRY[name](hidden)
    if cell.recurrent_matrix is None:
        return False
    params = cell.init(jax.random.key(0), hidden)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    moved = [a + 0.5 * jax.random.normal(k, a.shape, a.dtype)
             if np.issubdtype(a.dtype, np.floating) else a
             for a, k in zip(leaves, keys)]
    W = np.asarray(cell.recurrent_matrix(jax.tree.unflatten(tree, moved)))
    return bool(np.abs(W.conj().T @ W - np.eye(W.shape[-1])).max() < tol)


def default_cells() -> list:
    """``elman, lstm, gru`` and every cell of the registry whose recurrent matrix stays
    orthogonal or unitary (:func:`stays_orthogonal`; nnRNN and the spectral-margin RNN
    are one ``--cells`` away)."""
    return list(BASE_CELLS) + [c for c in orthogonal_cells() if stays_orthogonal(c)]


def paper_configs(base: Config, cells) -> dict:
    """``{cell: Config}``: ``base`` with each cell's :data:`rnnjax.optim.PAPER_RECIPES`
    entry (init options, optimiser, learning rates, clipping) where it has one."""
    out = {}
    for c in cells:
        r = optim.PAPER_RECIPES.get(c)
        out[c] = base if r is None else dataclasses.replace(
            base, optimizer=r.optimizer, lr=r.lr, lr_orth=r.lr_orth, clip=r.clip,
            clip_mode=r.clip_mode, cell_options=tuple(r.cell_options))
    return out



def credit_entry(values, fields, K: int) -> dict:
    """``{"ratio": {field: float or None}, "jacobian_norm": float}`` from record-like
    ``values`` (``eval_credit_ratio_<field>``, ``eval_credit_jacobian_norm``: a number,
    None, or per-seed arrays): the mean over the ``K`` seeds (None when any seed's
    ratio underflowed), with the per-seed entries under ``"seeds"`` when ``K > 1``."""
    def seeds(key):
        v = values.get(key)
        v = [v] if not isinstance(v, (list, tuple, np.ndarray)) else list(v)
        return [None if x is None or not np.isfinite(float(x)) else float(x)
                for x in np.asarray(v, dtype=object).reshape(-1)]

    per = {f: seeds(f"eval_credit_ratio_{f}") for f in fields}
    jac = seeds("eval_credit_jacobian_norm")
    out = {"ratio": {f: (None if None in v else float(np.mean(v))) for f, v in per.items()},
           "jacobian_norm": None if None in jac else float(np.mean(jac))}
    if K > 1:
        out["seeds"] = [{"ratio": {f: per[f][k] for f in fields}, "jacobian_norm": jac[k]}
                        for k in range(K)]
    return out


def _record_credit(rec, fields, K):
    """A metrics record's credit values (per seed when ``K > 1``)."""
    src = rec.get("seeds", {}) if K > 1 else rec
    keys = [f"eval_credit_ratio_{f}" for f in fields] + ["eval_credit_jacobian_norm"]
    return {k: src.get(k) for k in keys}


def credit_fields(rec) -> list:
    """The carry fields of a record's ``eval_credit_ratio_<field>`` keys."""
    pre = "eval_credit_ratio_"
    return [k[len(pre):] for k in rec if k.startswith(pre) and not k.endswith("_std")]


def credit_measurement(exp):
    """``(profile, values)``: two functions of one seed's params ``{"cell", "readout"}``
    and the batch ``data = (xs, ys)``, each compiled once for the experiment
    (initialisation and end share them): ``profile(params, data)``, the
    :class:`rnnjax.analysis.CreditProfile` of the recall loss (the runner's
    :func:`rnnjax.training.credit_loss`, through the cell's own outputs), and
    ``values(params, data)``, the record values of :func:`rnnjax.training.credit_metrics`
    (``eval_credit_*``; the job needs them only for a resumed cell, whose initial state
    the runner did not evaluate)."""
    model, task = exp.model, exp.task
    arrays = jax.jit(lambda p, d: analysis.credit_arrays(
        model.cell, p["cell"], task.encode(d[0]), credit_loss(model, task, p, d[1]),
        readout=CREDIT_SETTINGS["readout"]))
    metrics = jax.jit(lambda p, d: credit_values(credit_metrics(model, task, p, d)))

    def profile(params, data):
        return analysis.CreditProfile.from_arrays(arrays(params, data))

    def values(params, data):
        vals = jax.device_get(metrics(params, data))
        vals["eval_credit_jacobian_norm"] = np.exp(np.asarray(
            vals.pop("eval_credit_log_jacobian_norm"), np.float64))
        return vals
    return profile, values


def profile_lists(profiles, fields) -> dict:
    """``{field: [...]}``: the geometric mean over seeds of the profiles' norms
    (:func:`log_spread`, underflowed seeds left out): None where every seed's
    underflowed, 0.0 where the gradient is exactly 0 (no later step reads it)."""
    out = {}
    for f in fields:
        raw = np.array([pr.norms[f] for pr in profiles])
        mid = log_spread(np.nan_to_num(raw, nan=0.0))[0]
        gone = np.isnan(raw).all(axis=0)
        out[f] = [None if g else float(v) for v, g in zip(mid, gone)]
    return out


def _seed(tree, k: int):
    return jax.tree.map(lambda a: a[k], tree)


def log_spread(profiles):
    """``(center, low, high)`` of ``K`` positive profiles ``(K, n)`` in log space:
    ``exp(m)``, ``exp(m - s)``, ``exp(m + s)`` with ``m``, ``s`` the mean and (population)
    standard deviation over the seeds of ``log p`` at each point (zeros, i.e. underflow,
    left out; a point with none left is 0).  For one profile all three are that profile."""
    p = np.asarray(profiles, np.float64)
    if p.ndim != 2 or p.shape[0] < 1:
        raise ValueError(f"profiles must have shape (K >= 1, n), got {p.shape}")
    if p.shape[0] == 1:
        return p[0], p[0], p[0]
    ok = p > 0
    logp = np.log(np.where(ok, p, 1.0))
    n = ok.sum(axis=0)
    m = np.where(n > 0, (logp * ok).sum(axis=0) / np.maximum(n, 1), -np.inf)
    dev = np.where(ok, logp - np.where(n > 0, m, 0.0), 0.0)
    sd = np.sqrt((dev ** 2).sum(axis=0) / np.maximum(n, 1))
    return np.exp(m), np.exp(m - sd), np.exp(m + sd)


class _Progress:
    """Prints the estimated total time from the first timed steps (the second logging
    window, so that compilation, timed apart, does not count as step time), and a
    warning when a cell diverges: non-finite steps skipped, mean gradient norm above
    1e3, or held-out loss above 1.5x its first logged value."""

    def __init__(self, n_cells, print_fn):
        self.n, self.print_fn, self.t0 = n_cells, print_fn, time.perf_counter()
        self.cell, self.warned, self.records = None, False, []

    def start(self, i, cell, steps):
        self.i, self.cell, self.steps, self.warned, self.records = i, cell, steps, False, []
        if self.print_fn:
            self.print_fn(f"[{i + 1}/{self.n}] {cell}")

    def __call__(self, rec):
        self.records.append(rec)
        if len(self.records) == 2 and self.print_fn:
            r0, r1 = self.records
            per_step = (r1["time"] - r0["time"]) / max(r1["step"] - r0["step"], 1)
            # the first record's window began with this call's loop (a resumed cell's at
            # its checkpoint, not at step 0): rate x elapsed is the steps it ran
            ran = (round(r0["steps_per_sec"] * r0["time"]) if "steps_per_sec" in r0
                   else r0["step"])
            first = max(r0["time"] - per_step * ran, 0.0)  # compilation, the first eval
            left = per_step * (self.steps - r1["step"])
            elapsed = time.perf_counter() - self.t0
            rest = (self.n - self.i - 1) * (first + per_step * self.steps)
            self.print_fn(f"  {self.cell}: {per_step * 1e3:.0f} ms/step ({first:.0f} s to "
                          f"compile); estimated total {(elapsed + left + rest) / 60:.1f} min "
                          f"(about {(left + rest) / 60:.1f} min left, if the other cells "
                          f"cost as much)")
        first_loss = self.records[0]["eval_loss"]
        bad = (rec.get("nonfinite_skipped", 0) > 0 or not np.isfinite(rec["eval_loss"])
               or rec["train_grad_norm"] > 1e3 or rec["eval_loss"] > 1.5 * first_loss)
        if bad and not self.warned:  # recorded (summary "diverged") even when silent
            self.warned = True
            if self.print_fn:
                self.print_fn(
                    f"  warning: {self.cell} is diverging at step {rec['step']}: held-out "
                    f"loss {rec['eval_loss']:.4g} (baseline {rec.get('baseline', 0):.4g}), "
                    f"gradient norm {rec['train_grad_norm']:.4g}, "
                    f"{int(rec.get('nonfinite_skipped', 0))} non-finite steps skipped")


def _train_cell(cfg, resume, progress, tracker):
    """Train one cell (or continue it); returns its summary entry.  A cell without a
    checkpoint to continue (new, interrupted before its first one, or replaced with
    ``--overwrite``) starts again in its own folder: :func:`run_copy_job` has already
    checked the job's folder."""
    done = os.path.join(cfg.out, "cell_summary.json")
    if resume and os.path.exists(done):
        trained = Config.load(cfg.out).steps
        if trained == cfg.steps:
            with open(done) as f:
                return json.load(f)
        if tracker.print_fn:  # a larger --steps (check_resume_job refused a smaller one)
            tracker.print_fn(f"  {cfg.cell}: continuing from step {trained} to {cfg.steps}")
    ckpt = os.path.join(cfg.out, "checkpoints")
    again = resume and os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt))
    t0 = time.perf_counter()
    result = train(cfg, resume=again, overwrite=not again, progress=progress,
                   on_record=tracker, evaluate_initial=True, checked=True)
    exp = result.experiment
    hist = result.history
    earlier = _earlier_calls_seconds(hist, len(tracker.records))
    last = hist[-1]
    K = cfg.seeds
    fields = credit_fields(last)
    credit = None
    if fields:
        state0, data = initial_state(exp)
        profile, values = credit_measurement(exp)
        p0 = [profile(_seed(state0.params, k), _seed(data, k)) for k in range(K)]
        p1 = [profile(_seed(result.state.params, k), _seed(data, k)) for k in range(K)]
        # init: the runner's own evaluation of the initial state (measured here for a
        # resumed cell); end: the last record (the final params on the held-out batch)
        init_vals = result.initial
        if init_vals is None:
            v0 = [values(_seed(state0.params, k), _seed(data, k)) for k in range(K)]
            init_vals = {key: np.array([v[key] for v in v0]) for key in v0[0]}
        credit = {"source": exp.task.credit.source, "reference": exp.task.credit.reference,
                  "targets": list(exp.task.credit.targets),
                  "init": credit_entry(init_vals, fields, K),
                  "end": credit_entry(_record_credit(last, fields, K), fields, K),
                  "history": [{"step": r["step"]} | credit_entry(
                      _record_credit(r, fields, K), fields, K) for r in hist]}

    def per_seed(name):
        return list(last["seeds"][name]) if K > 1 else [last[name]]

    losses = per_seed("eval_loss")
    orth = "orth_error" in last
    entry = {
        "seeds": K,
        "eval_loss": last["eval_loss"], "over_baseline": last["eval_loss_over_baseline"],
        "eval_accuracy": last["eval_accuracy"],
        "seconds": earlier + time.perf_counter() - t0,
        "baseline": last["baseline"],
        "eval_loss_seeds": losses,
        "over_baseline_seeds": [v / last["baseline"] for v in losses],
        "eval_accuracy_seeds": per_seed("eval_accuracy"),
        "steps": [r["step"] for r in hist], "curve": [r["eval_loss"] for r in hist],
        "curve_std": [r["eval_loss_std"] for r in hist],
        "orth_error": [r["orth_error"] for r in hist] if orth else None,
        "orth_error_std": [r["orth_error_std"] for r in hist] if orth else None,
        "orth_error_seeds": per_seed("orth_error") if orth else None,
        "credit": credit,
        "credit_profile_init": profile_lists(p0, fields) if fields else None,
        "credit_profile_end": profile_lists(p1, fields) if fields else None,
        "diverged": tracker.warned,
    }
    write_text(done, json.dumps(entry))
    return entry


def _earlier_calls_seconds(history, n_new: int) -> float:
    """The training seconds of the calls before this one that made the kept records of
    a resumed cell (``history`` less its last ``n_new``, this call's): a record's
    ``time`` counts from its call's start, so each call ends where ``time`` drops."""
    old = [r["time"] for r in history[:len(history) - n_new]]
    return float(sum(t for t, nxt in zip(old, old[1:] + [-1.0]) if nxt < t))


def _check_cells(cells):
    """Every name checked before any training starts."""
    if not cells:
        raise ValueError("cells must name at least one cell")
    for c in cells:
        cells_lib.check_name(c)  # a registered name or "module:factory"


def run_copy_job(name: str, base: Config, cells=None, *, runs_dir: str = "runs",
                 cell_options: dict | None = None, command: str | None = None,
                 progress: bool = True, print_fn=print, resume: bool = False,
                 overwrite: bool = False, configs: dict | None = None,
                 checkpoint_every: int | None = None, _checked: bool = False) -> dict:
    """Train each cell of ``cells`` with the recipe ``base`` and write the report into
    ``runs_dir/name``.

    ``configs`` (``{cell: Config}``, e.g. :func:`paper_configs`) overrides ``base`` per
    cell; ``cell_options`` adds factory options per cell.  Each cell checkpoints every
    ``checkpoint_every`` steps (default ``min(steps, 200)``) and at its end.  A folder
    that already holds files is refused (``ValueError``, nothing written) unless
    ``resume`` (continue: finished cells are read back, an interrupted one continues
    from its checkpoint) or ``overwrite`` (train every cell again).  Returns the summary
    ``{"cells": {cell: {...final metrics...}}, ...}``.
    """
    cells = default_cells() if cells is None else list(cells)
    _check_cells(cells)
    out = os.path.join(runs_dir, name)
    cfgs = _cell_configs(out, base, cells, configs, cell_options, checkpoint_every)
    if not _checked:
        _check_job(cfgs, resume)
    out = prepare_out(out, resume, overwrite, name="name", command="copy")
    with lock_out(out, name="name"):
        claim_out(out, "copy", overwrite)
        return _run_cells(out, name, base, cfgs, command, progress, print_fn, resume)


def _cell_configs(out, base, cells, configs, cell_options, checkpoint_every) -> dict:
    """``{cell: Config}``: what each cell of a job in ``out`` trains with."""
    every = checkpoint_every or min(base.steps, 200) or 1
    cfgs = {}
    for c in cells:
        cfg = (configs or {}).get(c, base)
        opts = tuple(cfg.cell_options) + tuple((cell_options or {}).get(c, ()))
        cfgs[c] = dataclasses.replace(cfg, cell=c, out=os.path.join(out, c),
                                      checkpoint_every=every, cell_options=opts)
    return cfgs


def _check_job(cfgs: dict, resume: bool) -> None:
    """Every cell's config validated (once: the runner is told so) and, on resume,
    checked against its run (:func:`check_resume_job`), before anything is touched."""
    for cfg in cfgs.values():
        validate(cfg)
    if resume:
        check_resume_job(cfgs)


# What a resumed copy job keeps from each cell's run: every field of its recipe, and
# its logging cadence (a finished cell's records are read back as they are).
_JOB_AGREE = RESUME_FIELDS + ("log_every",)


def check_resume_job(cfgs: dict) -> None:
    """``--resume`` of a copy job: every cell of ``cfgs`` (``{cell: Config}``) that has
    a run (its ``config.json``) must have been trained with the same recipe
    (:data:`_JOB_AGREE`), else one ``ValueError`` line names the option, the run's value
    and the given one, before anything is touched.  A larger ``steps`` is honoured: a
    finished cell continues from its last checkpoint to the new length
    (:func:`_train_cell`); a smaller one is refused (a trained cell is not shortened)."""
    for cfg in cfgs.values():
        if not os.path.exists(os.path.join(cfg.out, "config.json")):
            continue  # not started: trained from scratch
        saved = Config.load(cfg.out)
        check_resume_options(saved, {k: getattr(cfg, k) for k in _JOB_AGREE}, cfg.out,
                             what="cell", agree=_JOB_AGREE,
                             new="start a new job with another --name")
        if cfg.steps < saved.steps:
            raise ValueError(f"resume: the cell in {cfg.out!r} has steps={saved.steps}; "
                             f"this call gives {flag('steps')} {cfg.steps}: a resumed job "
                             f"continues a cell to more steps, never fewer (leave it out, "
                             f"or start a new job with another --name)")


def _run_cells(out, name, base, cfgs, command, progress, print_fn, resume):
    summary = {"name": name, "T": base.T, "baseline": None, "cells": {},
               "command": command, "config": base.to_json(), "recipes": {}}
    tracker = _Progress(len(cfgs), print_fn)
    for i, (c, cfg) in enumerate(cfgs.items()):
        tracker.start(i, c, cfg.steps)
        s = _train_cell(cfg, resume, progress, tracker)
        summary["cells"][c] = s
        summary["baseline"] = s["baseline"]
        summary["recipes"][c] = {k: getattr(cfg, k) for k in
                                 ("optimizer", "lr", "lr_orth", "clip")} | {
            "cell_options": [list(kv) for kv in cfg.cell_options]}
        if print_fn:
            K = s.get("seeds", 1)
            spread = (f" (mean of {K} seeds, std "
                      f"{np.std(s['eval_loss_seeds']):.4f})" if K > 1 else "")
            print_fn(f"{c:12s} eval {format_loss(s['eval_loss'], s['baseline'], 'CE')}"
                     f"{spread}  recall accuracy {s['eval_accuracy']:.3f}  "
                     f"({s['seconds']:.0f} s)")
    # the cells' own seconds (a cell read back keeps those of the call that made it)
    summary["seconds"] = float(sum(s["seconds"] for s in summary["cells"].values()))
    summary["seconds_this_call"] = time.perf_counter() - tracker.t0
    write_copy_report(out, summary)
    if print_fn:
        print_fn(f"wrote {os.path.join(out, 'report.md')} ({summary['seconds_this_call']:.0f}"
                 f" s)")
    return summary


def run_copy_sweep(name: str, base: Config, cells=None, Ts=ARJOVSKY_TS, *,
                   runs_dir: str = "runs", command: str | None = None,
                   resume: bool = False, overwrite: bool = False, **kwargs) -> dict:
    """``--preset arjovsky``: :func:`run_copy_job` at each delay of ``Ts`` into
    ``runs_dir/name/T<T>``, then :func:`write_sweep_report` in ``runs_dir/name`` (checked
    and locked like a single job's folder).  Returns ``{T: summary}``."""
    cells = default_cells() if cells is None else list(cells)
    _check_cells(cells)
    for T in Ts:  # every cell of every delay checked before any folder is touched
        _check_job(_cell_configs(os.path.join(runs_dir, name, f"T{T}"),
                                 dataclasses.replace(base, T=T), cells,
                                 kwargs.get("configs"), kwargs.get("cell_options"),
                                 kwargs.get("checkpoint_every")), resume)
    top = prepare_out(os.path.join(runs_dir, name), resume, overwrite, name="name",
                      command="copy")
    with lock_out(top, name="name"):
        claim_out(top, "copy", overwrite)
        summaries = {T: run_copy_job(os.path.join(name, f"T{T}"),
                                     dataclasses.replace(base, T=T), cells,
                                     runs_dir=runs_dir, command=command, resume=resume,
                                     overwrite=overwrite, _checked=True, **kwargs)
                     for T in Ts}
        write_sweep_report(top, name, summaries, command)
    return summaries


def reproduce_command(argv) -> str:
    return "rnnjax " + " ".join(shlex.quote(a) for a in argv)
