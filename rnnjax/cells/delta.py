"""The delta rule as a recurrence: DeltaNet (Schlag et al. 2021; Yang et al. 2024),
Gated DeltaNet (Yang, Kautz & Hatamizadeh 2024) and DeltaProduct (Siems et al. 2025,
several Householder-like factors per token), with the negative-eigenvalue option of
Grazzi et al. 2025."""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.cells.selective import mamba_dt_bias
from rnnjax.core import initializers
from rnnjax.core.cell import Cell, Chunk, identity
from rnnjax.core.checks import check_positive_int
from rnnjax.engine.chunk_forms import delta_chunk

__all__ = ["DeltaState", "deltanet", "deltanet_transition", "l2_normalize"]


class DeltaState(NamedTuple):
    """Carry of DeltaNet: the fast-weight memory ``S (NH, DK, DV)`` per head (the
    reference's ``(d_k, d_v)`` layout: ``S^T`` of the paper's ``S``), flattened row-major
    to ``(NH * DK * DV,)``: the carry convention (leaves ``batch + (features,)``) that
    every engine and analysis reads."""

    S: jax.Array


def l2_normalize(x, eps=1e-12):
    """``x / max(||x||, eps)`` over the last axis (``torch.nn.functional.normalize``).

    The norm is taken where it is differentiable: at ``x = 0`` (a step past a sequence's
    length reads zeros) ``||x||`` has no derivative and autodiff's would be NaN, which a
    masked step still multiplies by zero into the gradient; there the value is ``0`` and
    the gradient ``x / eps``'s, as in PyTorch."""
    sq = jnp.sum(x * x, axis=-1, keepdims=True)
    norm = jnp.sqrt(jnp.where(sq > 0, sq, 1.0))
    return x / jnp.maximum(jnp.where(sq > 0, norm, 0.0), eps)


def _gates(w, x, NH, gated, negative_eigenvalues, nh=1):
    """``q (NH, DK)``, ``k (nh, NH, DK)`` (L2-normalised), ``v (nh, NH, DV)``, ``beta
    (nh, NH)``, ``log alpha (NH,)``: ``nh`` Householder factors per step."""
    q = l2_normalize((w["W_q"] @ x).reshape(NH, -1))
    k = l2_normalize((w["W_k"] @ x).reshape(nh, NH, -1))
    v = (w["W_v"] @ x).reshape(nh, NH, -1)
    beta = jax.nn.sigmoid(w["W_b"] @ x).reshape(nh, NH)
    if negative_eigenvalues:
        beta = 2.0 * beta
    if gated:
        g = -jnp.exp(w["A_log"]) * jax.nn.softplus(w["W_a"] @ x + w["dt_bias"])
    else:
        g = jnp.zeros((NH,), q.dtype)
    return q, k, v, beta, g


def deltanet_transition(params, x, *, num_heads: int = 1, gated: bool = False,
                        negative_eigenvalues: bool = False, num_householder: int = 1):
    """The transition of one step of :func:`deltanet` at input ``x (F,)``: per head
    ``alpha_t (I - beta_t k_t k_t^T)`` ``(NH, DK, DK)``, the map ``S_{t-1} -> S_t - beta_t
    k_t v_t^T`` of the state (reference layout; the paper's ``S`` is multiplied by its
    transpose on the right, the same matrix since it is symmetric).  With
    ``num_householder = n`` (DeltaProduct) the product ``alpha_t (I - beta_{t,n} k_{t,n}
    k_{t,n}^T) ... (I - beta_{t,1} k_{t,1} k_{t,1}^T)``."""
    _, k, _, beta, g = _gates(params, x, num_heads, gated, negative_eigenvalues,
                              num_householder)
    eye = jnp.eye(k.shape[-1], dtype=k.dtype)
    A = jnp.exp(g)[:, None, None] * eye
    for j in range(num_householder):
        A = (eye - beta[j][:, None, None] * k[j][:, :, None] * k[j][:, None, :]) @ A
    return A


def deltanet(hidden_size: int, num_heads: int = 1, *, gated: bool = False,
             negative_eigenvalues: bool = False, num_householder: int = 1) -> Cell:
    r"""DeltaNet, Gated DeltaNet and DeltaProduct: a matrix memory written by the delta
    rule.

    Follows fla-org/flash-linear-attention ``fla/ops/delta_rule/naive.py``
    (``delta_rule_recurrence``) and, with ``gated=True``,
    ``fla/ops/gated_delta_rule/naive.py`` (``recurrent_gated_delta_rule_ref``), with the
    gates of ``fla/layers/delta_net.py`` and ``gated_deltanet.py``.  Equations (one
    example, per head ``h``, ``E = hidden_size = NH * D``, ``D = DK = DV``)::

        q_t, k_t = normalize(W_q x_t), normalize(W_k x_t)      (NH, D), unit L2 norm
        v_t  = W_v x_t                                         (NH, D)
        beta_t = sigmoid(W_b x_t)          (NH,)  in (0, 1);  2 sigmoid(.) in (0, 2)
                                                  with negative_eigenvalues=True
        alpha_t = exp(-exp(A_log) softplus(W_a x_t + dt_bias))   gated=True;  1 otherwise
        S_t = alpha_t S_{t-1} (I - beta_t k_t k_t^T) + beta_t v_t k_t^T     (paper layout)
        y_t = S_t q_t / sqrt(D)                                heads concatenated, (E,)

    The carry :class:`DeltaState` stores ``S^T (D_k, D_v)`` as the reference (flattened,
    ``(NH * D * D,)``), whose step
    reads ``S <- alpha S; S <- S + k (beta (v - S^T k))^T``.  The transition of the state
    is ``alpha_t (I - beta_t k_t k_t^T)`` (:func:`deltanet_transition`): its eigenvalues
    are ``alpha_t`` (multiplicity ``D - 1``) and ``alpha_t (1 - beta_t)``, in ``(0, 1]``
    for ``beta`` in ``(0, 1)`` and in ``(-1, 1]`` with ``negative_eigenvalues`` (Grazzi
    et al. 2025, "Unlocking State-Tracking in Linear RNNs Through Negative
    Eigenvalues").  At ``beta_t = 2``, ``alpha_t = 1`` it is the Householder reflection
    ``I - 2 k k^T``, orthogonal: the matrix of rnnjax's Householder cell
    (:func:`rnnjax.cells.householder`), here chosen by the input at every step, and
    ``rnnjax.analysis.orthogonality_error`` measures it the same way (tests).

    DeltaProduct (Siems et al. 2025, "DeltaProduct: Improving State-Tracking in Linear
    RNNs via Householder Products"; fla ``fla/ops/gated_delta_product/naive.py``
    ``naive_recurrent_gated_delta_product``), ``num_householder = n > 1``: each step
    decays once, then takes ``n`` delta-rule steps with their own ``k_{t,j}, v_{t,j},
    beta_{t,j}`` (``W_k, W_v (n E, F)``, ``W_b (n NH, F)``, factor-major rows), and
    reads out once::

        S <- alpha_t S;   S <- S + beta_{t,j} k_{t,j} (v_{t,j} - S^T k_{t,j})^T,  j = 1..n
        y_t = S_t^T q_t / sqrt(D)

    so the transition is ``alpha_t`` times a product of ``n`` generalised Householder
    matrices (rank-``n`` plus identity; :func:`deltanet_transition`).

    Chunk form (``scan="chunked"``): the WY/UT representation of the (gated) delta rule
    (:func:`rnnjax.engine.chunk_forms.delta_chunk`; fla ``fla/ops/delta_rule/naive.py``
    ``delta_rule_chunkwise``), DeltaProduct's ``n`` factors per step interleaved into
    ``n`` sub-steps (the gate on the first, the output read on the last), as fla's
    ``chunk_gated_delta_product``.

    Initialisation: ``W_q, W_k, W_v (E, F)``, ``W_b, W_a (NH, F)`` as PyTorch's
    ``nn.Linear`` (``U(-1/sqrt(F), 1/sqrt(F))``; no biases, as fla's ``b_proj`` and
    ``a_proj``); gated: ``A_log = log(A)``, ``A ~ U(0, 16)``, and ``dt_bias`` Mamba's
    (:func:`rnnjax.cells.selective.mamba_dt_bias`, ``softplus(dt_bias)`` log-uniform in
    ``[1e-3, 1e-1]``), as ``GatedDeltaNet``.  The carry starts at zero.

    Deviations: the layer's short causal convolutions, the SiLU on ``q, k, v`` and the
    output norm and gate are not part of the cell (``q, k, v`` are linear maps of the
    input).  DeltaProduct's layer orders ``k, v, beta`` of the ``n`` factors as
    ``(t, n)`` sub-steps; here the rows of ``W_k, W_v, W_b`` are factor-major (an
    equivalent layout of the same map).  Keys and queries are normalised as
    ``torch.nn.functional.normalize``
    (``x / max(||x||, 1e-12)``, as the reference's tests feed the naive functions), not
    fla's in-kernel ``x / sqrt(||x||^2 + 1e-6)``, so ``||k|| = 1`` to rounding and the
    reflection at ``beta = 2`` is exactly orthogonal.  No associative-scan declaration
    (the transition is a dense ``D x D`` matrix per head; the chunk form is its parallel
    form).  The output depends on ``q_t``, not on the carry
    alone: the gradient-flow analyses take ``readout="step"``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.deltanet(8, num_heads=2, gated=True)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> ys, carry = rnnjax.run(cell, params, jnp.ones((2, 5, 3)))
        >>> ys.shape, carry.S.shape
        ((2, 5, 8), (2, 32))
    """
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("num_heads", num_heads)
    check_positive_int("num_householder", num_householder)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size must be a multiple of num_heads {num_heads}, "
                         f"got {hidden_size}")
    E, NH = hidden_size, num_heads
    D = E // NH
    gated, neg, nh = bool(gated), bool(negative_eigenvalues), num_householder

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 7)
        u = initializers.uniform(1.0 / math.sqrt(input_size))
        p = {"W_q": u(k[0], (E, input_size)), "W_k": u(k[1], (nh * E, input_size)),
             "W_v": u(k[2], (nh * E, input_size)), "W_b": u(k[3], (nh * NH, input_size))}
        if gated:
            p["W_a"] = u(k[4], (NH, input_size))
            p["A_log"] = jnp.log(jax.random.uniform(k[5], (NH,), minval=0.0, maxval=16.0))
            p["dt_bias"] = mamba_dt_bias(k[6], (NH,))
        return p

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return DeltaState(jnp.zeros(tuple(batch_shape) + (NH * D * D,), dtype))

    def step(w, carry, x):
        q, k, v, beta, g = _gates(w, x, NH, gated, neg, nh)
        S = jnp.exp(g)[:, None, None] * carry.S.reshape(NH, D, D)
        for j in range(nh):
            v_new = beta[j][:, None] * (v[j] - jnp.einsum("hkv,hk->hv", S, k[j]))
            S = S + k[j][:, :, None] * v_new[:, None, :]
        y = jnp.einsum("hk,hkv->hv", q / math.sqrt(D), S)
        return DeltaState(S.reshape(-1)), y.reshape(E)

    def chunk_run(w, carry, carry0, xs, starts, live):
        q, k, v, beta, g = jax.vmap(lambda x: _gates(w, x, NH, gated, neg, nh))(xs)
        c = xs.shape[0]
        sub = lambda a: a.reshape((c * nh,) + a.shape[2:])  # noqa: E731  (t, j) sub-steps
        first = jnp.arange(nh) == 0
        g_sub = sub(jnp.where(first[None, :, None], g[:, None, :], 0.0))
        q_sub = sub(jnp.where((jnp.arange(nh) == nh - 1)[None, :, None, None],
                              q[:, None], 0.0))
        st = sub(starts[:, None] & first[None, :])
        lv = sub(jnp.broadcast_to(live[:, None], (c, nh)))
        o, S = jax.vmap(delta_chunk, in_axes=(1, 1, 1, 1, 1, 0, 0, None, None))(
            q_sub / math.sqrt(D), sub(k), sub(v), g_sub, sub(beta),
            carry.S.reshape(NH, D, D), carry0.S.reshape(NH, D, D), st, lv)
        ys = jnp.swapaxes(o, 0, 1).reshape(c, nh, E)[:, -1]
        return DeltaState(S.reshape(-1)), ys

    return Cell(init=init, prepare=identity, initial_carry=initial_carry, step=step,
                input_size=lambda p: p["W_q"].shape[-1], output_size=E, name="deltanet",
                chunk=Chunk(chunk_run))
