"""The modern recurrences (Mamba's S6, mLSTM, DeltaNet, GLA, retention) against the
engine's contract, in float64 at tiny sizes: ``rnnjax.run`` equals a Python loop over
``step``, padded equals unpadded, an output has no gradient from later inputs, and the
gradients pass ``jax.test_util.check_grads``.  Each family's reference transcription
lives in its own file (test_mamba.py, test_mlstm.py, test_deltanet.py,
test_linear_attention.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from helpers import to_f64
from rnnjax import cells

F, B, T = 3, 2, 6

CELLS = {
    "mamba": lambda: cells.mamba(4, state_size=3),
    "mamba2": lambda: cells.mamba2(4, state_size=2, num_heads=2),
    "mamba_block": lambda: cells.mamba_block(3, state_size=2, conv_size=3),
    "mlstm": lambda: cells.mlstm(4, 2),
    "slstm": lambda: cells.slstm(4, 2, recurrent_init="standard"),
    "deltanet": lambda: cells.deltanet(4, 2),
    "deltanet_gated_negative": lambda: cells.deltanet(4, 2, gated=True,
                                                      negative_eigenvalues=True),
    "gla": lambda: cells.gla(4, 2, gate_low_rank_dim=2),
    "retention": lambda: cells.retention(4, 2),
}


def _setup(name, seed=0):
    cell = CELLS[name]()
    params = to_f64(cell.init(jax.random.key(seed), F))
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, F), jnp.float64)
    return cell, params, xs


def _random_carry(cell, seed=5):
    leaves, tree = jax.tree.flatten(cell.initial_carry((B,), jnp.float64))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [0.3 * jax.random.normal(k, a.shape, a.dtype)
                                     for k, a in zip(keys, leaves)])


@pytest.mark.parametrize("name", sorted(CELLS))
def test_run_equals_a_python_loop_over_step(name):
    cell, params, xs = _setup(name)
    carry0 = _random_carry(cell)
    ys, final = rnnjax.run(cell, params, xs, carry=carry0, scan="sequential")
    w, step = cell.prepare(params), jax.jit(cell.step)
    for b in range(B):
        c = jax.tree.map(lambda a: a[b], carry0)
        for t in range(T):
            c, y = step(w, c, xs[b, t])
            np.testing.assert_allclose(ys[b, t], y, rtol=1e-12, atol=1e-12)
        jax.tree.map(lambda a, r: np.testing.assert_allclose(a[b], r, rtol=1e-12,
                                                             atol=1e-12), final, c)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_padded_equals_unpadded_and_causal(name):
    """Sequence 0 has length 4: padding (NaN here) changes nothing, its outputs there
    are zero and its final carry is the carry after 4 steps; y_2 has no gradient from
    x_3 onwards."""
    cell, params, xs = _setup(name)
    L = 4
    padded = xs.at[0, L:].set(jnp.nan)
    ys, final = rnnjax.run(cell, params, padded, lengths=jnp.array([L, T]))
    ref, rfinal = rnnjax.run(cell, params, xs[:1, :L])
    np.testing.assert_allclose(ys[0, :L], ref[0], rtol=1e-12, atol=1e-12)
    assert float(jnp.abs(ys[0, L:]).max()) == 0.0
    jax.tree.map(lambda a, r: np.testing.assert_allclose(a[0], r[0], rtol=1e-12,
                                                         atol=1e-12), final, rfinal)
    wy = jnp.cos(jnp.arange(cell.output_size, dtype=jnp.float64))  # a layer norm sums to 0
    g = jax.grad(lambda x: (rnnjax.run(cell, params, x)[0][:, 2] @ wy).sum())(xs)
    assert float(jnp.abs(g[:, 3:]).max()) == 0.0 and float(jnp.abs(g[:, :3]).max()) > 0


@pytest.mark.parametrize("name", sorted(CELLS))
def test_gradients_pass_check_grads(name):
    cell, params, xs = _setup(name)
    xs = xs[:, :4]

    def loss(p, x):
        ys, final = rnnjax.run(cell, p, x, scan="sequential")
        wy = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return (ys * wy).sum() + sum(jnp.sum(a ** 2) for a in jax.tree.leaves(final))

    check_grads(jax.jit(loss), (params, xs), order=1, modes=("rev",), atol=1e-5, rtol=1e-5)
