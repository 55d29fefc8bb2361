"""The sequence engine: run a cell over a sequence with ``jax.lax.scan``.

One engine serves every cell.  ``step`` is written for one example; the engine
flattens any number of batch axes into one, ``vmap``s the step over it and scans over
time.  Variable lengths freeze the carry once ``t >= length`` and zero the padded
outputs; ``reverse`` reverses each sequence inside its own length.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_choice
from rnnjax.engine.associative import SCANS, associative_scan_cell, choose_scan
from rnnjax.engine.bptt import GRADS, check_manual, choose_grad, scan_manual
from rnnjax.engine.cudnn import CUDNN, check_cudnn, choose_cudnn, scan_cudnn
from rnnjax.engine.inputs import (
    check_run_inputs,
    common_float_dtype,
    flip_sequences,
    reset_to,
    segment_starts,
    shape_dtype,
)
from rnnjax.engine.newton import run_options, scan_newton, time_major_init

__all__ = ["flip_sequences", "run", "scan_cell"]


def scan_cell(cell, weights, carry, xs, lengths=None, *, reverse=False, unroll=1,
              remat=False, truncate=None, resets=None):
    """Scan ``cell`` over time-major, batch-flattened inputs.

    Args:
      weights: the output of ``cell.prepare(params)``.
      carry: initial carry with leaves ``(B, ...)``.
      xs: ``(T, B, F)``.
      lengths: ``(B,)`` integer lengths or None.
      resets: ``(T, B)`` bool or None: the carry is set back to ``carry`` before the
        steps where it is true (:func:`rnnjax.engine.inputs.segment_starts`).

    Returns:
      ``(ys (T, B, O), final_carry)``.
    """
    T = xs.shape[0]
    starts = None if resets is None else segment_starts(resets, lengths, reverse)
    if reverse:
        xs = flip_sequences(xs, lengths)
    step = jax.vmap(cell.step, in_axes=(None, 0, 0))
    carry0 = carry

    def body(c, inp):
        t, x, start_t = inp
        if truncate is not None:  # truncated BPTT: cut the gradient every k steps
            cut = (t % truncate == 0) & (t > 0)
            c = jax.tree.map(lambda a: jnp.where(cut, jax.lax.stop_gradient(a), a), c)
        c = reset_to(start_t, carry0, c)
        new, y = step(weights, c, x)
        if lengths is not None:  # freeze the carry and zero the output past the length
            live = t < lengths
            new = jax.tree.map(
                lambda n, o: jnp.where(live.reshape(live.shape + (1,) * (n.ndim - 1)), n, o),
                new, c)
            y = jnp.where(live[:, None], y, jnp.zeros_like(y))
        return new, y

    if remat:
        final, ys = _chunked_remat_scan(body, carry, xs, starts, unroll)
    else:
        final, ys = jax.lax.scan(body, carry, (jnp.arange(T), xs, starts), unroll=unroll)
    if reverse:
        ys = flip_sequences(ys, lengths)
    return ys, final


def _chunked_remat_scan(body, carry, xs, starts, unroll):
    """``lax.scan(body)`` over ``(t, xs, starts)`` with sqrt(T) checkpointing (Chen et al. 2016).

    Time is cut into ``n`` chunks of ``k = ceil(sqrt(T))`` steps; the outer scan runs
    one ``jax.checkpoint``-ed chunk per iteration, so the backward pass stores only the
    ``n`` carries at chunk boundaries and, while it works on one chunk, that chunk's
    ``k`` steps of intermediates (recomputed by one extra forward of the chunk): memory
    ``O((n + k) B H)`` instead of ``O(T B H)``, time about one forward more.  Steps
    padded onto the end (``t >= T``) leave the carry unchanged.
    """
    T = xs.shape[0]
    k = math.isqrt(T - 1) + 1 if T > 1 else 1
    n = -(-T // k)
    pad = n * k - T
    ts = jnp.arange(n * k)
    if pad:
        xs = jnp.concatenate([xs, jnp.zeros((pad,) + xs.shape[1:], xs.dtype)])
        if starts is not None:
            starts = jnp.concatenate([starts, jnp.zeros((pad,) + starts.shape[1:], bool)])

        def padded_body(c, inp):
            new, y = body(c, inp)
            return jax.tree.map(lambda a, b: jnp.where(inp[0] < T, a, b), new, c), y
    else:
        padded_body = body

    @jax.checkpoint
    def chunk(c, inp):
        return jax.lax.scan(padded_body, c, inp, unroll=min(unroll, k))

    split = lambda a: None if a is None else a.reshape((n, k) + a.shape[1:])  # noqa: E731
    final, ys = jax.lax.scan(chunk, carry, (split(ts), split(xs), split(starts)))
    return final, ys.reshape((n * k,) + ys.shape[2:])[:T]


@partial(jax.jit, static_argnames=("cell", "reverse", "time_major", "unroll", "remat",
                                   "truncate", "grad", "scan", "newton"))
def _run(cell, params, xs, carry, lengths, resets, newton_init=None, *, reverse, time_major,
         unroll, remat, truncate, grad="autodiff", scan="sequential", newton=None):
    if time_major:
        T, batch_shape, F = xs.shape[0], xs.shape[1:-1], xs.shape[-1]
    else:
        T, batch_shape, F = xs.shape[-2], xs.shape[:-2], xs.shape[-1]
        xs = jnp.moveaxis(xs, -2, 0)
    B = math.prod(batch_shape)
    xs = xs.reshape(T, B, F)
    if carry is None:
        carry = cell.initial_carry((B,), xs.dtype)
    else:
        carry = jax.tree.map(lambda a: a.reshape((B,) + a.shape[len(batch_shape):]), carry)
    if lengths is not None:  # traced lengths: clipped to [0, T]; padding never reaches a step
        lengths = jnp.clip(lengths.reshape(B), 0, T)
        xs = jnp.where((jnp.arange(T)[:, None] < lengths)[..., None], xs, jnp.zeros_like(xs))
    if resets is not None:
        resets = (resets if time_major else jnp.moveaxis(resets, -1, 0)).reshape(T, B)
    if scan == CUDNN:  # one cuDNN call (rnnjax.engine.cudnn)
        ys, final = scan_cudnn(params, carry, xs, lengths, reverse=reverse)
    elif grad == "manual":  # hand-written BPTT as a custom_vjp (rnnjax.engine.bptt)
        ys, final = scan_manual(cell, params, carry, xs, lengths, reverse=reverse,
                                truncate=truncate, unroll=unroll, resets=resets)
    elif scan == "associative":
        ys, final = associative_scan_cell(cell, cell.prepare(params), carry, xs, lengths,
                                          reverse=reverse, remat=remat, resets=resets)
    elif scan == "newton":  # DEER / quasi-DEER / ELK (rnnjax.engine.newton)
        if newton_init is not None:
            newton = newton._replace(init=time_major_init(newton_init, time_major, batch_shape))
        ys, final, iters = scan_newton(cell, params, carry, xs, lengths, reverse=reverse,
                                       resets=resets, options=newton)
    else:
        weights = cell.prepare(params)
        ys, final = scan_cell(cell, weights, carry, xs, lengths, reverse=reverse,
                              unroll=unroll, remat=remat, truncate=truncate, resets=resets)
    ys = ys.reshape((T,) + batch_shape + ys.shape[2:])
    if not time_major:
        ys = jnp.moveaxis(ys, 0, -2)
    final = jax.tree.map(lambda a: a.reshape(batch_shape + a.shape[1:]), final)
    if scan == "newton" and newton.return_iterations:
        return ys, final, iters.reshape(batch_shape)
    return ys, final


def run(cell: Cell, params, xs, *, carry=None, lengths=None, resets=None,
        reverse: bool = False, time_major: bool = False, unroll: int = 1, remat: bool = False,
        truncate: int | None = None, grad: str = "auto", scan: str = "auto", newton=None):
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
        sequential scan) or ``"auto"`` (default): the faster of the two as measured on
        this backend, by the rule of :func:`rnnjax.engine.bptt.choose_grad` (today: the
        hand-written backward for the Elman cells and the LSTM on CPU, autodiff
        otherwise).  Same values and gradients up to float rounding; forward-mode
        autodiff (``jax.jvp``) through ``run`` needs ``"autodiff"``.
      scan: ``"sequential"`` (``lax.scan``, T steps), ``"associative"`` (parallel scan
        in O(log T) depth, for cells that declare a linear recurrence; see
        :mod:`rnnjax.engine.associative`) or ``"auto"`` (associative for diagonal linear
        recurrences on accelerators; sequential otherwise, CPU included:
        :func:`rnnjax.engine.associative.choose_scan`).
        ``"newton"``: any cell, the whole trajectory solved by Newton's method with
        associative scans (DEER, quasi-DEER or ELK; :func:`rnnjax.engine.newton.scan_newton`),
        gradients by the implicit function theorem; not with ``grad="manual"``,
        ``remat``, ``truncate`` or ``unroll``.
        ``"cudnn"``: the plain float32 LSTM as one cuDNN call on a CUDA GPU
        (:mod:`rnnjax.engine.cudnn`; not with ``grad="manual"``, ``remat``, ``truncate``,
        ``unroll`` or ``resets``; ``"auto"`` picks it only where measured faster).
        All give the same outputs, final carry and gradients up to rounding (Newton: up
        to its tolerance).
      newton: :class:`rnnjax.engine.newton.NewtonOptions` for ``scan="newton"`` (method,
        ``max_iters``, ``tol``, ``damping``; ``init`` a warm start laid out like ``ys``,
        e.g. ``HiddenState(ys)`` of a previous call for an Elman/GRU/orthogonal cell;
        ``return_iterations=True`` makes ``run`` return ``(ys, final_carry,
        iterations)``, the Newton iterations per sequence, shape ``batch``).

    Returns:
      ``ys`` of shape ``(*batch, time, output_size)`` (time-major if asked) and the final
      carry with leaves ``(*batch, ...)``.
    """
    T, _ = check_run_inputs(cell, params, xs, carry, lengths, time_major, truncate, unroll,
                            resets)
    check_choice("grad", grad, GRADS)
    check_choice("scan", scan, SCANS + ("newton", CUDNN))
    newton, newton_init = run_options(newton, scan, grad=grad, remat=remat,
                                      truncate=truncate, unroll=unroll)
    opts = dict(grad=grad, remat=remat, truncate=truncate, unroll=unroll, resets=resets)
    if scan == "newton":
        pass
    elif scan == CUDNN:
        check_cudnn(cell, params, xs, **opts)
    elif grad == "manual":
        check_manual(cell)
        if remat:
            raise ValueError("remat=True cannot be combined with grad='manual' (the "
                             "hand-written backward stores its own residuals), got both")
        if scan == "associative":
            raise ValueError("scan='associative' cannot be combined with grad='manual' "
                             "(the hand-written backward is a sequential scan), got both")
        scan = "sequential"
    elif scan == "auto" and choose_cudnn(cell, params, xs, **opts):
        scan = CUDNN
    else:
        scan = choose_scan(cell, scan, T, truncate=truncate, unroll=unroll)
        grad = choose_grad(cell, grad, scan=scan, remat=remat)
    dtype = common_float_dtype(shape_dtype(xs)[1], params)  # reconcile half-precision xs
    xs = jnp.asarray(xs, dtype)
    if carry is not None:
        carry = jax.tree.map(lambda a: jnp.asarray(a, dtype) if jnp.issubdtype(
            shape_dtype(a)[1], jnp.floating) else a, carry)
    if lengths is not None:
        lengths = jnp.asarray(lengths)
    if resets is not None:
        resets = jnp.asarray(resets)
    return _run(cell, params, xs, carry, lengths, resets, newton_init, reverse=bool(reverse),
                time_major=bool(time_major), unroll=unroll, remat=bool(remat),
                truncate=truncate, grad=grad, scan=scan, newton=newton)
