"""Compile time of :func:`rnnjax.run` against the length ``T`` and against ``unroll``.

``jax.jit(f).lower(...).compile()`` of the forward + backward (value and gradient of
``sum(ys)`` w.r.t. the params) of an LSTM (batch 64, input 32, hidden 128 by default),
timed on its own (no run).  A ``lax.scan`` compiles its body once, so the time should
not grow with ``T``; ``unroll = k`` copies the body ``k`` times.  One JSON line per
point, with ``over_first`` = compile time / that of the first ``T`` (or ``unroll=1``).

    python -m benchmarks compile [--quick] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

import rnnjax
from benchmarks.common import emit
from rnnjax import cells


def compile_seconds(cell, B, T, F, H, unroll=1, repeats=3, **run_kwargs):
    """Median seconds to lower and compile the jitted forward + backward (fresh each
    time: a new Python function defeats the compilation cache)."""
    c = cells.make(cell, H)
    params = jax.eval_shape(lambda: c.init(jax.random.key(0), F))
    xs = jax.ShapeDtypeStruct((B, T, F), jnp.float32)
    times = []
    for _ in range(repeats):
        def loss(p, x):
            return jnp.sum(rnnjax.run(c, p, x, unroll=unroll, **run_kwargs)[0])

        f = jax.jit(jax.value_and_grad(loss))
        t0 = time.perf_counter()
        f.lower(params, xs).compile()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks compile",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--H", type=int, default=128)
    ap.add_argument("--T", nargs="+", type=int, default=[100, 1000, 10000])
    ap.add_argument("--unroll", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.features, a.H, a.T, a.unroll, a.repeats = 2, 3, 4, [10, 100], [1, 2], 1
    base = dict(cell=a.cell, batch=a.batch, features=a.features, H=a.H)
    records, first = [], None
    for T in a.T:
        s = compile_seconds(a.cell, a.batch, T, a.features, a.H, repeats=a.repeats)
        first = first or s
        records.append(emit({"bench": "compile", "vary": "T", **base, "T": T, "unroll": 1,
                             "compile_s": s, "over_first": s / first}, a.out))
    T, first = a.T[0], None
    for u in a.unroll:
        s = compile_seconds(a.cell, a.batch, T, a.features, a.H, unroll=u, repeats=a.repeats)
        first = first or s
        records.append(emit({"bench": "compile", "vary": "unroll", **base, "T": T,
                             "unroll": u, "compile_s": s, "over_first": s / first}, a.out))
    return records


if __name__ == "__main__":
    main()
