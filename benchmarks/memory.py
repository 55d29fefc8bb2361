"""Memory of the compiled forward + backward against ``T``, with and without ``remat``.

The figure is XLA's own accounting of the compiled program
(``jax.jit(f).lower(...).compile().memory_analysis()``): temporaries plus arguments
plus outputs, in bytes, for the value and gradient of ``sum(ys)`` w.r.t. the params of
an LSTM (batch 64, input 32, hidden 256 by default), for autodiff through the scan
(``plain``), ``remat=True`` and the hand-written BPTT (``grad="manual"``).  Nothing is
run for that; the time ratios to ``plain`` are measured by running each at ``--time-T``
(a shorter length, since one step at T = 10000 takes minutes on a small CPU).

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

# name -> (remat, grad) of rnnjax.run
VARIANTS = {"plain": (False, "autodiff"), "remat": (True, "autodiff"),
            "manual": (False, "manual")}


def _step(c, remat, grad="autodiff"):
    def loss(p, x):
        return jnp.sum(rnnjax.run(c, p, x, remat=remat, grad=grad)[0])

    return jax.jit(jax.value_and_grad(loss))


def compiled_bytes(cell, B, T, F, H, remat, grad="autodiff"):
    c = cells.make(cell, H)
    params = jax.eval_shape(lambda: c.init(jax.random.key(0), F))
    xs = jax.ShapeDtypeStruct((B, T, F), jnp.float32)
    m = _step(c, remat, grad).lower(params, xs).compile().memory_analysis()
    return {"temp_bytes": int(m.temp_size_in_bytes),
            "argument_bytes": int(m.argument_size_in_bytes),
            "output_bytes": int(m.output_size_in_bytes),
            "total_bytes": int(m.temp_size_in_bytes + m.argument_size_in_bytes
                               + m.output_size_in_bytes)}


def run_seconds(cell, B, T, F, H, remat, repeats, grad="autodiff"):
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
        got = {v: compiled_bytes(a.cell, a.batch, T, a.features, a.H, *VARIANTS[v])
               for v in VARIANTS}
        rec = {"bench": "memory", **base, "T": T}
        for v, m in got.items():
            rec[f"{v}_bytes"], rec[f"{v}_temp_bytes"] = m["total_bytes"], m["temp_bytes"]
            if v != "plain":
                rec[f"{v}_over_plain"] = m["total_bytes"] / got["plain"]["total_bytes"]
        records.append(emit(rec, a.out))
    rec = {"bench": "memory_time", **base, "T": a.time_T}
    for v, (remat, grad) in VARIANTS.items():
        r = run_seconds(a.cell, a.batch, a.time_T, a.features, a.H, remat, a.repeats, grad)
        rec.update({f"{v}_median_s": r["median"], f"{v}_minor_faults": r["minor_faults"],
                    f"{v}_system_s": r["system_s"]})
        if v != "plain":
            rec[f"{v}_time_over_plain"] = r["median"] / rec["plain_median_s"]
    records.append(emit(rec, a.out))
    return records


if __name__ == "__main__":
    main()
