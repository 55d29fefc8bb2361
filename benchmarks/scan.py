"""Sequential against associative scan for linear recurrences, forward and backward.

    python -m benchmarks.scan [--quick] [--out results.jsonl]

For each sequence length ``T`` the same cell and inputs are run by ``rnnjax.run`` with
``scan="sequential"`` and ``scan="associative"``, side by side in one process: the
forward pass (``ys``) and forward + backward (gradient of ``sum(ys^2)`` with respect to
the params).  Cells: the diagonal LRU (hidden 64, model 32, batch 4) for ``T = 256 ...
65536``; the dense linear Elman cell (``activation="identity"``, hidden 64) for
``T <= 4096``.  One JSON line per (cell, T, pass, scan) with the median time, then a
line with the ratio ``sequential / associative`` (> 1: the associative scan is faster).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnnjax
from benchmarks.common import emit, time_call
from rnnjax.cells import elman, lru

BATCH = 4


def _cells():
    return {
        "lru": (lru(64, 0.9, 0.999, model_size=32), 32),
        "elman-identity": (elman(64, activation="identity", init="orthogonal"), 32),
    }


def bench(name, cell, features, T, repeats, out):
    params = cell.init(jax.random.key(0), features)
    xs = jax.random.normal(jax.random.key(1), (BATCH, T, features), jnp.float32)
    times, records = {}, []
    for scan in ("sequential", "associative"):
        fwd = jax.jit(lambda p, x, scan=scan: rnnjax.run(cell, p, x, scan=scan)[0])
        bwd = jax.jit(jax.grad(
            lambda p, x, scan=scan: (rnnjax.run(cell, p, x, scan=scan)[0] ** 2).sum()))
        for kind, fn in (("forward", fwd), ("forward+backward", bwd)):
            t = time_call(fn, params, xs, repeats=repeats, warmup=1)
            times[(kind, scan)] = t["median"]
            records.append(emit({"benchmark": "scan", "cell": name, "T": T, "batch": BATCH,
                                 "pass": kind, "scan": scan, **t}, out))
    for kind in ("forward", "forward+backward"):
        ratio = times[(kind, "sequential")] / times[(kind, "associative")]
        records.append(emit({"benchmark": "scan", "cell": name, "T": T, "pass": kind,
                             "ratio_sequential_over_associative": ratio}, out))
    return records


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (smoke test): T = 16, 2 repeats")
    parser.add_argument("--out", default=None, help="also append the JSON lines here")
    args = parser.parse_args(argv)
    if args.quick:
        lengths = {"lru": [16], "elman-identity": [16]}
        repeats = 2
    else:
        lengths = {"lru": [256, 1024, 4096, 16384, 65536],
                   "elman-identity": [256, 1024, 4096]}
        repeats = 5
    for name, (cell, features) in _cells().items():
        for T in lengths[name]:
            bench(name, cell, features, T, repeats, args.out)


if __name__ == "__main__":
    main()
