"""The roofline: achieved GFLOP/s of rnnjax beside the matmul peak of the same run.

The peak is measured, not looked up: the median GFLOP/s of a jitted float32 matmul
``(M, K) @ (K, N)`` of two shapes, a large square one (``1024^3``, the machine's best)
and the recurrent step's own shape (``(B, H) @ (H, G*H)``, what a scan step can reach).
For each cell the forward + backward of :func:`rnnjax.run` (value and gradient of
``sum(ys)`` w.r.t. the params) is timed and its matmul FLOPs (``3 x 2 B T G H (F+H)``)
divided by the time; ``roofline_s`` is those FLOPs at the step-shaped peak, and
``over_roofline`` the measured time over it.

    python -m benchmarks roofline [--quick] [--out results.jsonl]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks.common import emit, time_call
from benchmarks.peers import GATES, matmul_flops, rnnjax_fn


def matmul_peak(M: int, K: int, N: int, repeats: int = 10) -> float:
    """Median GFLOP/s of a jitted float32 ``(M, K) @ (K, N)``."""
    a = jax.random.normal(jax.random.key(0), (M, K), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (K, N), jnp.float32)
    r = time_call(jax.jit(jnp.matmul), a, b, repeats=repeats, min_time=0.2)
    return 2.0 * M * K * N / r["median"] / 1e9


def bench(cell, B, T, F, H, repeats=10, out=None):
    G = GATES[cell]
    peak_big = matmul_peak(1024, 1024, 1024, repeats)
    peak_step = matmul_peak(B, H, G * H, repeats)
    r = time_call(rnnjax_fn(cell, B, T, F, H, "fwdbwd", jax.random.key(0)),
                  repeats=repeats)
    flops = matmul_flops(cell, B, T, F, H, "fwdbwd")
    roof = flops / (peak_step * 1e9)
    return emit({"bench": "roofline", "cell": cell, "mode": "fwdbwd", "batch": B, "T": T,
                 "features": F, "H": H, "dtype": "float32",
                 "peak_gflops_1024": peak_big, "peak_gflops_step": peak_step,
                 "flops": flops, "median_s": r["median"], "min_s": r["min"],
                 "gflops": flops / r["median"] / 1e9, "roofline_s": roof,
                 "over_roofline": r["median"] / roof}, out)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks roofline",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--cells", nargs="+", default=list(GATES), choices=list(GATES))
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--H", nargs="+", type=int, default=[128])
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.T, a.features, a.H, a.repeats = 2, 4, 3, [4], 2
    return [bench(c, a.batch, a.T, a.features, H, a.repeats, a.out)
            for c in a.cells for H in a.H]


if __name__ == "__main__":
    main()
