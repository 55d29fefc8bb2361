"""Linear attention as a recurrence with a matrix state and a decay: gated linear
attention (GLA; Yang et al. 2024, "Gated Linear Attention Transformers with
Hardware-Efficient Training") and RetNet's retention (Sun et al. 2023, "Retentive
Network: A Successor to Transformer for Large Language Models").

Both are diagonal linear recurrences of the state ``S (NH, DK, DV)`` (the decay acts on
each entry), declared :class:`rnnjax.Linear` (``kind="diagonal"``) on the flattened
state so :func:`rnnjax.run` can use the associative scan, and carry their chunkwise
form (:class:`rnnjax.Chunk`, :func:`rnnjax.engine.chunk_forms.decay_chunk`: the chunk
algorithm of flash-linear-attention ``fla/ops/gla/naive.py`` ``naive_chunk_gla`` and
``fla/ops/retention/naive.py``) for ``scan="chunked"``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.cells.linear import diagonal_step
from rnnjax.core.cell import Cell, Chunk, HiddenState, Linear, identity, zeros_carry
from rnnjax.core.checks import check_positive_int
from rnnjax.engine.chunk_forms import decay_chunk

__all__ = ["gla", "retention", "retention_decays", "xavier_uniform"]


def xavier_uniform(gain: float = 2 ** -2.5):
    """``U(-a, a)``, ``a = gain sqrt(6 / (fan_in + fan_out))`` for a ``(fan_out, fan_in)``
    weight (``torch.nn.init.xavier_uniform_``; fla's layers use ``gain = 2^-2.5``)."""

    def init(key, shape, dtype=float):
        a = gain * math.sqrt(6.0 / (shape[0] + shape[1]))
        return jax.random.uniform(key, shape, dtype, -a, a)

    return init


def retention_decays(num_heads: int):
    """RetNet's per-head decays ``gamma_h = 1 - 2^(-5 - h)``, ``h = 0..NH-1``
    (fla ``ops/retention/naive.py``)."""
    return 1.0 - 2.0 ** (-5.0 - jnp.arange(num_heads, dtype=float))


def _check_heads(hidden_size, num_heads):
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size must be a multiple of num_heads {num_heads}, "
                         f"got {hidden_size}")


def _matrix_state_cell(name, E, NH, init, qkv_decay, recurrent):
    """A cell ``S_t = a_t * S_{t-1} + k_t v_t^T``, ``y_t = S_t^T q_t / sqrt(DK)`` per head,
    from ``qkv_decay(w, x) -> (q, k, v (NH, D), a (NH, DK) or (NH, 1))``; the state is
    carried flattened, ``HiddenState(h (NH * D * D,))``."""
    D = E // NH

    def coeffs(w, x):
        _, k, v, a = qkv_decay(w, x)
        b = k[:, :, None] * v[:, None, :]
        return jnp.broadcast_to(a[:, :, None], b.shape).reshape(-1), b.reshape(-1)

    def readout(w, h, x):
        q = qkv_decay(w, x)[0].astype(h.dtype)
        return jnp.einsum("hk,hkv->hv", q / math.sqrt(D), h.reshape(NH, D, D)).reshape(E)

    def chunk_run(w, carry, carry0, xs, starts, live):
        q, k, v, a = jax.vmap(lambda x: qkv_decay(w, x))(xs)  # (c, NH, .)
        g = jnp.log(jnp.broadcast_to(a, a.shape).astype(q.dtype))
        o, S = jax.vmap(decay_chunk, in_axes=(1, 1, 1, 1, 0, 0, None, None))(
            q / math.sqrt(D), k, v, g, carry.h.reshape(NH, D, D),
            carry0.h.reshape(NH, D, D), starts, live)
        return HiddenState(S.reshape(-1)), jnp.swapaxes(o, 0, 1).reshape(-1, E)

    return Cell(init=init, prepare=identity, initial_carry=zeros_carry(HiddenState,
                                                                       NH * D * D),
                step=diagonal_step(coeffs, readout),
                input_size=lambda p: p["W_q"].shape[-1], output_size=E, name=name,
                recurrent_matrix=recurrent,
                linear=Linear(kind="diagonal", coeffs=coeffs, readout=readout),
                chunk=Chunk(chunk_run))


def gla(hidden_size: int, num_heads: int = 1, *, gate_low_rank_dim: int = 16,
        gate_logit_normalizer: float = 16.0) -> Cell:
    r"""Gated linear attention (Yang et al. 2024) as a recurrence: a matrix memory per
    head with a data-dependent diagonal decay over its key dimension.

    Follows fla-org/flash-linear-attention ``fla/ops/gla/naive.py``
    (``naive_recurrent_gla``) with the gate of ``fla/layers/gla.py`` (a low-rank
    ``gk_proj``, ``logsigmoid``, divided by ``gate_logit_normalizer``).  Equations (one
    example, per head, ``E = hidden_size = NH * D``, ``D = DK = DV``)::

        q_t, k_t, v_t = W_q x_t, W_k x_t, W_v x_t                 (NH, D) each
        log alpha_t = logsigmoid(W_g2 (W_g1 x_t) + b_g) / gate_logit_normalizer  (NH, D)
        S_t = diag(alpha_t) S_{t-1} + k_t v_t^T                    (D_k, D_v)
        y_t = S_t^T q_t / sqrt(D)                                  heads concatenated

    Initialisation (fla's layers, ``_initialize_weights``): every weight ``W_q, W_k, W_v
    (E, F)``, ``W_g1 (r, F)``, ``W_g2 (E, r)`` Xavier-uniform with gain ``2^-2.5``
    (:func:`xavier_uniform`), ``b_g = 0``; ``r = gate_low_rank_dim``.  The carry starts
    at zero.

    Deviations: the layer's feature map, short convolutions, output norm and swish
    output gate and its ``expand_k = 0.5`` key size are not part of the cell (here ``DK
    = DV``; ``q, k, v`` are linear maps of the input).  The state is carried flattened,
    ``HiddenState(h (NH * D * D,))`` (row-major ``(NH, DK, DV)``), and declared
    ``Linear(kind="diagonal")``: ``a_t`` is ``alpha_t`` repeated over ``DV``, ``b_t =
    k_t v_t^T``.  ``recurrent_matrix`` is the decay at ``x = 0``, ``diag(sigmoid(b_g)
    ^ (1 / gate_logit_normalizer))`` over the flattened state.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.gla(8, num_heads=2)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> ys, carry = rnnjax.run(cell, params, jnp.ones((2, 5, 3)))
        >>> ys.shape, carry.h.shape
        ((2, 5, 8), (2, 32))
    """
    _check_heads(hidden_size, num_heads)
    check_positive_int("gate_low_rank_dim", gate_low_rank_dim)
    if not float(gate_logit_normalizer) > 0:
        raise ValueError(f"gate_logit_normalizer must be positive, "
                         f"got {gate_logit_normalizer!r}")
    E, NH, r = hidden_size, num_heads, gate_low_rank_dim
    D = E // NH
    xavier = xavier_uniform()

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 5)
        return {"W_q": xavier(k[0], (E, input_size)), "W_k": xavier(k[1], (E, input_size)),
                "W_v": xavier(k[2], (E, input_size)), "W_g1": xavier(k[3], (r, input_size)),
                "W_g2": xavier(k[4], (E, r)), "b_g": jnp.zeros((E,))}

    def qkv_decay(w, x):
        q, k, v = (w[n] @ x for n in ("W_q", "W_k", "W_v"))
        log_a = jax.nn.log_sigmoid(w["W_g2"] @ (w["W_g1"] @ x) + w["b_g"])
        a = jnp.exp(log_a / gate_logit_normalizer)
        return q.reshape(NH, D), k.reshape(NH, D), v.reshape(NH, D), a.reshape(NH, D)

    def recurrent(p):
        a = jnp.exp(jax.nn.log_sigmoid(p["b_g"]) / gate_logit_normalizer).reshape(NH, D)
        return jnp.diag(jnp.broadcast_to(a[:, :, None], (NH, D, D)).reshape(-1))

    return _matrix_state_cell("gla", E, NH, init, qkv_decay, recurrent)


def retention(hidden_size: int, num_heads: int = 1) -> Cell:
    r"""Retention of RetNet (Sun et al. 2023) in its recurrent form: a matrix memory per
    head with a fixed scalar decay.

    Follows fla-org/flash-linear-attention ``fla/ops/retention/naive.py``
    (``naive_retention``, the parallel form ``o_t = sum_{s <= t} gamma^(t-s) (q_t . k_s
    / sqrt(D)) v_s``) written as its recurrence.  Equations (one example, per head ``h``,
    ``E = hidden_size = NH * D``)::

        q_t, k_t, v_t = W_q x_t, W_k x_t, W_v x_t            (NH, D) each
        gamma_h = 1 - 2^(-5 - h)                             fixed, not trained
        S_t = gamma_h S_{t-1} + k_t v_t^T                     (D_k, D_v)
        y_t = S_t^T q_t / sqrt(D)                            heads concatenated

    Initialisation: ``W_q, W_k, W_v (E, F)`` Xavier-uniform with gain ``2^-2.5`` (fla's
    layers).  The carry starts at zero.

    Deviations: the layer's rotary (xPos) position embedding, group norm, swish output
    gate and ``expand_v = 2`` value size are not part of the cell (``DK = DV``; ``q, k,
    v`` are linear maps of the input).  The state is carried flattened,
    ``HiddenState(h (NH * D * D,))``, and declared ``Linear(kind="diagonal")`` (``a_t =
    gamma``, ``b_t = k_t v_t^T``); ``recurrent_matrix`` is ``diag(gamma)`` over the
    flattened state.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.retention(8, num_heads=2)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> rnnjax.run(cell, params, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 8)
    """
    _check_heads(hidden_size, num_heads)
    E, NH = hidden_size, num_heads
    D = E // NH
    xavier = xavier_uniform()

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 3)
        return {"W_q": xavier(k[0], (E, input_size)), "W_k": xavier(k[1], (E, input_size)),
                "W_v": xavier(k[2], (E, input_size))}

    def qkv_decay(w, x):
        q, k, v = (w[n] @ x for n in ("W_q", "W_k", "W_v"))
        gamma = retention_decays(NH).astype(q.dtype)
        return q.reshape(NH, D), k.reshape(NH, D), v.reshape(NH, D), gamma[:, None]

    def recurrent(p):
        g = retention_decays(NH).astype(p["W_q"].dtype)
        return jnp.diag(jnp.broadcast_to(g[:, None], (NH, D * D)).reshape(-1))

    return _matrix_state_cell("retention", E, NH, init, qkv_decay, recurrent)
