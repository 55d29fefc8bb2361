"""Bidirectional layers and stacks: composition of runs, lengths, dropout."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import cells

F, T = 3, 6


def data(batch=3, seed=1):
    return jax.random.normal(jax.random.key(seed), (batch, T, F), jnp.float64)


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_is_forward_and_reversed_runs(merge):
    layer = rnnjax.bidirectional(cells.lstm(4), cells.lstm(4), merge=merge)
    p = to_f64(layer.init(jax.random.key(0), F))
    xs, lengths = data(), jnp.array([T, 3, 0])
    ys, carry = layer.apply(p, xs, lengths=lengths)
    yf, cf = rnnjax.run(cells.lstm(4), p["fwd"], xs, lengths=lengths)
    yb, cb = rnnjax.run(cells.lstm(4), p["bwd"], xs, lengths=lengths, reverse=True)
    expected = jnp.concatenate([yf, yb], -1) if merge == "concat" else yf + yb
    np.testing.assert_allclose(ys, expected, rtol=1e-12)
    np.testing.assert_allclose(carry["bwd"].h, cb.h, rtol=1e-12)
    # the backward half at t = 0 has read the whole valid sequence: it equals the final
    # backward state; for sequence 1 (length 3) positions >= 3 are zero.
    np.testing.assert_allclose(yb[:, 0], cb.h, rtol=1e-12)
    assert np.all(np.asarray(ys[1, 3:]) == 0.0)


def test_stack_is_composition_and_honours_lengths():
    stack = rnnjax.stack([rnnjax.bidirectional(cells.gru(4)), cells.lstm(5)])
    p = to_f64(stack.init(jax.random.key(0), F))
    xs, lengths = data(), jnp.array([T, 2, 4])
    ys, carries = stack.apply(p, xs, lengths=lengths)
    assert ys.shape == (3, T, 5) and stack.output_size == 5
    y1, _ = rnnjax.bidirectional(cells.gru(4)).apply(p[0], xs, lengths=lengths)
    y2, c2 = rnnjax.run(cells.lstm(5), p[1], y1, lengths=lengths)
    np.testing.assert_allclose(ys, y2, rtol=1e-12)
    np.testing.assert_allclose(carries[1].c, c2.c, rtol=1e-12)
    # padded batch == each sequence alone, through the whole stack
    for b, L in enumerate([T, 2, 4]):
        ys_b, c_b = stack.apply(p, xs[b:b + 1, :L])
        np.testing.assert_allclose(ys[b, :L], ys_b[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(carries[0]["bwd"].h[b], c_b[0]["bwd"].h[0], rtol=1e-12)


def test_dropout_between_layers_only_with_a_key():
    stack = rnnjax.stack([cells.elman(8), cells.elman(8)], dropout=0.5)
    p = to_f64(stack.init(jax.random.key(0), F))
    xs = data()
    y_eval, _ = stack.apply(p, xs)
    y_plain, _ = rnnjax.stack([cells.elman(8), cells.elman(8)]).apply(p, xs)
    np.testing.assert_array_equal(y_eval, y_plain)  # no key: deterministic, no dropout
    y_a, _ = stack.apply(p, xs, key=jax.random.key(1))
    y_b, _ = stack.apply(p, xs, key=jax.random.key(1))
    np.testing.assert_array_equal(y_a, y_b)
    assert not np.allclose(y_a, y_eval)
    # reproduce: dropout mask on the first layer's outputs with the stack's key schedule
    keys = jax.random.split(jax.random.key(1), 4)
    y1, _ = rnnjax.run(cells.elman(8), p[0], xs)
    keep = jax.random.bernoulli(keys[2], 0.5, y1.shape)
    y2, _ = rnnjax.run(cells.elman(8), p[1], jnp.where(keep, y1 / 0.5, 0.0))
    np.testing.assert_allclose(y_a, y2, rtol=1e-12)


def test_recurrent_dropout_uses_one_mask_for_every_step():
    cell = cells.elman(6)
    layer = rnnjax.unidirectional(cell, recurrent_dropout=0.4)
    p = to_f64(layer.init(jax.random.key(0), F))
    xs = data(batch=2)
    key = jax.random.key(7)
    ys, final = layer.apply(p, xs, key=key)
    mask = jnp.where(jax.random.bernoulli(key, 0.6, (2, 6)), 1 / 0.6, 0.0)
    h = jnp.zeros((2, 6))
    for t in range(T):
        h = jnp.tanh(xs[:, t] @ p["W_xh"].T + (h * mask) @ p["W_hh"].T + p["b"])
        np.testing.assert_allclose(ys[:, t], h, rtol=1e-12)
    np.testing.assert_allclose(final.h, h, rtol=1e-12)
    ys_eval, _ = layer.apply(p, xs)
    np.testing.assert_allclose(ys_eval, rnnjax.run(cell, p, xs)[0], rtol=1e-12)
