"""Timing and reporting shared by every benchmark script.

Each result is one JSON line: the benchmark's own fields, the machine it ran on and
the median / min of repeated timed runs after warm-up, compile time measured apart.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time

import jax


def machine() -> dict:
    """CPU model, core count, JAX version and device kind of this run."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    dev = jax.devices()[0]
    return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__,
            "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}"}


def block(tree):
    """Wait for every array in ``tree`` (JAX or not) to be computed."""
    for leaf in jax.tree_util.tree_leaves(tree):
        if hasattr(leaf, "block_until_ready"):
            leaf.block_until_ready()
    return tree


def time_call(fn, *args, repeats: int = 10, warmup: int = 2, min_time: float = 0.0) -> dict:
    """Time ``fn(*args)``: the first call (compile + run) apart, then ``warmup`` untimed
    calls, then ``repeats`` timed ones (more while their total is under ``min_time``).
    Returns seconds: ``first``, ``median``, ``min``, and ``n``."""
    t0 = time.perf_counter()
    block(fn(*args))
    first = time.perf_counter() - t0
    for _ in range(warmup):
        block(fn(*args))
    times = []
    while len(times) < repeats or sum(times) < min_time:
        t0 = time.perf_counter()
        block(fn(*args))
        times.append(time.perf_counter() - t0)
    return {"first": first, "median": statistics.median(times), "min": min(times),
            "n": len(times)}


def emit(record: dict, out=None) -> dict:
    """Print ``record`` (plus the machine) as one JSON line, to ``out`` if given too."""
    record = {**record, "machine": machine()}
    line = json.dumps(record, sort_keys=True)
    print(line, file=sys.stdout, flush=True)
    if out is not None:
        with open(out, "a") as f:
            f.write(line + "\n")
    return record
