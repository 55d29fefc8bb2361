"""DeltaNet and Gated DeltaNet: the cell equals NumPy transcriptions of
flash-linear-attention's naive recurrences (``fla/ops/delta_rule/naive.py``
``delta_rule_recurrence``, ``fla/ops/gated_delta_rule/naive.py``
``recurrent_gated_delta_rule_ref``); beta's range; at beta = 2, alpha = 1 the transition
is a Householder reflection, orthogonal as ``analysis.orthogonality_error`` measures
the orthogonal cells."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import analysis, cells
from rnnjax.cells.delta import deltanet_transition

E, NH, F, T, B = 6, 2, 4, 8, 2
D = E // NH


def delta_rule_recurrence(q, k, v, beta, initial_state=None):
    """NumPy float64 transcription of fla/ops/delta_rule/naive.py
    ``delta_rule_recurrence`` (q, k, v (b, h, l, d), beta (b, h, l))."""
    b, h, l, d_k = q.shape
    d_v = v.shape[-1]
    o = np.zeros_like(v)
    S = np.zeros((b, h, d_k, d_v))
    q = q * (d_k ** -0.5)
    if beta.ndim < v.ndim:
        beta = beta[..., None]
    if initial_state is not None:
        S += initial_state
    for i in range(l):
        _k = k[:, :, i]
        _q = q[:, :, i]
        _v = v[:, :, i].copy()
        beta_i = beta[:, :, i]
        _v = _v - (S * _k[..., None]).sum(-2)
        _v = _v * beta_i
        S = S + _k[..., None] * _v[..., None, :]
        o[:, :, i] = np.einsum("bhd,bhdm->bhm", _q, S)
    return o, S


def recurrent_gated_delta_rule_ref(q, k, v, beta, g):
    """NumPy float64 transcription of fla/ops/gated_delta_rule/naive.py
    ``recurrent_gated_delta_rule_ref`` (q, k, v (b, h, l, d), beta, g (b, h, l))."""
    b, h, l, d_k = q.shape
    d_v = v.shape[-1]
    o = np.zeros_like(v)
    S = np.zeros((b, h, d_k, d_v))
    q = q * (d_k ** -0.5)
    for i in range(l):
        _k = k[:, :, i]
        _q = q[:, :, i]
        _v = v[:, :, i].copy()
        S = S * np.exp(g[:, :, i])[..., None, None]
        beta_i = beta[:, :, i]
        _v = _v - (S * _k[..., None]).sum(-2)
        _v = _v * beta_i[..., None]
        S = S + _k[..., None] * _v[..., None, :]
        o[:, :, i] = np.einsum("bhd,bhdm->bhm", _q, S)
    return o, S


def _inputs(p, xs, negative):
    """The layer's projections (fla ``DeltaNet``/``GatedDeltaNet`` without the short
    convolutions): q, k L2-normalised (F.normalize), beta = sigmoid(b_proj x) (times 2
    with allow_neg_eigval), g = -exp(A_log) softplus(a_proj x + dt_bias)."""
    heads = lambda a: a.reshape(B, T, NH, D).transpose(0, 2, 1, 3)
    norm = lambda a: a / np.maximum(np.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
    q, k, v = (heads(xs @ p[n].T) for n in ("W_q", "W_k", "W_v"))
    beta = (1.0 / (1.0 + np.exp(-(xs @ p["W_b"].T)))).transpose(0, 2, 1)
    if negative:
        beta = 2.0 * beta
    g = None
    if "A_log" in p:
        pre = xs @ p["W_a"].T + p["dt_bias"]
        g = (-np.exp(p["A_log"]) * np.logaddexp(0.0, pre)).transpose(0, 2, 1)
    return norm(q), norm(k), v, beta, g


@pytest.mark.parametrize("gated,negative", [(False, False), (False, True), (True, False),
                                            (True, True)])
def test_cell_equals_the_reference_recurrence(gated, negative):
    cell = cells.deltanet(E, NH, gated=gated, negative_eigenvalues=negative)
    p = to_f64(cell.init(jax.random.key(0), F))
    p["W_b"] = 3.0 * p["W_b"]  # betas across their range
    if gated:
        p["dt_bias"] = p["dt_bias"] + 3.0  # decays well below 1
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float64)
    ys, final = rnnjax.run(cell, p, xs)
    pn = {k: np.asarray(v) for k, v in p.items()}
    q, k, v, beta, g = _inputs(pn, np.asarray(xs), negative)
    if gated:
        o, S = recurrent_gated_delta_rule_ref(q, k, v, beta, g)
        assert np.exp(g).min() < 0.9
    else:
        o, S = delta_rule_recurrence(q, k, v, beta)
    if negative:
        assert beta.max() > 1.0
    ref = o.transpose(0, 2, 1, 3).reshape(B, T, E)
    np.testing.assert_allclose(np.asarray(ys), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(final.S).reshape(S.shape), S, rtol=1e-10,
                               atol=1e-10)


def test_initial_state_enters_as_the_reference_s():
    cell = cells.deltanet(E, NH)
    p = to_f64(cell.init(jax.random.key(2), F))
    xs = jax.random.normal(jax.random.key(3), (B, T, F), jnp.float64)
    S0 = jax.random.normal(jax.random.key(4), (B, NH, D, D), jnp.float64)
    ys, final = rnnjax.run(cell, p, xs, carry=rnnjax.cells.delta.DeltaState(S0.reshape(B, -1)))
    q, k, v, beta, _ = _inputs({k: np.asarray(a) for k, a in p.items()}, np.asarray(xs),
                               False)
    o, S = delta_rule_recurrence(q, k, v, beta, initial_state=np.asarray(S0))
    np.testing.assert_allclose(ys, o.transpose(0, 2, 1, 3).reshape(B, T, E), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(final.S.reshape(S.shape), S, rtol=1e-10, atol=1e-10)


def _beta_two_params(p, x):
    """W_b with W_b x = 50 in every head: sigmoid(50) is 1.0 in float64, so beta = 2."""
    return {**p, "W_b": jnp.tile(50.0 * x / jnp.dot(x, x), (NH, 1))}


def test_beta_two_is_a_householder_reflection_measured_like_the_orthogonal_cells():
    cell = cells.deltanet(E, NH, negative_eigenvalues=True)
    p = to_f64(cell.init(jax.random.key(5), F))
    x = jax.random.normal(jax.random.key(6), (F,), jnp.float64)
    p2 = _beta_two_params(p, x)
    beta = 2.0 * jax.nn.sigmoid(p2["W_b"] @ x)
    np.testing.assert_array_equal(beta, 2.0)
    A = deltanet_transition(p2, x, num_heads=NH, negative_eigenvalues=True)  # (NH, D, D)
    # the measure of rnnjax's orthogonal cells, on the stacked (NH*D, D) head blocks
    probe = cell._replace(recurrent_matrix=lambda params: A.reshape(NH * D, D))
    assert float(analysis.orthogonality_error(probe, p2)) < 1e-14
    ev = np.linalg.eigvalsh(np.asarray(A))
    np.testing.assert_allclose(ev, np.tile([-1.0] + [1.0] * (D - 1), (NH, 1)), atol=1e-14)
    # one step of the cell: S_t - beta k v^T is the reflected S_{t-1}, same norm
    S0 = jax.random.normal(jax.random.key(7), (NH, D, D), jnp.float64)
    S1, _ = cell.step(p2, rnnjax.cells.delta.DeltaState(S0.reshape(-1)), x)
    k = rnnjax.cells.delta.l2_normalize((p2["W_k"] @ x).reshape(NH, D))
    v = (p2["W_v"] @ x).reshape(NH, D)
    reflected = S1.S.reshape(NH, D, D) - 2.0 * k[:, :, None] * v[:, None, :]
    np.testing.assert_allclose(jnp.linalg.norm(reflected, axis=(1, 2)),
                               jnp.linalg.norm(S0, axis=(1, 2)), rtol=1e-13)
    # without the option beta <= 1 (here saturated at 1): eigenvalues in [0, 1]
    A1 = deltanet_transition(p2, x, num_heads=NH)
    ev1 = np.linalg.eigvalsh(np.asarray(A1))
    assert ev1.min() >= -1e-14 and ev1.max() <= 1.0 + 1e-14
    assert float(analysis.orthogonality_error(
        cell._replace(recurrent_matrix=lambda params: A1.reshape(NH * D, D)), p2)) > 0.5


def test_gated_decay_and_initialisation():
    p = cells.deltanet(8, 4, gated=True).init(jax.random.key(0), 5)
    assert set(p) == {"W_q", "W_k", "W_v", "W_b", "W_a", "A_log", "dt_bias"}
    A = np.exp(np.asarray(p["A_log"]))
    assert np.all((A > 0) & (A < 16))
    dt = np.asarray(jax.nn.softplus(p["dt_bias"]))
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert np.abs(np.asarray(p["W_q"])).max() <= 1 / math.sqrt(5)
    assert set(cells.deltanet(8, 4).init(jax.random.key(0), 5)) == {"W_q", "W_k", "W_v",
                                                                     "W_b"}
    with pytest.raises(ValueError, match="multiple of num_heads"):
        cells.deltanet(6, 4)
