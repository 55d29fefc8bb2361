"""One copy-task training step per cell, against its matmul roofline.

The copy task of Arjovsky et al. (2016): ten symbols from ``{1..8}``, then ``T - 1``
blanks (``0``), the marker ``9``, ten blanks; the target is blanks until the last ten
steps, which must repeat the ten symbols (length ``T + 20``, inputs one-hot over 10,
9 classes).  One step = :func:`rnnjax.run` (``prepare`` included) + a linear readout +
mean cross-entropy + its gradient + an optimizer update
(``rnnjax.optim.recipe("rmsprop")`` when present, else ``optax.rmsprop``), jitted,
float32.  Every cell of ``rnnjax.cells.REGISTRY`` among the orthogonal / unitary cells
and Elman / LSTM is measured; absent ones are noted.

``roofline_s``: the matmul FLOPs of the step (forward + backward, ``3 x 2 B L (G H F +
R H^2 + H C)``; ``R = G`` for real dense recurrences, ``4`` for a complex dense one) at
the peak GFLOP/s of a ``(B, H) @ (H, H)`` matmul measured in the same run.  The
structured unitary cells (``urnn``, ``eunn``) have no dense recurrent matmul and no
roofline here; ``urnn`` and ``eunn`` form their dense ``W`` once per sequence
(``apply="dense"``, the default) and ``urnn-structured``, ``eunn-structured`` apply the
factors per step, side by side.

    python -m benchmarks copy_step [--quick] [--out results.jsonl]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from benchmarks.common import emit, time_call
from benchmarks.roofline import matmul_peak

# cell -> (gate blocks G, recurrent factor R or None for structured), kwargs
CELLS = {
    "elman": (1, 1, {"init": "orthogonal"}), "lstm": (4, 4, {}),
    "exprnn": (1, 1, {}), "scornn": (1, 1, {}), "householder": (1, 1, {}),
    "fcurnn": (1, 4, {}), "urnn": (1, 4, {"apply": "dense"}),
    "eunn": (1, 4, {"apply": "dense"}), "nnrnn": (1, 1, {}), "spectral": (1, 1, {}),
    # the same cells applying their factors every step (O(H log H), O(H L)), side by side
    "urnn-structured": (1, None, {"apply": "structured"}),
    "eunn-structured": (1, None, {"apply": "structured"}),
}
SYMBOLS, CLASSES = 10, 9


def copy_batch(batch: int, T: int, seed: int = 0):
    """One-hot inputs ``(batch, T+20, 10)`` and integer targets ``(batch, T+20)``."""
    rng = np.random.default_rng(seed)
    data = rng.integers(1, 9, (batch, 10))
    L = T + 20
    x = np.zeros((batch, L), np.int32)
    y = np.zeros((batch, L), np.int32)
    x[:, :10] = data
    x[:, T + 9] = 9
    y[:, -10:] = data
    return jax.nn.one_hot(x, SYMBOLS, dtype=jnp.float32), jnp.asarray(y)


def make_step(cell, tx, grad="autodiff"):
    def loss(params, xs, ys):
        hs, _ = rnnjax.run(cell, params["cell"], xs, grad=grad)
        logits = hs @ params["out"]["W"].T + params["out"]["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()

    @jax.jit
    def step(params, state, xs, ys):
        lval, grads = jax.value_and_grad(loss)(params, xs, ys)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, lval

    return step


def optimizer():
    recipe = getattr(getattr(rnnjax, "optim", None), "recipe", None)
    return recipe("rmsprop", lr=1e-3) if recipe else optax.rmsprop(1e-3)


def bench(name, H, T, batch, repeats, peak, out=None, grad="autodiff"):
    G, R, kwargs = CELLS[name]
    cell = rnnjax.cells.make(name.split("-")[0], H, **kwargs)
    params = {"cell": cell.init(jax.random.key(0), SYMBOLS),
              "out": {"W": 0.01 * jax.random.normal(jax.random.key(2),
                                                    (CLASSES, cell.output_size)),
                      "b": jnp.zeros((CLASSES,), jnp.float32)}}
    tx = optimizer()
    state = tx.init(params)
    xs, ys = copy_batch(batch, T)
    r = time_call(make_step(cell, tx, grad), params, state, xs, ys, repeats=repeats, warmup=1)
    rec = {"bench": "copy_step", "cell": name, "grad": grad, "H": H, "T": T, "batch": batch,
           "dtype": "float32", "median_s": r["median"], "min_s": r["min"],
           "compile_s": r["first"], "n": r["n"], "peak_gflops_step": peak}
    if R is not None:
        L = T + 20
        flops = 3 * 2.0 * batch * L * (G * H * SYMBOLS + R * H * H
                                        + cell.output_size * CLASSES)
        rec.update(flops=flops, roofline_s=flops / (peak * 1e9),
                   over_roofline=r["median"] * peak * 1e9 / flops)
    return emit(rec, out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks copy_step",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--cells", nargs="+", default=None, choices=list(CELLS),
                    help="default: all (--quick: elman and exprnn)")
    ap.add_argument("--H", type=int, default=190)
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--grad", nargs="+", default=["autodiff"], choices=rnnjax.engine.bptt.GRADS,
                    help="autodiff and/or the cells' hand-written backward (cells without "
                         "one are timed with autodiff only)")
    a = ap.parse_args(argv)
    if a.quick:
        a.H, a.T, a.batch, a.repeats = 4, 5, 2, 1
        a.cells = a.cells or ["elman", "exprnn"]
    a.cells = a.cells or list(CELLS)
    peak = matmul_peak(a.batch, a.H, a.H)
    records = []
    for name in a.cells:
        if name.split("-")[0] not in rnnjax.cells.REGISTRY:
            print(f"# note: cell {name!r} is not in rnnjax.cells.REGISTRY; skipped",
                  flush=True)
            continue
        has_backward = rnnjax.cells.make(name.split("-")[0], a.H,
                                         **CELLS[name][2]).backward is not None
        for grad in a.grad:
            if grad == "manual" and not has_backward:
                continue
            records.append(bench(name, a.H, a.T, a.batch, a.repeats, peak, a.out, grad))
    return records


if __name__ == "__main__":
    main()
