r"""The chunkwise-parallel engine (``rnnjax.run(..., scan="chunked", chunk=64)``).

For a linear recurrence with a matrix state per head, ``S_t = A_t S_{t-1} + U_t``
(``A_t`` a scalar, a diagonal or a Householder-like decay), time is cut into ``n =
ceil(T / c)`` chunks of ``c`` steps.  Inside a chunk the recurrence is unrolled into
matmuls (its parallel, attention-like form); across chunks a short ``lax.scan`` of ``n``
steps carries the state (the chunk algorithm of flash-linear-attention, Yang et al.
2024; the SSD algorithm of Mamba-2, state-spaces/mamba ``modules/ssd_minimal.py``; the
chunkwise form of the mLSTM, NX-AI/mlstm_kernels).  With ``q_t, k_t, v_t`` the step's
query, key and value and ``b_t`` the cumulative log decay inside the chunk, the
simplest case (a scalar decay ``a_t = exp(g_t)``) reads, for the chunk ``[s, s + c)``::

    S_t = exp(b_t) S_s + sum_{s <= j <= t} exp(b_t - b_j) k_j v_j^T
    o_t = S_t^T q_t = exp(b_t) S_s^T q_t + sum_{s <= j <= t} exp(b_t - b_j) (q_t . k_j) v_j

a ``(c, c)`` masked matrix times ``V`` and one ``(DK, DV)`` matmul per chunk: ``O(T c d
+ T d^2)`` work in ``n`` sequential steps instead of ``T``.  The kernels for each family
(diagonal decay, the mLSTM's stabilised exponential gates, the delta rule's WY/UT form)
are :mod:`rnnjax.engine.chunk_forms`; a cell declares its form as
:class:`rnnjax.Chunk` (``cell.chunk``).

The engine follows :func:`rnnjax.engine.sequential.scan_cell` exactly: ``reverse``
flips each sequence within its length before and after; ``lengths`` make the steps
past a length the identity (``live`` false; outputs zero, the carry frozen); ``resets``
are passed to the chunk as ``starts`` (the state before that step is the initial
carry).  ``T`` need not be a multiple of ``c``: the last chunk is padded with dead
steps.  Memory: autodiff keeps the ``n`` carries between chunks (``O((T / c) d^2)``
per head) and each chunk's ``(c, c)`` matrices.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnjax.engine.inputs import flip_sequences, segment_starts

__all__ = ["CHUNK", "scan_chunked"]

#: the default number of steps per chunk
CHUNK = 64


def scan_chunked(cell, weights, carry, xs, lengths=None, *, reverse=False, resets=None,
                 chunk: int = CHUNK):
    """Run ``cell`` (which declares ``cell.chunk``) over time-major, batch-flattened
    inputs ``xs (T, B, F)`` chunk by chunk; ``weights = cell.prepare(params)``, carry
    leaves ``(B, ...)``, ``lengths (B,)`` or None, ``resets (T, B)`` or None.  Returns
    ``(ys (T, B, O), final carry)``, equal to the sequential engine's up to rounding."""
    T, B = xs.shape[:2]
    c = max(1, min(int(chunk), T))
    n = -(-T // c)
    pad = n * c - T
    t = jnp.arange(T)[:, None]
    live = jnp.broadcast_to(t < (T if lengths is None else lengths[None, :]), (T, B))
    starts = (jnp.zeros((T, B), bool) if resets is None
              else segment_starts(resets, lengths, reverse))
    if reverse:
        xs = flip_sequences(xs, lengths)

    def blocks(a):  # (T, B, ...) -> (n, B, c, ...), padded with zeros / False
        a = jnp.concatenate([a, jnp.zeros((pad,) + a.shape[1:], a.dtype)]) if pad else a
        return jnp.swapaxes(a.reshape((n, c) + a.shape[1:]), 1, 2)

    run = jax.vmap(cell.chunk.run, in_axes=(None, 0, 0, 0, 0, 0))
    carry0 = carry

    def body(state, inp):
        x, st, lv = inp
        new, ys = run(weights, state, carry0, x, st, lv)
        return jax.tree.map(lambda a, o: a.astype(o.dtype), new, state), ys

    final, ys = jax.lax.scan(body, carry, (blocks(xs), blocks(starts), blocks(live)))
    ys = jnp.swapaxes(ys, 1, 2).reshape((n * c,) + ys.shape[1:2] + ys.shape[3:])[:T]
    ys = jnp.where(live[..., None], ys, jnp.zeros_like(ys))
    if reverse:
        ys = flip_sequences(ys, lengths)
    return ys, final
