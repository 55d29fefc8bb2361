"""Chunked against sequential scan for the matrix-state recurrences, forward + backward.

    python -m benchmarks chunked [--quick] [--out results.jsonl] [--chunk 64 ...]
        [--T 1024 4096] [--cells mlstm deltanet gla mamba2] [--repeats 5]

For each cell (d_model 64, 4 heads: ``mlstm(64, 4)``, ``deltanet(64, 4)``, ``gla(64,
4)``, ``mamba2(64, state_size=16, num_heads=4)``), each ``T`` and each chunk size, the
same params and float32 inputs (batch 4, 64 features) are run by ``rnnjax.run`` with
``scan="sequential"`` and ``scan="chunked"`` side by side in one process: the gradient
of ``sum(ys^2)`` with respect to the params (forward + backward).  One JSON line per
(cell, T, scan[, chunk]) with the median and the best (``min``) of the repeats, then a
line with ``chunked_over_sequential`` = best chunked / best sequential (< 1: chunked is
faster).  ``--quick``: tiny sizes (the smoke test).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnnjax
from benchmarks.common import emit, time_call
from rnnjax import cells

BATCH = 4


def _cells(d, heads, state):
    return {
        "mlstm": cells.mlstm(d, heads),
        "deltanet": cells.deltanet(d, heads),
        "gla": cells.gla(d, heads),
        "mamba2": cells.mamba2(d, state_size=state, num_heads=heads),
    }


def _grad(cell, scan, **extra):
    return jax.jit(jax.grad(
        lambda p, x: (rnnjax.run(cell, p, x, scan=scan, **extra)[0] ** 2).sum()))


def bench(name, cell, features, T, chunks, repeats, out):
    params = cell.init(jax.random.key(0), features)
    xs = jax.random.normal(jax.random.key(1), (BATCH, T, features), jnp.float32)
    base = {"bench": "chunked", "cell": name, "T": T, "batch": BATCH,
            "pass": "forward+backward", "dtype": "float32"}
    seq = time_call(_grad(cell, "sequential"), params, xs, repeats=repeats, warmup=1)
    records = [emit({**base, "scan": "sequential", **seq}, out)]
    for c in chunks:
        t = time_call(_grad(cell, "chunked", chunk=c), params, xs, repeats=repeats,
                      warmup=1)
        records.append(emit({**base, "scan": "chunked", "chunk": c, **t}, out))
        records.append(emit({**base, "scan": "ratio", "chunk": c,
                             "chunked_over_sequential": t["min"] / seq["min"]}, out))
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (smoke test): GLA only, d_model 8, 2 heads, T = 16, "
                        "chunk 8")
    parser.add_argument("--out", default=None, help="also append the JSON lines here")
    parser.add_argument("--T", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--chunk", type=int, nargs="+", default=[64])
    parser.add_argument("--cells", nargs="+", default=None,
                        help="default: mlstm deltanet gla mamba2 (--quick: gla)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        d, heads, state, lengths, chunks, repeats = 8, 2, 4, [16], [8], 2
    else:
        d, heads, state, lengths, chunks, repeats = 64, 4, 16, args.T, args.chunk, args.repeats
    table = _cells(d, heads, state)
    names = args.cells or (["gla"] if args.quick else list(table))
    records = []
    for name in names:
        for T in lengths:
            records += bench(name, table[name], d, T, chunks, repeats, args.out)
    return records


if __name__ == "__main__":
    main()
