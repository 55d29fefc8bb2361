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
import html
import json
import os
import shlex
import time

import jax
import numpy as np

from rnnjax import analysis, optim
from rnnjax import cells as cells_lib
from rnnjax.io.outputs import claim_out, lock_out, prepare_out, write_text
from rnnjax.plots import report as plots
from rnnjax.training.config import orthogonal_cells, validate
from rnnjax.training.metrics import format_loss, format_mean_std
from rnnjax.training.runner import (
    CREDIT_SETTINGS,
    Config,
    credit_loss,
    credit_metrics,
    credit_values,
    initial_state,
    train,
)

__all__ = ["ARJOVSKY_TS", "BASE_CELLS", "DEFAULT", "PAPER", "REACH", "credit_entry",
           "credit_fields", "credit_measurement", "default_cells", "log_spread",
           "paper_configs", "profile_lists",
           "reproduce_command", "run_copy_job", "run_copy_sweep", "stays_orthogonal",
           "write_copy_report", "write_sweep_report"]

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


# The credit ratio at which the report says the recall gradient "reaches" the symbols
# (for some carry field): the gradient at the last symbol is at least 1/100 of the one
# at the marker step.
REACH = 1e-2


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
            first = r0["time"] - per_step * r0["step"]  # compilation and the first eval
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
        if bad and not self.warned and self.print_fn:
            self.warned = True
            self.print_fn(f"  warning: {self.cell} is diverging at step {rec['step']}: held-out "
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
        with open(done) as f:
            return json.load(f)
    ckpt = os.path.join(cfg.out, "checkpoints")
    again = resume and os.path.isdir(ckpt) and any(n.isdigit() for n in os.listdir(ckpt))
    t0 = time.perf_counter()
    result = train(cfg, resume=again, overwrite=not again, progress=progress,
                   on_record=tracker, evaluate_initial=True)
    exp = result.experiment
    hist = result.history
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
        "eval_accuracy": last["eval_accuracy"], "seconds": time.perf_counter() - t0,
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


def _check_cells(cells):
    """Every name checked before any training starts."""
    if not cells:
        raise ValueError("cells must name at least one cell")
    for c in cells:
        if c not in cells_lib.REGISTRY:
            raise ValueError(f"cell must be one of {sorted(cells_lib.REGISTRY)}, got {c!r}")


def run_copy_job(name: str, base: Config, cells=None, *, runs_dir: str = "runs",
                 cell_options: dict | None = None, command: str | None = None,
                 progress: bool = True, print_fn=print, resume: bool = False,
                 overwrite: bool = False, configs: dict | None = None,
                 checkpoint_every: int | None = None) -> dict:
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
    every = checkpoint_every or min(base.steps, 200) or 1
    cfgs = {}
    for c in cells:
        cfg = (configs or {}).get(c, base)
        opts = tuple(cfg.cell_options) + tuple((cell_options or {}).get(c, ()))
        cfgs[c] = dataclasses.replace(cfg, cell=c, out=os.path.join(out, c),
                                      checkpoint_every=every, cell_options=opts)
    for cfg in cfgs.values():
        validate(cfg)
    out = prepare_out(out, resume, overwrite, name="name", command="copy")
    with lock_out(out, name="name"):
        claim_out(out, "copy", overwrite)
        return _run_cells(out, name, base, cfgs, command, progress, print_fn, resume)


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
    summary["seconds"] = time.perf_counter() - tracker.t0
    write_copy_report(out, summary)
    if print_fn:
        print_fn(f"wrote {os.path.join(out, 'report.md')} ({summary['seconds']:.0f} s)")
    return summary


def run_copy_sweep(name: str, base: Config, cells=None, Ts=ARJOVSKY_TS, *,
                   runs_dir: str = "runs", command: str | None = None,
                   resume: bool = False, overwrite: bool = False, **kwargs) -> dict:
    """``--preset arjovsky``: :func:`run_copy_job` at each delay of ``Ts`` into
    ``runs_dir/name/T<T>``, then :func:`write_sweep_report` in ``runs_dir/name`` (checked
    and locked like a single job's folder).  Returns ``{T: summary}``."""
    cells = default_cells() if cells is None else list(cells)
    _check_cells(cells)
    for T in Ts:  # every recipe checked before any folder is touched
        for c in cells:
            validate(dataclasses.replace(base, T=T, cell=c))
    top = prepare_out(os.path.join(runs_dir, name), resume, overwrite, name="name",
                      command="copy")
    with lock_out(top, name="name"):
        claim_out(top, "copy", overwrite)
        summaries = {T: run_copy_job(os.path.join(name, f"T{T}"),
                                     dataclasses.replace(base, T=T), cells,
                                     runs_dir=runs_dir, command=command, resume=resume,
                                     overwrite=overwrite, **kwargs) for T in Ts}
        write_sweep_report(top, name, summaries, command)
    return summaries


def _fmt_ratio(v) -> str:
    return "underflow" if v is None else f"{v:.2g}"


def _credit_text(entry) -> str:
    """``"h 3.1e-26, c 0.04"`` of a credit entry's ratios."""
    return ", ".join(f"{f} {_fmt_ratio(v)}" for f, v in entry["ratio"].items())


def best_field(entry):
    """``(field, ratio)`` with the largest measured ratio (None when every field's
    underflowed)."""
    got = [(f, v) for f, v in entry["ratio"].items() if v is not None]
    return max(got, key=lambda fv: fv[1]) if got else (None, None)


def _reaches(entry) -> bool:
    return (best_field(entry)[1] or 0.0) >= REACH


def _names_with(cells, what):
    return "; ".join(f"{c} ({what(c)})" for c in cells)


def _paragraph(summary) -> str:
    """What the figures show, in words computed from the numbers, cell group by cell
    group: the cells whose recurrent matrix is kept orthogonal/unitary (an ``orth_error``
    is recorded), then the others; within a group, the cells that learned, those that
    stayed at the baseline although their recall gradient reaches the symbols (credit
    ratio at least :data:`REACH` for some carry field after training) and those whose
    gradient does not reach them."""
    cs = summary["cells"]
    T = summary["T"]
    text = (f"At delay T={T} the memoryless strategy scores the baseline; a cell below it "
            f"has carried the ten symbols across {T} steps. The credit ratio is "
            f"||dL_recall/dz^f_9|| / ||dL_recall/dz^f_{T + 9}|| per carry field f on the "
            f"held-out batch (the last symbol against the marker step); here the recall "
            f"gradient is said to reach the symbols when it is at least {REACH:g} for some "
            f"field. ")
    groups = (("Among the cells whose recurrent matrix stays orthogonal or unitary",
               [c for c, s in cs.items() if s.get("orth_error")]),
              ("Among the other cells", [c for c, s in cs.items() if not s.get("orth_error")]))
    for label, group in groups:
        if not group:
            continue
        sent = []
        learned = [c for c in group if cs[c]["over_baseline"] <= 0.2
                   and cs[c]["eval_accuracy"] >= 0.9]
        failed = [c for c in group if cs[c]["over_baseline"] >= 0.8]
        middle = [c for c in group if c not in learned and c not in failed]
        credit = {c: cs[c].get("credit") for c in group}
        end = {c: credit[c]["end"] for c in group if credit[c]}

        def jac(c):
            j = end[c]["jacobian_norm"]
            return f"||dz_{T + 9}/dz_9|| {j:.2g}" if j is not None else "no Jacobian norm"

        if learned:
            sent.append(f"{', '.join(learned)} went far below the baseline (at most 0.2x, "
                        f"recall accuracy at least 0.9)" + (
                            "; after training their credit ratio is " + _names_with(
                                [c for c in learned if c in end],
                                lambda c: f"{_credit_text(end[c])}; {jac(c)}")
                            if any(c in end for c in learned) else ""))
        reached = [c for c in failed if c in end and _reaches(end[c])]
        lost = [c for c in failed if c in end and not _reaches(end[c])]
        if reached:
            sent.append(f"{', '.join(reached)} did not go below the baseline (0.8x or more) "
                        f"although the recall gradient reaches the symbols after training ("
                        + _names_with(reached, lambda c: f"{_credit_text(end[c])}; {jac(c)}")
                        + "): their failure at this delay and training budget is not a "
                          "vanishing gradient")
        if lost:
            sent.append(f"{', '.join(lost)} did not go below the baseline (0.8x or more) and "
                        f"the recall gradient does not reach the symbols after training ("
                        + _names_with(lost, lambda c: f"{_credit_text(end[c])}; {jac(c)}")
                        + "), as a vanishing gradient would make it")
        if middle:
            sent.append(f"{', '.join(middle)} ended between ("
                        + _names_with(middle, lambda c: f"{cs[c]['over_baseline']:.2f}x"
                                      + (f", credit {_credit_text(end[c])}" if c in end
                                         else "")) + ")")
        under = [c for c in group if credit[c] and all(
            v is None for v in credit[c]["init"]["ratio"].values())]
        if under:
            sent.append(f"at initialisation the recall gradient at the symbols underflowed "
                        f"float32 for {', '.join(under)} (below 1.6e-31 of the output "
                        f"gradient)")
        if sent:
            text += f"{label}: " + "; ".join(sent) + ". "
    if any(s.get("orth_error") for s in cs.values()):
        worst = max(max(s["orth_error"]) for s in cs.values() if s.get("orth_error"))
        text += (f"The orthogonal/unitary matrices stayed on their group throughout "
                 f"(largest ||W^H W - I||_F {worst:.1e}, float32 rounding).")
    return text.strip()


def _credit_cells(credit) -> tuple:
    """The table's four credit cells of a summary entry (``-`` without credit)."""
    if not credit:
        return ("-",) * 4
    def jac(e):
        return "-" if e["jacobian_norm"] is None else f"{e['jacobian_norm']:.2g}"
    return (_credit_text(credit["init"]), _credit_text(credit["end"]),
            jac(credit["init"]), jac(credit["end"]))


def _seed_values(s, key):
    """Per-seed values of ``key`` in a cell's summary entry (one value for a single seed
    or an entry written before per-seed values were kept)."""
    return s.get(f"{key}_seeds") or [s[key]]


def write_copy_report(out: str, summary: dict) -> None:
    """Write ``copy_loss.png``, ``copy_credit_profile.png``,
    ``copy_credit_history.png``, ``copy_orth_error.png``,
    ``summary.json``, ``report.md`` and ``report.html``."""
    baseline, T = summary["baseline"], summary["T"]
    cfg = summary["config"]
    seeds = cfg.get("seeds", 1)
    cs = summary["cells"]
    curves = {c: (s["steps"], s["curve"]) for c, s in cs.items()}
    bands = orth_bands = None
    if seeds > 1:
        bands = {c: ([m - d for m, d in zip(s["curve"], s["curve_std"])],
                     [m + d for m, d in zip(s["curve"], s["curve_std"])])
                 for c, s in cs.items()}
        orth_bands = {c: ([max(m - d, 1e-12) for m, d in zip(s["orth_error"],
                                                              s["orth_error_std"])],
                          [m + d for m, d in zip(s["orth_error"], s["orth_error_std"])])
                      for c, s in cs.items() if s.get("orth_error_std")}
    plots.loss_curves(curves, baseline=baseline, bands=bands,
                      path=os.path.join(out, "copy_loss.png"),
                      title=f"Copy task, T={T}: held-out cross-entropy")
    credited = {c: s for c, s in cs.items() if s.get("credit")}
    if credited:
        plots.credit_profiles({c: {"init": s["credit_profile_init"],
                                   "end": s["credit_profile_end"]}
                               for c, s in credited.items()}, marks=(9, T + 9),
                              path=os.path.join(out, "copy_credit_profile.png"))
        plots.credit_history(
            {c: {"steps": [0] + [h["step"] for h in s["credit"]["history"]],
                 "ratio": {f: [s["credit"]["init"]["ratio"][f]]
                           + [h["ratio"][f] for h in s["credit"]["history"]]
                           for f in s["credit"]["init"]["ratio"]},
                 "jacobian_norm": [s["credit"]["init"]["jacobian_norm"]]
                 + [h["jacobian_norm"] for h in s["credit"]["history"]]}
             for c, s in credited.items()},
            path=os.path.join(out, "copy_credit_history.png"),
            title=f"credit at the symbols against training step: "
                  f"||dL_recall/dz^f_9|| / ||dL_recall/dz^f_{T + 9}|| and ||dz_{T + 9}/dz_9||")
    orth = {c: (s["steps"], s["orth_error"]) for c, s in cs.items() if s.get("orth_error")}
    if orth:
        plots.loss_curves({c: (st, [max(e, 1e-12) for e in v]) for c, (st, v) in orth.items()},
                          bands=orth_bands, path=os.path.join(out, "copy_orth_error.png"),
                          title="orthogonality error over training",
                          ylabel="||W^H W - I||_F")
    write_text(os.path.join(out, "summary.json"), json.dumps(summary, indent=1))

    rows = []
    for c, s in cs.items():
        verdict = "below baseline" if s["over_baseline"] < 0.9 else (
            "at baseline" if s["over_baseline"] < 1.1 else "above baseline")
        oe = (format_mean_std(s.get("orth_error_seeds") or [s["orth_error"][-1]], spec=".1e")
              if s.get("orth_error") else "-")
        rows.append((c, format_mean_std(_seed_values(s, "eval_loss"), 4),
                     format_mean_std(_seed_values(s, "over_baseline"), 3),
                     format_mean_std(_seed_values(s, "eval_accuracy"), 3), verdict)
                    + _credit_cells(s.get("credit")) + (oe, f"{s['seconds']:.0f}"))
    head = ("cell", "cross-entropy", "/ baseline", "recall accuracy", "against the baseline",
            f"credit ratio t=9 vs t={T + 9}, init", "credit ratio, end",
            f"||dz_{T + 9}/dz_9||, init", f"||dz_{T + 9}/dz_9||, end", "orth. error", "seconds")
    if seeds > 1:
        plain = ("cell", "against the baseline", "seconds")
        head = tuple(h if h in plain else h + " (mean ± std)" for h in head)
    recipe = (f"T={T} (sequence length {T + 20}, {cfg.get('variant', 'arjovsky')} layout), "
              f"hidden {cfg['hidden']}, batch {cfg['batch']}, {cfg['steps']} steps, "
              f"{cfg['optimizer']} lr {cfg['lr']}"
              + (f", orthogonal lr {cfg['lr_orth']}" if cfg.get("lr_orth") else "")
              + (f", clipping {cfg['clip']} ({cfg['clip_mode']})" if cfg.get("clip") else "")
              + (f", {seeds} seeds {cfg['seed']}..{cfg['seed'] + seeds - 1} trained together "
                 f"(jax.vmap; table: mean ± std over seeds; bands: ±1 std, gradient norms "
                 f"in log space)" if seeds > 1 else f", seed {cfg['seed']}"))
    per_cell = [f"- {c}: {json.dumps(r)}" for c, r in summary.get("recipes", {}).items()
                if (r.get("optimizer"), r.get("lr"), r.get("lr_orth"), r.get("clip"))
                != (cfg["optimizer"], cfg["lr"], cfg["lr_orth"], cfg["clip"])
                or r.get("cell_options")]
    md = [f"# Copy task report: {summary['name']}", "",
          f"Recipe: {recipe}.  Held-out batch of {cfg['eval_batch']} sequences fixed by "
          f"the seed.", ""]
    if per_cell:
        md += ["Per-cell recipes (differing from the above):", ""] + per_cell + [""]
    md += [f"Memoryless baseline (output blanks, then guess uniformly among the 8 symbols): "
           f"10 ln 8 / (T+20) = **{baseline:.4f}** nats.  Recall accuracy is measured on "
           f"the last 10 steps (chance 1/8 = 0.125).", "",
           "![loss curves](copy_loss.png)", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    md += ["| " + " | ".join(r) + " |" for r in rows]
    if credited:
        md += ["", f"Credit: L_recall is the mean cross-entropy of the 10 recall steps "
               f"(t = {T + 10}..{T + 19}, 0-based) on the held-out batch; the credit ratio "
               f"of carry field f is ||dL_recall/dz^f_9|| / ||dL_recall/dz^f_{T + 9}|| "
               f"(z_t the carry after reading x_t: the last symbol against step {T + 9}, "
               f"the last one before the first recall target), and ||dz_{T + 9}/dz_9||_2 "
               f"is the spectral norm of the carry's Jacobian over the delay, the mean over "
               f"the first {CREDIT_SETTINGS['jacobian_examples']} held-out examples "
               f"(rnnjax.analysis.credit_metrics); 'underflow': the gradient at the "
               f"symbols fell below float32's range (1.6e-31 of the output gradient). "
               f"With several seeds: the mean over seeds.", "",
               "Recall-loss gradient per carry field against t, at initialisation "
               "(dashed) and after training (solid), log scale; dotted: t = 9 and "
               f"t = {T + 9}; through later steps only (the cell's own outputs), which "
               f"before the first recall target is the whole gradient.", "",
               "![credit profile](copy_credit_profile.png)", "",
               "![credit against training step](copy_credit_history.png)", ""]
    if orth:
        md += ["![orthogonality error](copy_orth_error.png)", ""]
    md += [_paragraph(summary), "",
           f"Total time: {summary['seconds']:.0f} s.", "",
           "Reproduce with:", "", "```bash", summary.get("command") or "rnnjax copy", "```",
           "", "Per-cell metrics: `<cell>/metrics.jsonl` and `<cell>/metrics.csv`; "
           "configuration: `<cell>/config.json`; trained params: `<cell>/checkpoints` "
           "(`rnnjax gradflow --checkpoint <cell>`).", ""]
    write_text(os.path.join(out, "report.md"), "\n".join(md))

    table = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>"
                    for r in rows)
    page = (f"<!doctype html><meta charset='utf-8'><title>{html.escape(summary['name'])}"
            f"</title><h1>Copy task report: {html.escape(summary['name'])}</h1>"
            f"<p>Recipe: {html.escape(recipe)}.</p><p>Memoryless baseline 10 ln 8 / (T+20) = "
            f"<b>{baseline:.4f}</b> nats.</p><img src='copy_loss.png'>"
            "<table border=1 cellpadding=4><tr>" + "".join(f"<th>{html.escape(h)}</th>"
                                                           for h in head)
            + f"</tr>{table}</table>"
            + ("<img src='copy_credit_profile.png'><img src='copy_credit_history.png'>"
               if credited else "")
            + ("<img src='copy_orth_error.png'>" if orth else "")
            + f"<p>{html.escape(_paragraph(summary))}</p><p>Reproduce with:</p><pre>"
            f"{html.escape(summary.get('command') or 'rnnjax copy')}</pre>")
    write_text(os.path.join(out, "report.html"), page)


def write_sweep_report(out: str, name: str, summaries: dict, command: str | None) -> None:
    """``--preset arjovsky``: ``copy_sweep.png`` (one panel per T),
    ``copy_sweep_credit.png`` (after training, against T: CE / baseline and the measured
    credit ratio per cell and carry field) and ``report.md`` linking each T's own
    report."""
    panels = {f"T={T}": ({c: (s["steps"], s["curve"]) for c, s in sm["cells"].items()},
                         sm["baseline"]) for T, sm in summaries.items()}
    plots.loss_panels(panels, path=os.path.join(out, "copy_sweep.png"))
    Ts = list(summaries)
    first = next(iter(summaries.values()))["cells"]
    loss_T = {c: (Ts, [sm["cells"][c]["over_baseline"] for sm in summaries.values()])
              for c in first}
    ratio_T = {}
    for c, s0 in first.items():
        if not s0.get("credit"):
            continue
        for f in s0["credit"]["end"]["ratio"]:
            ratio_T[f"{c} {f}"] = (Ts, [sm["cells"][c]["credit"]["end"]["ratio"][f]
                                        for sm in summaries.values()])
    credit_fig = bool(ratio_T)
    if credit_fig:
        plots.against_T({"held-out cross-entropy / baseline, end": (loss_T, "CE / baseline"),
                         "credit ratio ||dL_recall/dz^f_9|| / ||dL_recall/dz^f_(T+9)||, end":
                         (ratio_T, "credit ratio")},
                        path=os.path.join(out, "copy_sweep_credit.png"))
    md = [f"# Copy task sweep: {name}", "", "Held-out cross-entropy against training step, "
          "one panel per delay T (Arjovsky et al. 2016, Fig. 1); dashed: the memoryless "
          "baseline 10 ln 8 / (T+20).", "", "![sweep](copy_sweep.png)", ""]
    if credit_fig:
        md += ["After training, against T: the cross-entropy over the baseline (left) and "
               "the measured credit ratio per carry field (right; solid h, dashed the "
               "other fields; an underflowed ratio is left out and reads 'underflow' in "
               "the table).", "", "![loss and credit against T](copy_sweep_credit.png)", ""]
    md += ["| T | " + " | ".join(first) + " |", "|---|" + "---|" * len(first)]
    for T, sm in summaries.items():
        md.append(f"| [{T}](T{T}/report.md) | " + " | ".join(
            f"{s['over_baseline']:.3f}x, acc {s['eval_accuracy']:.2f}"
            + (f", credit {_credit_text(s['credit']['end'])}" if s.get("credit") else "")
            for s in sm["cells"].values()) + " |")
    md += ["", "Reproduce with:", "", "```bash", command or "rnnjax copy --preset arjovsky",
           "```", ""]
    write_text(os.path.join(out, "report.md"), "\n".join(md))


def reproduce_command(argv) -> str:
    return "rnnjax " + " ".join(shlex.quote(a) for a in argv)
