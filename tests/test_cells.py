"""Each cell's step against its equations written out in NumPy, and its initialisation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import cells


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def layer_norm(v, g, b):
    return (v - v.mean()) / np.sqrt(v.var() + 1e-5) * g + b


def inputs(cell, F=3, seed=0):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    p = to_f64(cell.init(k1, F))
    p = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(k3, a.shape, a.dtype), p)
    x = np.asarray(jax.random.normal(k2, (F,), jnp.float64))
    carry = jax.tree.map(lambda a: a + 0.3, cell.initial_carry((), jnp.float64))
    return {k: np.asarray(v) for k, v in p.items()}, x, carry


@pytest.mark.parametrize("activation,f", [("tanh", np.tanh), ("relu", lambda z: np.maximum(z, 0)),
                                          ("identity", lambda z: z)])
def test_elman_step(activation, f):
    cell = cells.elman(4, activation=activation)
    p, x, carry = inputs(cell)
    new, y = cell.step(cell.prepare(p), carry, x)
    h = f(p["W_xh"] @ x + p["W_hh"] @ np.asarray(carry.h) + p["b"])
    np.testing.assert_allclose(new.h, h, rtol=1e-13)
    np.testing.assert_allclose(y, h, rtol=1e-13)


@pytest.mark.parametrize("layer_norm_on", [False, True])
def test_lstm_step(layer_norm_on):
    H = 4
    cell = cells.lstm(H, layer_norm=layer_norm_on)
    p, x, carry = inputs(cell)
    new, y = cell.step(cell.prepare(p), carry, x)
    h0, c0 = np.asarray(carry.h), np.asarray(carry.c)
    zx, zh = p["W_xh"] @ x, p["W_hh"] @ h0
    if layer_norm_on:
        zx = layer_norm(zx, p["ln_x_gain"], p["ln_x_bias"])
        zh = layer_norm(zh, p["ln_h_gain"], p["ln_h_bias"])
    z = zx + zh + p["b"]
    i, f, g, o = sigmoid(z[:H]), sigmoid(z[H:2 * H]), np.tanh(z[2 * H:3 * H]), sigmoid(z[3 * H:])
    c = f * c0 + i * g
    c_out = layer_norm(c, p["ln_c_gain"], p["ln_c_bias"]) if layer_norm_on else c
    h = o * np.tanh(c_out)
    np.testing.assert_allclose(new.c, c, rtol=1e-12)
    np.testing.assert_allclose(new.h, h, rtol=1e-12)
    np.testing.assert_allclose(y, h, rtol=1e-12)


def test_gru_step_resets_the_hidden_projection():
    H = 4
    cell = cells.gru(H)
    p, x, carry = inputs(cell)
    new, y = cell.step(cell.prepare(p), carry, x)
    h0 = np.asarray(carry.h)
    a, u = p["W_xh"] @ x + p["b"], p["W_hh"] @ h0
    r = sigmoid(a[:H] + u[:H])
    z = sigmoid(a[H:2 * H] + u[H:2 * H])
    n = np.tanh(a[2 * H:] + r * (u[2 * H:] + p["b_hn"]))
    np.testing.assert_allclose(new.h, (1 - z) * n + z * h0, rtol=1e-12)


def test_initialisations():
    key = jax.random.key(0)
    H, F = 8, 5
    p = cells.lstm(H, forget_bias=1.5).init(key, F)
    for g in range(4):  # orthogonal per gate block, not on the fused matrix
        block = np.asarray(p["W_hh"][g * H:(g + 1) * H], np.float64)
        np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-5)
    np.testing.assert_array_equal(p["b"][H:2 * H], 1.5)
    np.testing.assert_array_equal(p["b"][:H], 0.0)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(p))

    p = cells.irnn(H).init(key, F)
    np.testing.assert_array_equal(p["W_hh"], np.eye(H))
    assert np.std(np.asarray(p["W_xh"])) < 0.01
    irnn = rnnjax.cells.irnn(H)  # relu(I h + W_xh x + 0): a zero input keeps h's positive part
    h = jnp.linspace(-1.0, 1.0, H)
    _, y = irnn.step(irnn.prepare(p), irnn.initial_carry(())._replace(h=h), jnp.zeros(F))
    np.testing.assert_allclose(y, np.maximum(np.asarray(h), 0.0), atol=1e-7)

    p = cells.gru(H, init="uniform").init(key, F)
    bound = 1 / np.sqrt(H)
    for name, a in p.items():  # b = b_ih + b_hh sums two draws (test_deviations.py)
        assert np.all(np.abs(np.asarray(a)) <= (2 if name == "b" else 1) * bound)

    p = cells.elman(H, init="orthogonal").init(key, F)
    np.testing.assert_allclose(np.asarray(p["W_hh"]).T @ np.asarray(p["W_hh"]), np.eye(H),
                               atol=1e-5)


def test_registry_make():
    assert cells.make("gru", 7).output_size == 7
    with pytest.raises(ValueError,
                       match=r"cell must be one of \[.*'elman'.*'lstm'.*\], got 'lstn'"):
        cells.make("lstn", 7)
