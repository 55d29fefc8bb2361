r"""Hand-written backpropagation through time (BPTT): the generic driver.

A cell that carries a hand-written backward (:class:`rnnjax.core.cell.Backward` in
``cell.backward``: the Elman cell in :mod:`rnnjax.cells.elman`, the LSTM and GRU in
:mod:`rnnjax.cells.gated`, the orthogonal and unitary cells) is trained through it with
``rnnjax.run(..., grad="manual")`` (a ``jax.custom_vjp``) or backpropagated explicitly
with :func:`bptt`.  Nothing here knows a cell by its name: the driver reads
``cell.backward`` and refuses a cell without one.

How every backward is organised (it stores as little as it can: on CPU, writing a fresh
residual buffer costs about as much as the arithmetic that fills it):

1. ``w = cell.prepare(params)`` once (its VJP is kept for the end);
2. forward ``lax.scan`` of the cell's own ``step`` (``vmap``-ed over the batch), storing
   only the carries (which are the outputs anyway);
3. reverse sweep in chunks of ``K = CHUNK`` steps (the last ``T % K`` steps first): per
   chunk, ``backward.recompute`` rebuilds what the reverse steps need from the stored
   states in one batched pass over its ``K*B`` rows; a reverse ``lax.scan`` of
   ``backward.body`` carries the gradient ``g`` back one step at a time through the
   cell's Jacobian written out, emitting the pre-activation deltas; then
   ``backward.grads`` accumulates the chunk's weight gradients in one matmul each::

       dW_xh += sum_t delta_t x_t^T      dW_hh += sum_t delta_t h_{t-1}^T
       db    += sum_t delta_t            dx_t   = W_xh^T delta_t

4. ``dL/dparams = vjp(prepare)(dL/dw)``, once: a parametrised cell writes only
   ``dL/dW`` and its map's adjoint is applied once per sequence.

Shapes (time-major, one batch of ``B``): ``x_t (B, F)``, carry leaves ``(B, H)``.
``g_t`` is the gradient reaching the carry *after* step ``t`` from the future
(``g_{T-1}`` = dL/d(final carry)) and ``dy_t = dL/dy_t``.

Engine semantics are honoured exactly (see :func:`rnnjax.engine.sequential.scan_cell`):

* ``lengths``: past ``t >= L`` the carry is frozen and ``y_t = 0``, so there the step
  contributes nothing (``delta_t = 0``) and the carry gradient passes through unchanged.
* ``truncate = k``: the gradient through the carry is cut before steps ``k, 2k, ...``
  (``t > 0, t % k == 0``), including the pass-through of frozen steps, as in the engine.
  Parameter gradients keep every step's local term.
* ``reverse``: sequences are flipped within their lengths before and after, as the
  engine does; a flip is its own transpose, so ``dy`` is flipped in and ``dx`` out.
"""

from __future__ import annotations

from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from rnnjax.core.cell import Cell, cut_at, where_live
from rnnjax.core.checks import check_cell
from rnnjax.engine.inputs import (
    check_run_inputs,
    flatten_batch,
    flip_sequences,
    from_scan_layout,
    reset_to,
    segment_starts,
    to_scan_layout,
    unflatten_batch,
)
from rnnjax.engine.spec import Spec

__all__ = ["BPTT", "CHUNK", "GRADS", "Stored", "backward_sweep", "bptt", "check_manual",
           "choose_grad", "forward_states", "scan_manual"]

# steps per chunk of the backward pass (see the module docstring)
CHUNK = 16


class BPTT(NamedTuple):
    """Result of :func:`bptt`: the forward outputs and every gradient.

    ``ys``/``final_carry`` as :func:`rnnjax.run` returns them; ``d_params`` has the
    structure of ``params``, ``d_xs`` the shape of ``xs``, ``d_carry`` that of the
    initial carry.
    """

    ys: Any
    final_carry: Any
    d_params: Any
    d_xs: Any
    d_carry: Any


GRADS = ("auto", "autodiff", "manual")


def check_manual(cell) -> None:
    """Raise unless ``cell`` is a :class:`rnnjax.Cell` with a hand-written backward."""
    check_cell(cell)
    if cell.backward is None:
        raise ValueError(
            f"grad='manual' needs a hand-written backward (cell.backward), and the "
            f"{cell.name!r} cell has none; use grad='autodiff' or 'auto'")


def choose_grad(cell: Cell, grad: str, *, scan: str = "sequential", remat: bool = False,
                backend: str | None = None) -> str:
    """Resolve ``grad="auto"`` to ``"manual"`` or ``"autodiff"`` (others pass through).

    The rule: the hand-written backward where the cell has one (``cell.backward``), the
    run is a sequential scan without ``remat`` (what the backward supports) and the
    backend (``jax.default_backend()`` unless given) is one of ``backward.faster_on``,
    the backends on which ``python -m benchmarks bptt`` / ``peers`` measured it faster
    than autodiff; autodiff otherwise.  Both give the same values and gradients up to
    float rounding (tests/test_bptt.py), but the hand-written one is a ``custom_vjp``:
    forward-mode autodiff (``jax.jvp``, ``jax.jacfwd``) through ``run`` needs
    ``grad="autodiff"``.
    """
    if grad != "auto":
        return grad
    bw = cell.backward
    if bw is None or scan != "sequential" or remat:
        return "autodiff"
    return "manual" if (backend or jax.default_backend()) in bw.faster_on else "autodiff"


# --------------------------------------------------------------------------- drivers

def forward_states(cell, weights, carry, xs, lengths, reverse, unroll=1, starts=None):
    """Time-major forward ``xs (T, B, F)``; returns ``(ys, final, states)`` where
    ``states`` stacks every carry as a tuple of ``(T, B, ...)`` arrays (frozen past each
    length).  ``starts (T, B)`` (processing order, :func:`rnnjax.engine.inputs.segment_starts`)
    sets the carry back to ``carry`` before a step."""
    if reverse:
        xs = flip_sequences(xs, lengths)
    T = xs.shape[0]
    live = None if lengths is None else jnp.arange(T)[:, None] < lengths[None, :]
    step = jax.vmap(cell.step, in_axes=(None, 0, 0))
    kind = type(carry)
    carry0 = tuple(carry)

    def body(state, inp):
        x_t, live_t, start_t = inp
        state = reset_to(start_t, carry0, state)
        new, _ = step(weights, kind(*state), x_t)
        new = tuple(where_live(live_t, n, o) for n, o in zip(new, state))
        return new, new

    final, states = lax.scan(body, carry0, (xs, live, starts), unroll=unroll)
    output = cell.backward.output
    ys = states[0] if output is None else output(states)
    if live is not None:
        ys = jnp.where(live[..., None], ys, 0.0)
    if reverse:
        ys = flip_sequences(ys, lengths)
    return ys, kind(*final), states


class Stored(NamedTuple):
    """What the forward pass (:func:`forward_states`) leaves for the reverse sweep,
    time-major: ``xs (T, B, F)`` in the order the steps read them (flipped within each
    length for ``reverse``), the initial ``carry`` (leaves ``(B, ...)``), the stacked
    ``states`` (a tuple of ``(T, B, ...)``), ``lengths (B,)`` or None and ``starts (T,
    B)`` or None (:func:`rnnjax.engine.inputs.segment_starts`)."""

    xs: Any
    carry: Any
    states: Any
    lengths: Any = None
    starts: Any = None


def backward_sweep(cell, weights, stored: Stored, dys, dfinal, spec: Spec, *,
                   chunk: int = CHUNK, with_deltas: bool = False):
    """Time-major reverse sweep over ``stored`` (:class:`Stored`) with the options of
    ``spec`` (``reverse``, ``truncate``, ``unroll`` of the :class:`rnnjax.engine.spec.Spec`
    the engine table resolved); ``dys (T, B, O)`` and ``dfinal`` (the final carry's
    gradient) are the cotangents.  Returns ``(d_weights, d_xs, d_carry, deltas)``
    (``deltas`` stacked over time only if ``with_deltas``, else None).  Before a start
    the step read the initial carry, so the carry gradient it emits goes to the
    initial carry, not to the step before."""
    bwd = cell.backward
    xs, states, lengths, starts = stored.xs, stored.states, stored.lengths, stored.starts
    reverse, truncate, unroll = spec.reverse, spec.truncate, spec.unroll
    carry0 = tuple(stored.carry)
    T = xs.shape[0]
    t = jnp.arange(T)
    live = None if lengths is None else t[:, None] < lengths[None, :]
    cut = None if truncate is None else (t % truncate == 0) & (t > 0)
    if reverse:
        dys = flip_sequences(dys, lengths)
    recompute = bwd.recompute(weights)  # weights stacked once, outside the chunk loop

    def body(acc, inp):
        g, g0 = acc
        g, delta = bwd.body(weights, g, inp[:-2])
        cut_t, start_t = inp[-2:]
        if start_t is not None:  # the step read the initial carry: its gradient goes there
            g0 = tuple(a + where_live(start_t, b, 0.0) for a, b in zip(g0, g))
            g = tuple(where_live(start_t, 0.0, b) for b in g)
        # truncation cuts the path to the step before, not a reset's path to the initial
        # carry (a segment's first step always reaches its initial carry, as run alone)
        return (tuple(cut_at(cut_t, b) for b in g), g0), delta

    def one_chunk(acc, inp):
        g, g0, grads = acc
        xs_c, cur, before, dys_c, live_c, cut_c, start_c = inp
        prev = tuple(jnp.concatenate([b[None], s[:-1]]) for b, s in zip(before, cur))
        if start_c is not None:
            prev = tuple(jnp.where(start_c[..., None], c[None], p) for c, p in zip(carry0, prev))
        res = recompute(xs_c, prev, cur)
        (g, g0), deltas = lax.scan(body, (g, g0), tuple(res) + (dys_c, live_c, cut_c, start_c),
                                   reverse=True, unroll=min(unroll, xs_c.shape[0]))
        d_grads, dxs = bwd.grads(weights, deltas, xs_c, prev)
        grads = {k: v + d_grads[k] if k in d_grads else v for k, v in grads.items()}
        return (g, g0, grads), (dxs, deltas if with_deltas else None)

    if T == 0:  # no step: the carry's gradient passes through, nothing else has one
        return (jax.tree.map(jnp.zeros_like, dict(weights)), jnp.zeros_like(xs), dfinal,
                None)
    K = min(chunk, T)
    n, r = divmod(T, K)
    seqs = (xs, states, dys, live, cut, starts)
    acc = (tuple(dfinal), tuple(jnp.zeros_like(c) for c in carry0),
           jax.tree.map(jnp.zeros_like, dict(weights)))
    outs = []
    if r:  # the last T % K steps first, as one shorter chunk
        tail = jax.tree.map(lambda a: a[n * K:], seqs)
        before = tuple(s[n * K - 1] for s in states) if n else carry0
        acc, out = one_chunk(acc, tail[:2] + (before,) + tail[2:])
        outs.append(out)
    if n:
        head = jax.tree.map(lambda a: a[:n * K].reshape((n, K) + a.shape[1:]), seqs)
        before = tuple(jnp.concatenate([c[None], s[K - 1:(n - 1) * K:K]])
                       for c, s in zip(carry0, states))
        acc, out = lax.scan(one_chunk, acc, head[:2] + (before,) + head[2:], reverse=True)
        outs.insert(0, jax.tree.map(lambda a: a.reshape((n * K,) + a.shape[2:]), out))
    g, g0, grads = acc
    dxs, deltas = (jax.tree.map(lambda *a: jnp.concatenate(a), *outs) if len(outs) > 1
                   else outs[0])
    if reverse:
        dxs = flip_sequences(dxs, lengths)
    return grads, dxs, type(dfinal)(*(a + b for a, b in zip(g, g0))), deltas


def _param_grads(cell, weights, prepare_vjp, stored: Stored, dys, dfinal, spec: Spec,
                 chunk: int = CHUNK):
    """The reverse sweep over ``stored`` (whose ``xs`` are in the caller's time order),
    mapped back to the params through ``prepare``'s VJP (kept from the forward, so
    ``prepare`` runs once per pass): ``(d_params, d_xs, d_carry)``."""
    if spec.reverse:
        stored = stored._replace(xs=flip_sequences(stored.xs, stored.lengths))
    d_w, dxs, dcarry, _ = backward_sweep(cell, weights, stored, dys, dfinal, spec,
                                         chunk=chunk)
    (d_params,) = prepare_vjp(type(weights)(d_w) if isinstance(weights, dict) else d_w)
    return d_params, dxs, dcarry


def _like(tree, ref):
    return jax.tree.map(lambda a, r: a.astype(jnp.result_type(r)), tree, ref)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _manual_scan(cell, spec, params, carry, xs, lengths, starts):
    ys, final, _ = forward_states(cell, cell.prepare(params), carry, xs, lengths, spec.reverse,
                                  spec.unroll, starts)
    return ys, final


def _manual_scan_fwd(cell, spec, params, carry, xs, lengths, starts):
    weights, prepare_vjp = jax.vjp(cell.prepare, params)
    ys, final, states = forward_states(cell, weights, carry, xs, lengths, spec.reverse,
                                       spec.unroll, starts)
    return (ys, final), (params, weights, prepare_vjp, Stored(xs, carry, states, lengths,
                                                              starts))


def _manual_scan_bwd(cell, spec, res, cotangents):
    params, weights, prepare_vjp, stored = res
    dys, dfinal = cotangents
    grads, dxs, dcarry = _param_grads(cell, weights, prepare_vjp, stored, dys, dfinal, spec)
    return (_like(grads, params), _like(dcarry, stored.carry), dxs.astype(stored.xs.dtype),
            None, None)


_manual_scan.defvjp(_manual_scan_fwd, _manual_scan_bwd)


def scan_manual(cell, params, carry, xs, lengths=None, *, reverse=False, truncate=None,
                unroll=1, resets=None):
    """Drop-in for :func:`rnnjax.engine.sequential.scan_cell` whose gradient is the cell's
    hand-written BPTT (a ``jax.custom_vjp``).  Time-major ``xs (T, B, F)``; carry leaves
    ``(B, H)``; ``params``, ``carry`` and ``xs`` in one floating dtype (:func:`rnnjax.run`
    casts them by its one rule, :func:`rnnjax.engine.inputs.common_float_dtype`).  Used by
    ``rnnjax.run(..., grad="manual")``."""
    check_manual(cell)
    starts = None if resets is None else segment_starts(resets, lengths, reverse)
    spec = Spec("manual", reverse=bool(reverse), unroll=unroll, truncate=truncate)
    return _manual_scan(cell, spec, params, carry, xs, lengths, starts)


@partial(jax.jit, static_argnames=("cell", "spec", "chunk"))
def _bptt_flat(cell, params, carry, xs, lengths, resets, dys, dfinal, *, spec, chunk):
    starts = None if resets is None else segment_starts(resets, lengths, spec.reverse)
    weights, prepare_vjp = jax.vjp(cell.prepare, params)
    ys, final, states = forward_states(cell, weights, carry, xs, lengths, spec.reverse, 1,
                                       starts)
    grads = _param_grads(cell, weights, prepare_vjp, Stored(xs, carry, states, lengths, starts),
                         dys, dfinal, spec, chunk)
    return (ys, final) + grads


def bptt(cell: Cell, params, xs, dys=None, dcarry=None, *, carry=None, lengths=None,
         resets=None, truncate: int | None = None, reverse: bool = False,
         chunk: int = CHUNK) -> BPTT:
    """Run ``cell`` forward over ``xs`` and backpropagate by hand (``cell.backward``).

    Args:
      cell: a cell with a hand-written backward (``cell.backward is not None``).
      params: its params.
      xs: ``(*batch, T, F)`` as for :func:`rnnjax.run`.
      dys: ``dL/dy_t`` of shape ``(*batch, T, O)``; zeros when None.
      dcarry: ``dL/d(final carry)`` with the structure of the carry; zeros when None.
      carry, lengths, resets, truncate, reverse: as for :func:`rnnjax.run`.
      chunk: steps per chunk of the backward sweep (its gates are recomputed and its
        weight gradients accumulated in one matmul each); the result does not depend on it.

    Returns:
      :class:`BPTT` ``(ys, final_carry, d_params, d_xs, d_carry)``: the gradients of
      ``L = sum(dys * ys) + sum(dcarry * final_carry)`` (any loss, by the chain rule)
      with respect to the params, every input ``x_t`` and the initial carry.
    """
    check_run_inputs(cell, params, xs, carry, lengths, False, truncate, 1, resets)
    check_manual(cell)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    xs = jnp.asarray(xs)
    batch_shape, (T, O) = xs.shape[:-2], (xs.shape[-2], cell.output_size)
    nb = len(batch_shape)
    xs_t = to_scan_layout(xs, False, nb)
    B = xs_t.shape[1]
    carry = (cell.initial_carry((B,), xs.dtype) if carry is None
             else flatten_batch(carry, batch_shape))
    if dys is None:
        dys_t = jnp.zeros((T, B, O), xs.dtype)
    else:
        dys = jnp.asarray(dys)
        if dys.shape != batch_shape + (T, O):
            raise ValueError(f"dys must have the shape of ys {batch_shape + (T, O)}, "
                             f"got {dys.shape}")
        dys_t = to_scan_layout(dys, False, nb)
    if dcarry is None:
        dcarry = jax.tree.map(jnp.zeros_like, carry)
    else:
        if jax.tree.structure(dcarry) != jax.tree.structure(carry):
            raise ValueError(f"dcarry must have the structure of the carry "
                             f"{jax.tree.structure(carry)}, got {jax.tree.structure(dcarry)}")
        dcarry = flatten_batch(dcarry, batch_shape)
    if lengths is not None:
        lengths = jnp.asarray(lengths).reshape(B)
    if resets is not None:
        resets = to_scan_layout(jnp.asarray(resets)[..., None], False, nb)[..., 0]
    ys, final, grads, dxs, dcarry0 = _bptt_flat(
        cell, params, carry, xs_t, lengths, resets, dys_t, dcarry,
        spec=Spec("manual", reverse=bool(reverse), truncate=truncate), chunk=chunk)
    ys, dxs = (from_scan_layout(a, False, batch_shape) for a in (ys, dxs))
    return BPTT(ys, unflatten_batch(final, batch_shape), grads, dxs,
                unflatten_batch(dcarry0, batch_shape))

