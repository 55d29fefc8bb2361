"""The copy-task job behind ``rnnjax copy``: train several cells on the copy task
(Arjovsky et al. 2016) with one recipe and write a report.

``runs/<name>/`` receives one run directory per cell (``<cell>/metrics.jsonl``,
``metrics.csv``, ``config.json``, orbax ``checkpoints/`` with the trained params, readable
by ``rnnjax gradflow --checkpoint runs/<name>/<cell>``, and ``cell_summary.json`` once
the cell is done), ``copy_loss.png`` (held-out cross-entropy per cell on a log scale with
the memoryless baseline ``10 ln 8 / (T+20)``), ``copy_grad_norms.png``
(``||dL/dh_t||`` against ``t`` on the held-out batch at initialisation and after
training, :func:`rnnjax.analysis.hidden_grad_norms`), ``copy_orth_error.png``
(``||W^H W - I||_F`` over training), ``summary.json``, ``report.md`` and ``report.html``.
The job writes through :func:`rnnjax.outputs.prepare_out`: a ``runs/<name>`` that already
holds files is refused before anything is trained or written, unless ``resume=True``
(skip the cells already done and continue an interrupted one from its latest
checkpoint) or ``overwrite=True`` (train every cell again, replacing its run); one
writer at a time holds the folder's lock (:func:`rnnjax.outputs.lock_out`).

With ``K = config.seeds > 1`` seeds per cell (one ``jax.vmap``-ed program), the table
shows ``mean ± std`` over the seeds (population std) of every number, the loss and
orthogonality figures shade ``mean ± std`` and the gradient-norm figure shades the
spread of ``log ||dL/dh_t||`` (``exp(mean ± std)`` of the log over seeds; the line is
the geometric mean).  Every figure draws a cell in its own colour and marker
(:func:`rnnjax.figures.cell_style`).
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

from rnnjax import analysis, optim, plots
from rnnjax import cells as cells_lib
from rnnjax.metrics import format_loss, format_mean_std
from rnnjax.outputs import lock_out, prepare_out, write_text
from rnnjax.train import Config, build, initial_state, train
from rnnjax.train_config import orthogonal_cells, validate

__all__ = ["ARJOVSKY_TS", "BASE_CELLS", "DEFAULT", "PAPER", "default_cells",
           "gradient_profile", "log_spread", "paper_configs", "per_step_factor",
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


def per_step_factor(norms) -> float:
    """``f = exp(b)`` of the least-squares line ``log ||dL/dh_t|| = a + b t`` over the
    positive finite norms: the gradient at step ``t`` is about ``f^-(T-t)`` times the one
    at the end, so ``f > 1`` means it vanishes going back to the early steps, ``f <= 1``
    that it is preserved (or grows); ``nan`` for fewer than 2 norms."""
    n = np.asarray(norms, dtype=float)
    t = np.flatnonzero(np.isfinite(n) & (n > 0))
    return float(np.exp(np.polyfit(t, np.log(n[t]), 1)[0])) if t.size >= 2 else float("nan")


def gradient_profile(exp, params, data) -> np.ndarray:
    """``||dL/dh_t||``, ``t = 1..T+20``, of the copy loss on the batch ``data = (xs, ys)``
    (one seed's params ``{"cell", "readout"}``), from
    :func:`rnnjax.analysis.hidden_grad_norms`; the first carry field (``h``)."""
    xs, ys = data
    ro = params["readout"]

    def loss(outs):
        return exp.task.loss(outs @ ro["W"].T + ro["b"], ys)

    norms = analysis.hidden_grad_norms(exp.model.cell, params["cell"], exp.task.encode(xs),
                                       loss)
    return np.asarray(jax.tree.leaves(norms)[0], np.float64)


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
                   on_record=tracker)
    exp = result.experiment
    state0, data = initial_state(exp)
    K = cfg.seeds
    g0 = [gradient_profile(exp, _seed(state0.params, k), _seed(data, k)) for k in range(K)]
    g1 = [gradient_profile(exp, _seed(result.state.params, k), _seed(data, k))
          for k in range(K)]
    hist = result.history
    last = hist[-1]

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
        "grad_norms_init": log_spread(g0)[0].tolist(),
        "grad_norms_end": log_spread(g1)[0].tolist(),
        "factor_init_seeds": [per_step_factor(g) for g in g0],
        "factor_end_seeds": [per_step_factor(g) for g in g1],
        "diverged": tracker.warned,
    }
    entry["factor_init"] = float(np.mean(entry["factor_init_seeds"]))
    entry["factor_end"] = float(np.mean(entry["factor_end_seeds"]))
    if K > 1:
        entry["grad_norms_init_seeds"] = [g.tolist() for g in g0]
        entry["grad_norms_end_seeds"] = [g.tolist() for g in g1]
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
    out = prepare_out(out, resume, overwrite, name="name")
    with lock_out(out, name="name"):
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
    top = prepare_out(os.path.join(runs_dir, name), resume, overwrite, name="name")
    with lock_out(top, name="name"):
        summaries = {T: run_copy_job(os.path.join(name, f"T{T}"),
                                     dataclasses.replace(base, T=T), cells,
                                     runs_dir=runs_dir, command=command, resume=resume,
                                     overwrite=overwrite, **kwargs) for T in Ts}
        write_sweep_report(top, name, summaries, command)
    return summaries


def _paragraph(summary) -> str:
    """What the figures show, in words computed from the numbers."""
    cs = summary["cells"]
    below = [c for c, s in cs.items() if s["over_baseline"] <= 0.2 and s["eval_accuracy"] >= 0.9]
    at = [c for c, s in cs.items() if s["over_baseline"] >= 0.8]
    fe = {c: s["factor_end"] for c, s in cs.items() if np.isfinite(s["factor_end"])}
    T = summary["T"]
    text = (f"At delay T={T} the memoryless strategy scores the baseline; a cell below it "
            f"has carried the ten symbols across {T} steps. ")
    if below:
        text += (f"{', '.join(below)} went far below it (at most 0.2x, recall accuracy at "
                 f"least 0.9). ")
    if at:
        text += f"{', '.join(at)} stayed at or near it (0.8x or more): no memory at this range. "
    if fe:
        lo = min(fe, key=fe.get)
        hi = max(fe, key=fe.get)
        text += (f"The gradient-norm panel shows the mechanism: after training the fitted "
                 f"factor per step f of ||dL/dh_t|| is {fe[hi]:.3f} for {hi} and "
                 f"{fe[lo]:.3f} for {lo}; the gradient reaching the symbols at the start is "
                 f"about f^-{T} of the one at the end ({fe[hi] ** -T:.2g} for {hi}, "
                 f"{fe[lo] ** -T:.2g} for {lo}): above 1 it vanishes, at or below 1 the "
                 f"signal from the recall steps reaches the symbols. ")
    if any(s.get("orth_error") for s in cs.values()):
        worst = max((max(s["orth_error"]) for s in cs.values() if s.get("orth_error")))
        text += (f"The orthogonal/unitary matrices stayed on their group throughout "
                 f"(largest ||W^H W - I||_F {worst:.1e}, float32 rounding).")
    return text


def _seed_values(s, key):
    """Per-seed values of ``key`` in a cell's summary entry (one value for a single seed
    or an entry written before per-seed values were kept)."""
    return s.get(f"{key}_seeds") or [s[key]]


def write_copy_report(out: str, summary: dict) -> None:
    """Write ``copy_loss.png``, ``copy_grad_norms.png``, ``copy_orth_error.png``,
    ``summary.json``, ``report.md`` and ``report.html``."""
    baseline, T = summary["baseline"], summary["T"]
    cfg = summary["config"]
    seeds = cfg.get("seeds", 1)
    cs = summary["cells"]
    curves = {c: (s["steps"], s["curve"]) for c, s in cs.items()}
    bands = grad_bands = orth_bands = None
    if seeds > 1:
        bands = {c: ([m - d for m, d in zip(s["curve"], s["curve_std"])],
                     [m + d for m, d in zip(s["curve"], s["curve_std"])])
                 for c, s in cs.items()}
        grad_bands = {c: tuple(log_spread(s[k])[1:] for k in ("grad_norms_init_seeds",
                                                              "grad_norms_end_seeds"))
                      for c, s in cs.items() if s.get("grad_norms_end_seeds")}
        orth_bands = {c: ([max(m - d, 1e-12) for m, d in zip(s["orth_error"],
                                                              s["orth_error_std"])],
                          [m + d for m, d in zip(s["orth_error"], s["orth_error_std"])])
                      for c, s in cs.items() if s.get("orth_error_std")}
    plots.loss_curves(curves, baseline=baseline, bands=bands,
                      path=os.path.join(out, "copy_loss.png"),
                      title=f"Copy task, T={T}: held-out cross-entropy")
    plots.grad_norm_curves({c: (s["grad_norms_init"], s["grad_norms_end"])
                            for c, s in cs.items()}, bands=grad_bands,
                           path=os.path.join(out, "copy_grad_norms.png"),
                           title=f"Copy task, T={T}: ||dL/dh_t|| on the held-out batch")
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
                     format_mean_std(_seed_values(s, "eval_accuracy"), 3), verdict,
                     format_mean_std(_seed_values(s, "factor_init"), 4),
                     format_mean_std(_seed_values(s, "factor_end"), 4), oe,
                     f"{s['seconds']:.0f}"))
    head = ("cell", "cross-entropy", "/ baseline", "recall accuracy", "",
            "grad factor/step at init", "grad factor/step at end", "orth. error", "seconds")
    if seeds > 1:
        head = tuple(h + " (mean ± std)" if h and h not in ("cell", "seconds") else h
                     for h in head)
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
    md += ["", "Gradient norms ||dL/dh_t|| of the copy loss on the held-out batch against t, "
           "at initialisation (dashed) and after training (solid), log scale; the table's "
           "factor per step is exp(slope) of a straight-line fit of log ||dL/dh_t|| "
           "against t.", "", "![gradient norms](copy_grad_norms.png)", ""]
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
            + f"</tr>{table}</table><img src='copy_grad_norms.png'>"
            + ("<img src='copy_orth_error.png'>" if orth else "")
            + f"<p>{html.escape(_paragraph(summary))}</p><p>Reproduce with:</p><pre>"
            f"{html.escape(summary.get('command') or 'rnnjax copy')}</pre>")
    write_text(os.path.join(out, "report.html"), page)


def write_sweep_report(out: str, name: str, summaries: dict, command: str | None) -> None:
    """``--preset arjovsky``: ``copy_sweep.png`` (one panel per T) and ``report.md``
    linking each T's own report."""
    panels = {f"T={T}": ({c: (s["steps"], s["curve"]) for c, s in sm["cells"].items()},
                         sm["baseline"]) for T, sm in summaries.items()}
    plots.loss_panels(panels, path=os.path.join(out, "copy_sweep.png"))
    md = [f"# Copy task sweep: {name}", "", "Held-out cross-entropy against training step, "
          "one panel per delay T (Arjovsky et al. 2016, Fig. 1); dashed: the memoryless "
          "baseline 10 ln 8 / (T+20).", "", "![sweep](copy_sweep.png)", "",
          "| T | " + " | ".join(next(iter(summaries.values()))["cells"]) + " |",
          "|---|" + "---|" * len(next(iter(summaries.values()))["cells"])]
    for T, sm in summaries.items():
        md.append(f"| [{T}](T{T}/report.md) | " + " | ".join(
            f"{s['over_baseline']:.3f}x, acc {s['eval_accuracy']:.2f}"
            for s in sm["cells"].values()) + " |")
    md += ["", "Reproduce with:", "", "```bash", command or "rnnjax copy --preset arjovsky",
           "```", ""]
    write_text(os.path.join(out, "report.md"), "\n".join(md))


def reproduce_command(argv) -> str:
    return "rnnjax " + " ".join(shlex.quote(a) for a in argv)
