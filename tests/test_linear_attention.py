"""Gated linear attention and retention: the cells equal NumPy transcriptions of
flash-linear-attention's naive code (``fla/ops/gla/naive.py`` ``naive_recurrent_gla``,
``fla/ops/retention/naive.py`` ``naive_retention``), and the associative scan equals the
sequential one (outputs, final carry, gradients) with lengths, reverse and an initial
carry."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import cells

E, NH, F, T, B = 6, 2, 4, 9, 2
D = E // NH


def naive_recurrent_gla(q, k, v, gk, initial_state=None):
    """NumPy float64 transcription of fla/ops/gla/naive.py ``naive_recurrent_gla``
    (inputs ``(B, T, H, D)``, returns ``(o (B, T, H, D), h (B, H, K, V))``)."""
    q, k, v, gk = (np.swapaxes(x, 1, 2) for x in (q, k, v, gk))
    B_, H, T_, K = q.shape
    V = v.shape[-1]
    o = np.zeros_like(v)
    scale = K ** -0.5
    h = np.zeros((B_, H, K, V))
    if initial_state is not None:
        h += initial_state
    for i in range(T_):
        q_i = q[:, :, i] * scale
        k_i = k[:, :, i]
        v_i = v[:, :, i]
        gk_i = np.exp(gk[:, :, i])
        kv_i = k_i[..., None] * v_i[..., None, :]
        h = h * gk_i[..., None] + kv_i
        o[:, :, i] = (q_i[..., None] * h).sum(-2)
    return np.swapaxes(o, 1, 2), h


def naive_retention(q, k, v):
    """NumPy float64 transcription of fla/ops/retention/naive.py ``naive_retention``
    (inputs ``(B, H, T, D)``)."""
    _, n_heads, seq_len, d_head = q.shape
    s = np.log2(1 - 2.0 ** (-5.0 - np.arange(n_heads, dtype=float)))
    n = np.arange(seq_len, dtype=float)
    n = np.exp2((n[:, None] - n) * s.reshape(-1, 1, 1)) * (n[:, None] >= n)
    s = np.einsum("bhqd,bhkd,hqk->bhqk", q * d_head ** -0.5, k, n)
    return np.einsum("bhqk,bhkd->bhqd", s, v)


def _proj(p, xs, name):
    return (np.asarray(xs) @ np.asarray(p[name]).T).reshape(B, T, NH, D)


def test_gla_equals_the_reference_recurrence():
    cell = cells.gla(E, NH, gate_low_rank_dim=3, gate_logit_normalizer=4.0)
    p = to_f64(cell.init(jax.random.key(0), F))
    p = {k: 3.0 * a for k, a in p.items()}  # decays well below 1
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float64)
    h0 = jax.random.normal(jax.random.key(2), (B, NH, D, D), jnp.float64)
    ys, final = rnnjax.run(cell, p, xs, carry=rnnjax.HiddenState(h0.reshape(B, -1)))
    q, k, v = (_proj(p, xs, n) for n in ("W_q", "W_k", "W_v"))
    pre = (np.asarray(xs) @ np.asarray(p["W_g1"]).T) @ np.asarray(p["W_g2"]).T
    gk = (-np.logaddexp(0.0, -(pre + np.asarray(p["b_g"]))) / 4.0).reshape(B, T, NH, D)
    assert np.exp(gk).min() < 0.8
    o, h = naive_recurrent_gla(q, k, v, gk, initial_state=np.asarray(h0))
    np.testing.assert_allclose(np.asarray(ys), o.reshape(B, T, E), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(final.h).reshape(B, NH, D, D), h, rtol=1e-10,
                               atol=1e-10)


def test_retention_equals_the_reference_parallel_form():
    cell = cells.retention(E, NH)
    p = to_f64(cell.init(jax.random.key(3), F))
    xs = jax.random.normal(jax.random.key(4), (B, T, F), jnp.float64)
    ys, _ = rnnjax.run(cell, p, xs)
    q, k, v = (np.swapaxes(_proj(p, xs, n), 1, 2) for n in ("W_q", "W_k", "W_v"))
    o = np.swapaxes(naive_retention(q, k, v), 1, 2).reshape(B, T, E)
    np.testing.assert_allclose(np.asarray(ys), o, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.diag(cell.recurrent_matrix(p))[[0, -1]],
                               [1 - 2.0 ** -5, 1 - 2.0 ** -6], rtol=1e-15)


def _loss(cell, scan, kw):
    def loss(params, xs, carry):
        ys, final = rnnjax.run(cell, params, xs, scan=scan, carry=carry, **kw)
        wy = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return (ys * wy).sum() + (final.h ** 2).sum(), (ys, final)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize("name", ["gla", "retention"])
def test_associative_equals_sequential(name):
    cell = {"gla": lambda: cells.gla(4, 2, gate_low_rank_dim=2),
            "retention": lambda: cells.retention(4, 2)}[name]()
    params = to_f64(cell.init(jax.random.key(5), 3))
    xs = jax.random.normal(jax.random.key(6), (3, T, 3), jnp.float64)
    h = cell.initial_carry((3,), jnp.float64).h
    carry = rnnjax.HiddenState(0.5 * jax.random.normal(jax.random.key(7), h.shape,
                                                       jnp.float64))
    kw = {"lengths": jnp.array([T, 0, 4]), "reverse": True}
    (_, (ys_s, f_s)), g_s = _loss(cell, "sequential", kw)(params, xs, carry)
    (_, (ys_a, f_a)), g_a = _loss(cell, "associative", kw)(params, xs, carry)
    np.testing.assert_allclose(ys_a, ys_s, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f_a.h, f_s.h, rtol=1e-10, atol=1e-12)
    for a, s in zip(jax.tree.leaves(g_a), jax.tree.leaves(g_s)):
        np.testing.assert_allclose(a, s, rtol=1e-10, atol=1e-10 * max(1.0, float(
            jnp.abs(s).max())))
    assert float(jnp.abs(ys_a[1]).max()) == 0.0
    np.testing.assert_array_equal(f_a.h[1], carry.h[1])


def test_initialisation():
    p = cells.gla(8, 2, gate_low_rank_dim=4).init(jax.random.key(0), 5)
    assert p["W_g1"].shape == (4, 5) and p["W_g2"].shape == (8, 4)
    np.testing.assert_array_equal(p["b_g"], 0.0)
    bound = 2 ** -2.5 * np.sqrt(6 / (8 + 5))
    assert np.abs(np.asarray(p["W_q"])).max() <= bound
    assert set(cells.retention(8, 2).init(jax.random.key(0), 5)) == {"W_q", "W_k", "W_v"}
    with pytest.raises(ValueError, match="multiple of num_heads"):
        cells.gla(6, 4)
