"""Hand-written BPTT (``grad="manual"``) against autodiff (``grad="autodiff"``).

Times one jitted forward + backward (``jax.value_and_grad`` of a sum over all outputs
and the final state, with respect to params and inputs) of :func:`rnnjax.run` for the
Elman, LSTM and GRU cells at several sequence lengths ``T`` and hidden sizes ``H``,
float32, batch 32, input 32 features.  One JSON line per configuration with both
medians and ``manual_over_auto`` (< 1: the manual backward is faster).

    python -m benchmarks.bptt            # the table of benchmarks/README.md
    python -m benchmarks.bptt --quick    # tiny sizes (smoke test)
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnnjax
from benchmarks.common import emit, time_call
from rnnjax import cells

CELLS = {"elman": cells.elman, "lstm": cells.lstm, "gru": cells.gru}


def make_step(cell, grad):
    def loss(params, xs):
        ys, final = rnnjax.run(cell, params, xs, grad=grad)
        return jnp.sum(ys) + sum(jnp.sum(a) for a in jax.tree.leaves(final))

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))


def bench(name, T, H, batch=32, features=32, repeats=10, out=None):
    cell = CELLS[name](H)
    params = cell.init(jax.random.key(0), features)
    xs = jax.random.normal(jax.random.key(1), (batch, T, features), jnp.float32)
    steps = {grad: make_step(cell, grad) for grad in ("autodiff", "manual")}
    res = {grad: time_call(f, params, xs, repeats=repeats) for grad, f in steps.items()}
    # the two gradients agree (float32)
    ga, gm = steps["autodiff"](params, xs)[1], steps["manual"](params, xs)[1]
    err = max(float(jnp.max(jnp.abs(a - b)) / (jnp.max(jnp.abs(a)) + 1e-30))
              for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gm)))
    return emit({"bench": "bptt", "cell": name, "T": T, "H": H, "batch": batch,
                 "features": features, "dtype": "float32",
                 "auto_median_s": res["autodiff"]["median"],
                 "manual_median_s": res["manual"]["median"],
                 "auto_min_s": res["autodiff"]["min"], "manual_min_s": res["manual"]["min"],
                 "manual_over_auto": res["manual"]["median"] / res["autodiff"]["median"],
                 "max_rel_grad_diff": err}, out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats")
    ap.add_argument("--cells", nargs="+", default=list(CELLS), choices=list(CELLS))
    ap.add_argument("--T", nargs="+", type=int, default=[32, 128])
    ap.add_argument("--H", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    a = ap.parse_args(argv)
    if a.quick:
        a.T, a.H, a.batch, a.repeats = [5], [4], 2, 2
    records = []
    for name in a.cells:
        for T in a.T:
            for H in a.H:
                records.append(bench(name, T, H, a.batch, repeats=a.repeats, out=a.out))
    return records


if __name__ == "__main__":
    main()
