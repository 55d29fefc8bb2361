"""Memory of the compiled forward + backward against ``T``, with and without ``remat``.

The figure is XLA's own accounting of the compiled program
(``jax.jit(f).lower(...).compile().memory_analysis()``): temporaries plus arguments
plus outputs, in bytes, for the value and gradient of ``sum(ys)`` w.r.t. the params of
an LSTM (batch 64, input 32, hidden 256 by default), for autodiff through the scan
(``plain``), ``remat=True`` and the hand-written BPTT (``grad="manual"``).  Nothing is run for that; the time
ratio ``remat / plain`` is measured by running both at ``--time-T`` (a shorter length,
since one step at T = 10000 takes minutes on a small CPU).

    python -m benchmarks memory [--quick] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import resource

import jax
import jax.numpy as jnp

import rnnjax
from benchmarks.common import emit, time_call
from rnnjax import cells


def _step(c, remat, grad="auto"):
    def loss(p, x):
        return jnp.sum(rnnjax.run(c, p, x, remat=remat, grad=grad)[0])

    return jax.jit(jax.value_and_grad(loss))


def compiled_bytes(cell, B, T, F, H, remat, grad="auto"):
    c = cells.make(cell, H)
    params = jax.eval_shape(lambda: c.init(jax.random.key(0), F))
    xs = jax.ShapeDtypeStruct((B, T, F), jnp.float32)
    m = _step(c, remat, grad).lower(params, xs).compile().memory_analysis()
    return {"temp_bytes": int(m.temp_size_in_bytes),
            "argument_bytes": int(m.argument_size_in_bytes),
            "output_bytes": int(m.output_size_in_bytes),
            "total_bytes": int(m.temp_size_in_bytes + m.argument_size_in_bytes
                               + m.output_size_in_bytes)}


def run_seconds(cell, B, T, F, H, remat, repeats, grad="auto"):
    """``time_call`` of one forward+backward, plus the page faults and kernel (system)
    seconds per call: each call's temporaries are fresh memory, first touched by it."""
    c = cells.make(cell, H)
    params = c.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float32)
    step = _step(c, remat, grad)
    res = time_call(step, params, xs, repeats=repeats, warmup=1)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(repeats):
        jax.block_until_ready(step(params, xs))
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {**res, "minor_faults": (r1.ru_minflt - r0.ru_minflt) / repeats,
            "system_s": (r1.ru_stime - r0.ru_stime) / repeats}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks memory",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--H", type=int, default=256)
    ap.add_argument("--T", nargs="+", type=int, default=[100, 1000, 10000])
    ap.add_argument("--time-T", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.features, a.H, a.T, a.time_T, a.repeats = 2, 3, 4, [10, 100], 10, 1
    base = dict(cell=a.cell, batch=a.batch, features=a.features, H=a.H)
    records = []
    for T in a.T:
        plain = compiled_bytes(a.cell, a.batch, T, a.features, a.H, False)
        remat = compiled_bytes(a.cell, a.batch, T, a.features, a.H, True)
        manual = compiled_bytes(a.cell, a.batch, T, a.features, a.H, False, "manual")
        records.append(emit({"bench": "memory", **base, "T": T,
                             "plain_bytes": plain["total_bytes"],
                             "remat_bytes": remat["total_bytes"],
                             "plain_temp_bytes": plain["temp_bytes"],
                             "remat_temp_bytes": remat["temp_bytes"],
                             "manual_bytes": manual["total_bytes"],
                             "manual_temp_bytes": manual["temp_bytes"],
                             "remat_over_plain": remat["total_bytes"] / plain["total_bytes"],
                             "manual_over_plain": manual["total_bytes"] / plain["total_bytes"]},
                            a.out))
    tp = run_seconds(a.cell, a.batch, a.time_T, a.features, a.H, False, a.repeats)
    tr = run_seconds(a.cell, a.batch, a.time_T, a.features, a.H, True, a.repeats)
    tm = run_seconds(a.cell, a.batch, a.time_T, a.features, a.H, False, a.repeats, "manual")
    records.append(emit({"bench": "memory_time", **base, "T": a.time_T,
                         "plain_median_s": tp["median"], "remat_median_s": tr["median"],
                         "manual_median_s": tm["median"],
                         **{f"{name}_{k}": r[k] for name, r in
                            (("plain", tp), ("remat", tr), ("manual", tm))
                            for k in ("minor_faults", "system_s")},
                         "remat_time_over_plain": tr["median"] / tp["median"],
                         "manual_time_over_plain": tm["median"] / tp["median"]}, a.out))
    return records


if __name__ == "__main__":
    main()
