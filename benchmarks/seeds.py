"""``--num-seeds K``: one training step of K vmapped seeds against K, on the default
copy recipe (``rnnjax copy``'s: T 200, hidden 64, batch 32, RMSprop; expRNN by default).

The step is the runner's own (``jax.jit(jax.vmap(exp.step), donate_argnums=0)`` over the
stacked seeds, :func:`rnnjax.build`), timed over ``--steps`` consecutive steps after a
compile-and-warm-up call, the best of ``--repeats``; every K runs in the same process,
side by side.  ``over_one`` is the time of K seeds over the time of one (K runs one
after another would be K); ``per_seed_s`` the time per seed.

    python -m benchmarks seeds [--quick] [--cells exprnn lstm] [--K 1 2 4 8] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax

from benchmarks.common import emit
from rnnjax.experiments.copy_job import DEFAULT
from rnnjax.training.autotuned import engine_used
from rnnjax.training.runner import build, initial_state


def time_steps(step, state, steps: int, repeats: int) -> float:
    """Best seconds per step over ``repeats`` runs of ``steps`` consecutive steps (the
    state is donated and carried on), after one untimed call."""
    state = jax.block_until_ready(step(state))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(steps):
            state = step(state)
        jax.block_until_ready(state)
        best = min(best, (time.perf_counter() - t0) / steps)
    return best


def bench(cell: str, Ks, *, T: int, hidden: int, batch: int, steps: int, repeats: int,
          out=None) -> list:
    records, one = [], None
    for K in Ks:
        config = dataclasses.replace(DEFAULT, cell=cell, seeds=K, T=T, hidden=hidden,
                                     batch=batch, steps=steps)
        exp = build(config)
        used = engine_used(exp.config, exp.task)
        state, _ = initial_state(exp)
        step = jax.jit(jax.vmap(exp.step), donate_argnums=0)
        t = time_steps(step, state, steps, repeats)
        one = t if K == 1 else one
        records.append(emit({
            "bench": "seeds", "cell": cell, "K": K, "T": T, "hidden": hidden,
            "batch": batch, "steps": steps, "dtype": "float32", "grad": used.grad_used,
            "scan": used.scan_used, "step_s": t, "per_seed_s": t / K,
            **({} if one is None else {"over_one": t / one})}, out))
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, Elman, K = 2")
    ap.add_argument("--cells", nargs="+", default=["exprnn"])
    ap.add_argument("--K", nargs="+", type=int, default=[1, 2, 4, 8])
    ap.add_argument("--T", type=int, default=DEFAULT.T)
    ap.add_argument("--hidden", type=int, default=DEFAULT.hidden)
    ap.add_argument("--batch", type=int, default=DEFAULT.batch)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    a = ap.parse_args(argv)
    if a.quick:
        a.cells, a.K, a.T, a.hidden, a.batch, a.steps, a.repeats = ["elman"], [2], 3, 4, 2, 1, 1
    return [r for c in a.cells for r in bench(c, a.K, T=a.T, hidden=a.hidden, batch=a.batch,
                                              steps=a.steps, repeats=a.repeats, out=a.out)]


if __name__ == "__main__":
    main()
