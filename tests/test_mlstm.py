"""mLSTM (xLSTM): the recurrent cell equals a NumPy transcription of NX-AI/xlstm
``recurrent_step_stabilized_simple`` inside ``mLSTMCell.step``; the parallel form equals
a transcription of ``parallel_stabilized_simple`` and equals the recurrent form; the
stabiliser keeps large exponential gates finite at T = 4096 in float32 (recurrent,
parallel and chunked forms)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import cells
from rnnjax.cells.xlstm import MLSTMState, mlstm_parallel

E, NH, F, T = 6, 2, 3, 9
DH = E // NH


def _logsigmoid(x):
    return -np.logaddexp(0.0, -x)


def _params(forget_gate="sigmoid", seed=0, scale=1.0):
    """Params with random gate weights (the initial zeros would hide the gates' inputs)."""
    cell = cells.mlstm(E, NH, forget_gate=forget_gate)
    p = to_f64(cell.init(jax.random.key(seed), F))
    k = jax.random.split(jax.random.key(seed + 10), 3)
    p["W_i"] = scale * jax.random.normal(k[0], p["W_i"].shape, jnp.float64)
    p["W_f"] = scale * jax.random.normal(k[1], p["W_f"].shape, jnp.float64)
    p["norm"] = 0.1 * jax.random.normal(k[2], p["norm"].shape, jnp.float64)
    return cell, p


def _qkv_gates(p, xs):
    """``mLSTMCell.forward``/``step``: ``if_gate_input = cat([q, k, v])``, the gates per
    head; q, k, v viewed as ``(B, NH, S, DH)``.  ``xs (B, S, F)``."""
    q, k, v = (xs @ p[n].T for n in ("W_q", "W_k", "W_v"))
    qkv = np.concatenate([q, k, v], -1)
    ig = (qkv @ p["W_i"].T + p["b_i"]).transpose(0, 2, 1)[..., None]  # (B, NH, S, 1)
    fg = (qkv @ p["W_f"].T + p["b_f"]).transpose(0, 2, 1)[..., None]
    heads = lambda a: a.reshape(a.shape[0], a.shape[1], NH, DH).transpose(0, 2, 1, 3)
    return heads(q), heads(k), heads(v), ig, fg


def _outnorm(p, h, eps=1e-5):
    """``MultiHeadLayerNorm``: group_norm with NH groups on ``(B*S, NH*DH)``, weight
    ``1 + weight`` (residual_weight), no bias.  ``h (B, NH, S, DH)`` -> ``(B, S, E)``."""
    B_, _, S, _ = h.shape
    g = h.transpose(0, 2, 1, 3).reshape(B_ * S, NH, DH)
    mu = g.mean(-1, keepdims=True)
    var = g.var(-1, keepdims=True)
    out = ((g - mu) / np.sqrt(var + eps)).reshape(B_ * S, E) * (1.0 + p["norm"])
    return out.reshape(B_, S, E)


def recurrent_step_stabilized_simple(c_state, n_state, m_state, q, k, v, igate_preact,
                                     fgate_preact, eps=1e-6, forget_gate="sigmoid"):
    """NumPy transcription of xlstm/blocks/mlstm/backends.py (shapes as there:
    q, k, v (B, NH, 1, DH), gates (B, NH, 1, 1), c (B, NH, DH, DH), n (B, NH, DH, 1),
    m (B, NH, 1, 1)).  ``forget_gate="exp"``: log f = f~ (the paper's exponential
    forget gate) instead of logsigmoid."""
    q, k, v = q[:, :, 0, :, None], k[:, :, 0, :, None], v[:, :, 0, :, None]
    log_fg_act = _logsigmoid(fgate_preact) if forget_gate == "sigmoid" else fgate_preact
    m_state_new = np.maximum(log_fg_act + m_state, igate_preact)
    fg_act = np.exp(log_fg_act + m_state - m_state_new)
    ig_act = np.exp(igate_preact - m_state_new)
    k_scaled = k / math.sqrt(DH)
    c_state_new = fg_act * c_state + ig_act * (k_scaled @ np.swapaxes(v, -1, -2))
    n_state_new = fg_act * n_state + ig_act * k_scaled
    h_num = np.swapaxes(q, -1, -2) @ c_state_new
    qn_dotproduct = np.swapaxes(q, -1, -2) @ n_state_new
    max_val = np.exp(-m_state_new)
    h_denom = np.maximum(np.abs(qn_dotproduct), max_val) + eps
    h = h_num / h_denom
    return h, (c_state_new, n_state_new, m_state_new)


def parallel_stabilized_simple(queries, keys, values, igate_preact, fgate_preact, eps=1e-6):
    """NumPy transcription of xlstm/blocks/mlstm/backends.py (stabilize_rowwise=True)."""
    B_, NH_, S, DH_ = queries.shape
    log_fgates = _logsigmoid(fgate_preact)
    ltr = np.tril(np.ones((S, S), dtype=bool))
    log_fgates_cumsum = np.concatenate([np.zeros((B_, NH_, 1, 1)),
                                        np.cumsum(log_fgates, axis=-2)], axis=-2)
    rep = np.tile(log_fgates_cumsum, (1, 1, 1, S + 1))
    _log_fg_matrix = rep - np.swapaxes(rep, -2, -1)
    log_fg_matrix = np.where(ltr, _log_fg_matrix[:, :, 1:, 1:], -np.inf)
    log_D_matrix = log_fg_matrix + np.swapaxes(igate_preact, -2, -1)
    max_log_D = np.max(log_D_matrix, axis=-1, keepdims=True)
    D_matrix = np.exp(log_D_matrix - max_log_D)
    keys_scaled = keys / math.sqrt(DH_)
    C_matrix = (queries @ np.swapaxes(keys_scaled, -2, -1)) * D_matrix
    normalizer = np.maximum(np.abs(C_matrix.sum(-1, keepdims=True)), np.exp(-max_log_D))
    return (C_matrix / (normalizer + eps)) @ values


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_recurrent_cell_equals_the_reference_step(forget_gate):
    cell, p = _params(forget_gate)
    if forget_gate == "exp":
        p["b_f"] = p["b_f"] - 5.0  # exp forget gates around 1
    xs = jax.random.normal(jax.random.key(1), (2, T, F), jnp.float64)
    ys, final = rnnjax.run(cell, p, xs, scan="sequential")
    pn = {k: np.asarray(v) for k, v in p.items()}
    q, k, v, ig, fg = _qkv_gates(pn, np.asarray(xs))
    c = np.zeros((2, NH, DH, DH))
    n = np.zeros((2, NH, DH, 1))
    m = np.zeros((2, NH, 1, 1))
    hs = []
    for t in range(T):
        h, (c, n, m) = recurrent_step_stabilized_simple(
            c, n, m, q[:, :, t:t + 1], k[:, :, t:t + 1], v[:, :, t:t + 1],
            ig[:, :, t:t + 1], fg[:, :, t:t + 1], forget_gate=forget_gate)
        hs.append(h)  # (B, NH, 1, DH)
    ref = _outnorm(pn, np.concatenate(hs, axis=2))
    np.testing.assert_allclose(np.asarray(ys), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(final.C.reshape(c.shape), c, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(final.n.reshape(2, NH, DH), n[..., 0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(final.m, m[..., 0, 0], rtol=1e-10, atol=1e-12)


def test_parallel_form_equals_the_reference_parallel():
    """With eps = 0 the stabiliser cancels, so the parallel form (whose row stabiliser
    also takes the initial state's term) equals the reference's exactly."""
    _, p = _params()
    xs = jax.random.normal(jax.random.key(2), (2, T, F), jnp.float64)
    ys = jax.jit(jax.vmap(lambda x: mlstm_parallel(p, x, num_heads=NH, eps=0.0)[0]))(xs)
    pn = {k: np.asarray(v) for k, v in p.items()}
    q, k, v, ig, fg = _qkv_gates(pn, np.asarray(xs))
    ref = _outnorm(pn, parallel_stabilized_simple(q, k, v, ig, fg, eps=0.0))
    np.testing.assert_allclose(np.asarray(ys), ref, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_parallel_equals_recurrent_with_an_initial_carry(forget_gate):
    cell, p = _params(forget_gate)
    xs = jax.random.normal(jax.random.key(3), (2, T, F), jnp.float64)
    k = jax.random.split(jax.random.key(4), 3)
    carry = MLSTMState(jax.random.normal(k[0], (2, NH * DH * DH), jnp.float64),
                       jax.random.normal(k[1], (2, NH * DH), jnp.float64),
                       jax.random.normal(k[2], (2, NH), jnp.float64))
    ys, final = rnnjax.run(cell, p, xs, carry=carry)
    par = jax.jit(jax.vmap(lambda x, c: mlstm_parallel(p, x, num_heads=NH, carry=c,
                                                       forget_gate=forget_gate)))
    ys_p, final_p = par(xs, carry)
    np.testing.assert_allclose(ys_p, ys, rtol=1e-10, atol=1e-10)
    for a, b in zip(final_p, final):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10)
    # zero carry: the default
    ys0 = jax.jit(jax.vmap(lambda x: mlstm_parallel(p, x, num_heads=NH,
                                                    forget_gate=forget_gate)[0]))(xs)
    np.testing.assert_allclose(ys0, rnnjax.run(cell, p, xs)[0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("forget_gate", ["sigmoid", "exp"])
def test_stabiliser_keeps_large_gates_finite_at_T_4096_in_float32(forget_gate):
    """Input-gate pre-activations near 100 (exp(100) = 2.7e43 > float32's max 3.4e38) at
    every step, forget gates open: unstabilised, C would overflow at the first step."""
    Tl = 4096
    cell = cells.mlstm(4, 1, forget_gate=forget_gate)
    p = cell.init(jax.random.key(0), F)
    p = jax.tree.map(lambda a: a.astype(jnp.float32), p)
    p["b_i"] = jnp.full_like(p["b_i"], 100.0)
    p["W_i"] = 5.0 * jax.random.normal(jax.random.key(1), p["W_i"].shape, jnp.float32)
    p["b_f"] = jnp.full_like(p["b_f"], 8.0 if forget_gate == "sigmoid" else 0.5)
    xs = jax.random.normal(jax.random.key(2), (1, Tl, F), jnp.float32)
    ys, final = jax.jit(lambda p, x: rnnjax.run(cell, p, x, scan="sequential"))(p, xs)
    ys_p, _ = jax.jit(lambda p, x: mlstm_parallel(p, x, num_heads=1,
                                                  forget_gate=forget_gate))(p, xs[0])
    ys_c, final_c = jax.jit(lambda p, x: rnnjax.run(cell, p, x, scan="chunked"))(p, xs)
    assert np.all(np.isfinite(ys)) and np.all(np.isfinite(ys_p)) and np.all(np.isfinite(ys_c))
    assert all(np.all(np.isfinite(a)) for a in final) and all(
        np.all(np.isfinite(a)) for a in final_c)
    assert float(final.m.max()) > 88.0  # the stabiliser holds what exp cannot
    np.testing.assert_allclose(ys_p, ys[0], rtol=0, atol=2e-3)
    np.testing.assert_allclose(ys_c, ys, rtol=0, atol=2e-3)
    np.testing.assert_allclose(final_c.m, final.m, rtol=1e-5)


def test_initialisation_follows_the_reference():
    p = cells.mlstm(8, 4).init(jax.random.key(0), 5)
    np.testing.assert_array_equal(p["W_i"], 0.0)
    np.testing.assert_array_equal(p["W_f"], 0.0)
    np.testing.assert_allclose(p["b_f"], [3.0, 4.0, 5.0, 6.0], rtol=1e-6)
    np.testing.assert_array_equal(p["norm"], 0.0)
    assert p["W_q"].shape == (8, 5) and p["W_i"].shape == (4, 24)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        cells.mlstm(6, 4)
