"""Paper recipes: TF1 / Theano RMSprop against NumPy transcriptions of their update
rules, and the reference codes' initial statistics."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
from rnnjax import optim


def _numpy_rmsprop(p, grads, lr, decay, eps, acc0):
    # tf.train.RMSPropOptimizer (momentum 0): ms = decay ms + (1-decay) g^2 (ms_0 = 1),
    # p -= lr g / sqrt(ms + eps).  Theano rms_prop (amarshah/complex_RNN):
    # r = 0.9 r + 0.1 g^2 (r_0 = 1e-3), p -= lr g / sqrt(r).
    ms = np.full_like(p, acc0)
    for g in grads:
        ms = decay * ms + (1.0 - decay) * g * g
        p = p - lr * g / np.sqrt(ms + eps)
    return p


@pytest.mark.parametrize("name,eps,acc0", [("rmsprop_tf1", 1e-10, 1.0),
                                           ("rmsprop_theano", 0.0, 1e-3)])
def test_rmsprop_conventions_match_numpy_over_20_steps(name, eps, acc0):
    rng = np.random.default_rng(1)
    a0, v0 = rng.normal(size=(3, 3)), rng.normal(size=5)
    grads = [(rng.normal(size=(3, 3)) * 10 ** rng.uniform(-3, 1), rng.normal(size=5))
             for _ in range(20)]
    lr, lr_orth = 1e-2, 1e-3
    tx = optim.recipe(name, lr=lr, lr_orth=lr_orth)
    params = {"skew": jnp.asarray(a0), "V": jnp.asarray(v0)}
    state = tx.init(params)
    for ga, gv in grads:
        u, state = tx.update({"skew": jnp.asarray(ga), "V": jnp.asarray(gv)}, state, params)
        params = optax.apply_updates(params, u)
    want_a = _numpy_rmsprop(a0, [g[0] for g in grads], lr_orth, 0.9, eps, acc0)
    want_v = _numpy_rmsprop(v0, [g[1] for g in grads], lr, 0.9, eps, acc0)
    np.testing.assert_allclose(params["skew"], want_a, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(params["V"], want_v, rtol=1e-12, atol=1e-14)
    # the first step differs from PyTorch's RMSprop (accumulator from 0, eps outside)
    torch_like = optim.recipe("rmsprop", lr=lr, lr_orth=lr_orth, decay=0.9)
    u_t, _ = torch_like.update({"skew": jnp.asarray(grads[0][0]), "V": jnp.asarray(grads[0][1])},
                               torch_like.init(params), params)
    u_n, _ = optim.recipe(name, lr=lr, lr_orth=lr_orth).update(
        {"skew": jnp.asarray(grads[0][0]), "V": jnp.asarray(grads[0][1])},
        optim.recipe(name, lr=lr, lr_orth=lr_orth).init(params), params)
    assert not np.allclose(u_t["V"], u_n["V"], rtol=1e-2)


def test_rmsprop_accumulator_takes_a_schedule():
    tx = optim.rmsprop_tf1(optax.linear_schedule(1.0, 0.0, 2))
    p = {"w": jnp.ones(2)}
    s = tx.init(p)
    u1, s = tx.update({"w": jnp.ones(2)}, s)
    u2, s = tx.update({"w": jnp.ones(2)}, s)
    np.testing.assert_allclose(u1["w"], -1.0 / np.sqrt(1.0 + 1e-10))
    np.testing.assert_allclose(u2["w"], -0.5 / np.sqrt(1.0 + 1e-10))


def _cell(name, H=256, F=64, seed=0):
    r = optim.PAPER_RECIPES[name]
    cell = rnnjax.cells.make(name, H, **dict(r.cell_options))
    return cell.init(jax.random.key(seed), F)


def test_urnn_recipe_statistics():
    H, F = 256, 64
    p = _cell("urnn", H, F)
    a = math.sqrt(6.0 / (2 + 2 * H))  # Glorot bound of the (2, 2H) reflection matrix
    r = np.asarray(p["reflections"])
    assert np.abs(r).max() <= a and np.abs(r).max() > 0.95 * a
    np.testing.assert_allclose(r.std(), a / math.sqrt(3), rtol=0.1)
    bv = math.sqrt(6.0 / (F + 2 * H))  # V: Glorot of the (F, 2H) matrix
    for k in ("V_re", "V_im"):
        np.testing.assert_allclose(np.asarray(p[k]).std(), bv / math.sqrt(3), rtol=0.05)
        assert np.abs(np.asarray(p[k])).max() <= bv
    b = np.asarray(p["b"])
    assert np.abs(b).max() <= 0.01 and b.std() > 0.004
    ph = np.asarray(p["phases"])
    assert np.abs(ph).max() <= math.pi and ph.std() > 1.6


@pytest.mark.parametrize("name,V", [("eunn", ("V_re", "V_im")), ("scornn", ("V",))])
def test_tf_recipes_inputs_uniform_small(name, V):
    p = _cell(name)
    for k in V:
        v = np.asarray(p[k])
        assert np.abs(v).max() <= 0.01
        np.testing.assert_allclose(v.std(), 0.01 / math.sqrt(3), rtol=0.05)
    np.testing.assert_array_equal(p["b"], 0.0)
    # the default (He for scoRNN, N(0, 1/2F) for EUNN) is 15-40x larger at F=64
    d = rnnjax.cells.make(name, 256).init(jax.random.key(0), 64)
    assert np.asarray(d[V[0]]).std() > 10 * np.asarray(p[V[0]]).std()


def test_householder_recipe_unit_lower_triangular_vectors():
    p = _cell("householder", 16, 3)
    u = np.asarray(p["reflections"])
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-6)
    assert np.all(u[np.tril_indices(16, -1)] == 0)  # u_k is zero before entry k
    w = np.asarray(rnnjax.cells.householder(16, init="mhammedi").recurrent_matrix(p))
    np.testing.assert_allclose(w.T @ w, np.eye(16), atol=1e-5)


def test_exprnn_recipe_is_the_he_init_and_lstm_recipe_is_pytorch():
    H, F = 256, 64
    p = _cell("exprnn", H, F)
    np.testing.assert_allclose(np.asarray(p["V"]).std(), math.sqrt(2.0 / F), rtol=0.05)
    q = _cell("lstm", H, F)
    k = 1 / math.sqrt(H)
    assert np.abs(np.asarray(q["W_hh"])).max() <= k
    np.testing.assert_allclose(np.asarray(q["W_hh"]).std(), k / math.sqrt(3), rtol=0.05)


def test_every_recipe_builds_its_optimizer():
    for name, r in optim.PAPER_RECIPES.items():
        assert r.source and r.optimizer in optim.OPTIMIZERS, name
        params = _cell(name, 8, 3)
        tx = optim.recipe(r.optimizer, lr=r.lr, lr_orth=r.lr_orth, clip=r.clip)
        g = jax.tree.map(jnp.ones_like, params)
        u, _ = tx.update(g, tx.init(params), params)
        assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(u))


def test_bad_input_init_is_named():
    with pytest.raises(ValueError, match="input_init"):
        rnnjax.cells.exprnn(4, input_init="xavier")


def _dtriv_run(k, steps=7):
    from rnnjax.training.runner import Config, train
    cfg = Config(task="copy", cell="exprnn", T=4, hidden=6, batch=4, steps=steps, lr=1e-2,
                 lr_orth=1e-2, log_every=steps, eval_batch=4,
                 cell_options=(("dynamic", True), ("init", "haar")), retrivialize_every=k)
    return train(cfg, progress=False).state.params["cell"]


def test_runner_retrivializes_every_k_steps_and_w_stays_orthogonal():
    p = _dtriv_run(3)  # re-trivialised after steps 3 and 6, step 7 moves the skew again
    base, skew = np.asarray(p["base"][0]), np.asarray(p["skew"][0])
    assert np.abs(base - np.eye(6)).max() > 1e-3  # the base changed
    np.testing.assert_allclose(base.T @ base, np.eye(6), atol=1e-5)
    assert np.abs(np.triu(skew, 1)).max() > 0  # one step since the last fold
    w = np.asarray(rnnjax.cells.exprnn(6, dynamic=True).recurrent_matrix(
        jax.tree.map(lambda a: a[0], p)))
    np.testing.assert_allclose(w.T @ w, np.eye(6), atol=1e-5)
    q = _dtriv_run(0)  # K = 0: static trivialization, the base never moves
    np.testing.assert_array_equal(q["base"][0], np.eye(6))
    r = _dtriv_run(3, steps=6)  # right after a fold the skew is zero
    np.testing.assert_array_equal(r["skew"][0], 0.0)


def test_retrivialize_keeps_w_and_projects_the_base():
    cell = rnnjax.cells.exprnn(5, dynamic=True, init="haar")
    p = cell.init(jax.random.key(0), 2)
    p = {**p, "base": p["base"] * (1 + 1e-4)}  # a slightly non-orthogonal base
    q = rnnjax.parametrize.retrivialize(p)
    w0 = np.asarray(cell.recurrent_matrix(p))
    w1 = np.asarray(cell.recurrent_matrix(q))
    np.testing.assert_allclose(w1, w0 / (1 + 1e-4), atol=1e-5)
    np.testing.assert_allclose(w1.T @ w1, np.eye(5), atol=1e-5)
    np.testing.assert_array_equal(q["skew"], 0.0)
