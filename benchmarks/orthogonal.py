"""Training-step time of the orthogonal / unitary cells next to an Elman cell.

One training step = ``prepare`` (the parametrization, once per sequence) + forward scan
over ``T`` steps + backward pass + a recipe update, jitted, on a batch of random
sequences; the loss is the mean square of the last outputs.  For each hidden size the
Elman cell (``init="orthogonal"``, tanh) of the same size is timed in the same process
and the ratio ``cell / elman`` is printed.

    python -m benchmarks.orthogonal            # T=1000, batch 16, H in 64..512
    python -m benchmarks.orthogonal --quick    # tiny smoke test
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import optax

import rnnjax
from benchmarks.common import emit, time_call

CELLS = ["elman", "exprnn", "scornn", "householder", "urnn", "eunn", "fcurnn"]


def make_step(cell, tx):
    def loss(params, xs):
        ys, _ = rnnjax.run(cell, params, xs)
        return jnp.mean(ys[:, -1] ** 2)

    @jax.jit
    def step(params, state, xs):
        lval, grads = jax.value_and_grad(loss)(params, xs)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state, lval

    return step


def bench(name, hidden, T, batch, features, repeats):
    kwargs = {"init": "orthogonal"} if name == "elman" else {}
    cell = rnnjax.cells.make(name, hidden, **kwargs)
    params = cell.init(jax.random.key(0), features)
    tx = rnnjax.optim.recipe("rmsprop", lr=1e-3)
    state = tx.init(params)
    xs = jax.random.normal(jax.random.key(1), (batch, T, features), jnp.float32)
    step = make_step(cell, tx)
    return time_call(step, params, state, xs, repeats=repeats, warmup=1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--hidden", type=int, nargs="*", default=[64, 128, 256, 512])
    ap.add_argument("--T", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--features", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cells", nargs="*", default=CELLS[1:])
    ap.add_argument("--out", default=None, help="append the JSON lines to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.hidden, args.T, args.batch, args.repeats = [8], 20, 2, 2
    for hidden in args.hidden:
        base = bench("elman", hidden, args.T, args.batch, args.features, args.repeats)
        emit({"bench": "orthogonal", "cell": "elman", "hidden": hidden, "T": args.T,
              "batch": args.batch, **base, "ratio_to_elman": 1.0}, args.out)
        for name in args.cells:
            r = bench(name, hidden, args.T, args.batch, args.features, args.repeats)
            emit({"bench": "orthogonal", "cell": name, "hidden": hidden, "T": args.T,
                  "batch": args.batch, **r, "ratio_to_elman": r["median"] / base["median"]},
                 args.out)


if __name__ == "__main__":
    main()
