r"""Orthogonality by constraint, penalty or parametrisation, compared on one task.

:func:`run_orthogonality` trains the same hidden size on the copy task (delay ``T``)
and the adding task (length ``T``) under each method of :func:`methods`:

=====================  ==============================================================
``elman``              tanh Elman, orthogonal init, unconstrained (RMSprop)
``penalty_<lam>``      the same + ``lam ||W^T W - I||_F^2`` (two strengths)
``spectral_<m>``       spectral margin ``W = U diag(s) V^T``, ``s in [1-m, 1+m]``
``riemannian``         orthogonal Elman, ``W_hh`` moved on ``O(H)`` by the Cayley
                       retraction (:func:`rnnjax.riemannian.riemannian` of RMSprop, as
                       Wisdom et al.'s ``natGradRMS``)
``exprnn``/``scornn``  the parametrisations (``lr_orth`` on the generator)
``nnrnn``              ``P (Lambda + T) P^T`` with its penalties
``floss_elman/lstm``   gradient flossing (Engelken 2023): every ``floss_every`` steps
                       the loss gains ``sum_{i<=k} lambda_i^2`` (QR Lyapunov method on
                       a few training sequences)
=====================  ==============================================================

Everything else is shared: RMSprop (PyTorch's), ``lr``, ``lr_orth`` for the
``"orthogonal"`` group of :func:`rnnjax.optim.label_params`, global-norm clipping 1.0,
the same seed and batches.  The loop is its own (``rnnjax.train`` takes neither extra
loss terms nor custom transformations yet); it may be folded into the runner later.

Writes under ``out``: ``summary.json`` (one entry per task and method: final loss, loss
/ baseline, recall accuracy (copy), orthogonality error ``||W^T W - I||_F`` at every
evaluation, seconds per step, the curve), ``report.md`` (the table) and
``curves.png`` (loss / baseline against step, one panel per task).
"""

from __future__ import annotations

import json
import os
import time
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnjax import analysis, cells, constraints, optim, tasks
from rnnjax.checks import check_positive_int
from rnnjax.models import cell_with_readout
from rnnjax.outputs import atomic_open
from rnnjax.riemannian import riemannian

__all__ = ["FULL", "QUICK", "Method", "Settings", "methods", "run_orthogonality",
           "train_method", "write_report"]


class Settings(NamedTuple):
    """Sizes and optimiser of the comparison."""

    T: int = 100
    hidden: int = 64
    batch: int = 64
    steps: int = 2000
    lr: float = 1e-3
    lr_orth: float = 1e-4
    clip: float = 1.0
    log_every: int = 100
    eval_batch: int = 256
    floss_every: int = 10
    floss_k: int = 4
    floss_batch: int = 4
    seed: int = 0
    tasks: tuple = ("copy", "adding")


FULL = Settings()
QUICK = Settings(T=10, hidden=16, batch=32, steps=400, log_every=50, eval_batch=64,
                 floss_k=2, floss_batch=2, tasks=("copy",))


class Method(NamedTuple):
    """One way of (not) constraining the recurrent matrix."""

    cell: object
    optimizer: str = "recipe"  # "recipe" (rmsprop + lr_orth group) or "riemannian"
    penalty: Optional[Callable] = None  # params["cell"] -> scalar, added every step
    floss: bool = False


def methods(hidden: int) -> dict:
    """The methods compared, by name (see the module doc)."""
    orth = cells.elman(hidden, init="orthogonal")
    out = {"elman": Method(orth)}
    for lam in (0.01, 1.0):
        out[f"penalty_{lam:g}"] = Method(
            orth, penalty=lambda p, lam=lam: constraints.orthogonality_penalty(orth, p, lam))
    for m in (0.1, 1.0):
        out[f"spectral_{m:g}"] = Method(cells.spectral(hidden, margin=m))
    out["riemannian"] = Method(orth, optimizer="riemannian")
    out["exprnn"] = Method(cells.exprnn(hidden))
    out["scornn"] = Method(cells.scornn(hidden))
    out["nnrnn"] = Method(cells.nnrnn(hidden), penalty=constraints.nnrnn_penalty)
    out["floss_elman"] = Method(cells.elman(hidden), floss=True)
    out["floss_lstm"] = Method(cells.lstm(hidden), floss=True)
    return out


def _optimizer(method: Method, s: Settings):
    if method.optimizer == "riemannian":
        rms = lambda lr: optax.rmsprop(lr, decay=0.99, eps=1e-8, eps_in_sqrt=False)
        tx = optax.multi_transform(
            {"orthogonal": riemannian(rms(s.lr), "orthogonal", "cayley"),
             "other": rms(s.lr), "frozen": optax.set_to_zero()},
            lambda p: optim.label_params(p, orthogonal_keys={"W_hh"}))
        return optax.chain(optax.clip_by_global_norm(s.clip), tx)
    return optim.recipe("rmsprop", lr=s.lr, lr_orth=s.lr_orth, clip=s.clip)


def _task(name: str, T: int):
    return tasks.copy_task(T) if name == "copy" else tasks.adding_task(T)


def train_method(task, method: Method, s: Settings) -> dict:
    """Train one method on one task; returns its summary entry (numbers only)."""
    cell = method.cell
    model = cell_with_readout(cell, task.input_size, task.output_size, task.readout)
    tx = _optimizer(method, s)
    key = jax.random.key(s.seed)
    params = model.init(key)
    opt_state = tx.init(params)

    def loss_fn(p, xs, ys, floss):
        loss = task.loss(model.apply(p, xs), ys)
        total = loss if method.penalty is None else loss + method.penalty(p["cell"])
        if floss:
            total = total + constraints.flossing_penalty(
                cell, p["cell"], xs[:s.floss_batch], k=s.floss_k)
        return total, loss

    def make_step(floss):
        @jax.jit
        def step(p, st, k):
            xs, ys = task.sample(k, s.batch)
            (_, loss), g = jax.value_and_grad(loss_fn, has_aux=True)(
                p, task.encode(xs), ys, floss)
            u, st = tx.update(g, st, p)
            return optax.apply_updates(p, u), st, loss
        return step

    step, floss_step = make_step(False), (make_step(True) if method.floss else None)

    @jax.jit
    def evaluate(p, k):
        xs, ys = task.eval_sample(k, s.eval_batch)
        m = task.metrics(model.apply(p, task.encode(xs)), ys)
        return m, analysis.orthogonality_error(cell, p["cell"])

    ekey = jax.random.key(s.seed + 10_000)
    history = []
    elapsed, timed = 0.0, 0
    for i in range(s.steps + 1):
        if i % s.log_every == 0 or i == s.steps:
            m, err = evaluate(params, ekey)
            history.append({"step": i, "ortho_error": float(err),
                            **{k: float(v) for k, v in m.items()}})
        if i == s.steps:
            break
        k = jax.random.fold_in(key, i)
        fn = floss_step if (floss_step is not None and i % s.floss_every == 0) else step
        t0 = time.perf_counter()
        params, opt_state, loss = fn(params, opt_state, k)
        loss.block_until_ready()
        if i >= 2 * max(1, s.floss_every if method.floss else 1):  # past compilation
            elapsed += time.perf_counter() - t0
            timed += 1
    last = history[-1]
    return {"loss": last["loss"], "ratio": last["loss"] / task.baseline,
            "accuracy": last.get("accuracy"), "ortho_error": [h["ortho_error"] for h in history],
            "sec_per_step": elapsed / max(timed, 1),
            "finite": bool(np.isfinite(last["loss"])), "history": history}


def _check_out(out):
    if not isinstance(out, (str, os.PathLike)) or not str(out):
        raise ValueError(f"out must be a directory path, got {out!r}")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise ValueError(f"out {str(out)!r} exists and is not an empty directory; "
                         "choose a new one (results are never overwritten)")


def run_orthogonality(out: str, settings: Settings = QUICK, names=None,
                      progress: bool = True) -> dict:
    """Train every method (or those in ``names``) on ``settings.tasks`` and write the
    summary, report and figure under ``out`` (which must not hold files)."""
    _check_out(out)
    s = settings
    for f in ("T", "hidden", "batch", "steps", "log_every", "eval_batch", "floss_every",
              "floss_k", "floss_batch"):
        check_positive_int(f, getattr(s, f))
    for t in s.tasks:
        if t not in ("copy", "adding"):
            raise ValueError(f"tasks must be 'copy' and/or 'adding', got {t!r}")
    if s.floss_k > s.hidden:
        raise ValueError(f"floss_k must be <= hidden ({s.hidden}), got {s.floss_k}")
    table = methods(s.hidden)
    names = list(table) if names is None else list(names)
    for n in names:
        if n not in table:
            raise ValueError(f"method must be one of {list(table)}, got {n!r}")
    os.makedirs(out, exist_ok=True)
    summary = {"settings": s._asdict(), "results": {}}
    for t in s.tasks:
        task = _task(t, s.T)
        summary["results"][t] = {"baseline": task.baseline, "methods": {}}
        for n in names:
            res = train_method(task, table[n], s)
            summary["results"][t]["methods"][n] = res
            if progress:
                acc = "" if res["accuracy"] is None else f"  recall {res['accuracy']:.3f}"
                print(f"{t:6s} {n:14s} loss/baseline {res['ratio']:.3f}{acc}  "
                      f"ortho err {res['ortho_error'][-1]:.2e}  "
                      f"{1e3 * res['sec_per_step']:.1f} ms/step", flush=True)
    with atomic_open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    write_report(out, summary)
    return summary


def write_report(out: str, summary: dict) -> None:
    """``report.md`` (table per task) and ``curves.png`` from a summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary["settings"]
    lines = ["# Orthogonality: constraint, penalty, parametrisation", "",
             f"hidden {s['hidden']}, T {s['T']}, batch {s['batch']}, {s['steps']} steps, "
             f"RMSprop lr {s['lr']:g} (orthogonal group {s['lr_orth']:g}), clip {s['clip']:g}, "
             f"seed {s['seed']}; flossing every {s['floss_every']} steps, k={s['floss_k']}.",
             ""]
    res = summary["results"]
    fig, axes = plt.subplots(1, len(res), figsize=(6.4 * len(res), 4.2), squeeze=False)
    for ax, (t, r) in zip(axes[0], res.items()):
        lines += [f"## {t} (baseline {r['baseline']:.4f})", "",
                  "| method | final loss | loss / baseline | recall | ortho err start | "
                  "ortho err end | ortho err max | ms / step |",
                  "|---|---|---|---|---|---|---|---|"]
        for j, (n, m) in enumerate(r["methods"].items()):
            acc = "" if m["accuracy"] is None else f"{m['accuracy']:.3f}"
            e = m["ortho_error"]
            lines.append(f"| {n} | {m['loss']:.4f} | {m['ratio']:.3f} | {acc} | {e[0]:.2e} | "
                         f"{e[-1]:.2e} | {max(e):.2e} | {1e3 * m['sec_per_step']:.1f} |")
            h = m["history"]
            ax.plot([x["step"] for x in h], [x["loss"] / r["baseline"] for x in h], label=n,
                    ls="-" if j < 10 else "--")  # the colour cycle has 10 colours
        lines.append("")
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set(title=t, xlabel="training step", ylabel="loss / baseline")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    lines += ["Orthogonality error: ``||W^T W - I||_F`` of the recurrent matrix (the "
              "largest over the LSTM's gate blocks), at every evaluation.", "",
              "![curves](curves.png)", ""]
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=100)
    plt.close(fig)
    with atomic_open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))
