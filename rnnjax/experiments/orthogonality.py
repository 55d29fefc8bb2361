r"""Orthogonality by constraint, penalty or parametrisation, compared on one task.

:func:`run_orthogonality` trains the same hidden size on the copy task (delay ``T``)
and the adding task (length ``T``) under each method of :func:`methods`, each one a
:class:`rnnjax.Config` run by the training runner (:func:`rnnjax.train`;
the runner's options do the constraining, there is no loop here):

=====================  ==============================================================
``elman``              tanh Elman, orthogonal init, unconstrained
``penalty_<lam>``      the same + ``lam ||W^T W - I||_F^2`` (``orth_penalty``, two
                       strengths)
``spectral_<m>``       spectral margin ``W = U diag(s) V^T``, ``s in [1-m, 1+m]``
``riemannian``         orthogonal Elman, ``W_hh`` moved on ``O(H)`` by the Cayley
                       retraction of RMSprop at ``lr`` (``riemannian="cayley"``, as
                       Wisdom et al.'s ``natGradRMS``)
``exprnn``/``scornn``  the parametrisations (``lr_orth`` on the generator)
``nnrnn``              ``P (Lambda + T) P^T`` with its penalties (``nnrnn_alpha=1e-4``,
                       ``nnrnn_decay=1e-6``)
``floss_elman/lstm``   gradient flossing (Engelken 2023; ``floss_every``, ``floss_k``,
                       ``floss_batch``, weight 1) on the default-init Elman / LSTM
=====================  ==============================================================

Everything else is shared: RMSprop (PyTorch's), ``lr``, ``lr_orth`` for the
``"orthogonal"`` group of :func:`rnnjax.optim.label_params`, global-norm clipping 1.0,
the same seed and batches.

Writes under ``out`` (:func:`rnnjax.io.outputs.prepare_out`: a folder holding files is
refused unless ``resume`` or ``overwrite``; the writer's lock is held): ``runs/<task>_<method>/``
(each run's ``config.json`` and metrics: ``rnnjax train`` reproduces it),
``summary.json`` (rewritten after every method; one entry per task and method: final
eval loss, loss / baseline, recall accuracy (copy), orthogonality error
``||W^T W - I||_F`` at the start and at every evaluation where the runner logs it,
seconds per step, the curve), ``report.md`` (the table) and ``curves.png`` (loss /
baseline against step, one panel per task).  ``resume=True`` keeps the methods
``summary.json`` already holds (same settings) and trains the others.
"""

from __future__ import annotations

import json
import os
from typing import NamedTuple

import jax
import numpy as np

from rnnjax import analysis
from rnnjax.core.checks import check_positive_int
from rnnjax.io import outputs
from rnnjax.training.runner import Config, build, train

__all__ = ["FULL", "QUICK", "Settings", "configs", "methods", "run_orthogonality",
           "summarize", "write_report"]


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

_ORTH_INIT = (("init", "orthogonal"),)


def methods(s: Settings = FULL) -> dict:
    """The methods compared, by name: the :class:`Config` fields each one sets (see the
    module doc)."""
    floss = dict(floss_every=s.floss_every, floss_k=s.floss_k, floss_batch=s.floss_batch)
    out = {"elman": dict(cell="elman", cell_options=_ORTH_INIT)}
    for lam in (0.01, 1.0):
        out[f"penalty_{lam:g}"] = dict(cell="elman", cell_options=_ORTH_INIT, orth_penalty=lam)
    for m in (0.1, 1.0):
        out[f"spectral_{m:g}"] = dict(cell="spectral", cell_options=(("margin", m),))
    out["riemannian"] = dict(cell="elman", cell_options=_ORTH_INIT, riemannian="cayley",
                             lr_orth=s.lr)
    out["exprnn"] = dict(cell="exprnn")
    out["scornn"] = dict(cell="scornn")
    out["nnrnn"] = dict(cell="nnrnn", nnrnn_alpha=1e-4, nnrnn_decay=1e-6)
    out["floss_elman"] = dict(cell="elman", **floss)
    out["floss_lstm"] = dict(cell="lstm", **floss)
    return out


def configs(s: Settings, task: str, names=None, out=None) -> dict:
    """``name -> Config`` of the methods ``names`` (default all) on ``task``; with
    ``out``, each run writes to ``out/runs/<task>_<name>`` (no checkpoints)."""
    table = methods(s)
    names = list(table) if names is None else list(names)
    for n in names:
        if n not in table:
            raise ValueError(f"method must be one of {list(table)}, got {n!r}")
    base = dict(task=task, T=s.T, hidden=s.hidden, batch=s.batch, steps=s.steps, lr=s.lr,
                lr_orth=s.lr_orth, optimizer="rmsprop", clip=s.clip, seed=s.seed,
                log_every=s.log_every, eval_batch=s.eval_batch, checkpoint_every=0)
    return {n: Config(**{**base, **table[n],
                         "out": None if out is None else
                         os.path.join(out, "runs", f"{task}_{n}")}) for n in names}


def _check_settings(s: Settings):
    if not isinstance(s, Settings):
        raise TypeError(f"settings must be an orthogonality.Settings, got {type(s).__name__}")
    for f in ("T", "hidden", "batch", "steps", "log_every", "eval_batch", "floss_every",
              "floss_k", "floss_batch"):
        check_positive_int(f, getattr(s, f))
    if not s.tasks:
        raise ValueError("tasks must name at least one of 'copy', 'adding', got none")
    for t in s.tasks:
        if t not in ("copy", "adding"):
            raise ValueError(f"tasks must be 'copy' and/or 'adding', got {t!r}")
    if s.floss_k > s.hidden:
        raise ValueError(f"floss_k must be <= hidden ({s.hidden}), got {s.floss_k}")


def summarize(config: Config, result) -> dict:
    """The summary entry of one finished run (:class:`rnnjax.training.Result`)."""
    exp, hist = result.experiment, result.history
    last = hist[-1]
    cell = exp.model.cell
    seed = np.asarray(config.seed, np.int32)
    first = analysis.orthogonality_error(cell, jax.jit(exp.init)(seed).params["cell"])
    final = jax.tree.map(lambda a: a[0], result.state.params)["cell"]
    logged = [h for h in hist if "orth_error" in h]
    steps = [0] + ([h["step"] for h in logged] if logged else [config.steps])
    errors = [float(first)] + ([h["orth_error"] for h in logged] if logged else
                               [float(analysis.orthogonality_error(cell, final))])
    rates = [h["steps_per_sec"] for h in hist[1:]] or [last["steps_per_sec"]]
    return {"loss": last["eval_loss"], "ratio": last["eval_loss"] / exp.task.baseline,
            "accuracy": last.get("eval_accuracy"), "ortho_error": errors,
            "ortho_steps": steps, "ortho_logged": bool(logged),
            "sec_per_step": 1.0 / float(np.mean(rates)),
            "finite": bool(np.isfinite(last["eval_loss"])),
            "history": [{"step": h["step"], "loss": h["eval_loss"]} for h in hist]}


def _load_done(out: str, s: Settings) -> dict:
    path = os.path.join(out, "summary.json")
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        old = json.load(f)
    saved = {k: (tuple(v) if isinstance(v, list) else v) for k, v in old["settings"].items()}
    diff = [k for k in s._fields if saved.get(k) != getattr(s, k)]
    if diff:
        raise ValueError("resume: the comparison in " + repr(out) + " was made with "
                         + ", ".join(f"{k}={saved.get(k)!r}" for k in diff) + "; this call has "
                         + ", ".join(f"{k}={getattr(s, k)!r}" for k in diff))
    return old["results"]


def run_orthogonality(out: str, settings: Settings = QUICK, names=None,
                      progress: bool = True, *, resume: bool = False,
                      overwrite: bool = False) -> dict:
    """Train every method (or those in ``names``) on ``settings.tasks`` through the
    runner and write the summary, report and figure under ``out`` (see the module doc)."""
    s = settings
    _check_settings(s)
    plan = {t: configs(s, t, names, out) for t in s.tasks}
    for t in plan.values():
        for c in t.values():
            build(c)  # every config checked before anything is written
    out = outputs.prepare_out(out, resume, overwrite, command="orthogonality")
    with outputs.lock_out(out):
        outputs.claim_out(out, "orthogonality", overwrite)
        done = _load_done(out, s) if resume else {}
        summary = {"settings": s._asdict(), "results": {}}
        for t, cfgs in plan.items():
            task = build(next(iter(cfgs.values()))).task
            entry = summary["results"][t] = {"baseline": task.baseline, "methods": {}}
            for n, config in cfgs.items():
                res = done.get(t, {}).get("methods", {}).get(n)
                if res is None:
                    result = train(config, overwrite=True, progress=False)
                    res = summarize(config, result)
                entry["methods"][n] = res
                with outputs.atomic_open(os.path.join(out, "summary.json"), "w") as f:
                    json.dump(summary, f, indent=1)
                if progress:
                    acc = "" if res["accuracy"] is None else f"  recall {res['accuracy']:.3f}"
                    print(f"{t:6s} {n:14s} loss/baseline {res['ratio']:.3f}{acc}  "
                          f"ortho err {res['ortho_error'][-1]:.2e}  "
                          f"{1e3 * res['sec_per_step']:.1f} ms/step", flush=True)
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
            mx = f"{max(e):.2e}" if m.get("ortho_logged", True) else "-"
            lines.append(f"| {n} | {m['loss']:.4f} | {m['ratio']:.3f} | {acc} | {e[0]:.2e} | "
                         f"{e[-1]:.2e} | {mx} | {1e3 * m['sec_per_step']:.1f} |")
            h = m["history"]
            ax.plot([x["step"] for x in h], [x["loss"] / r["baseline"] for x in h], label=n,
                    ls="-" if j < 10 else "--")  # the colour cycle has 10 colours
        lines.append("")
        ax.axhline(1.0, color="k", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set(title=t, xlabel="training step", ylabel="loss / baseline")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    lines += ["Final loss: the task loss on the held-out batch at the last step.  "
              "Orthogonality error: ``||W^T W - I||_F`` of the recurrent matrix (the "
              "largest over the LSTM's gate blocks) at the start and at every evaluation "
              "(``-``: not logged by the runner for an unconstrained cell without "
              "orthogonal params; start and end only).  ms / step: mean over the logging "
              "windows after the first (which compiles), evaluation excluded.", "",
              "![curves](curves.png)", ""]
    fig.tight_layout()
    fig.savefig(os.path.join(out, "curves.png"), dpi=100)
    plt.close(fig)
    with outputs.atomic_open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n".join(lines))
