"""Resets inside a sequence: the carry set back to the initial carry before marked steps,
for every engine (sequential, associative, hand-written BPTT), with lengths and reverse."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.engine import bptt

B, T, F, H = 3, 9, 2, 4
RESETS = np.zeros((B, T), bool)
RESETS[0, [3, 6]] = True
RESETS[1, 5] = True          # past length 4 of sequence 1: ignored
RESETS[2, [0, 1, 8]] = True  # a reset at t=0 changes nothing
LENGTHS = np.array([9, 4, 9])


def _f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def _setup(cell, seed=0):
    params = _f64(cell.init(jax.random.key(seed), F))
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, F), jnp.float64)
    carry = jax.tree.map(lambda a: 0.3 * jax.random.normal(jax.random.key(seed + 2), a.shape,
                                                             a.dtype),
                         cell.initial_carry((B,), jnp.float64))
    return params, xs, carry


def _segments(b, reverse):
    """Segments ``[s, e)`` of sequence ``b`` within its length."""
    L = LENGTHS[b]
    bounds = [0] + [t for t in range(1, L) if RESETS[b, t]] + [L]
    return list(zip(bounds[:-1], bounds[1:]))


def _separately(cell, params, xs, carry, reverse):
    """Outputs and final carry from running every segment alone from the initial carry."""
    ys = np.zeros((B, T, cell.output_size))
    finals = []
    for b in range(B):
        c0 = jax.tree.map(lambda a: a[b], carry)
        segs = _segments(b, reverse)
        final = c0
        for s, e in segs:
            y, fin = rnnjax.run(cell, params, xs[b, s:e], carry=c0, reverse=reverse)
            ys[b, s:e] = y
            if (not reverse and e == segs[-1][1]) or (reverse and s == 0):
                final = fin
        finals.append(final)
    return ys, jax.tree.map(lambda *a: np.stack(a), *finals)


ENGINES = [
    (cells.lstm, "autodiff", "sequential"),
    (cells.gru, "manual", "sequential"),
    (cells.lstm, "manual", "sequential"),
    (cells.elman, "manual", "sequential"),
    (lambda h: cells.lru(h, 0.5, 0.9, model_size=F), "auto", "associative"),
    (lambda h: cells.elman(h, "identity"), "auto", "associative"),
]


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("make,grad,scan", ENGINES)
def test_resets_equal_running_each_segment_alone(make, grad, scan, reverse):
    cell = make(H)
    params, xs, carry = _setup(cell)
    ys, final = rnnjax.run(cell, params, xs, carry=carry, lengths=LENGTHS, resets=RESETS,
                           reverse=reverse, grad=grad, scan=scan)
    want_ys, want_final = _separately(cell, params, xs, carry, reverse)
    np.testing.assert_allclose(ys, want_ys, rtol=1e-10, atol=1e-12)
    for a, w in zip(jax.tree.leaves(final), jax.tree.leaves(want_final)):
        np.testing.assert_allclose(a, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("make,grad,scan", ENGINES)
def test_gradients_with_resets_equal_the_sum_over_segments(make, grad, scan, reverse):
    cell = make(H)
    params, xs, carry = _setup(cell, seed=3)
    w = jax.random.normal(jax.random.key(9), (B, T, cell.output_size), jnp.float64)

    def loss(p, x, c):
        ys, final = rnnjax.run(cell, p, x, carry=c, lengths=LENGTHS, resets=RESETS,
                               reverse=reverse, grad=grad, scan=scan)
        return jnp.sum(w * jnp.real(ys)) + sum(jnp.sum(jnp.abs(l) ** 2)
                                               for l in jax.tree.leaves(final))

    def loss_separately(p, x, c):
        total = 0.0
        for b in range(B):
            c0 = jax.tree.map(lambda a: a[b], c)
            segs = _segments(b, reverse)
            for s, e in segs:
                ys, fin = rnnjax.run(cell, p, x[b, s:e], carry=c0, reverse=reverse,
                                     grad="autodiff")
                total = total + jnp.sum(w[b, s:e] * jnp.real(ys))
                if (not reverse and e == segs[-1][1]) or (reverse and s == 0):
                    total = total + sum(jnp.sum(jnp.abs(l) ** 2) for l in jax.tree.leaves(fin))
        return total

    got = jax.grad(loss, argnums=(0, 1, 2))(params, xs, carry)
    want = jax.grad(loss_separately, argnums=(0, 1, 2))(params, xs, carry)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)


def test_no_gradient_crosses_a_reset():
    cell = cells.gru(H)
    params, xs, _ = _setup(cell)
    resets = np.zeros((B, T), bool)
    resets[:, 5] = True
    for grad in ("autodiff", "manual"):
        dx = jax.grad(lambda x: rnnjax.run(cell, params, x, resets=resets, grad=grad)[0]
                      [:, 5:].sum())(xs)
        assert np.all(np.asarray(dx[:, :5]) == 0.0), grad
        assert np.all(np.abs(np.asarray(dx[:, 5:])) > 0), grad


def test_bptt_with_resets_equals_autodiff():
    cell = cells.lstm(H)
    params, xs, carry = _setup(cell)
    dys = jax.random.normal(jax.random.key(4), (B, T, H), jnp.float64)
    got = bptt.bptt(cell, params, xs, dys, carry=carry, lengths=LENGTHS, resets=RESETS,
                    reverse=True, chunk=4)
    _, vjp = jax.vjp(lambda p, x, c: rnnjax.run(cell, p, x, carry=c, lengths=LENGTHS,
                                                resets=RESETS, reverse=True)[0],
                     params, xs, carry)
    dp, dx, dc = vjp(dys)
    for k in dp:
        np.testing.assert_allclose(got.d_params[k], dp[k], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got.d_xs, dx, rtol=1e-10, atol=1e-12)
    for a, b in zip(got.d_carry, dc):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_bidirectional_layer_with_resets():
    layer = rnnjax.bidirectional(cells.gru(H))
    params = _f64(layer.init(jax.random.key(0), F))
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float64)
    ys, _ = layer.apply(params, xs, lengths=LENGTHS, resets=RESETS)
    fwd, _ = rnnjax.run(cells.gru(H), params["fwd"], xs, lengths=LENGTHS, resets=RESETS)
    bwd, _ = rnnjax.run(cells.gru(H), params["bwd"], xs, lengths=LENGTHS, resets=RESETS,
                        reverse=True)
    np.testing.assert_allclose(ys, np.concatenate([fwd, bwd], -1), rtol=1e-12)


def test_resets_are_checked():
    cell = cells.gru(H)
    params, xs, _ = _setup(cell)
    with pytest.raises(ValueError, match=r"resets must have shape \(\*batch, time\)"):
        rnnjax.run(cell, params, xs, resets=np.zeros((B, T + 1), bool))
    with pytest.raises(TypeError, match="resets must be a boolean array, got dtype int"):
        rnnjax.run(cell, params, xs, resets=np.zeros((B, T), int))
