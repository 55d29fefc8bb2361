"""The sequential engine: ``jax.lax.scan`` over time, one ``vmap``-ed step per time step.

Variable lengths freeze the carry once ``t >= length`` and zero the padded outputs;
``reverse`` reverses each sequence inside its own length; resets set the carry back to
the initial one; ``truncate`` cuts the gradient every ``k`` steps; ``remat`` keeps only
``sqrt(T)`` carries for the backward pass.  Every other engine follows its semantics
exactly.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.engine.inputs import flip_sequences, reset_to, segment_starts

__all__ = ["scan_cell"]


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
