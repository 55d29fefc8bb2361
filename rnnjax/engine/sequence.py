"""``rnnjax.run``: one entry point for every engine.

``run`` checks its inputs, casts them by one dtype rule
(:func:`rnnjax.engine.inputs.common_float_dtype`), resolves its options once into a
:class:`~rnnjax.engine.table.Spec` (:func:`rnnjax.engine.table.resolve`: which engine of
the table, with which options), brings the inputs to the engines' layout (time-major,
batch axes flattened into one), calls the engine and returns the outputs in the
caller's layout.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp

from rnnjax.core.cell import Cell
from rnnjax.core.precision import cast_floating
from rnnjax.engine.inputs import (
    check_run_inputs,
    common_float_dtype,
    flatten_batch,
    flip_sequences,
    from_scan_layout,
    shape_dtype,
    to_scan_layout,
    unflatten_batch,
)
from rnnjax.engine.newton import report_failures, time_major_init
from rnnjax.engine.sequential import scan_cell
from rnnjax.engine.table import ENGINES, Spec, resolve

__all__ = ["flip_sequences", "run", "scan_cell"]


@partial(jax.jit, static_argnames=("cell", "spec"))
def _run(cell, params, xs, carry, lengths, resets, newton_init, *, spec: Spec):
    T = xs.shape[0] if spec.time_major else xs.shape[-2]
    batch_shape = xs.shape[1:-1] if spec.time_major else xs.shape[:-2]
    xs = to_scan_layout(xs, spec.time_major, len(batch_shape))
    B = xs.shape[1]
    carry = (cell.initial_carry((B,), xs.dtype) if carry is None
             else flatten_batch(carry, batch_shape))
    if lengths is not None:  # traced lengths: clipped to [0, T]; padding never reaches a step
        lengths = jnp.clip(lengths.reshape(B), 0, T)
        xs = jnp.where((jnp.arange(T)[:, None] < lengths)[..., None], xs, jnp.zeros_like(xs))
    if resets is not None:
        resets = to_scan_layout(resets[..., None], spec.time_major, len(batch_shape))[..., 0]
    if newton_init is not None:
        newton_init = time_major_init(newton_init, spec.time_major, batch_shape)
    ys, final, extra = ENGINES[spec.engine].scan(cell, params, carry, xs, lengths, resets,
                                                 newton_init, spec)
    ys = from_scan_layout(ys, spec.time_major, batch_shape)
    final = unflatten_batch(final, batch_shape)
    if extra is not None:  # Newton: (iterations, failed) per sequence
        extra = tuple(a.reshape(batch_shape) for a in extra)
    return ys, final, extra


def run(cell: Cell, params, xs, *, carry=None, lengths=None, resets=None,
        reverse: bool = False, time_major: bool = False, unroll: int = 1, remat: bool = False,
        truncate: int | None = None, grad: str = "auto", scan: str = "auto", newton=None,
        chunk: int | None = None):
    """Run ``cell`` over the sequences ``xs``; return ``(ys, final_carry)``.

    Args:
      cell: an :class:`rnnjax.Cell`.
      params: the cell's params (``cell.init(key, features)``).  ``cell.prepare`` is
        applied once, outside the time loop.
      xs: ``(*batch, time, features)``, or ``(time, *batch, features)`` when
        ``time_major``.  Any number of batch axes, including none.
      carry: initial carry with leaves ``(*batch, ...)``; zeros when None.
      lengths: integer array of shape ``batch``, each in ``[0, time]``.  Step ``t`` of
        sequence ``b`` runs only while ``t < lengths[b]``: afterwards the carry is frozen
        (so ``final_carry`` is the state after ``lengths[b]`` steps) and the output is
        exactly zero.  Length 0 returns the initial carry.  Concrete values outside
        ``[0, time]`` raise ``ValueError``; traced ones (under ``jit``) are clipped to
        ``[0, time]``.  Inputs past a sequence's length are replaced by zeros before any
        step, so NaN or inf in the padding reaches neither outputs nor gradients.
      resets: boolean array ``(*batch, time)`` (``(time, *batch)`` when ``time_major``)
        marking the first step of each segment (episode or document boundaries, as
        Haiku's ``ResetCore``): before such a step the carry is set back to the initial
        carry (``carry``, or zeros), so the outputs, the final carry and the gradients
        are those of running each segment on its own, and no gradient crosses a reset.
        With ``reverse`` each segment is read from its last step to its first, starting
        from the initial carry (a reset at ``t`` then marks the end of the segment read
        before it).  Resets at or past a sequence's length are ignored.
      reverse: process each sequence from its last valid step to its first; outputs are
        returned in the original time order (as the backward half of a bidirectional
        RNN needs).
      time_major: layout of ``xs`` and ``ys``.
      unroll: steps unrolled per ``lax.scan`` iteration.
      remat: checkpoint the scan: the backward pass keeps only the carry every
        ``ceil(sqrt(T))`` steps and recomputes the steps in between (memory
        ``O(sqrt(T))`` carries instead of ``O(T)`` steps of intermediates, for about one
        extra forward pass).
      truncate: ``k`` for truncated backpropagation through time: the gradient through
        the carry is cut before steps ``k, 2k, ...`` (forward values unchanged); a
        reset's first step still passes its gradient to the initial carry.
      grad: ``"autodiff"`` (``jax`` differentiates the scan), ``"manual"`` (the cell's
        hand-written backpropagation through time, ``cell.backward``, driven by
        :mod:`rnnjax.engine.bptt` as a ``jax.custom_vjp``; not with ``remat``; always a
        sequential scan) or ``"auto"`` (default): the faster of the two, timed once on
        this machine for the call's shapes and cached (:mod:`rnnjax.engine.autotune`);
        with ``RNNJAX_AUTOTUNE=0`` the rule of :func:`rnnjax.engine.bptt.choose_grad`
        (the backends of ``cell.backward.faster_on``).  Same values and gradients up to
        float rounding; forward-mode autodiff (``jax.jvp``) through ``run`` needs ``"autodiff"``.
      scan: ``"sequential"`` (``lax.scan``, T steps), ``"associative"`` (parallel scan
        in O(log T) depth, for cells that declare a linear recurrence; see
        :mod:`rnnjax.engine.associative`) or ``"auto"``: the fastest engine that can run
        the call, timed as for ``grad`` (with ``RNNJAX_AUTOTUNE=0``: associative for
        diagonal linear recurrences on accelerators, sequential otherwise, CPU
        included: :func:`rnnjax.engine.associative.choose_scan`).
        ``"newton"``: any cell, the whole trajectory solved by Newton's method with
        associative scans (DEER, quasi-DEER or ELK; :func:`rnnjax.engine.newton.scan_newton`),
        gradients by the implicit function theorem; not with ``grad="manual"``,
        ``remat``, ``truncate`` or ``unroll``.
        ``"cudnn"``: the plain float32 LSTM as one cuDNN call on a CUDA GPU
        (:mod:`rnnjax.engine.cudnn`; not with ``grad="manual"``, ``remat``, ``truncate``,
        ``unroll`` or ``resets``; ``"auto"`` picks it only where measured faster).
        ``"chunked"``: cells that declare a chunkwise-parallel form (``cell.chunk``: the
        mLSTM, DeltaNet and its gated and DeltaProduct variants, GLA, retention,
        Mamba-2), sequential across chunks of ``chunk`` steps and matmul-parallel
        inside each (:mod:`rnnjax.engine.chunked`); with ``lengths``, ``resets`` and
        ``reverse``, not with ``grad="manual"``, ``remat``, ``truncate`` or ``unroll``;
        ``"auto"`` does not pick it.
        All give the same outputs, final carry and gradients up to rounding (Newton: up
        to its tolerance).
      newton: :class:`rnnjax.engine.newton.NewtonOptions` for ``scan="newton"`` (method,
        ``max_iters``, ``tol``, ``damping``, ``on_fail``: warn by default when a sequence
        did not converge; ``init`` a warm start laid out like ``ys``,
        e.g. ``HiddenState(ys)`` of a previous call for an Elman/GRU/orthogonal cell;
        ``return_iterations=True`` makes ``run`` return ``(ys, final_carry,
        iterations)``, the Newton iterations per sequence, shape ``batch``).
      chunk: steps per chunk of ``scan="chunked"`` (a positive integer; default 64,
        or ``time`` when shorter); refused by the other engines.

    Returns:
      ``ys`` of shape ``(*batch, time, output_size)`` (time-major if asked) and the final
      carry with leaves ``(*batch, ...)``.
    """
    T, _ = check_run_inputs(cell, params, xs, carry, lengths, time_major, truncate, unroll,
                            resets)
    spec, newton_init = resolve(cell, params, xs, T, grad=grad, scan=scan, remat=remat,
                                truncate=truncate, unroll=unroll, resets=resets,
                                reverse=reverse, time_major=time_major, newton=newton,
                                chunk=chunk)
    # The one dtype rule of every engine: xs, the params' and the carry's floating leaves
    # in xs's dtype promoted with the params' (half-precision xs with float32 params run
    # in float32; float64 xs with float32 params in float64).
    dtype = common_float_dtype(shape_dtype(xs)[1], params)
    xs = jnp.asarray(xs, dtype)
    params = cast_floating(params, dtype)
    if carry is not None:
        carry = cast_floating(carry, dtype)
    if lengths is not None:
        lengths = jnp.asarray(lengths)
    if resets is not None:
        resets = jnp.asarray(resets)
    ys, final, extra = _run(cell, params, xs, carry, lengths, resets, newton_init, spec=spec)
    if extra is None:
        return ys, final
    iterations, failed = extra
    report_failures(failed, iterations, spec.newton)
    return (ys, final, iterations) if spec.newton.return_iterations else (ys, final)
