"""sLSTM (xLSTM): the cell equals a NumPy transcription of NX-AI/xlstm's vanilla
backend (``xlstm/blocks/slstm/src/vanilla/__init__.py`` ``slstm_forward`` with
``slstm.py`` ``slstm_forward_pointwise``), initialises as ``sLSTMCell``, stays finite
with large gates, and runs through DEER (``scan="newton"``) like any cell."""

import jax
import jax.numpy as jnp
import numpy as np

import rnnjax
from helpers import to_f64
from rnnjax import cells
from rnnjax.cells.xlstm import slstm_forget_bias

H, NH, F, T, B = 6, 2, 3, 9, 2
DH = H // NH


def _logsigmoid(x):
    return -np.logaddexp(0.0, -x)


def slstm_forward_pointwise(Wx, Ry, b, states):
    """NumPy transcription of xlstm/blocks/slstm/src/vanilla/slstm.py."""
    raw = Wx + Ry + b
    y, c, n, m = states
    iraw, fraw, zraw, oraw = np.moveaxis(raw.reshape(raw.shape[0], 4, -1), 1, 0)
    logfplusm = m + _logsigmoid(fraw)
    if np.all(n == 0.0):
        mnew = iraw
    else:
        mnew = np.maximum(iraw, logfplusm)
    ogate = 1.0 / (1.0 + np.exp(-oraw))
    igate = np.minimum(np.exp(iraw - mnew), np.ones_like(iraw))
    fgate = np.minimum(np.exp(logfplusm - mnew), np.ones_like(iraw))
    cnew = fgate * c + igate * np.tanh(zraw)
    nnew = fgate * n + igate
    ynew = ogate * cnew / nnew
    return np.stack((ynew, cnew, nnew, mnew), axis=0)


def slstm_forward(x, states, R, b):
    """NumPy transcription of xlstm/blocks/slstm/src/vanilla/__init__.py
    ``slstm_forward``: ``x (S, B, 4H)`` gate-major, ``states (4, B, H)``, ``R (NH, 4 DH,
    DH)`` (the vanilla cell's internal layout), ``b (4H,)``."""
    num_heads, head_dim = R.shape[0], R.shape[2]
    num_gates_r = R.shape[1] // R.shape[2]
    batch_dim = x.shape[1]
    states_all = [states]
    for Wx_t in x:
        Ry = (states[0].reshape(batch_dim, num_heads, 1, -1)
              @ np.swapaxes(R, 1, 2).reshape(1, num_heads, head_dim, num_gates_r * head_dim))
        Ry = np.swapaxes(Ry.reshape(batch_dim, num_heads, num_gates_r, -1), 1, 2)
        states = slstm_forward_pointwise(Wx_t, Ry.reshape(batch_dim, -1), b, states)
        states_all.append(states)
    return np.stack(states_all, axis=1)  # (4, S + 1, B, H)


def _params(seed=0):
    cell = cells.slstm(H, NH, recurrent_init="standard")
    p = to_f64(cell.init(jax.random.key(seed), F))
    p["b"] = p["b"] + 0.5 * jax.random.normal(jax.random.key(seed + 1), p["b"].shape,
                                              jnp.float64)
    p["R"] = 3.0 * p["R"]
    return cell, p


def test_cell_equals_the_reference_vanilla_backend():
    cell, p = _params()
    xs = jax.random.normal(jax.random.key(2), (B, T, F), jnp.float64)
    ys, final = rnnjax.run(cell, p, xs)
    Wx = np.einsum("btf,gf->tbg", np.asarray(xs), np.asarray(p["W"]))  # (S, B, 4H)
    R_int = np.asarray(p["R"]).reshape(NH, 4 * DH, DH)
    out = slstm_forward(Wx, np.zeros((4, B, H)), R_int, np.asarray(p["b"]).reshape(-1))
    np.testing.assert_allclose(np.asarray(ys), np.swapaxes(out[0, 1:], 0, 1), rtol=1e-10,
                               atol=1e-10)
    for got, want in zip(final, out[:, -1]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)


def test_initialisation_follows_slstm_cell():
    p = cells.slstm(8, 2).init(jax.random.key(0), 5)
    np.testing.assert_array_equal(p["R"], 0.0)
    np.testing.assert_array_equal(np.asarray(p["b"])[[0, 2, 3]], 0.0)
    j = np.arange(4) / 3
    np.testing.assert_allclose(p["b"][1], np.tile(5.0 - 12.0 * j ** 0.3, 2), rtol=1e-6)
    np.testing.assert_allclose(slstm_forget_bias(1, 3, block_idx=1, num_blocks=2),
                               5.0 - 12.0 * (np.arange(3) / 2) ** 1.6, rtol=1e-6)
    assert p["W"].shape == (32, 5) and p["R"].shape == (2, 4, 4, 4)


def test_large_input_gates_stay_finite_at_T_4096_in_float32():
    cell = cells.slstm(4, 2)
    p = jax.tree.map(lambda a: a.astype(jnp.float32), cell.init(jax.random.key(0), F))
    p["b"] = p["b"].at[0].set(200.0)  # exp(200) overflows float32
    xs = jax.random.normal(jax.random.key(1), (1, 4096, F), jnp.float32)
    ys, final = rnnjax.run(cell, p, xs)
    assert np.all(np.isfinite(ys)) and all(np.all(np.isfinite(a)) for a in final)
    assert float(final.m.min()) > 88.0


def test_runs_through_deer():
    cell, p = _params(3)
    xs = jax.random.normal(jax.random.key(4), (B, 6, F), jnp.float64)
    ys, final = rnnjax.run(cell, p, xs)
    ys_n, final_n = rnnjax.run(cell, p, xs, scan="newton")
    np.testing.assert_allclose(ys_n, ys, rtol=1e-7, atol=1e-7)
