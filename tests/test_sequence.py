"""The sequence engine against a Python loop over ``step``, autodiff and its own promises."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from helpers import CountCompiles, to_f64
from rnnjax import cells

F, H, T = 3, 4, 6

CELLS = {
    "elman": lambda: cells.elman(H),
    "elman-relu": lambda: cells.elman(H, activation="relu", init="orthogonal"),
    "irnn": lambda: cells.irnn(H),
    "lstm": lambda: cells.lstm(H),
    "lstm-ln": lambda: cells.lstm(H, layer_norm=True),
    "gru": lambda: cells.gru(H, init="uniform"),
}


def setup(name, batch=(2,), dtype=jnp.float64, seed=0):
    cell = CELLS[name]()
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = cell.init(k1, F)
    params = to_f64(params) if dtype == jnp.float64 else params
    xs = jax.random.normal(k2, batch + (T, F), dtype)
    return cell, params, xs


def loop(cell, params, xs, carry=None):
    """Reference: a Python loop over ``cell.step`` for one unbatched sequence (T, F)."""
    w = cell.prepare(params)
    carry = cell.initial_carry((), xs.dtype) if carry is None else carry
    ys = []
    for x in xs:
        carry, y = cell.step(w, carry, x)
        ys.append(y)
    return jnp.stack(ys), carry


@pytest.mark.parametrize("name", CELLS)
def test_run_equals_python_loop(name):
    cell, params, xs = setup(name, batch=(2, 3))
    ys, final = rnnjax.run(cell, params, xs)
    assert ys.shape == (2, 3, T, cell.output_size)
    for i in range(2):
        for j in range(3):
            ys_ref, c_ref = loop(cell, params, xs[i, j])
            np.testing.assert_allclose(ys[i, j], ys_ref, rtol=1e-12, atol=1e-12)
            for a, b in zip(final, c_ref):
                np.testing.assert_allclose(a[i, j], b, rtol=1e-12, atol=1e-12)


def test_unbatched_and_time_major_layouts():
    cell, params, xs = setup("lstm", batch=(2,))
    ys, final = rnnjax.run(cell, params, xs)
    ys1, final1 = rnnjax.run(cell, params, xs[1])  # no batch axis at all
    np.testing.assert_allclose(ys1, ys[1], rtol=1e-12)
    np.testing.assert_allclose(final1.c, final.c[1], rtol=1e-12)
    ys_tm, final_tm = rnnjax.run(cell, params, jnp.swapaxes(xs, 0, 1), time_major=True)
    np.testing.assert_allclose(jnp.swapaxes(ys_tm, 0, 1), ys, rtol=1e-12)
    np.testing.assert_allclose(final_tm.h, final.h, rtol=1e-12)


def test_initial_carry_is_used():
    cell, params, xs = setup("gru", batch=(2,))
    h0 = jax.random.normal(jax.random.key(5), (2, H))
    ys, final = rnnjax.run(cell, params, xs, carry=rnnjax.HiddenState(h0))
    ys_ref, c_ref = loop(cell, params, xs[1], rnnjax.HiddenState(h0[1]))
    np.testing.assert_allclose(ys[1], ys_ref, rtol=1e-12)
    np.testing.assert_allclose(final.h[1], c_ref.h, rtol=1e-12)


def test_jit_equals_no_jit_and_no_recompile():
    cell, params, xs = setup("lstm", dtype=jnp.float32)
    ys, _ = rnnjax.run(cell, params, xs)
    ys_jit, _ = jax.jit(lambda p, x: rnnjax.run(cell, p, x))(params, xs)
    np.testing.assert_allclose(ys_jit, ys, rtol=1e-6, atol=1e-6)
    others = [xs + 1.0, xs * 2.0]  # new values of the same shape and dtype
    with CountCompiles() as compiles:
        for x in others:
            jax.block_until_ready(rnnjax.run(cell, params, x))
    assert compiles.count == 0
    shorter = xs[:, :3]
    with CountCompiles() as compiles:  # the counter sees a compilation: a new shape
        jax.block_until_ready(rnnjax.run(cell, params, shorter))
    assert compiles.count > 0


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("with_lengths", [False, True])
def test_check_grads_float64(name, with_lengths):
    cell, params, xs = setup(name, batch=(2,))
    lengths = jnp.array([T, 3]) if with_lengths else None
    if name == "irnn":  # keep ReLU pre-activations away from the kink finite differences cross
        params = {**params, "b": params["b"] + 0.5}

    def f(p, x):
        ys, final = rnnjax.run(cell, p, x, lengths=lengths)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final.h ** 2)

    check_grads(f, (params, xs), order=2, modes=("rev",), atol=1e-5, rtol=1e-5, eps=1e-6)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("reverse", [False, True])
def test_padded_batch_equals_each_sequence_alone(name, reverse):
    cell, params, xs = setup(name, batch=(4,))
    lengths = jnp.array([T, 4, 1, 0])

    def loss(p, x, lengths=None):
        ys, final = rnnjax.run(cell, p, x, lengths=lengths, reverse=reverse)
        return jnp.sum(ys ** 3) + jnp.sum(final.h), (ys, final)

    (l_pad, (ys, final)), g_pad = jax.value_and_grad(loss, has_aux=True)(
        params, xs, lengths)
    total, grads = 0.0, jax.tree.map(jnp.zeros_like, params)
    for b, L in enumerate(np.asarray(lengths)):
        (l_b, (ys_b, final_b)), g_b = jax.value_and_grad(loss, has_aux=True)(
            params, xs[b, :L])
        np.testing.assert_allclose(ys[b, :L], ys_b, rtol=1e-12, atol=1e-12)
        assert np.all(np.asarray(ys[b, L:]) == 0.0)  # padded outputs exactly zero
        for a, c in zip(final, final_b):
            np.testing.assert_allclose(a[b], c, rtol=1e-12, atol=1e-12)
        total += l_b
        grads = jax.tree.map(jnp.add, grads, g_b)
    np.testing.assert_allclose(l_pad, total, rtol=1e-12)
    for a, c in zip(jax.tree.leaves(g_pad), jax.tree.leaves(grads)):
        np.testing.assert_allclose(a, c, rtol=1e-10, atol=1e-12)


def test_length_zero_returns_initial_carry():
    cell, params, xs = setup("lstm", batch=(2,))
    c0 = rnnjax.LSTMState(jnp.ones((2, H)), 2 * jnp.ones((2, H)))
    ys, final = rnnjax.run(cell, params, xs, carry=c0, lengths=jnp.array([0, 0]))
    assert np.all(np.asarray(ys) == 0.0)
    np.testing.assert_array_equal(final.h, c0.h)
    np.testing.assert_array_equal(final.c, c0.c)


def test_reverse_within_length():
    cell, params, xs = setup("gru", batch=(2,))
    lengths = jnp.array([T, 4])
    ys, final = rnnjax.run(cell, params, xs, lengths=lengths, reverse=True)
    ys_ref, c_ref = loop(cell, params, xs[1, :4][::-1])
    np.testing.assert_allclose(ys[1, :4], ys_ref[::-1], rtol=1e-12)
    np.testing.assert_allclose(final.h[1], c_ref.h, rtol=1e-12)
    x = np.arange(12.0).reshape(6, 2, 1)
    flipped = rnnjax.flip_sequences(jnp.asarray(x), jnp.array([6, 4]))
    assert flipped[:, 1, 0].tolist() == [7.0, 5.0, 3.0, 1.0, 9.0, 11.0]
    np.testing.assert_array_equal(rnnjax.flip_sequences(flipped, jnp.array([6, 4])), x)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_causality(name):
    cell, params, xs = setup(name, batch=())
    jac = jax.jacrev(lambda x: rnnjax.run(cell, params, x)[0])(xs)  # (T, O, T, F)
    for t in range(T):
        assert np.all(np.asarray(jac[t, :, t + 1:]) == 0.0)
        assert np.any(np.asarray(jac[t, :, : t + 1]) != 0.0)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_truncate_equals_explicit_stop_gradient(k):
    cell, params, xs = setup("lstm", batch=(2,))
    w_loss = jax.random.normal(jax.random.key(9), (T, H))

    def loss_engine(p, x, truncate):
        ys, _ = rnnjax.run(cell, p, x, truncate=truncate)
        return jnp.sum(ys * w_loss)

    def loss_explicit(p, x):
        w = cell.prepare(p)
        carry = cell.initial_carry((2,), x.dtype)
        step = jax.vmap(cell.step, in_axes=(None, 0, 0))
        total = 0.0
        for t in range(T):
            if t > 0 and t % k == 0:
                carry = jax.lax.stop_gradient(carry)
            carry, y = step(w, carry, x[:, t])
            total = total + jnp.sum(y * w_loss[t])
        return total

    g = jax.grad(loss_engine, argnums=(0, 1))(params, xs, k)
    g_ref = jax.grad(loss_explicit, argnums=(0, 1))(params, xs)
    for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # forward values unchanged; truncate=None is full BPTT
    np.testing.assert_allclose(loss_engine(params, xs, k), loss_engine(params, xs, None))
    g_full = jax.grad(loss_engine)(params, xs, None)
    g_auto = jax.grad(lambda p: jnp.sum(jnp.stack(
        [loop(cell, p, xs[i])[0] for i in range(2)]) * w_loss))(params)
    for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_auto)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    if k < T:  # the cut really changes the gradient
        assert not np.allclose(g[0]["W_hh"], g_full["W_hh"])


@pytest.mark.parametrize("options", [{"remat": True}, {"unroll": 3}])
def test_remat_and_unroll_change_nothing(options):
    cell, params, xs = setup("lstm", batch=(2,))
    lengths = jnp.array([T, 2])

    def loss(p, **kw):
        ys, final = rnnjax.run(cell, p, xs, lengths=lengths, **kw)
        return jnp.sum(jnp.tanh(ys)) + jnp.sum(final.c)

    np.testing.assert_allclose(loss(params, **options), loss(params), rtol=1e-12)
    for a, b in zip(jax.tree.leaves(jax.grad(loss)(params, **options)),
                    jax.tree.leaves(jax.grad(loss)(params))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_recurrent_matrix():
    cell, params, _ = setup("gru")
    np.testing.assert_array_equal(rnnjax.recurrent_matrix(cell, params), params["W_hh"])
