"""Cost of ``analysis.hidden_grad_norms`` (all ``||dL/dh_t||`` in one backward pass)
against one ordinary backward pass (``jax.grad`` of the same loss w.r.t. the params),
both jitted, side by side in one process.

    python -m benchmarks.gradflow [--T 1000] [--hidden 64] [--batch 8]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnnjax
from benchmarks.common import emit, time_call
from rnnjax import analysis, cells


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--cells", default="elman,lstm,gru")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    a = ap.parse_args(argv)
    if a.quick:
        a.T, a.hidden, a.batch, a.features, a.cells = 5, 4, 2, 3, "elman"
    k_p, k_x, k_v = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.normal(k_x, (a.batch, a.T, a.features), jnp.float32)
    for name in a.cells.split(","):
        cell = cells.make(name, a.hidden)
        params = cell.init(k_p, a.features)
        v = jax.random.normal(k_v, (cell.output_size,))
        loss = lambda ys: jnp.mean(ys[:, -1] @ v)
        norms = jax.jit(lambda p, xs: analysis.hidden_grad_norms(cell, p, xs, loss))
        grad = jax.jit(jax.grad(lambda p, xs: loss(rnnjax.run(cell, p, xs)[0])))
        t_norms = time_call(norms, params, xs, repeats=5, warmup=1)
        t_grad = time_call(grad, params, xs, repeats=5, warmup=1)
        emit({"bench": "gradflow", "cell": name, "T": a.T, "hidden": a.hidden,
              "batch": a.batch, "hidden_grad_norms_s": t_norms["median"],
              "param_grad_s": t_grad["median"],
              "ratio": t_norms["median"] / t_grad["median"]}, a.out)


if __name__ == "__main__":
    main()
