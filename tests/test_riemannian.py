"""Riemannian optax transformations: manifold preservation, tangency, Procrustes, and
the Cayley step against Wisdom et al.'s formula written in NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnjax import cells, optim, run
from rnnjax.optim.riemannian import from_leaf, project, riemannian, riemannian_gradient

RETRACTIONS = ("cayley", "qr", "polar")


def _point(manifold, n, p, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if manifold == "unitary":
        z = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
        q = np.linalg.qr(z)[0]
        return jnp.asarray(np.stack([q.real, q.imag]), dtype)
    q = np.linalg.qr(rng.normal(size=(n, p if manifold == "stiefel" else n)))[0]
    return jnp.asarray(q, dtype)


def _error(manifold, x):
    w = np.asarray(from_leaf(manifold, x), np.complex128)
    return np.linalg.norm(w.conj().T @ w - np.eye(w.shape[1]))


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
@pytest.mark.parametrize("manifold", ["orthogonal", "unitary", "stiefel"])
@pytest.mark.parametrize("retraction", RETRACTIONS)
def test_stays_on_manifold_after_1000_steps(manifold, retraction, dtype, tol):
    x = _point(manifold, 6, 3, dtype)
    tx = riemannian(optax.adam(0.05), manifold, retraction)
    state = tx.init(x)

    def body(carry, key):
        x, state = carry
        g = jax.random.normal(key, x.shape, dtype)
        u, state = tx.update(g, state, x)
        return (optax.apply_updates(x, u), state), None

    (x1, _), _ = jax.lax.scan(body, (x, state), jax.random.split(jax.random.key(1), 1000))
    assert x1.dtype == dtype
    assert _error(manifold, x1) <= tol
    assert float(jnp.max(jnp.abs(x1 - x))) > 0.1  # it moved


@pytest.mark.parametrize("manifold", ["orthogonal", "unitary", "stiefel"])
def test_riemannian_gradient_is_tangent(manifold):
    x = _point(manifold, 5, 3, jnp.float64)
    w = from_leaf(manifold, x)
    g = from_leaf(manifold, jax.random.normal(jax.random.key(2), x.shape, jnp.float64))
    for xi in (riemannian_gradient(w, g), project(w, g)):
        t = w.conj().T @ xi + xi.conj().T @ w
        assert float(jnp.max(jnp.abs(t))) < 1e-13
        assert float(jnp.max(jnp.abs(xi))) > 1e-2
    # projection is idempotent and the canonical gradient is already tangent
    np.testing.assert_allclose(project(w, project(w, g)), project(w, g), atol=1e-13)
    rg = riemannian_gradient(w, g)
    np.testing.assert_allclose(project(w, rg), rg, atol=1e-13)


def _wisdom_step(x, g, lr):
    """Wisdom et al. 2016, eq. (9), in NumPy: W' = (I + lr/2 A)^{-1} (I - lr/2 A) W,
    A = G W^H - W G^H, on the complex matrix of a real pair (2, n, n)."""
    W = x[0] + 1j * x[1]
    G = g[0] + 1j * g[1]
    A = G @ W.conj().T - W @ G.conj().T
    eye = np.eye(W.shape[0])
    Wn = np.linalg.inv(eye + lr / 2 * A) @ (eye - lr / 2 * A) @ W
    return np.stack([Wn.real, Wn.imag])


def test_cayley_step_equals_wisdom_formula():
    x = _point("unitary", 5, 5, jnp.float64)
    g = np.random.default_rng(3).normal(size=(2, 5, 5))
    tx = riemannian(optax.sgd(0.1), "unitary", "cayley")
    u, _ = tx.update(jnp.asarray(g), tx.init(x), x)
    np.testing.assert_allclose(np.asarray(x + u), _wisdom_step(np.asarray(x), g, 0.1),
                               atol=1e-13)
    # the real case is the same formula with real matrices
    xr = _point("orthogonal", 5, 5, jnp.float64)
    tx = riemannian(optax.sgd(0.1))
    u, _ = tx.update(jnp.asarray(g[0]), tx.init(xr), xr)
    expect = _wisdom_step(np.stack([np.asarray(xr), 0 * g[0]]), np.stack([g[0], 0 * g[0]]),
                          0.1)
    np.testing.assert_allclose(np.asarray(xr + u), expect[0], atol=1e-13)


@pytest.mark.parametrize("retraction", RETRACTIONS)
@pytest.mark.parametrize("manifold", ["orthogonal", "stiefel"])
def test_procrustes_converges_to_svd_solution(manifold, retraction):
    """min ||W A - B||_F over W on the manifold: W* = U V^T from B A^T = U S V^T."""
    rng = np.random.default_rng(4)
    n, p, m = 6, (3 if manifold == "stiefel" else 6), 20
    A = rng.normal(size=(p, m))
    W_true = np.linalg.qr(rng.normal(size=(n, p)))[0]
    B = W_true @ A + 0.1 * rng.normal(size=(n, m))
    U, _, Vt = np.linalg.svd(B @ A.T, full_matrices=False)
    W_star = U @ Vt
    loss = lambda w: 0.5 * jnp.sum((w @ A - B) ** 2)
    tx = riemannian(optax.sgd(0.01, momentum=0.5), manifold, retraction)
    w = _point(manifold, n, p, jnp.float64, seed=5)
    state = tx.init(w)

    @jax.jit
    def step(w, state):
        u, state = tx.update(jax.grad(loss)(w), state, w)
        return optax.apply_updates(w, u), state

    for _ in range(300):
        w, state = step(w, state)
    np.testing.assert_allclose(np.asarray(w), W_star, atol=1e-6)


def test_composes_with_multi_transform_and_chain():
    """Only the labelled leaf moves on the manifold; the others get plain Adam; the
    clipping before it acts on all gradients together."""
    cell = cells.elman(4, init="orthogonal")
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          cell.init(jax.random.key(0), 3))
    params["W_hh"] = _point("orthogonal", 4, 4, jnp.float64, seed=6)  # exact in float64
    labels = lambda p: optim.label_params(p, orthogonal_keys={"W_hh"})
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.multi_transform(
        {"orthogonal": riemannian(optax.sgd(0.5)), "other": optax.sgd(0.5),
         "frozen": optax.set_to_zero()}, labels))
    grads = jax.tree.map(lambda a: jnp.ones_like(a), params)
    u, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, u)
    scale = 1.0 / np.sqrt(sum(a.size for a in jax.tree.leaves(params)))
    np.testing.assert_allclose(new["b"], params["b"] - 0.5 * scale, atol=1e-14)
    W = np.asarray(new["W_hh"])
    np.testing.assert_allclose(W.T @ W, np.eye(4), atol=1e-13)
    expect = _wisdom_step(np.stack([np.asarray(params["W_hh"]), np.zeros((4, 4))]),
                          np.stack([np.full((4, 4), scale), np.zeros((4, 4))]), 0.5)[0]
    np.testing.assert_allclose(W, expect, atol=1e-13)


def test_fcurnn_trains_with_wisdom_cayley_update():
    """The full-capacity uRNN stores W as a real pair and stays unitary under the
    Cayley update while its loss falls."""
    cell = cells.fcurnn(4, param="cayley")
    params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 2))
    xs = jax.random.normal(jax.random.key(1), (8, 6, 2), jnp.float64)
    target = jax.random.normal(jax.random.key(2), (8, 8), jnp.float64)

    def loss(p):
        ys, _ = run(cell, p, xs)
        return jnp.mean((ys[:, -1] - target) ** 2)

    tx = optax.multi_transform(
        {"unitary": riemannian(optax.sgd(0.2), "unitary"), "other": optax.sgd(0.2)},
        lambda p: {k: "unitary" if k == "unitary" else "other" for k in p})
    state = tx.init(params)
    l0 = float(loss(params))

    @jax.jit
    def step(params, state):
        u, state = tx.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, u), state

    for _ in range(30):
        params, state = step(params, state)
    assert float(loss(params)) < 0.9 * l0
    W = np.asarray(cell.recurrent_matrix(params))
    np.testing.assert_allclose(W.conj().T @ W, np.eye(4), atol=1e-12)


def test_bad_arguments():
    with pytest.raises(ValueError, match="manifold"):
        riemannian(optax.sgd(1.0), "sphere")
    with pytest.raises(ValueError, match="retraction"):
        riemannian(optax.sgd(1.0), retraction="exp")
    with pytest.raises(TypeError, match="inner"):
        riemannian(0.1)
    with pytest.raises(ValueError, match=r"\(\.\.\., n, n\)"):
        riemannian().init(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="n >= p"):
        riemannian(manifold="stiefel").init(jnp.zeros((3, 4)))
    with pytest.raises(ValueError, match="params"):
        tx = riemannian()
        tx.update(jnp.eye(3), tx.init(jnp.eye(3)))
    assert optim.riemannian is riemannian
