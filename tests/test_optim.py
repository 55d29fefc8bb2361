"""The optimizer recipe: param groups, learning rates, clipping, parity with PyTorch."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import rnnjax
from rnnjax import optim


def test_labels_of_every_cell():
    expected = {
        "exprnn": {"skew": "orthogonal", "base": "frozen", "V": "other", "b": "other"},
        "scornn": {"skew": "orthogonal", "V": "other", "b": "other"},
        "householder": {"reflections": "orthogonal", "V": "other", "b": "other"},
        "urnn": {"phases": "orthogonal", "reflections": "orthogonal", "V_re": "other",
                 "V_im": "other", "b": "other"},
        "eunn": {"angles": "orthogonal", "phases": "orthogonal", "V_re": "other",
                 "V_im": "other", "b": "other"},
        "fcurnn": {"skew": "orthogonal", "V_re": "other", "V_im": "other", "b": "other"},
        "elman": {"W_xh": "other", "W_hh": "other", "b": "other"},
    }
    for name, labels in expected.items():
        kw = {"dynamic": True} if name == "exprnn" else {}
        params = rnnjax.cells.make(name, 4, **kw).init(jax.random.key(0), 2)
        # nested under a model dict, next to a readout
        got = optim.label_params({"rnn": [params], "readout": {"w": jnp.ones(2)}})
        assert got["rnn"][0] == labels, name
        assert got["readout"] == {"w": "other"}


def test_sgd_rates_per_group_and_frozen_base():
    params = {"skew": jnp.ones((2, 2)), "base": jnp.eye(2), "V": jnp.ones(3)}
    grads = {"skew": jnp.full((2, 2), 2.0), "base": jnp.ones((2, 2)), "V": jnp.full(3, 3.0)}
    tx = optim.recipe("sgd", lr=0.5, lr_orth=0.01)
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["skew"], -0.02)
    np.testing.assert_allclose(u["V"], -1.5)
    np.testing.assert_array_equal(u["base"], 0)
    tx = optim.recipe("sgd", lr=0.5)  # default lr_orth = lr / 10
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["skew"], -0.1)


def test_clipping_uses_the_global_norm_of_all_groups():
    params = {"skew": jnp.zeros(2), "V": jnp.zeros(2)}
    grads = {"skew": jnp.array([3.0, 0.0]), "V": jnp.array([0.0, 4.0])}  # global norm 5
    tx = optim.recipe("sgd", lr=1.0, lr_orth=1.0, clip=1.0)
    u, _ = tx.update(grads, tx.init(params), params)
    np.testing.assert_allclose(u["skew"], [-0.6, 0.0], rtol=1e-6)
    np.testing.assert_allclose(u["V"], [0.0, -0.8], rtol=1e-6)


@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_matches_pytorch_with_two_learning_rates(name):
    rng = np.random.default_rng(0)
    a0, v0 = rng.normal(size=(3, 3)), rng.normal(size=4)
    grads = [(rng.normal(size=(3, 3)), rng.normal(size=4)) for _ in range(5)]
    lr, lr_orth = 1e-2, 1e-3
    ta = torch.tensor(a0, requires_grad=True)
    tv = torch.tensor(v0, requires_grad=True)
    groups = [{"params": [ta], "lr": lr_orth}, {"params": [tv], "lr": lr}]
    topt = (torch.optim.RMSprop(groups, lr=lr, alpha=0.99, eps=1e-8) if name == "rmsprop"
            else torch.optim.Adam(groups, lr=lr, eps=1e-8))
    tx = optim.recipe(name, lr=lr, lr_orth=lr_orth)
    params = {"skew": jnp.asarray(a0), "V": jnp.asarray(v0)}
    state = tx.init(params)
    for ga, gv in grads:
        ta.grad, tv.grad = torch.tensor(ga), torch.tensor(gv)
        topt.step()
        u, state = tx.update({"skew": jnp.asarray(ga), "V": jnp.asarray(gv)}, state, params)
        params = optax.apply_updates(params, u)
    np.testing.assert_allclose(params["skew"], ta.detach().numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(params["V"], tv.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_training_loop_with_dynamic_trivialization():
    """A few recipe steps on a real loss with a refresh every K = 3 steps: W stays
    orthogonal, the loss is unchanged by each refresh, and the loss goes down."""
    cell = rnnjax.cells.exprnn(6, dynamic=True)
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          cell.init(jax.random.key(0), 2))
    xs = jax.random.normal(jax.random.key(1), (4, 10, 2), jnp.float64)

    def loss(p):
        ys, _ = rnnjax.run(cell, p, xs)
        return jnp.mean((ys[:, -1, :2] - 0.5) ** 2)

    tx = optim.recipe("rmsprop", lr=1e-2, lr_orth=1e-2, clip=1.0)
    state = tx.init(params)
    step = jax.jit(lambda p, s: tx.update(jax.grad(loss)(p), s, p))
    first = float(loss(params))
    for i in range(1, 13):
        u, state = step(params, state)
        params = optax.apply_updates(params, u)
        if i % 3 == 0:
            before = float(loss(params))
            params = rnnjax.parametrize.retrivialize(params)
            assert abs(float(loss(params)) - before) < 1e-12
    w = rnnjax.recurrent_matrix(cell, params)
    assert np.abs(np.asarray(w.T @ w) - np.eye(6)).max() < 1e-12
    assert float(loss(params)) < first


def test_bad_arguments():
    with pytest.raises(ValueError, match="optimizer"):
        optim.recipe("lbfgs")
    with pytest.raises(ValueError, match="clip"):
        optim.recipe(clip=0.0)
    with pytest.raises(ValueError, match="lr_orth"):
        optim.recipe(lr=optax.constant_schedule(1e-3))
