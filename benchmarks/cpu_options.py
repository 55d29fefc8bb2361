"""What might close the remaining gap on a CPU, each measured against the default.

The forward + backward of the peers suite (value and gradient of ``sum(ys)`` with
respect to the params, ``rnnjax.run`` with its default ``grad="auto"``, float32) is
timed for each cell with one option changed at a time:

* in one process, interleaved with the default
  (:func:`benchmarks.peers.time_interleaved`): ``grad="autodiff"`` (the reference for
  the two policies below, which differentiate the step by autodiff); ``unroll`` 2 and 4
  steps per scan iteration; ``remat=True`` (sqrt(T) checkpoints); the step under ``jax.checkpoint``
  with the policies ``dots_saveable`` (keep the
  matmul outputs, recompute the gates) and ``nothing_saveable`` (autodiff through the
  checkpointed step); and a whole SGD update step with the params' buffers donated
  (``donate_argnums``) against the same step without donation;
* in a fresh process each, since they act when a process starts: XLA:CPU flags
  (``XLA_FLAGS``) and glibc's allocator kept from returning freed memory to the system
  (``MALLOC_MMAP_MAX_=0`` or ``MALLOC_MMAP_THRESHOLD_`` at its 32 MB maximum, with
  ``MALLOC_TRIM_THRESHOLD_``: a compiled call's temporaries, freed after each call, are
  then reused instead of unmapped and page-faulted again on the next call).  The
  processes alternate with default ones (``--rounds`` each) and the best median of each
  is compared.

Each JSON line carries ``over_default``: the option's median over the default's (in
the same process, or the default processes of the same run).  Below 1 the option pays.

    python -m benchmarks cpu_options [--quick] [--out results.jsonl]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp

import rnnjax
from benchmarks.common import emit
from benchmarks.peers import time_interleaved
from rnnjax import cells

# option name -> environment of a fresh process (each compared with a default process)
PROCESS_OPTIONS = {
    "fast-math": {"XLA_FLAGS": "--xla_cpu_enable_fast_math=true"},
    "no-eigen-threads": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"},
    "opt-level-2": {"XLA_FLAGS": "--xla_backend_optimization_level=2"},
    # glibc: no mmap for large blocks and no trimming, so freed temporaries are reused
    "malloc-keep": {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)},
    # glibc: mmap only above 32 MB (its maximum), trimming only above 1 GB
    "malloc-32mb": {"MALLOC_MMAP_THRESHOLD_": str(2**25), "MALLOC_TRIM_THRESHOLD_": str(2**30)},
}


def _checkpointed(cell, policy):
    """``cell`` with its step under ``jax.checkpoint(policy=...)`` (autodiff only)."""
    return cell._replace(step=jax.checkpoint(cell.step, policy=policy), backward=None)


def in_process_fns(name, B, T, F, H):
    """Zero-argument callables: the default and each in-process option."""
    cell = cells.make(name, H)
    params = cell.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float32)

    def fwdbwd(c, **kw):
        f = jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(rnnjax.run(c, p, x, **kw)[0])))
        return lambda: f(params, xs)

    pol = jax.checkpoint_policies
    fns = {"default": fwdbwd(cell), "autodiff": fwdbwd(cell, grad="autodiff"),
           "unroll-2": fwdbwd(cell, unroll=2),
           "unroll-4": fwdbwd(cell, unroll=4), "remat": fwdbwd(cell, remat=True),
           "remat-dots": fwdbwd(_checkpointed(cell, pol.dots_saveable)),
           "remat-nothing": fwdbwd(_checkpointed(cell, pol.nothing_saveable))}

    def update(p, x):
        g = jax.grad(lambda p: jnp.sum(rnnjax.run(cell, p, x)[0]))(p)
        return jax.tree.map(lambda a, b: a - 1e-3 * b, p, g)

    plain, donated = jax.jit(update), jax.jit(update, donate_argnums=0)
    state = {"plain": params, "donated": jax.tree.map(jnp.copy, params)}

    def step(which, fn):
        def call():
            state[which] = fn(state[which], xs)
            return state[which]
        return call

    fns["sgd-step"] = step("plain", plain)
    fns["sgd-step-donated"] = step("donated", donated)
    return fns


def child(cell_names, B, T, F, H, repeats, only_default):
    """Time the options of this process; print one JSON dict per cell."""
    for name in cell_names:
        fns = in_process_fns(name, B, T, F, H)
        if only_default:
            fns = {"default": fns["default"]}
        res = time_interleaved(fns, repeats=repeats)
        print(json.dumps({"cell": name, "times": res}), flush=True)


def _run_child(env_extra, argv):
    env = {**os.environ, **env_extra}
    if "XLA_FLAGS" in env_extra and os.environ.get("XLA_FLAGS"):
        env["XLA_FLAGS"] = os.environ["XLA_FLAGS"] + " " + env_extra["XLA_FLAGS"]
    out = subprocess.run([sys.executable, "-m", "benchmarks.cpu_options", "--child", *argv],
                         env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"child with {env_extra} failed:\n{out.stderr[-2000:]}")
    return {d["cell"]: d["times"] for d in map(json.loads, out.stdout.splitlines())
            if d.get("cell")}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks cpu_options",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--cells", nargs="+", default=["lstm", "gru", "elman"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--H", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2,
                    help="fresh processes per process option (and as many default ones)")
    ap.add_argument("--options", nargs="+", default=list(PROCESS_OPTIONS),
                    choices=list(PROCESS_OPTIONS))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--only-default", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    if a.quick:
        a.batch, a.T, a.features, a.H, a.repeats, a.rounds = 2, 4, 3, 4, 2, 1
        a.cells, a.options = ["lstm"], ["malloc-keep"]
    sizes = ["--cells", *a.cells, "--batch", str(a.batch), "--T", str(a.T),
             "--features", str(a.features), "--H", str(a.H), "--repeats", str(a.repeats)]
    if a.child:
        return child(a.cells, a.batch, a.T, a.features, a.H, a.repeats, a.only_default)
    config = {"bench": "cpu_options", "mode": "fwdbwd", "batch": a.batch, "T": a.T,
              "features": a.features, "H": a.H, "dtype": "float32"}
    records = []
    base = _run_child({}, sizes)  # every in-process option beside the default
    for name, res in base.items():
        d = res["default"]["median"]
        for option, r in res.items():
            records.append(emit({**config, "cell": name, "option": option, "where": "process",
                                 "median_s": r["median"], "min_s": r["min"],
                                 "compile_s": r["first"],
                                 "over_default": r["median"] / (
                                     res["sgd-step"]["median"] if option == "sgd-step-donated"
                                     else d)}, a.out))
    best = {}  # (option, cell) -> best median over the rounds
    for _ in range(a.rounds):
        for option in ["default", *a.options]:
            env = {} if option == "default" else PROCESS_OPTIONS[option]
            for name, res in _run_child(env, [*sizes, "--only-default"]).items():
                m = res["default"]["median"]
                best[option, name] = min(best.get((option, name), m), m)
    for option in a.options:
        for name in a.cells:
            m = best[option, name]
            records.append(emit({**config, "cell": name, "option": option,
                                 "where": "fresh process", "env": PROCESS_OPTIONS[option],
                                 "median_s": m, "default_median_s": best["default", name],
                                 "over_default": m / best["default", name]}, a.out))
    return records


if __name__ == "__main__":
    main()
