"""Sequential scan against DEER and quasi-DEER (rnnjax.engine.newton) for one long sequence.

    python -m benchmarks newton [--quick] [--out results.jsonl] [--T 100 1000 ...]
                                [--H 4 16 64] [--methods sequential deer quasi]

One Elman tanh cell with ``W_hh`` of spectral norm 0.5 (contractive: Newton converges in
a few iterations), batch 1, float32, forward pass (``--backward``: forward + backward,
the implicit gradient of :mod:`rnnjax.engine.newton` against autodiff through the scan): for
every ``(H, T, method)`` one JSON line with the median wall time, the Newton iterations and the
largest difference
from the sequential outputs; then one line per ``(H, T)`` with
``sequential / method`` (> 1: the parallel method is faster).  Each line records the
device (``machine.device``), so the same script run on a GPU gives the crossover T
there.  Configurations whose Jacobians would not fit (``T H^2`` over ``--max-elements``,
dense DEER; ``4x`` that for quasi-DEER, which forms the Jacobian and keeps its
diagonal) are skipped with a note.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from benchmarks.common import emit, time_call
from rnnjax.cells import elman
from rnnjax.engine.newton import NewtonOptions, scan_newton

F = 4


def _setup(H, T):
    cell = elman(H)
    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    W = np.asarray(jax.random.normal(k1, (H, H)))
    params = {"W_xh": jax.random.normal(k2, (H, F)) / np.sqrt(F),
              "W_hh": jnp.asarray(0.5 * W / np.linalg.norm(W, 2)), "b": jnp.zeros((H,))}
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32), params)
    xs = jax.random.normal(k3, (T, 1, F), jnp.float32)  # time-major, batch 1
    return cell, params, xs


def bench(H, T, methods, repeats, max_elements, backward, out):
    cell, params, xs = _setup(H, T)
    carry = cell.initial_carry((1,), jnp.float32)
    seq = jax.jit(lambda p, x: rnnjax.run(cell, p, x, time_major=True, scan="sequential")[0])
    ref = seq(params, xs)
    if backward:  # gradient of sum(ys^2) with respect to the params
        seq = jax.jit(jax.grad(lambda p, x: jnp.sum(
            rnnjax.run(cell, p, x, time_major=True, scan="sequential")[0] ** 2)))
    pass_ = "forward+backward" if backward else "forward"
    times = {}
    for method in methods:
        if method != "sequential" and T * H * H > max_elements * (1 if method == "deer" else 4):
            print(f"# skip {method} H={H} T={T}: T H^2 over --max-elements", flush=True)
            continue
        if method == "sequential":
            fn, iters, err = seq, None, 0.0
        else:
            opts = NewtonOptions(method)
            fn = jax.jit(lambda p, x, o=opts: scan_newton(cell, p, carry, x, options=o)[::2])
            ys, it = fn(params, xs)
            iters, err = int(it[0]), float(jnp.max(jnp.abs(ys - ref)))
            if backward:
                fn = jax.jit(jax.grad(lambda p, x, o=opts: jnp.sum(
                    scan_newton(cell, p, carry, x, options=o)[0] ** 2)))
        t = time_call(fn, params, xs, repeats=repeats, warmup=1)
        times[method] = t["median"]
        emit({"benchmark": "newton", "cell": "elman-sn0.5", "H": H, "T": T, "batch": 1,
              "dtype": "float32", "pass": pass_, "method": method,
              "iterations": iters, "max_abs_diff": err, **t}, out)
    ratios = {f"sequential_over_{m}": times["sequential"] / times[m]
              for m in times if m != "sequential" and "sequential" in times}
    if ratios:
        emit({"benchmark": "newton", "H": H, "T": T, "pass": pass_, **ratios}, out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="T = 100, H = 4, 1 repeat")
    parser.add_argument("--out", default=None, help="also append the JSON lines here")
    parser.add_argument("--T", type=int, nargs="+", default=[100, 1000, 10000, 100000])
    parser.add_argument("--H", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--methods", nargs="+", default=["sequential", "deer", "quasi"],
                        choices=["sequential", "deer", "quasi", "elk"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backward", action="store_true",
                        help="time forward + backward (gradient of sum(ys^2) in the params)")
    parser.add_argument("--max-elements", type=float, default=3e7,
                        help="skip DEER where T*H^2 exceeds this (quasi: 4x)")
    args = parser.parse_args(argv)
    Ts, Hs, repeats = ([100], [4], 1) if args.quick else (args.T, args.H, args.repeats)
    for H in Hs:
        for T in Ts:
            bench(H, T, args.methods, repeats, args.max_elements, args.backward, args.out)


if __name__ == "__main__":
    main()
