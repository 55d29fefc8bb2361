"""The Cell protocol: a recurrent cell is a named tuple of pure functions.

A cell is built by a factory that closes over its hyper-parameters, in the style of
``optax.GradientTransformation``::

    cell = rnnjax.cells.lstm(hidden_size=128)
    params = cell.init(jax.random.key(0), input_size)   # params pytree
    weights = cell.prepare(params)                       # once per sequence
    carry = cell.initial_carry((), jnp.float32)          # zeros, one example
    carry, y = cell.step(weights, carry, x)              # x: (input_size,)

``step`` is written for a single example; the sequence engine (:func:`rnnjax.run`)
``vmap``s it over batch axes and ``lax.scan``s it over time. ``prepare`` runs once per
sequence, outside the scan: it is where an orthogonal cell builds ``W = expm(A - A^T)``;
for the Elman cell and the LSTM it stacks ``[W_xh W_hh]^T`` so a step is one matmul
(:func:`fuse_input_hidden`); for the GRU it is the identity.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.core.memory import check_memory, tree_bytes

Array = jax.Array
PRNGKey = jax.Array
Params = Any
Weights = Any
Carry = Any


class HiddenState(NamedTuple):
    """Carry of cells whose state is one vector (Elman, GRU, orthogonal cells)."""

    h: Array


class LSTMState(NamedTuple):
    """Carry of the LSTM: hidden state ``h`` and memory cell ``c``."""

    h: Array
    c: Array


class Linear(NamedTuple):
    """A step written as a linear recurrence ``h_t = A_t h_{t-1} + b_t``.

    Cells whose recurrence is linear may declare it so the engine can run it with an
    associative scan.  ``kind`` is ``"diagonal"`` (``a`` has the shape of ``h``) or
    ``"dense"`` (``a`` is a ``(H, H)`` matrix acting as ``a @ h``).
    """

    kind: str
    coeffs: Callable[[Weights, Array], tuple[Array, Array]]  # (weights, x_t) -> (a_t, b_t)
    readout: Callable[[Weights, Array, Array], Array]  # (weights, h_t, x_t) -> y_t


class Chunk(NamedTuple):
    r"""A cell's chunkwise-parallel form, read by :mod:`rnnjax.engine.chunked`
    (``rnnjax.run(..., scan="chunked")``).

    For a linear recurrence with a matrix state, ``S_t = A_t S_{t-1} + U_t`` (a decay
    ``A_t`` that is a scalar, a diagonal or a Householder-like product per head), the
    engine cuts time into chunks of ``c`` steps and scans over the chunks; ``run``
    advances one example by one whole chunk at once, in its parallel (matmul) form
    (kernels: :mod:`rnnjax.engine.chunk_forms`)::

        carry, ys = run(w, carry, carry0, xs, starts, live)

    with ``w = cell.prepare(params)``, ``xs (c, F)``, ``starts (c,)`` bool (the state
    before that step is ``carry0``: a reset), ``live (c,)`` bool (false: the step is the
    identity, its output is free; dead steps come only after the live ones).  ``ys (c,
    output_size)`` and the carry after the chunk equal ``c`` calls of ``cell.step`` (with
    the sequential engine's resets and frozen carry) up to rounding.  A wrapper that
    changes ``step`` must clear it (``chunk=None``).
    """

    run: Callable


class Backward(NamedTuple):
    r"""A cell's hand-written backpropagation through time, read by :mod:`rnnjax.engine.bptt`.

    Every function takes the *prepared* weights ``w = cell.prepare(params)``; the driver
    returns ``dL/dw`` through ``prepare``'s VJP, applied once per sequence, so a
    parametrised cell (expRNN's ``W = expm(A - A^T)``) writes only ``dL/dW``.  Arrays are
    batched and time-major: ``x_t (B, F)``, carry leaves ``(B, H)``; a chunk of ``K``
    steps stacks them ``(K, B, .)``.  States are plain tuples in the order of the carry's
    fields.  With ``g_t`` the gradient reaching the carry after step ``t`` from the
    future and ``dy_t = dL/dy_t``, the driver runs, per chunk (last chunk first)::

        res            = recompute(w)(xs, prev, cur)      # gates of the chunk, batched
        g_{t-1}, d_t   = body(w, g_t, res_t + (dy_t, live_t))   # t = last..first
        dw, dxs        = grads(w, d, xs, prev)             # one matmul per weight

    The forward is the cell's own ``step`` (``vmap``-ed and scanned by the driver, which
    stores the states and nothing else), so a backward can only disagree with its cell
    through its own arithmetic, which the tests check against autodiff.

    Attributes:
      recompute: ``w -> (xs, prev, cur) -> residuals``: what ``body`` needs, recomputed
        for a whole chunk from its inputs and stored states (``prev``: states before
        each step, ``cur``: after).
      body: ``(w, g, inp) -> (g_prev, delta)``: one reverse step.  Past a sequence's
        length (``live_t`` false) ``delta`` must be zero and ``g`` pass unchanged
        (:func:`where_live`).  The driver itself routes ``g_prev`` to the initial carry
        before a reset and cuts it at a truncation boundary (:func:`cut_at`).
      grads: ``(w, deltas, xs, prev) -> (dw, dxs)``: the chunk's weight gradients, a
        dict with a subset of ``w``'s keys (the rest are zero), and ``dL/dx_t``.
      output: ``stacked states -> ys (T, B, output_size)``; ``None``: the first state.
      faster_on: the backends (``jax.default_backend()`` names) on which
        ``benchmarks/README.md`` measured this backward faster than autodiff through the
        scan; ``rnnjax.run(..., grad="auto")`` uses it there and autodiff elsewhere.
    """

    recompute: Callable
    body: Callable
    grads: Callable
    output: Callable | None = None
    faster_on: tuple = ()


class _CellFields(NamedTuple):
    """The fields of :class:`Cell` (see there)."""

    init: Callable[[PRNGKey, int], Params]
    prepare: Callable[[Params], Weights]
    initial_carry: Callable[[tuple, Any], Carry]
    step: Callable[[Weights, Carry, Array], tuple[Carry, Array]]
    input_size: Callable[[Params], int]
    output_size: int
    name: str = "cell"
    recurrent_matrix: Callable[[Params], Array] | None = None
    linear: Linear | None = None
    backward: Backward | None = None
    project: Callable[[Params], Params] | None = None
    chunk: Chunk | None = None


def check_key(key, name: str = "key") -> None:
    """Raise ``TypeError`` unless ``key`` is a JAX PRNG key: a typed key
    (``jax.random.key(seed)``) or a raw ``uint32`` key (``jax.random.PRNGKey(seed)``)."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and (jnp.issubdtype(dtype, jax.dtypes.prng_key) or (
            dtype == jnp.uint32 and jnp.ndim(key) >= 1)):
        return
    raise TypeError(f"{name} must be a JAX PRNG key (jax.random.key(seed)), got "
                    f"{type(key).__name__}" + (f" of dtype {dtype}" if dtype is not None
                                               else f" {key!r}"))


def guard_init(init: Callable, name: str = "cell") -> Callable:
    """``init`` that first measures its params with ``jax.eval_shape`` (no allocation)
    and refuses, naming the cell, the input size and the estimate, when they would not
    fit in :func:`rnnjax.core.memory.available_memory` (instead of the process being killed
    by the allocation).  Applied by :class:`Cell` to every cell's ``init`` once; an
    ``init`` that cannot be traced abstractly runs unguarded."""
    if getattr(init, "memory_guarded", False):
        return init

    measured: dict = {}  # bytes per (input_size, key type, args): one trace each

    @functools.wraps(init)
    def guarded(key, input_size, *args, **kwargs):
        check_key(key)
        try:
            sig = (input_size, jnp.shape(key), str(jnp.result_type(key)), args,
                   tuple(sorted(kwargs.items())))
            hash(sig)
        except Exception:  # noqa: BLE001 - unhashable arguments: measure every time
            sig = None
        if sig is None or sig not in measured:
            try:
                nbytes = tree_bytes(jax.eval_shape(
                    lambda k: init(k, input_size, *args, **kwargs), key))
            except Exception:  # noqa: BLE001 - not traceable abstractly: init will say why
                nbytes = 0
            if sig is not None:
                measured[sig] = nbytes
        else:
            nbytes = measured[sig]
        what = f"initialising the {name} cell (input_size={input_size!r})"
        check_memory(what, nbytes, "choose a smaller hidden or input size")
        try:
            return init(key, input_size, *args, **kwargs)
        except MemoryError as e:  # an init not traceable abstractly (numpy inside)
            raise ValueError(f"{what} ran out of memory ({e}); choose a smaller hidden "
                             f"or input size") from None

    guarded.memory_guarded = True
    return guarded


class Cell(_CellFields):
    """A recurrent cell as a tuple of pure functions.

    Attributes:
      init: ``(key, input_size) -> params``, the trainable pytree (real arrays only).
      prepare: ``params -> weights``, run once per sequence outside the time loop.
      initial_carry: ``(batch_shape, dtype) -> carry`` of zeros with leaves
        ``batch_shape + (hidden,)``.
      step: ``(weights, carry, x) -> (carry, y)`` for one example, ``x: (input_size,)``.
      input_size: ``params -> int``, the number of input features the params expect.
      output_size: features of ``y``.
      name: short name used in errors, reports and plots.
      recurrent_matrix: optional ``params -> (H, H)`` dense recurrent matrix (or the
        stacked gate blocks) for analysis.
      linear: optional :class:`Linear` declaration of a linear recurrence.
      backward: optional :class:`Backward`, the cell's hand-written BPTT
        (``rnnjax.run(..., grad="manual")``, and ``grad="auto"`` on the backends of
        ``backward.faster_on``).  A wrapper that changes ``step`` must
        clear it (``backward=None``) or supply a matching one.
      project: optional ``params -> params``, the constraint a reference applies to the
        parameters *between* optimiser steps (IndRNN's clipping of ``u``), as opposed to
        one inside ``prepare``, through which the gradient would flow or die.  Apply it
        after every update, ``params = cell.project(optax.apply_updates(params,
        updates))``; :func:`rnnjax.training.make_update` (with
        :func:`rnnjax.training.cell_projection`) and the runner do.
      chunk: optional :class:`Chunk`, the chunkwise-parallel form of a matrix-state
        linear recurrence (``rnnjax.run(..., scan="chunked")``).

    Constructing a ``Cell`` wraps ``init`` with :func:`guard_init`: absurd sizes
    (``lstm(2_000_000).init(key, 3)``) are refused with the memory estimate before
    anything is allocated.
    """

    __slots__ = ()

    def __new__(cls, init, *args, **kwargs):
        name = kwargs.get("name", args[5] if len(args) > 5 else "cell")
        return super().__new__(cls, guard_init(init, name), *args, **kwargs)

    @classmethod
    def _make(cls, iterable):  # _replace(init=...) is guarded too
        return cls(*iterable)


def zeros_carry(state_type, hidden_size: int):
    """An ``initial_carry`` function returning ``state_type`` of zero arrays."""

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        if not isinstance(batch_shape, (tuple, list)) or not all(
                isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 0
                for d in batch_shape):
            raise TypeError(f"batch_shape must be a tuple of non-negative ints (e.g. "
                            f"(batch,) or ()), got {batch_shape!r}")
        shape = tuple(batch_shape) + (hidden_size,)
        return state_type(*(jnp.zeros(shape, dtype) for _ in state_type._fields))

    return initial_carry


def _value_key(value):
    """A hashable key that tells values of different types apart (``1``, ``1.0`` and
    ``True`` are equal in Python but may build different cells)."""
    if isinstance(value, (tuple, list)):
        return type(value), tuple(_value_key(v) for v in value)
    hash(value)  # TypeError for arrays, dicts, ...
    return type(value), value


def shared(factory, maxsize: int = 256):
    """``factory`` that returns the *same* :class:`Cell` object for equal arguments.

    A cell is a static argument of the jitted engine, hashed by the identity of its
    functions, so two calls ``cells.elman(4)`` used to build two cells and compile every
    program twice (a sweep that rebuilds its cell each iteration filled the process
    with compiled programs until it died).  Cells are immutable, so handing out one
    object per argument list is safe: equal cells now share their compiled programs.
    Arguments that cannot be hashed (an array, a callable built on the fly is fine)
    build a fresh cell as before; the ``maxsize`` most recent argument lists are kept.
    A cell changed with ``_replace`` is a new object and compiles on its own.
    """
    cache: dict = {}

    @functools.wraps(factory)
    def make(*args, **kwargs):
        try:
            key = (_value_key(args), _value_key(tuple(sorted(kwargs.items()))))
        except TypeError:
            return factory(*args, **kwargs)
        if key in cache:
            cache[key] = cache.pop(key)  # most recent last
            return cache[key]
        with jax.ensure_compile_time_eval():  # constants of the cell concrete, even when
            cell = factory(*args, **kwargs)  # built inside a trace: safe to hand out again
        cache[key] = cell
        if len(cache) > maxsize:
            cache.pop(next(iter(cache)))
        return cell

    make.cache_clear = cache.clear
    return make


def identity(params):
    """``prepare`` of cells that need no per-sequence precomputation."""
    return params


def fuse_input_hidden(params):
    """``prepare`` of the Elman cell and the LSTM: ``params`` plus
    ``W = [W_xh W_hh]^T (F+H, G*H)``, so a step computes ``W_xh x + W_hh h`` as one
    matmul ``[x, h] @ W`` (one matmul per step instead of two; benchmarks/README.md)."""
    return {**params, "W": jnp.concatenate([params["W_xh"], params["W_hh"]], axis=1).T}


def fused_grads(w, d, xs, prev):
    """Weight gradients of a chunk of a fused step ``z_t = [x_t, h_{t-1}] @ W + b``
    (:func:`fuse_input_hidden`) from its pre-activation deltas ``d (K, B, G*H)``::

        dW = sum_t [x_t, h_{t-1}]^T d_t      db = sum_t d_t      dx_t = W_xh^T d_t
    """
    xh = jnp.concatenate([xs, prev[0]], -1)
    return {"W": chunk_outer(xh, d), "b": d.sum((0, 1))}, d @ w["W_xh"]


def recurrent_matrix(cell: Cell, params) -> Array:
    """The dense recurrent matrix of ``cell`` with ``params`` (for analysis).

    For gated cells this is the fused ``(G*H, H)`` matrix of the gate blocks; for
    diagonal recurrences the ``(H, H)`` diagonal matrix.
    """
    if cell.recurrent_matrix is None:
        raise ValueError(f"the {cell.name} cell exposes no recurrent matrix")
    return cell.recurrent_matrix(params)


# ----------------------------------------------------- helpers for hand-written backwards

def where_live(live_t, new, old):
    """``new`` where the step is live (``live_t (B,)`` bool; None: every step), else ``old``."""
    return new if live_t is None else jnp.where(live_t[:, None], new, old)


def cut_at(cut_t, g):
    """Zero where ``cut_t`` (a truncated-BPTT boundary; None: never), else ``g``."""
    return g if cut_t is None else jnp.where(cut_t, jnp.zeros_like(g), g)


def chunk_outer(d, a):
    """``sum_t d_t a_t^T`` over a chunk ``(K, B, .)``: one matmul over its ``K*B`` rows."""
    return d.reshape(-1, d.shape[-1]).T @ a.reshape(-1, a.shape[-1])


__all__ = ["Backward", "Cell", "Chunk", "check_key", "guard_init", "HiddenState", "LSTMState",
           "Linear", "shared",
           "chunk_outer", "cut_at", "fuse_input_hidden", "fused_grads", "identity",
           "recurrent_matrix", "where_live", "zeros_carry"]
