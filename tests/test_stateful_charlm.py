"""Stateful char-LM (PTB protocol): carried state across windows, gradients cut at
window boundaries, whole-text evaluation equal to one long rnnjax.run."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.layers.readout import cell_with_readout
from rnnjax.tasks import stateful
from rnnjax.training import init_state, make_update

V = 5


def _model(seed=0, hidden=6):
    cell = cells.make("lstm", hidden)
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          cell_with_readout(cell, V, V).init(jax.random.key(seed)))
    return cell, params


def _ids(n, seed=0):
    return np.random.default_rng(seed).integers(0, V, n).astype(np.int32)


def _train_windows(cell, params, streams, length, lr, trace):
    """One pass over the windows in order, each one step of the runner's update rule, the
    carry leaving window k entering window k+1; ``trace`` gets (carry in, out, params)."""
    optimizer = optax.adam(lr)
    update = jax.jit(make_update(lambda p, b: stateful.window_loss(cell, p, *b, V), optimizer,
                                 has_aux=True))
    state = init_state(params, optimizer, jax.random.key(0))
    carry = cell.initial_carry((streams.shape[0],), jnp.float64)
    for k in range(stateful.n_windows(streams, length)):
        x, y = stateful.window(streams, k, length)
        new, (_, carry_out) = update(state, (carry, jnp.asarray(x), jnp.asarray(y)))
        trace.append((carry, carry_out, state.params))
        state, carry = new, carry_out


def test_split_and_batchify_are_contiguous():
    ids = np.arange(100)
    tr, va, te = stateful.split_contiguous(ids, 0.1, 0.2)
    np.testing.assert_array_equal(np.concatenate([tr, va, te]), ids)
    assert (len(tr), len(va), len(te)) == (70, 10, 20)
    s = stateful.batchify(np.arange(23), 4)
    np.testing.assert_array_equal(s, np.arange(20).reshape(4, 5))
    x, y = stateful.window(s, 1, 3)  # inputs 3..4, targets 4 (window cut by the stream end)
    np.testing.assert_array_equal(x, s[:, 3:4])
    np.testing.assert_array_equal(y, s[:, 4:5])
    with pytest.raises(ValueError, match="the valid part of the text has 0 characters"):
        stateful.split_contiguous(np.arange(10), 0.05, 0.5)


def test_carry_passes_between_windows_and_gradient_is_cut():
    cell, params = _model()
    streams = stateful.batchify(_ids(3 * 25), 3)
    trace = []
    _train_windows(cell, params, streams, 8, 1e-2, trace)
    assert len(trace) == 3
    for (_, out_k, _), (in_next, _, _) in zip(trace, trace[1:]):
        for a, b in zip(jax.tree.leaves(out_k), jax.tree.leaves(in_next)):
            np.testing.assert_array_equal(a, b)  # carry entering k+1 == carry leaving k
    # Each window's carry out is the cell run from its carry in with that step's params.
    for k, (c_in, c_out, p) in enumerate(trace):
        x, _ = stateful.window(streams, k, 8)
        _, ref = rnnjax.run(cell, p["cell"], jax.nn.one_hot(x, V, dtype=jnp.float64),
                            carry=c_in)
        for a, b in zip(jax.tree.leaves(c_out), jax.tree.leaves(ref)):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # No gradient crosses the boundary: d loss_k / d carry_in is exactly zero, and the
    # params' gradient equals the one with the incoming carry a constant.
    c_in, _, p = trace[1]
    x, y = stateful.window(streams, 1, 8)
    g_carry = jax.grad(lambda c: stateful.window_loss(cell, p, c, x, y, V)[0])(c_in)
    assert all(np.all(np.asarray(g) == 0) for g in jax.tree.leaves(g_carry))
    assert any(np.any(np.asarray(c) != 0) for c in jax.tree.leaves(c_in))

    def direct(p_):  # the same window, carry held fixed, no stop_gradient involved
        hs, _ = rnnjax.run(cell, p_["cell"], jax.nn.one_hot(x, V, dtype=jnp.float64),
                           carry=jax.tree.map(np.asarray, c_in))
        logits = hs @ p_["readout"]["W"].T + p_["readout"]["b"]
        return jnp.mean(-jnp.take_along_axis(jax.nn.log_softmax(logits), y[..., None], -1))
    g1 = jax.grad(lambda p_: stateful.window_loss(cell, p_, c_in, x, y, V)[0])(p)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(jax.grad(direct)(p))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # Whereas through the carry a gradient does flow when it is not cut.
    g_open = jax.grad(lambda c: jnp.sum(jax.tree.leaves(rnnjax.run(
        cell, p["cell"], jax.nn.one_hot(x, V, dtype=jnp.float64), carry=c)[0])[0]))(c_in)
    assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(g_open))


def test_whole_text_bpc_equals_one_long_run():
    cell, params = _model(1)
    ids = _ids(61, 2)
    bpc = stateful.evaluate_bpc(cell, params, ids, 7, V)
    hs, _ = rnnjax.run(cell, params["cell"], jax.nn.one_hot(ids[:-1], V, dtype=jnp.float64))
    logits = np.asarray(hs @ params["readout"]["W"].T + params["readout"]["b"])
    z = logits - logits.max(1, keepdims=True)
    nll = -(z[np.arange(60), ids[1:]] - np.log(np.exp(z).sum(1)))
    assert bpc == pytest.approx(nll.mean() / math.log(2), rel=1e-12)
