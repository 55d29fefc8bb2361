"""Non-recurrent baselines: equations, causality (no gradient from the future), and
training on small copy and adding problems beats the memoryless baselines."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from helpers import to_f64
from rnnjax.layers import baselines


def test_causal_conv_matches_a_loop():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 3))
    w = rng.standard_normal((3, 4, 3))
    y = np.asarray(baselines.causal_conv(jnp.asarray(x), jnp.asarray(w), 2))
    ref = np.zeros((2, 9, 4))
    for t in range(9):
        for i in range(3):
            if t - 2 * i >= 0:
                ref[:, t] += x[:, t - 2 * i] @ w[i].T
    np.testing.assert_allclose(y, ref, rtol=1e-12)


def test_attention_matches_a_loop():
    m = baselines.causal_attention(3, 2, d_model=8, heads=2)
    p = to_f64(m.init(jax.random.key(0)))
    x = np.random.default_rng(1).standard_normal((6, 3))
    y = np.asarray(m.apply(p, jnp.asarray(x)))
    P = jax.tree.map(np.asarray, p)
    ln = lambda v: (v - v.mean(-1, keepdims=True)) / np.sqrt(v.var(-1, keepdims=True) + 1e-5)
    e = x @ P["in"]["W"].T + P["in"]["b"] + np.asarray(baselines.sinusoidal_positions(6, 8))
    n = ln(e)
    q, k, v = n @ P["q"].T, n @ P["k"].T, n @ P["v"].T
    att = np.zeros_like(e)
    for t in range(6):
        for h in range(2):
            sl = slice(4 * h, 4 * h + 4)
            s = np.array([q[t, sl] @ k[j, sl] / 2.0 for j in range(t + 1)])
            a = np.exp(s - s.max()) / np.exp(s - s.max()).sum()
            att[t, sl] = a @ v[: t + 1, sl]
    hh = e + att @ P["o"].T
    o = hh + np.maximum(ln(hh) @ P["mlp1"]["W"].T + P["mlp1"]["b"], 0) @ P["mlp2"]["W"].T \
        + P["mlp2"]["b"]
    np.testing.assert_allclose(y, ln(o) @ P["out"]["W"].T + P["out"]["b"], rtol=1e-10)


@pytest.mark.parametrize("name", ["wavenet", "attention"])
def test_no_gradient_from_the_future(name):
    T = 12
    kw = {"layers": 3} if name == "wavenet" else {}
    m = baselines.make(name, 2, 3, hidden=8, **kw)
    p = to_f64(m.init(jax.random.key(1)))
    x = jnp.asarray(np.random.default_rng(2).standard_normal((T, 2)))
    J = np.asarray(jax.jacobian(lambda x: m.apply(p, x))(x))  # (T, 3, T, 2)
    g = np.abs(J).sum(axis=(1, 3))  # g[t, s] = |d y_t / d x_s|
    assert np.all(g[np.triu_indices(T, 1)] == 0.0)  # s > t: exactly zero
    if name == "wavenet":  # exactly the receptive field 1 + (2 - 1)(1 + 2 + 4) = 8
        rf = baselines.receptive_field(2, (1, 2, 4))
        assert rf == 8
        for t in range(T):
            for s in range(t + 1):
                assert (g[t, s] > 0) == (t - s < rf), (t, s)
    else:
        assert np.all(g[np.tril_indices(T)] > 0)


def test_readout_last_and_bad_input():
    m = baselines.make("wavenet", 2, 3, readout="last", hidden=4, layers=2)
    p = m.init(jax.random.key(0))
    x = jnp.ones((5, 7, 2))
    full = baselines.make("wavenet", 2, 3, hidden=4, layers=2).apply(p, x)
    np.testing.assert_allclose(m.apply(p, x), full[:, -1])
    with pytest.raises(ValueError, match="model"):
        baselines.make("lstm", 2, 3)
    with pytest.raises(ValueError, match="d_model"):
        baselines.causal_attention(2, 3, d_model=10, heads=4)
    with pytest.raises(ValueError, match="readout"):
        baselines.dilated_conv(2, 3, readout="first")


# --- tiny copy and adding problems ------------------------------------------------------

def copy_batch(key, batch, delay, n_copy=4, n_symbols=4):
    """Copy (Arjovsky et al. 2016): ``n_copy`` symbols from ``1..n_symbols``, ``delay - 1``
    blanks (0), a marker (``n_symbols + 1``), ``n_copy`` blanks; the target is blanks,
    then the symbols.  Memoryless baseline: ``n_copy log(n_symbols) / (delay + 2 n_copy)``."""
    seq = jax.random.randint(key, (batch, n_copy), 1, n_symbols + 1)
    zeros = jnp.zeros((batch, delay - 1), jnp.int32)
    marker = jnp.full((batch, 1), n_symbols + 1)
    blanks = jnp.zeros((batch, n_copy), jnp.int32)
    xs = jnp.concatenate([seq, zeros, marker, blanks], 1)
    ys = jnp.concatenate([jnp.zeros((batch, delay + n_copy), jnp.int32), seq], 1)
    return jax.nn.one_hot(xs, n_symbols + 2), ys


def adding_batch(key, batch, T):
    kv, k1, k2 = jax.random.split(key, 3)
    values = jax.random.uniform(kv, (batch, T))
    i = jax.random.randint(k1, (batch,), 0, T // 2)
    j = jax.random.randint(k2, (batch,), T // 2, T)
    marks = jax.nn.one_hot(i, T) + jax.nn.one_hot(j, T)
    return jnp.stack([values, marks], -1), jnp.sum(values * marks, -1)


def _fit(model, loss, batch_fn, steps, lr):
    params = model.init(jax.random.key(0))
    opt = optax.adam(lr)
    state = opt.init(params)

    @jax.jit
    def step(p, s, k):
        l, g = jax.value_and_grad(lambda p: loss(model.apply(p, *batch_fn(k)[:1]),
                                                 batch_fn(k)[1]))(p)
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, l

    for k in jax.random.split(jax.random.key(1), steps):
        params, state, l = step(params, state, k)
    return params


def test_wavenet_learns_adding():
    T = 16
    m = baselines.make("wavenet", 2, 1, readout="last", hidden=16, layers=4)  # field 16
    mse = lambda out, y: jnp.mean((out[..., 0] - y) ** 2)  # noqa: E731
    p = _fit(m, mse, lambda k: adding_batch(k, 64, T), 250, 3e-3)
    x, y = adding_batch(jax.random.key(99), 512, T)
    assert float(mse(m.apply(p, x), y)) < 0.3 / 6  # baseline: predict 1, MSE 1/6


def test_attention_learns_copy():
    delay, n_copy, n_symbols = 8, 4, 4
    m = baselines.make("attention", n_symbols + 2, n_symbols + 1, hidden=32)

    def xent(out, y):
        lp = jax.nn.log_softmax(out)
        return -jnp.mean(jnp.take_along_axis(lp, y[..., None], -1))

    p = _fit(m, xent, lambda k: copy_batch(k, 64, delay, n_copy, n_symbols), 250, 3e-3)
    x, y = copy_batch(jax.random.key(99), 512, delay, n_copy, n_symbols)
    memoryless = n_copy * math.log(n_symbols) / (delay + 2 * n_copy)
    assert float(xent(m.apply(p, x), y)) < 0.3 * memoryless
