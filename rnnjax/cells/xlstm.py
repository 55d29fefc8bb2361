"""xLSTM's recurrences (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory"):
the mLSTM's matrix memory with exponential gating and the max-stabiliser, as a per-step
cell and in its parallel (whole-sequence) form, and the sLSTM's scalar memory with
exponential gating and head-wise (block-diagonal) recurrent weights."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.core import initializers
from rnnjax.core.cell import Cell, Chunk, identity
from rnnjax.core.checks import check_choice, check_nonneg_float, check_positive_int
from rnnjax.engine.chunk_forms import stabilized_chunk

__all__ = ["MLSTMState", "SLSTMState", "mlstm", "mlstm_parallel", "slstm",
           "slstm_forget_bias"]

FORGET_GATES = ("sigmoid", "exp")


class MLSTMState(NamedTuple):
    """Carry of the mLSTM, per head: matrix memory ``C (NH, DH, DH)`` (stored as ``sum
    k v^T``, the reference's layout), normaliser ``n (NH, DH)``, stabiliser ``m (NH,)``;
    ``C`` and ``n`` are kept divided by ``exp(m)``.  Each leaf is flattened row-major
    to a vector, ``C (NH * DH * DH,)``, ``n (NH * DH,)``, ``m (NH,)``: the carry
    convention (leaves ``batch + (features,)``) that every engine and analysis reads."""

    C: jax.Array
    n: jax.Array
    m: jax.Array


def _check_heads(hidden_size, num_heads):
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size must be a multiple of num_heads {num_heads}, "
                         f"got {hidden_size}")


def _projections(w, x, NH):
    """``q, k, v (NH, DH)`` and the gate pre-activations ``i~, f~ (NH,)`` of one step."""
    q, k, v = w["W_q"] @ x, w["W_k"] @ x, w["W_v"] @ x
    qkv = jnp.concatenate([q, k, v])
    i_pre = w["W_i"] @ qkv + w["b_i"]
    f_pre = w["W_f"] @ qkv + w["b_f"]
    return (q.reshape(NH, -1), k.reshape(NH, -1), v.reshape(NH, -1), i_pre, f_pre)


def _log_forget(f_pre, forget_gate):
    return jax.nn.log_sigmoid(f_pre) if forget_gate == "sigmoid" else f_pre


def _head_norm(w, h, eps=1e-5):
    """xLSTM ``MultiHeadLayerNorm``: layer norm over each head's ``DH`` features
    (``group_norm`` with ``NH`` groups, biased variance, ``eps`` 1e-5), weight ``1 +
    norm`` (``residual_weight``), no bias; ``h (..., NH, DH)`` -> ``(..., NH * DH)``."""
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    out = (h - mu) / jnp.sqrt(var + eps)
    out = out.reshape(h.shape[:-2] + (-1,))
    return out * (1.0 + w["norm"])


def mlstm(hidden_size: int, num_heads: int = 1, *, forget_gate: str = "sigmoid",
          eps: float = 1e-6) -> Cell:
    r"""mLSTM, the matrix-memory cell of xLSTM (Beck et al. 2024), recurrent form.

    Follows NX-AI/xlstm ``xlstm/blocks/mlstm/backends.py``
    (``recurrent_step_stabilized_simple``) inside ``xlstm/blocks/mlstm/cell.py``
    (``mLSTMCell.step``: gates from ``[q, k, v]``, the output ``MultiHeadLayerNorm``).
    Equations (one example, per head, ``E = hidden_size = NH * DH``)::

        q_t, k_t, v_t = W_q x_t, W_k x_t, W_v x_t                       (NH, DH) each
        i~_t = W_i [q_t, k_t, v_t] + b_i,  f~_t = W_f [q_t, k_t, v_t] + b_f   (NH,)
        log f_t = logsigmoid(f~_t)   (forget_gate="sigmoid")   or f~_t   ("exp")
        m_t  = max(log f_t + m_{t-1}, i~_t)                             stabiliser
        f'_t = exp(log f_t + m_{t-1} - m_t),   i'_t = exp(i~_t - m_t)
        C_t  = f'_t C_{t-1} + i'_t (k_t / sqrt(DH)) v_t^T               (DH, DH)
        n_t  = f'_t n_{t-1} + i'_t  k_t / sqrt(DH)                      (DH,)
        h~_t = C_t^T q_t / (max(|n_t . q_t|, exp(-m_t)) + eps)
        y_t  = MultiHeadLayerNorm(h~_t)            layer norm per head, weight 1 + norm

    The paper writes ``C_t = f_t C_{t-1} + i_t v_t k_t^T`` and ``h = C q``; ``C`` here is
    its transpose (the reference's layout).  ``C, n`` are the true memory and normaliser
    times ``exp(-m_t)``, so the exponential input gate never overflows (the stabiliser);
    ``h~`` is unchanged by it except through ``eps``.  Gate order: input, forget (the
    rows of ``W_i``, ``W_f`` are per head).  The carry :class:`MLSTMState` starts at
    zero, ``m_0 = 0`` included, as ``mLSTMCell.step``.

    Initialisation (``mLSTMCell.reset_parameters`` and the layer's ``small_init``):
    ``W_i, W_f (NH, 3E) = 0``; ``b_i ~ N(0, 0.1^2)``; ``b_f = linspace(3, 6, NH)``;
    ``norm = 0`` (weight 1); ``W_q, W_k, W_v (E, F) ~ N(0, 2 / (5 F))``.

    Deviations: the xLSTM *layer* around the cell (up-projection, causal convolution,
    headwise q/k projections of the convolved branch, learnable skip, ``SiLU(z)`` output
    gate, down-projection) is not part of the cell; here ``q, k, v`` are dense
    projections of the input.  :func:`mlstm_parallel` is the same map over a whole
    sequence (``parallel_stabilized_simple``, extended to an initial carry), and the
    cell's chunk form (``scan="chunked"``,
    :func:`rnnjax.engine.chunk_forms.stabilized_chunk`, the chunkwise form of
    NX-AI/mlstm_kernels ``torch/chunkwise/native``) the same map chunk by chunk, with
    the recurrent stabiliser ``m_t`` exactly (closed form per chunk).  The output
    depends on ``q_t``, not on the carry alone: the gradient-flow analyses take
    ``readout="step"``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.mlstm(8, num_heads=2)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> ys, carry = rnnjax.run(cell, params, jnp.ones((2, 5, 3)))
        >>> ys.shape, carry.C.shape, carry.n.shape, carry.m.shape
        ((2, 5, 8), (2, 32), (2, 8), (2, 2))
        >>> par, _ = rnnjax.cells.xlstm.mlstm_parallel(params, jnp.ones((5, 3)), num_heads=2)
        >>> bool(jnp.allclose(par, ys[0], atol=1e-5))
        True
    """
    _check_heads(hidden_size, num_heads)
    check_choice("forget_gate", forget_gate, FORGET_GATES)
    check_nonneg_float("eps", eps)
    E, NH = hidden_size, num_heads
    DH = E // NH

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 4)
        std = math.sqrt(2.0 / (5.0 * input_size))
        normal = initializers.normal(std)
        return {"W_q": normal(k[0], (E, input_size)), "W_k": normal(k[1], (E, input_size)),
                "W_v": normal(k[2], (E, input_size)),
                "W_i": jnp.zeros((NH, 3 * E)), "b_i": 0.1 * jax.random.normal(k[3], (NH,)),
                "W_f": jnp.zeros((NH, 3 * E)), "b_f": jnp.linspace(3.0, 6.0, NH),
                "norm": jnp.zeros((E,))}

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        shape = tuple(batch_shape)
        return MLSTMState(jnp.zeros(shape + (NH * DH * DH,), dtype),
                          jnp.zeros(shape + (NH * DH,), dtype), jnp.zeros(shape + (NH,), dtype))

    def step(w, carry, x):
        q, k, v, i_pre, f_pre = _projections(w, x, NH)
        log_f = _log_forget(f_pre, forget_gate)
        m = jnp.maximum(log_f + carry.m, i_pre)
        f_act = jnp.exp(log_f + carry.m - m)
        i_act = jnp.exp(i_pre - m)
        k = k / math.sqrt(DH)
        C = (f_act[:, None, None] * carry.C.reshape(NH, DH, DH)
             + i_act[:, None, None] * (k[:, :, None] * v[:, None, :]))
        n = f_act[:, None] * carry.n.reshape(NH, DH) + i_act[:, None] * k
        num = jnp.einsum("hd,hde->he", q, C)
        denom = jnp.maximum(jnp.abs(jnp.sum(q * n, -1)), jnp.exp(-m)) + eps
        h = num / denom[:, None]
        return MLSTMState(C.reshape(-1), n.reshape(-1), m), _head_norm(w, h)

    def chunk_run(w, carry, carry0, xs, starts, live):
        """The chunkwise form (:func:`rnnjax.engine.chunk_forms.stabilized_chunk`): the
        normaliser ``n`` rides as one more value column, ``S = [C, n] (DH, DH + 1)``."""
        q, k, v, i_pre, f_pre = jax.vmap(lambda x: _projections(w, x, NH))(xs)
        log_f = _log_forget(f_pre, forget_gate)
        v1 = jnp.concatenate([v, jnp.ones_like(v[..., :1])], -1)  # (c, NH, DH + 1)

        def state(c):
            return jnp.concatenate([c.C.reshape(NH, DH, DH), c.n.reshape(NH, DH, 1)], -1)

        o, m, S, m_end = jax.vmap(
            stabilized_chunk, in_axes=(1, 1, 1, 1, 1, 0, 0, 0, 0, None, None))(
            q, k / math.sqrt(DH), v1, log_f, i_pre, state(carry), carry.m, state(carry0),
            carry0.m, starts, live)
        num, qn = o[..., :DH], o[..., DH]  # (NH, c, DH), (NH, c)
        h = num / (jnp.maximum(jnp.abs(qn), jnp.exp(-m)) + eps)[..., None]
        ys = _head_norm(w, jnp.swapaxes(h, 0, 1))
        return MLSTMState(S[..., :DH].reshape(-1), S[..., DH].reshape(-1), m_end), ys

    return Cell(init=init, prepare=identity, initial_carry=initial_carry, step=step,
                input_size=lambda p: p["W_q"].shape[-1], output_size=E, name="mlstm",
                chunk=Chunk(chunk_run))


def mlstm_parallel(params, xs, *, num_heads: int = 1, forget_gate: str = "sigmoid",
                   eps: float = 1e-6, carry: MLSTMState | None = None):
    r"""The mLSTM of :func:`mlstm` over a whole sequence at once, in its stabilised
    parallel form (NX-AI/xlstm ``backends.py`` ``parallel_stabilized_simple``, with
    ``stabilize_rowwise=True``), for one example ``xs (T, F)``; returns ``(ys (T, E),
    final carry)``, equal to ``rnnjax.run`` of the recurrent cell (``carry`` and the
    final carry in the cell's flattened layout, :class:`MLSTMState`).  Per head, with ``F_t
    = sum_{s <= t} log f_s`` and an initial carry ``(C_0, n_0, m_0)`` (zeros when None)::

        log D_tj = F_t - F_j + i~_j  (j <= t),  -inf (j > t)
        m_t      = max(max_j log D_tj, F_t + m_0)
        S_tj     = (q_t . k_j / sqrt(DH)) exp(log D_tj - m_t),    w_t = exp(F_t + m_0 - m_t)
        h~_t     = (sum_j S_tj v_j + w_t C_0^T q_t) / (max(|sum_j S_tj + w_t n_0 . q_t|,
                                                          exp(-m_t)) + eps)

    Deviation from the reference: its row stabiliser is ``max_j log D_tj`` alone (it has
    no initial state); here ``m_t`` also takes the initial state's term ``F_t + m_0``
    (as the reference's ``chunkwise_simple`` does with ``initial_m``), which makes
    ``m_t`` the recurrent form's stabiliser exactly, so the two forms agree to rounding
    with ``eps`` too (with ``eps = 0`` the stabiliser cancels and both equal the
    reference).  ``O(T^2)`` memory per head.
    """
    T = xs.shape[0]
    NH = num_heads
    q, k, v, i_pre, f_pre = jax.vmap(lambda x: _projections(params, x, NH))(xs)
    DH = q.shape[-1]
    q, k, v = (jnp.swapaxes(a, 0, 1) for a in (q, k, v))  # (NH, T, DH)
    i_pre, log_f = i_pre.T, _log_forget(f_pre, forget_gate).T  # (NH, T)
    if carry is None:
        C0, n0, m0 = (jnp.zeros((NH, DH, DH), q.dtype), jnp.zeros((NH, DH), q.dtype),
                      jnp.zeros((NH,), q.dtype))
    else:
        C0, n0, m0 = carry.C.reshape(NH, DH, DH), carry.n.reshape(NH, DH), carry.m
    Fc = jnp.cumsum(log_f, -1)  # (NH, T)
    causal = jnp.tril(jnp.ones((T, T), bool))
    log_D = jnp.where(causal, Fc[:, :, None] - Fc[:, None, :] + i_pre[:, None, :], -jnp.inf)
    log_init = Fc + m0[:, None]  # (NH, T)
    m = jnp.maximum(jnp.max(log_D, -1), log_init)
    D = jnp.exp(log_D - m[..., None])
    w0 = jnp.exp(log_init - m)
    k = k / math.sqrt(DH)
    S = jnp.einsum("htd,hsd->hts", q, k) * D
    num = S @ v + w0[..., None] * jnp.einsum("htd,hde->hte", q, C0)
    qn = S.sum(-1) + w0 * jnp.einsum("htd,hd->ht", q, n0)
    h = num / (jnp.maximum(jnp.abs(qn), jnp.exp(-m)) + eps)[..., None]
    ys = _head_norm(params, jnp.swapaxes(h, 0, 1))
    if T == 0:
        return ys, MLSTMState(C0.reshape(-1), n0.reshape(-1), m0)
    C = jnp.einsum("hs,hsd,hse->hde", D[:, -1], k, v) + w0[:, -1, None, None] * C0
    n = jnp.einsum("hs,hsd->hd", D[:, -1], k) + w0[:, -1, None] * n0
    return ys, MLSTMState(C.reshape(-1), n.reshape(-1), m[:, -1])


class SLSTMState(NamedTuple):
    """Carry of the sLSTM (the reference's four states, in its order): hidden ``h`` (the
    reference's ``y``, named as :class:`rnnjax.LSTMState`'s), cell ``c``, normaliser
    ``n``, stabiliser ``m``, each ``(H,)``."""

    h: jax.Array
    c: jax.Array
    n: jax.Array
    m: jax.Array


def slstm_forget_bias(num_heads: int, head_dim: int, block_idx: int = 0,
                      num_blocks: int = 1):
    """xLSTM's ``powerlaw_blockdependent`` forget-gate bias (``sLSTMCell.reset_parameters``):
    per head ``-(-5 + 12 (j / (DH - 1))^(0.3 + 1.3 r))``, ``j = 0..DH-1``, ``r =
    block_idx / (num_blocks - 1)`` (0 for one block), from 5 down to -7; ``(NH * DH,)``.
    ``DH = 1`` gives 5 (the reference divides by zero there)."""
    r = block_idx / (num_blocks - 1) if num_blocks > 1 else 0.0
    j = jnp.arange(head_dim, dtype=float) / max(head_dim - 1, 1)
    return jnp.tile(-(-5.0 + 12.0 * j ** (0.3 + 1.3 * r)), num_heads)


def slstm(hidden_size: int, num_heads: int = 1, *, recurrent_init: str = "zeros") -> Cell:
    r"""sLSTM, the scalar-memory cell of xLSTM (Beck et al. 2024), with exponential
    gating, a normaliser, the max-stabiliser and head-wise recurrent weights.

    Follows NX-AI/xlstm ``xlstm/blocks/slstm/src/vanilla/slstm.py``
    (``slstm_forward_pointwise``) and ``src/vanilla/__init__.py`` (``slstm_forward``: the
    block-diagonal ``R y``), with the initialisation of ``blocks/slstm/cell.py``.
    Equations (one example, ``H = hidden_size = NH * DH``; gate order ``i, f, z, o``)::

        [i~, f~, z~, o~]_t = W x_t + R y_{t-1} + b       R block-diagonal: NH blocks
                                                           of (4 DH, DH), one per head
        m_t  = i~_t                          if n_{t-1} = 0 (the first step)
             = max(i~_t, m_{t-1} + logsigmoid(f~_t))       otherwise
        i_t  = min(exp(i~_t - m_t), 1),   f_t = min(exp(m_{t-1} + logsigmoid(f~_t) - m_t), 1)
        c_t  = f_t c_{t-1} + i_t tanh(z~_t),   n_t = f_t n_{t-1} + i_t
        y_t  = sigmoid(o~_t) c_t / n_t                    output: y_t

    ``c, n`` are kept divided by ``exp(m)`` (the stabiliser), so ``exp(i~)`` never
    overflows; ``y`` does not depend on it.  The carry :class:`SLSTMState` starts at
    zero.

    Initialisation (``sLSTMCell.reset_parameters`` defaults and ``sLSTMLayer``):
    ``R = 0`` (``recurrent_weight_init="zeros"``; ``recurrent_init="standard"`` draws
    ``U(-1/sqrt(H), 1/sqrt(H))``); ``b_f`` by :func:`slstm_forget_bias`
    (``powerlaw_blockdependent``, one block), the other biases 0; ``W (4H, F) ~ N(0, 2 /
    (5 F))`` (the layer's ``small_init``).  Params: ``W (4H, F)``, ``R (NH, 4, DH, DH)``
    (``R[h, g]`` maps head ``h``'s ``y`` to its gate ``g``), ``b (4, H)``.

    Deviations: the layer's causal convolution (feeding the ``i, f`` gates) and its
    head-wise block-diagonal input projections are replaced by one dense ``W x``; the
    layer's group norm after the cell is not part of it.  The reference's first-step
    test ``n = 0`` is over the whole batch (``torch.all``), here per example (the same
    whenever the batch starts together).  Nonlinear: no associative-scan declaration;
    ``rnnjax.run(..., scan="newton")`` (DEER) applies as to any cell.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.slstm(8, num_heads=2)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> ys, carry = rnnjax.run(cell, params, jnp.ones((2, 5, 3)))
        >>> ys.shape, carry.m.shape
        ((2, 5, 8), (2, 8))
    """
    _check_heads(hidden_size, num_heads)
    check_choice("recurrent_init", recurrent_init, ("zeros", "standard"))
    H, NH = hidden_size, num_heads
    DH = H // NH

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 2)
        std = math.sqrt(2.0 / (5.0 * input_size))
        if recurrent_init == "zeros":
            R = jnp.zeros((NH, 4, DH, DH))
        else:
            R = initializers.uniform(1.0 / math.sqrt(H))(k[1], (NH, 4, DH, DH))
        b = jnp.zeros((4, H)).at[1].set(slstm_forget_bias(NH, DH))
        return {"W": initializers.normal(std)(k[0], (4 * H, input_size)), "R": R, "b": b}

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        z = jnp.zeros(tuple(batch_shape) + (H,), dtype)
        return SLSTMState(z, z, z, z)

    def step(w, carry, x):
        Ry = jnp.einsum("hgij,hj->ghi", w["R"], carry.h.reshape(NH, DH)).reshape(4, H)
        raw = (w["W"] @ x).reshape(4, H) + Ry + w["b"]
        i_raw, f_raw, z_raw, o_raw = raw
        logfplusm = carry.m + jax.nn.log_sigmoid(f_raw)
        m = jnp.where(jnp.all(carry.n == 0.0), i_raw, jnp.maximum(i_raw, logfplusm))
        i = jnp.minimum(jnp.exp(i_raw - m), 1.0)
        f = jnp.minimum(jnp.exp(logfplusm - m), 1.0)
        c = f * carry.c + i * jnp.tanh(z_raw)
        n = f * carry.n + i
        y = jax.nn.sigmoid(o_raw) * c / n
        return SLSTMState(y, c, n, m), y

    def recurrent(p):  # the (4H, H) block-diagonal gate matrices, gate-major rows
        eye = jnp.eye(NH, dtype=p["R"].dtype)
        return jnp.einsum("hgij,hk->ghikj", p["R"], eye).reshape(4 * H, H)

    return Cell(init=init, prepare=identity, initial_carry=initial_carry, step=step,
                input_size=lambda p: p["W"].shape[-1], output_size=H, name="slstm",
                recurrent_matrix=recurrent)
