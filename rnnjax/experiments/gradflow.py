"""How gradients travel across long sequences, per cell (the experiment behind
``rnnjax gradflow``; :func:`gradflow` gives the same files and numbers from a script).

For each cell and each length ``T`` it measures ``||dL/dh_t||`` for ``t = 1..T``
(:func:`rnnjax.analysis.hidden_grad_norms`, one backward pass) and writes, under
``--out``:

* ``gradflow.csv``: one row per ``(cell, stage, T, t)``: columns ``cell, stage, T, t,
  grad_norm`` (the ``h`` field of the carry; for complex ``h`` the norm of
  ``(dL/dRe h, dL/dIm h)``) and ``grad_norm_<field>`` for the other carry fields
  (``grad_norm_c`` for the LSTM's memory cell; empty for cells without it);
* ``gradnorm_T<T>.png`` (one curve per cell, log scale), ``singular_values.png``,
  ``lyapunov.png``;
* ``summary.md``: per cell, ``T`` and carry field the measured credit ratio
  ``||dL/dz^f_s|| / ||dL/dz^f_r||`` and ``||dz_r/dz_s||_2``
  (:func:`rnnjax.analysis.credit_assignment`; ``s = 0``, ``r = T-1`` for the loss
  below, the task's credit steps for a copy-task run, whose loss is then the recall
  steps' cross-entropy; ``underflow`` where the gradient left the dtype's range), a
  descriptive least-squares factor of the profile (``r = exp(-slope)`` of
  ``log ||dL/dh_t||`` against ``t``), the recurrent matrix's orthogonality error and
  the top Lyapunov exponents; ``credit_T.png``: the credit ratio against ``T``.

The loss at initialisation is ``L = mean_b v . y_T[b]`` with a fixed random unit vector
``v`` and inputs ``x_t ~ N(0, I)`` (``--features`` of them).  With ``--checkpoint`` a
trained run is analysed against the same cell at initialisation, with the run's task
loss on a batch of its task (e.g. the copy task's cross-entropy) at the task's length
(a ``--T`` that differs is refused, as the task fixes it); for a ``.npz`` params
file, with the loss above at every ``--T``.

Norms are computed scaled (:func:`rnnjax.analysis.scaled_norm`), so in float64 a
norm is 0 only when it is below the smallest normal float (~1e-308) or the
gradient itself underflowed on the way back.

Example::

    from rnnjax.experiments.gradflow import gradflow
    result = gradflow(["elman", "lstm"], [100, 500], "runs/gradflow", hidden=32)
"""

from __future__ import annotations

import csv
import os
import shutil
import time

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import analysis, cells
from rnnjax.core.checks import check_choice, check_memory, check_positive_int
from rnnjax.core.plugins import is_plugin
from rnnjax.core.precision import cast_floating
from rnnjax.io.outputs import LOCK, MARKER, atomic_open, claim_out, lock_out, prepare_out
from rnnjax.plots import gradflow as gradflow_plots
from rnnjax.plots import report as plots
from rnnjax.training import runner as train_lib

DEFAULT_CELLS = ("elman", "lstm", "gru", "exprnn", "scornn", "urnn")
DEFAULT_TS = (100, 500, 1000, 2000)


def decay_fit(norms):
    """``(ratio, rate)``: ``||dL/dh_1|| / ||dL/dh_T||`` and ``exp(-slope)`` of the
    least-squares fit of ``log norm`` against ``t`` over the positive finite norms
    (``nan`` when fewer than two are left).  The denominator is the last nonzero norm
    (for the LSTM's ``c``, ``||dL/dc_T|| = 0`` since ``c_T`` acts only through later
    steps, so its ratio is to ``||dL/dc_{T-1}||``); the ratio is 0 when
    ``||dL/dh_1||`` underflows."""
    n = np.asarray(norms, dtype=float)
    nz = np.flatnonzero(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = float(n[0] / n[nz[-1]]) if nz.size else float("nan")
    t = np.arange(1, len(n) + 1)
    keep = np.isfinite(n) & (n > 0)
    if keep.sum() < 2:
        return ratio, float("nan")
    slope = np.polyfit(t[keep], np.log(n[keep]), 1)[0]
    return ratio, float(np.exp(-slope))


def _fields(tree):
    """``[(field name, leaf)]`` of a carry-shaped result (``h`` first)."""
    if hasattr(tree, "_fields"):
        return list(zip(tree._fields, tree))
    leaves = jax.tree.leaves(tree)
    return [("h" if i == 0 else f"leaf{i}", leaf) for i, leaf in enumerate(leaves)]


def _last_output_loss(v):
    return lambda ys: jnp.mean(ys[..., -1, :] @ v)


def _load_checkpoint(path, dtype, Ts):
    """``(label, cell, trained params, init params, xs, loss_fn)`` of a checkpoint.

    A directory is a run of the training runner (``rnnjax.training.runner``: ``config.json`` and
    orbax checkpoints; the first seed is analysed, with the run's task loss on a batch
    of its task, whose length the task fixes: ``Ts`` must be None or that length, else
    a ``ValueError`` says so).  A ``.npz`` file is one written by
    :func:`rnnjax.analysis.save_params_npz` (loss ``v . y_T`` as at initialisation,
    inputs ``N(0, I)`` of length ``max(Ts)``, cut to each ``T``; ``Ts`` None: 100).
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"--checkpoint {path} does not exist (expected a training "
                                f"run's folder or a .npz of save_params_npz)")
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "config.json")):
            raise FileNotFoundError(f"--checkpoint {path} has no config.json")
        config = train_lib.Config.load(path)
        exp = train_lib.build(config)
        stacked = train_lib.load_params(path)
        trained = cast_floating(jax.tree.map(lambda a: a[0], stacked), dtype)
        init = cast_floating(exp.model.init(jax.random.key(config.seed)), dtype)
        xs, targets = exp.task.sample(jax.random.key(config.seed + 12345), 8)
        xs = jnp.asarray(exp.task.encode(xs)).astype(dtype)
        length = xs.shape[-2]
        if Ts is not None and list(Ts) != [length]:
            raise ValueError(
                f"--T {','.join(map(str, Ts))} cannot be honoured for the training run "
                f"{path!r}: its task ({config.task}, T={config.T}) fixes the sequence "
                f"length at {length}; leave --T out (or pass --T {length})")
        last = getattr(exp.task, "readout", "all") == "last"

        def loss_for(p):
            if exp.task.credit is not None:  # the loss of the credit targets only
                return train_lib.credit_loss(exp.model, exp.task, p, targets)

            def loss(ys):
                ys = ys[..., -1, :] if last else ys
                logits = ys @ p["readout"]["W"].T + p["readout"]["b"]
                return exp.task.loss(logits, targets)
            return loss

        return (config.cell, exp.model.cell, trained["cell"], init["cell"], xs,
                loss_for(trained), loss_for(init), exp.task.credit)
    name, hidden, cell_kwargs, params = analysis.load_params_npz(path)
    cell = cells.make(name, hidden, **cell_kwargs)
    F = cell.input_size(params)
    params = cast_floating(params, dtype)
    init = cast_floating(cell.init(jax.random.key(0), F), dtype)
    k_x, k_v = jax.random.split(jax.random.key(1))
    xs = jax.random.normal(k_x, (4, 100 if Ts is None else max(Ts), F), dtype)
    v = jax.random.normal(k_v, (cell.output_size,), dtype)
    loss = _last_output_loss(v / jnp.linalg.norm(v))
    return name, cell, params, init, xs, loss, loss, None


def gradflow(cell_names, Ts, out, *, hidden=64, batch=4, features=8, seed=0,
             lyap_steps=400, lyap_k=8, checkpoint=None, dtype="float64", print_fn=print,
             overwrite=False):
    """Run the analysis and write the CSV, PNGs and ``summary.md`` under ``out``.

    ``out`` is checked and created (:func:`rnnjax.io.outputs.prepare_out`) once every input
    has been read and before any measurement: a folder that already holds files is
    refused unless ``overwrite``; the writer's lock (:func:`rnnjax.io.outputs.lock_out`) is
    held until the files are written, and a folder this call created is removed again
    if it fails before writing anything.

    Returns ``{"rows": [...], "summary": [...]}`` (the CSV rows and summary records).
    """
    check_choice("dtype", dtype, ("float32", "float64"))
    for name, v in (("hidden", hidden), ("batch", batch), ("features", features),
                    ("lyap_steps", lyap_steps), ("lyap_k", lyap_k)):
        check_positive_int(name, v)
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    dt = jnp.dtype(dtype)
    t0 = time.perf_counter()

    # (label, stage, cell, params, xs_for_T(T), loss)
    jobs = []
    if Ts is not None and len(set(Ts)) != len(list(Ts)):
        raise ValueError(f"T must list distinct lengths, got {list(Ts)}")
    if checkpoint is not None:
        for Tv in Ts or ():
            check_positive_int("T", Tv)
        name, cell, trained, init, xs, loss_tr, loss_init, steps = _load_checkpoint(
            checkpoint, dt, Ts)
        Ts = [xs.shape[-2]] if Ts is None else list(Ts)
        _check_size(batch, max(Ts), features, cell.output_size, dt)
        jobs = [(name, "init", cell, init, lambda T, xs=xs: xs[:, :T], loss_init, steps),
                (name, "trained", cell, trained, lambda T, xs=xs: xs[:, :T], loss_tr, steps)]
    else:
        Ts = list(DEFAULT_TS if Ts is None else Ts)
        for Tv in Ts:
            check_positive_int("T", Tv)
        _check_size(batch, max(max(Ts), lyap_steps), features, hidden, dt)
        k_p, k_x, k_v = jax.random.split(jax.random.key(seed), 3)
        xs_all = jax.random.normal(k_x, (batch, max(max(Ts), lyap_steps), features), dt)
        for name in cell_names:
            if name not in cells.REGISTRY and not is_plugin(name):
                print_fn(f"note: cell {name!r} is not registered in this rnnjax; skipped")
                continue
            cell = cells.make(name, hidden)
            params = cast_floating(cell.init(k_p, features), dt)
            v = jax.random.normal(k_v, (cell.output_size,), dt)
            jobs.append((name, "init", cell, params,
                         lambda T, xs_all=xs_all: xs_all[:, :T],
                         _last_output_loss(v / jnp.linalg.norm(v)), None))
    if not jobs:
        raise ValueError(f"--cells names no registered cell (registered: "
                         f"{sorted(cells.REGISTRY)}), got {list(cell_names)}")
    existed = out is not None and os.path.exists(os.fspath(out))
    out = prepare_out(out, overwrite=overwrite, command="gradflow",  # once every input
                      reads=[checkpoint])                             # has been read
    done = False
    try:
        with lock_out(out):
            claim_out(out, "gradflow", overwrite)
            result = _measure_and_write(jobs, Ts, out, checkpoint, hidden, batch, features,
                                        dtype, dt, lyap_steps, lyap_k, print_fn, t0)
        done = True
        return result
    finally:
        if not done and not existed and os.path.isdir(out) and \
                not [n for n in os.listdir(out) if n not in (LOCK, MARKER)]:
            shutil.rmtree(out, ignore_errors=True)


def _check_size(batch, T, features, hidden, dt):
    """Refuse before allocating when the inputs ``(batch, T, features)`` and the states
    and gradients kept for the backward pass (at most ``8 * hidden`` numbers a step and
    example: two carry fields, complex parts, forward and backward) cannot fit."""
    nbytes = jnp.dtype(dt).itemsize * batch * T * (features + 8 * hidden)
    check_memory(f"gradflow at T={T} (batch {batch}, hidden {hidden})", nbytes,
                 "choose a smaller --T, --batch or --hidden")


def _measure_and_write(jobs, Ts, out, checkpoint, hidden, batch, features, dtype, dt,
                       lyap_steps, lyap_k, print_fn, t0):
    """The measurements of ``jobs`` at the lengths ``Ts``, written under ``out``."""
    rows, summary, curves, spectra, lyap = [], [], {T: {} for T in Ts}, {}, {}
    extra_fields = []
    credit_T = {}
    for name, stage, cell, params, get_xs, loss, steps in jobs:
        label = name if stage == "init" else f"{name} (trained)"
        if stage == "init" and checkpoint is not None:
            label = f"{name} (init)"
        for Tv in Ts:
            xs = get_xs(Tv)
            # cells whose outputs are a readout of the state (SSMs) keep the step's outputs
            res = analysis.hidden_grad_norms(cell, params, xs, loss, readout="carry_or_step")
            comps = [(f, np.asarray(a)) for f, a in _fields(res)]
            for f, _ in comps[1:]:
                if f not in extra_fields:
                    extra_fields.append(f)
            for i in range(Tv):
                row = {"cell": name, "stage": stage, "T": Tv, "t": i + 1,
                       "grad_norm": float(comps[0][1][i])}
                row.update({f"grad_norm_{f}": float(a[i]) for f, a in comps[1:]})
                rows.append(row)
            curves[Tv][label] = comps[0][1]
            # the measured credit: from the last step (loss v . y_T) or the task's steps
            src, ref = (0, Tv - 1) if steps is None else (steps.source, steps.reference)
            cr = analysis.credit_assignment(cell, params, xs, loss, src, ref,
                                            readout="carry_or_step")
            for f, a in comps:
                _, rate = decay_fit(a)
                summary.append({"cell": name, "stage": stage, "T": Tv, "field": f,
                                "source": src, "reference": ref,
                                "ratio": cr["ratio"].get(f), "reference_zero": not a[ref] > 0,
                                "jacobian_norm": cr["jacobian_norm"], "rate": rate})
                credit_T.setdefault(f"{label} {f}", ([], []))
                credit_T[f"{label} {f}"][0].append(Tv)
                credit_T[f"{label} {f}"][1].append(cr["ratio"].get(f))
            print_fn(f"{label:>16s}  T={Tv:<5d} credit ratio t={src} vs t={ref}: "
                     + ", ".join(f"{f} {'underflow' if v is None else _fmt(v)}"
                                 for f, v in cr["ratio"].items())
                     + f"  ||dz_{ref}/dz_{src}|| {cr['jacobian_norm']:.3e}  "
                       f"({time.perf_counter() - t0:.1f}s)")
        if cell.recurrent_matrix is not None:
            spec = analysis.recurrent_spectrum(cell, params)
            sv = np.asarray(spec["singular_values"])
            if sv.ndim == 2:  # gated cells: one spectrum per gate block
                for g, s in enumerate(sv):
                    spectra[f"{label} block {g}"] = s
            else:
                spectra[label] = sv
            summary.append({"cell": name, "stage": stage, "field": "W",
                            "orth_error": float(spec["orthogonality_error"]),
                            "sv_max": float(sv.max()), "sv_min": float(sv.min())})
        x1 = get_xs(lyap_steps if checkpoint is None else Ts[-1])[0]
        n = analysis.state_trajectory(cell, params, x1[:1]).shape[1]
        lam = analysis.lyapunov_spectrum(cell, params, x1, k=min(lyap_k, n),
                                         burn_in=x1.shape[0] // 5)
        lyap[label] = np.asarray(lam)

    fields = ["cell", "stage", "T", "t", "grad_norm"] + [f"grad_norm_{f}" for f in extra_fields]
    with atomic_open(os.path.join(out, "gradflow.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, restval="")
        w.writeheader()
        w.writerows(rows)
    for Tv in Ts:
        gradflow_plots.plot_grad_norms(curves[Tv], os.path.join(out, f"gradnorm_T{Tv}.png"),
                                       title=f"||dL/dh_t||, T = {Tv}")
    if len(Ts) > 1:
        plots.against_T({"measured credit ratio (source against reference step)":
                         (credit_T, "credit ratio")}, path=os.path.join(out, "credit_T.png"))
    if spectra:
        gradflow_plots.plot_singular_values(spectra, os.path.join(out, "singular_values.png"),
                                            dtype=dt)
    gradflow_plots.plot_lyapunov(lyap, os.path.join(out, "lyapunov.png"))
    _write_summary(os.path.join(out, "summary.md"), summary, lyap, Ts, hidden, batch,
                   features, dtype, checkpoint)
    print_fn(f"wrote {out}/gradflow.csv, summary.md and {len(Ts) + 2} figures "
             f"in {time.perf_counter() - t0:.1f}s")
    return {"rows": rows, "summary": summary, "lyapunov": lyap}


def _fmt(x, digits=4):
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "n/a"
    return "0 (underflow)" if x == 0 else f"{x:.{digits}g}"  # below ~1e-308 in float64


def _ratio_text(s) -> str:
    """The summary's credit-ratio cell: the number, ``n/a`` where the reference's gradient
    is 0 (the LSTM's ``c`` at the last step), else ``underflow``."""
    if s["ratio"] is not None:
        return _fmt(s["ratio"])
    return "n/a (0 at r)" if s.get("reference_zero") else "underflow"


def _write_summary(path, summary, lyap, Ts, hidden, batch, features, dtype, checkpoint):
    lines = ["# Gradient flow", ""]
    if checkpoint is None:
        lines += [f"Cells at initialisation, hidden {hidden}, batch {batch}, {features} "
                  f"input features x_t ~ N(0, I), {dtype}; loss L = mean_b v . y_T[b] with a "
                  "fixed random unit v.", ""]
    else:
        lines += [f"Checkpoint `{checkpoint}` against the same cell at initialisation "
                  f"({dtype}), on one batch of its task with its loss.", ""]
    lines += ["`credit ratio` = ||dL/dz^f_s|| / ||dL/dz^f_r|| measured per carry field f "
              "(rnnjax.analysis.credit_assignment; z_t the carry after reading x_t, t = 0-based; "
              "s, r: the columns `t = s, r`, the first and last step for the loss v . y_T, the "
              "last symbol and the step before the first recall target for a copy-task run, "
              "whose loss is then the recall steps' cross-entropy); `underflow`: the gradient "
              "at s fell below the dtype's range; `n/a (0 at r)`: dL/dz^f_r = 0 (the LSTM's "
              "c at the last step acts only through later steps), nothing to compare "
              "with.  `||dz_r/dz_s||`: the spectral norm of the "
              "carry's Jacobian, mean over the batch.  `fitted factor` r = exp(-slope) of a "
              "least-squares line of log ||dL/dh_t|| on t: a descriptive fit of the profile "
              "only (r < 1 decreasing going back in time), not a measurement of credit.",
              "",
              "| cell | stage | T | field | t = s, r | credit ratio | ||dz_r/dz_s|| | "
              "fitted factor (descriptive) |",
              "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        if "ratio" in s:
            lines.append(f"| {s['cell']} | {s['stage']} | {s['T']} | {s['field']} | "
                         f"{s['source']}, {s['reference']} | "
                         f"{_ratio_text(s)} | "
                         f"{_fmt(s['jacobian_norm'])} | {_fmt(s['rate'], 6)} |")
    lines += ["", "## Recurrent matrix", "",
              "| cell | stage | ‖WᴴW − I‖_F (max over gate blocks) | σ_max | σ_min |",
              "|---|---|---|---|---|"]
    for s in summary:
        if "orth_error" in s:
            lines.append(f"| {s['cell']} | {s['stage']} | {_fmt(s['orth_error'])} | "
                         f"{_fmt(s['sv_max'])} | {_fmt(s['sv_min'])} |")
    lines += ["", "## Top Lyapunov exponents (per step, driven by one input sequence)", ""]
    for label, lam in lyap.items():
        lines.append(f"- {label}: " + ", ".join(f"{x:.4f}" for x in lam))
    lines += ["", "Figures: " + ", ".join(f"`gradnorm_T{T}.png`" for T in Ts)
              + ", `singular_values.png`, `lyapunov.png`"
              + (", `credit_T.png` (credit ratio against T)" if len(Ts) > 1 else "")
              + "; every curve in `gradflow.csv`.", ""]
    with atomic_open(path, "w") as f:
        f.write("\n".join(lines))


def default_cells(print_fn=print) -> list:
    """The registered cells of :data:`DEFAULT_CELLS` (a note names those missing)."""
    missing = [c for c in DEFAULT_CELLS if c not in cells.REGISTRY]
    if missing:
        print_fn(f"note: {', '.join(missing)} not registered in this rnnjax; skipped")
    return [c for c in DEFAULT_CELLS if c in cells.REGISTRY]


__all__ = ["DEFAULT_CELLS", "DEFAULT_TS", "decay_fit", "default_cells", "gradflow"]
