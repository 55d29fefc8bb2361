"""``grad="auto"`` and ``scan="auto"`` decided by measurement on the machine at hand.

Like ``torch.backends.cudnn.benchmark`` and XLA's own autotuning: when
:func:`rnnjax.run` is asked ``grad="auto"`` or ``scan="auto"`` and more than one engine
of the table (:mod:`rnnjax.engine.table`) could run the call, each candidate's jitted
forward + backward (the gradient of the sum of the outputs and the final carry with
respect to the params) is timed once, on inputs of the call's shapes, and the fastest
is used for every later call with the same key::

    key = (backend, device kind or CPU model, jax version, cell name, params tree and
           dtypes, compute dtype, powers of two >= T, batch, features, hidden,
           options of the call, the candidates)

Each candidate is compiled and run once untimed (compile excluded), then timed
:data:`REPEATS` times (fewer once :data:`BUDGET_S` seconds are spent on it); its time
is the minimum.  The choice only picks an engine: every engine computes the same
values and gradients up to float rounding, so it never changes a result beyond that.

Timing needs no concrete input: inside a trace (``jit``, ``vmap``, ``grad``) the
candidates run on synthetic inputs of the traced shapes (the cell's own ``init``
params, normal inputs) under ``jax.ensure_compile_time_eval``, so the decision is made
when the call is first traced.  The choice and its timings are kept in memory and on
disk, in ``autotune.json`` in the user's cache folder (:func:`cache_dir`:
``$RNNJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/rnnjax``, else ``~/.cache/rnnjax``),
written atomically (a temporary file renamed over it); a corrupt cache file is
ignored with one warning and replaced at the next write.

The recorded rules are the fallback (:func:`rnnjax.engine.bptt.choose_grad`, which
reads ``Backward.faster_on``, and the ``picks`` rules of the table): with
``RNNJAX_AUTOTUNE=0`` (the test suite sets it), when only one engine can run the call,
or when every candidate failed to run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import tempfile
import time
import warnings
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["BUDGET_S", "CACHE_FILE", "Choice", "REPEATS", "cache_dir", "cache_path",
           "choose", "clear_memory", "decisions", "device_name", "enabled", "remeasure",
           "shape_key", "time_program"]

ENV = "RNNJAX_AUTOTUNE"
CACHE_ENV = "RNNJAX_CACHE_DIR"
CACHE_FILE = "autotune.json"
VERSION = 1
REPEATS = 5  # timed runs per candidate
BUDGET_S = 1.0  # seconds of timed runs per candidate before it stops repeating


class Choice(NamedTuple):
    """One decision: the engine of the table (``"manual"``: the hand-written backward),
    where it came from (``"measured"``, ``"cache"``, or ``"rule: <why>"``), the
    seconds per forward + backward of each candidate (empty for a rule) and the key."""

    engine: str
    source: str
    timings: dict
    key: str


_MEMO: dict = {}  # key -> Choice, this process
_WARNED: set = set()
_REMEASURE: list = []  # non-empty inside remeasure()


def enabled() -> bool:
    """Whether ``auto`` measures (``RNNJAX_AUTOTUNE`` unset or not ``0/false/off/no``;
    always inside :func:`remeasure`)."""
    return bool(_REMEASURE) or os.environ.get(ENV, "1").strip().lower() not in (
        "0", "false", "off", "no")


@contextlib.contextmanager
def remeasure():
    """Inside: every decision is measured afresh (memory and cache file passed over,
    ``RNNJAX_AUTOTUNE`` too) and written to the cache (``rnnjax bench calibrate``)."""
    _REMEASURE.append(True)
    try:
        yield
    finally:
        _REMEASURE.pop()


def cache_dir() -> str:
    """``$RNNJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/rnnjax``, else ``~/.cache/rnnjax``."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "rnnjax")


def cache_path() -> str:
    """The cache file, ``cache_dir()/autotune.json``."""
    return os.path.join(cache_dir(), CACHE_FILE)


def clear_memory() -> None:
    """Forget this process's decisions (the disk cache stays)."""
    _MEMO.clear()


def decisions() -> dict:
    """This process's decisions so far, ``{key: Choice}``."""
    return dict(_MEMO)


@functools.cache
def device_name() -> str:
    """``backend:kind`` of the default device; on CPU the kind is the CPU model."""
    dev = jax.devices()[0]
    kind = getattr(dev, "device_kind", "") or ""
    if dev.platform == "cpu":
        kind = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                kind = next((line.split(":", 1)[1].strip() for line in f
                             if line.startswith("model name")), kind)
        except OSError:
            pass
    return f"{jax.default_backend()}:{kind}"


def _bucket(n: int) -> int:
    """The power of two at or above ``n`` (0 stays 0)."""
    return 0 if n <= 0 else 1 << math.ceil(math.log2(n))


def shape_key(cell, params, dtype, T: int, B: int, F: int, options: dict,
              candidates) -> str:
    """The cache key of a call (see the module docstring); no Python object id in it."""
    leaves, tree = jax.tree.flatten(params)
    parts = [device_name(), f"jax {jax.__version__}", f"cell {cell.name}",
             f"params {tree} {sorted({str(jnp.result_type(a)) for a in leaves})}",
             f"dtype {jnp.dtype(dtype).name}",
             f"T {_bucket(T)} B {_bucket(B)} F {_bucket(F)} H {_bucket(cell.output_size)}",
             "options " + ",".join(f"{k}={v}" for k, v in sorted(options.items())),
             "candidates " + ",".join(sorted(candidates))]
    return " | ".join(parts)


def _warn_once(text: str) -> None:
    if text not in _WARNED:
        _WARNED.add(text)
        warnings.warn(text, RuntimeWarning, stacklevel=4)


def _read() -> dict:
    """The entries of the cache file; ``{}`` if absent, corrupt (one warning) or from
    another version."""
    path = cache_path()
    try:
        with open(path) as f:
            data = json.load(f)
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            raise ValueError("not an rnnjax autotune cache")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        _warn_once(f"rnnjax autotune: ignoring the unreadable cache {path} ({e}); it is "
                   "replaced at the next measurement")
        return {}
    return data["entries"] if data.get("version") == VERSION else {}


def _write(key: str, choice: Choice) -> None:
    """Add ``choice`` to the cache file atomically (a failure to write only warns)."""
    path = cache_path()
    try:
        entries = _read()
        entries[key] = {"engine": choice.engine, "timings": choice.timings,
                        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".autotune-", dir=os.path.dirname(path))
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": VERSION, "entries": entries}, f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        _warn_once(f"rnnjax autotune: could not write the cache {path} ({e}); the choice "
                   "holds for this process only")


def time_program(fn: Callable, args: tuple, name: str = "") -> float:
    """Seconds of one call of the jitted ``fn(*args)`` (candidate ``name``): one untimed
    call (compile and warm-up), then the minimum of :data:`REPEATS` timed calls (fewer
    once their total passes :data:`BUDGET_S`).  Tests replace it with a fake timer."""
    jax.block_until_ready(fn(*args))
    times: list = []
    while len(times) < REPEATS and sum(times) < BUDGET_S:
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def _concrete(tree) -> bool:
    """Whether every leaf holds values (not a tracer nor a ``jax.ShapeDtypeStruct``)."""
    return all(isinstance(a, (np.ndarray, np.generic)) or (
        isinstance(a, jax.Array) and not isinstance(a, jax.core.Tracer))
        for a in jax.tree.leaves(tree))


def _inputs(cell, params, dtype, T, B, F, lengths, resets):
    """Concrete ``(params, carry, xs, lengths, resets)`` of the call's shapes: the call's
    own params when concrete, else ``0.1 N(0, 1)`` of their shapes and dtypes (the
    values change the time of no engine), drawn by NumPy (nothing to compile)."""
    rng = np.random.default_rng(0)

    def normal(shape, dt, scale=1.0):
        dt = np.dtype(dt)
        if not np.issubdtype(dt, np.inexact):
            return jnp.zeros(shape, dt)
        return jnp.asarray((scale * rng.standard_normal(shape)).astype(np.float32), dt)

    if not _concrete(params):
        params = jax.tree.map(lambda a: normal(jnp.shape(a), jnp.result_type(a), 0.1), params)
    xs = normal((T, B, F), dtype)
    lengths = None if lengths is None else jnp.full((B,), T, jnp.int32)
    resets = None if resets is None else jnp.zeros((T, B), bool)
    return params, cell.initial_carry((B,), dtype), xs, lengths, resets


def _program(cell, scan, spec):
    def loss(params, carry, xs, lengths, resets):
        ys, final, _ = scan(cell, params, carry, xs, lengths, resets, None, spec)
        return sum(jnp.sum(a.astype(jnp.float32)) for a in jax.tree.leaves((ys, final)))

    return jax.jit(jax.grad(loss))


def _measure(cell, params, dtype, T, B, F, lengths, resets, candidates) -> tuple:
    """``(timings {name: seconds}, failures {name: error})`` of every candidate."""
    timings, failures = {}, {}
    with jax.ensure_compile_time_eval():
        args = _inputs(cell, params, dtype, T, B, F, lengths, resets)
        for name, (scan, spec) in candidates.items():
            try:
                timings[name] = float(time_program(_program(cell, scan, spec), args, name))
            except Exception as e:  # noqa: BLE001 - a candidate that cannot run loses
                failures[name] = f"{type(e).__name__}: {e}"
    return timings, failures


def choose(cell, params, dtype, T: int, B: int, F: int, *, candidates: dict, rule: str,
           options: dict, lengths=None, resets=None) -> Choice:
    """The engine of the fastest of ``candidates`` (``{name: (scan function, Spec)}``,
    each able to run the call) or ``rule`` (the recorded rules' choice) when timing is
    off or impossible.  Decided once per key (memory, then the cache file, then
    measuring); see the module docstring."""
    if not enabled():
        return Choice(rule, f"rule: {ENV}=0", {}, "")
    if len(candidates) < 2:
        return Choice(rule, "rule: one candidate", {}, "")
    key = shape_key(cell, params, dtype, T, B, F, options, candidates)
    if key in _MEMO and not _REMEASURE:
        return _MEMO[key]
    entry = None if _REMEASURE else _read().get(key)
    if isinstance(entry, dict) and entry.get("engine") in candidates:
        choice = Choice(entry["engine"], "cache", dict(entry.get("timings") or {}), key)
    else:
        timings, failures = _measure(cell, params, dtype, T, B, F, lengths, resets,
                                     candidates)
        if not timings:
            _warn_once(f"rnnjax autotune: no candidate could be timed ({failures}); "
                       f"using the recorded rule ({rule!r})")
            return Choice(rule, "rule: timing failed", {}, key)
        best = min(timings, key=timings.get)
        choice = Choice(best, "measured", timings, key)
        _write(key, choice)
    _MEMO[key] = choice
    return choice
