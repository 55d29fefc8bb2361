r"""Chunkwise-parallel kernels of matrix-state linear recurrences, one head, one chunk.

The cells' :class:`rnnjax.Chunk` forms are built from these; the engine that scans them
over chunks is :mod:`rnnjax.engine.chunked`.  Every kernel takes one chunk of ``c``
steps of one head, the state ``S_in (DK, DV)`` before it, the initial state ``S0``
(where ``starts`` marks a reset the state before that step is ``S0``) and ``live``
(dead steps are the identity), and returns the outputs ``o_t = S_t^T q_t`` and the state
after the chunk, equal to the step-by-step recurrence up to rounding.

Notation (per chunk): ``b_t = sum_{s <= t} g_s`` the cumulative log decay;
``seg_t`` the segment of step ``t`` (a reset opens a new one); ``j ~ t`` when ``j <=
t`` and both are in one segment; ``B_t`` the state the segment of ``t`` starts from
(``S_in`` for the first segment, ``S0`` after a reset) and ``beta_t`` (``b`` just
before that segment, 0 for the first).  Every exponent below is ``<= 0``: the decays
are taken pairwise, ``exp(b_t - b_j)``, never as ``exp(b_t) exp(-b_j)``.

* :func:`decay_chunk`, ``S_t = diag(a_t) S_{t-1} + k_t v_t^T`` (GLA, retention,
  Mamba-2's SSD; flash-linear-attention ``fla/ops/gla/naive.py``, ``ops/retention``,
  ``ops/simple_gla``; state-spaces/mamba ``mamba_ssm/modules/ssd_minimal.py``)::

      o_t = sum_{j ~ t} (q_t . (exp(b_t - b_j) * k_j)) v_j + (exp(b_t - beta_t) * q_t)^T B_t

* :func:`stabilized_chunk`, the mLSTM (NX-AI/xlstm ``blocks/mlstm/backends.py``
  ``parallel_stabilized_simple`` / ``chunkwise_simple``; NX-AI/mlstm_kernels
  ``mlstm_kernels/torch/chunkwise/native``): scalar log forget ``g``, log input gate
  ``i``, state kept divided by ``exp(m_t)``, with the recurrent form's stabiliser
  ``m_t = max(g_t + m_{t-1}, i_t)`` in closed form::

      m_t  = b_t + max(m_B - beta_t, max_{j ~ t} (i_j - b_j))
      o_t  = sum_{j ~ t} exp(b_t - b_j + i_j - m_t) (q_t . k_j) v_j
             + exp(b_t - beta_t + m_B - m_t) B_t^T q_t

* :func:`delta_chunk`, ``S_t = a_t (I - beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T``
  (DeltaNet, Gated DeltaNet; the WY/UT form of flash-linear-attention
  ``fla/ops/delta_rule/naive.py`` ``delta_rule_chunkwise`` and
  ``fla/ops/gated_delta_rule/chunk.py``): with pseudo-values ``u_t``,
  ``S_t = exp(b_t - beta_t) B_t + sum_{j ~ t} exp(b_t - b_j) k_j u_j^T`` where ``U``
  solves the unit lower-triangular system (the UT transform)::

      u_t + beta_t sum_{j ~ t, j < t} exp(b_t - b_j) (k_t . k_j) u_j
          = beta_t (v_t - exp(b_t - beta_t) B_t^T k_t)
      o_t = exp(b_t - beta_t) B_t^T q_t + sum_{j ~ t} exp(b_t - b_j) (q_t . k_j) u_j
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

__all__ = ["decay_chunk", "delta_chunk", "segments", "stabilized_chunk", "unit_lower_solve"]


def segments(g, starts, live):
    """The chunk's bookkeeping: ``b (c, d)`` cumulative log decay, ``before (c, d)`` the
    ``b`` just before each step's segment, ``first (c,)`` whether the step is in the
    chunk's first segment (its base is ``S_in``), ``mask (c, c)`` ``j ~ t`` (live
    ``j``)."""
    c = g.shape[0]
    idx = jnp.arange(c)
    b = jnp.cumsum(g, 0)
    opened = jax.lax.cummax(jnp.where(starts, idx, -1), axis=0)  # last reset <= t
    first = opened < 0
    before = jnp.where(first[:, None], 0.0, (b - g)[jnp.maximum(opened, 0)])
    mask = ((opened[:, None] == opened[None, :]) & (idx[:, None] >= idx[None, :])
            & live[None, :])
    return b, before, first, mask


def _pairwise(b, mask):
    """``exp(b_t - b_j)`` where ``mask``, else 0: ``(c, c, d)``."""
    diff = b[:, None, :] - b[None, :, :]
    return jnp.where(mask[..., None], jnp.exp(jnp.where(mask[..., None], diff, 0.0)), 0.0)


def _base(first, x_in, x0):
    """Per step, ``x_in`` (first segment) or ``x0``: ``(c, ...)``."""
    return jnp.where(first.reshape((-1,) + (1,) * (x_in.ndim - 1)), x_in, x0)


def decay_chunk(q, k, v, g, S_in, S0, starts, live):
    """``(o (c, DV), S_out (DK, DV))`` of ``S_t = diag(exp(g_t)) S_{t-1} + k_t v_t^T``;
    ``q, k (c, DK)``, ``v (c, DV)``, ``g (c, DK)`` or ``(c, 1)`` (a scalar decay)."""
    g = jnp.where(live[:, None], g, 0.0)
    b, before, first, mask = segments(g, starts, live)
    decay = _pairwise(b, mask)  # (c, c, d)
    if g.shape[1] == 1:
        A = (q @ k.T) * decay[..., 0]
    else:
        A = jnp.einsum("td,jd,tjd->tj", q, k, decay)
    qw = q * jnp.exp(b - before)
    o = A @ v + _base(first, qw @ S_in, qw @ S0)
    S_end = jnp.where(first[-1], S_in, S0)
    k_end = k * decay[-1]  # (c, DK): exp(b_end - b_j) k_j for j ~ end
    S_out = jnp.exp(b[-1] - before[-1])[:, None] * S_end + k_end.T @ v
    return o, S_out


def stabilized_chunk(q, k, v, g, i, S_in, m_in, S0, m0, starts, live):
    """``(o (c, DV), m (c,), S_out, m_out)`` of the stabilised exponential-gate
    recurrence (module docstring); ``g, i (c,)`` log forget and log input gates; the
    state ``S`` (the mLSTM's ``[C, n]``) is kept divided by ``exp(m)``."""
    g = jnp.where(live, g, 0.0)
    b, before, first, mask = segments(g[:, None], starts, live)
    b, before = b[:, 0], before[:, 0]
    m_base = jnp.where(first, m_in, m0)
    gain = i - b
    inner = jnp.max(jnp.where(mask, gain[None, :], -jnp.inf), axis=1)  # (c,)
    m = b + jnp.maximum(m_base - before, inner)
    expo = jnp.where(mask, b[:, None] + gain[None, :] - m[:, None], 0.0)
    D = jnp.where(mask, jnp.exp(expo), 0.0)
    w = jnp.exp(b - before + m_base - m)
    o = ((q @ k.T) * D) @ v + w[:, None] * _base(first, q @ S_in, q @ S0)
    S_end = jnp.where(first[-1], S_in, S0)
    S_out = w[-1] * S_end + (k * D[-1][:, None]).T @ v
    return o, m, S_out, m[-1]


def unit_lower_solve(L, rhs, block: int = 16):
    """``L^{-1} rhs`` for a unit lower-triangular ``L (c, c)``, by blocks of ``block``
    rows: a triangular solve per diagonal block and matmuls for the rest (block forward
    substitution, as fla's ``solve_tril`` merges 16 x 16 inverses).  XLA:CPU's one-piece
    triangular solve was 20-40x slower than the whole sequential scan at ``c = 64``
    (benchmarks/README.md); by blocks it is a few matmuls."""
    c = L.shape[0]
    out = []
    for i in range(0, c, block):
        r = rhs[i:i + block]
        if out:
            r = r - L[i:i + block, :i] @ jnp.concatenate(out)
        out.append(solve_triangular(L[i:i + block, i:i + block], r, lower=True,
                                    unit_diagonal=True))
    return jnp.concatenate(out)


def delta_chunk(q, k, v, g, beta, S_in, S0, starts, live):
    """``(o (c, DV), S_out (DK, DV))`` of the (gated) delta rule ``S_t = exp(g_t) (I -
    beta_t k_t k_t^T) S_{t-1} + beta_t k_t v_t^T`` by the UT transform; ``g, beta
    (c,)``."""
    g = jnp.where(live, g, 0.0)
    beta = jnp.where(live, beta, 0.0)
    b, before, first, mask = segments(g[:, None], starts, live)
    decay = _pairwise(b, mask)[..., 0]  # (c, c)
    wb = jnp.exp(b - before)  # (c, 1)
    kb = k * wb
    rhs = beta[:, None] * (v - _base(first, kb @ S_in, kb @ S0))
    strict = jnp.tril(jnp.ones_like(decay), -1)
    L = jnp.eye(k.shape[0], dtype=k.dtype) + beta[:, None] * (k @ k.T) * decay * strict
    u = unit_lower_solve(L, rhs)
    qb = q * wb
    o = ((q @ k.T) * decay) @ u + _base(first, qb @ S_in, qb @ S0)
    S_end = jnp.where(first[-1], S_in, S0)
    S_out = wb[-1, 0] * S_end + (k * decay[-1][:, None]).T @ u
    return o, S_out
