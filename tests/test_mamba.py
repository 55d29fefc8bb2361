"""Mamba's S6 recurrence: the cell equals a NumPy transcription of the reference
(state-spaces/mamba ``selective_scan_ref``, fed as ``mamba_simple.py``'s slow path),
initialises as ``mamba_simple.py`` does, and the associative scan equals the sequential
one (outputs, final carry, gradients) with lengths, reverse and an initial carry.  The
Mamba block equals a transcription of mambapy's ``MambaBlock.forward``."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import cells

D, N, B, T = 4, 3, 2, 7


def _softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0.0)


def selective_scan_ref(u, delta, A, Bm, C, Dv, delta_bias, negative=False):
    """NumPy float64 transcription of ``mamba_ssm/ops/selective_scan_interface.py``
    ``selective_scan_ref`` for real ``A``, ``B, C`` of shape ``(b, N, L)`` (variable),
    ``delta_softplus=True``, ``z=None``, returning ``(out (b, D, L), last_state)``.
    ``negative``: the transition ``2 deltaA - 1`` (Grazzi et al. 2025), not in the
    reference."""
    delta = delta + delta_bias[..., None]
    delta = _softplus(delta)
    batch, dim, dstate = u.shape[0], A.shape[0], A.shape[1]
    x = np.zeros((batch, dim, dstate))
    ys = []
    deltaA = np.exp(np.einsum("bdl,dn->bdln", delta, A))
    if negative:
        deltaA = 2.0 * deltaA - 1.0
    deltaB_u = np.einsum("bdl,bnl,bdl->bdln", delta, Bm, u)
    last_state = None
    for i in range(u.shape[2]):
        x = deltaA[:, :, i] * x + deltaB_u[:, :, i]
        y = np.einsum("bdn,bn->bd", x, C[:, :, i])
        if i == u.shape[2] - 1:
            last_state = x
        ys.append(y)
    y = np.stack(ys, axis=2)
    out = y + u * Dv[:, None]
    return out, last_state


def mamba_simple_projections(p, u):
    """``mamba_simple.py`` (slow path, after the convolution): ``x_dbl = x_proj(x)``,
    ``dt, B, C = split``, ``dt = dt_proj.weight @ dt.T`` (bias passed as delta_bias).
    ``u (b, D, L)``."""
    R = p["W_dt"].shape[1]
    x_dbl = np.einsum("bdl,ed->ble", u, p["W_x"])  # (b, L, R + 2N)
    dt, Bm, C = x_dbl[..., :R], x_dbl[..., R:R + N], x_dbl[..., R + N:]
    dt = np.einsum("dr,blr->bdl", p["W_dt"], dt)
    return dt, np.swapaxes(Bm, 1, 2), np.swapaxes(C, 1, 2)


@pytest.mark.parametrize("negative", [False, True])
def test_cell_equals_the_reference_scan(negative):
    cell = cells.mamba(D, state_size=N, negative_eigenvalues=negative)
    params = to_f64(cell.init(jax.random.key(0), D))
    # Delta near 1 so the transition is far from 1 (and negative with the option)
    params["dt_bias"] = params["dt_bias"] + 5.0
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)
    ys, final = rnnjax.run(cell, params, xs, scan="sequential")
    p = {k: np.asarray(v) for k, v in params.items()}
    u = np.swapaxes(np.asarray(xs), 1, 2)  # (b, D, L)
    dt, Bm, C = mamba_simple_projections(p, u)
    A = -np.exp(p["A_log"])
    out, last = selective_scan_ref(u, dt, A, Bm, C, p["D"], p["dt_bias"], negative)
    np.testing.assert_allclose(np.asarray(ys), np.swapaxes(out, 1, 2), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(np.asarray(final.h).reshape(B, D, N), last, rtol=1e-10,
                               atol=1e-10)
    a = np.diag(np.asarray(cell.recurrent_matrix(params)))
    assert (a.min() < 0) == negative and np.all(np.abs(a) < 1)


def test_initialisation_follows_mamba_simple():
    cell = cells.mamba(24, state_size=5, dt_min=1e-3, dt_max=1e-1)
    p = cell.init(jax.random.key(0), 24)
    assert set(p) == {"W_x", "W_dt", "dt_bias", "A_log", "D"}  # no encoder when F == D
    R = math.ceil(24 / 16)
    assert p["W_x"].shape == (R + 10, 24) and p["W_dt"].shape == (24, R)
    np.testing.assert_allclose(-np.exp(p["A_log"]), -np.tile(np.arange(1, 6), (24, 1)),
                               rtol=1e-6)
    np.testing.assert_array_equal(p["D"], np.ones(24))
    dt = np.asarray(jax.nn.softplus(p["dt_bias"]))
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert np.abs(p["W_dt"]).max() <= R ** -0.5 and np.abs(p["W_x"]).max() <= 24 ** -0.5
    assert "E" in cells.mamba(8, state_size=2).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="dt_min and dt_max"):
        cells.mamba(8, dt_min=0.1, dt_max=0.01)


def _loss(cell, scan, kw):
    def loss(params, xs, carry):
        ys, final = rnnjax.run(cell, params, xs, scan=scan, carry=carry, **kw)
        wy = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
        return (ys * wy).sum() + (final.h ** 2).sum(), (ys, final)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


@pytest.mark.parametrize("negative,opts", [(False, True), (True, True)],
                         ids=["lengths-reverse-carry", "negative-lengths-reverse-carry"])
def test_associative_equals_sequential(negative, opts):
    cell = cells.mamba(D, state_size=N, negative_eigenvalues=negative)
    params = to_f64(cell.init(jax.random.key(2), 3))
    params["dt_bias"] = params["dt_bias"] + 1.0
    xs = jax.random.normal(jax.random.key(3), (3, T, 3), jnp.float64)
    carry = cell.initial_carry((3,), jnp.float64)
    kw = {}
    if opts:
        kw = {"lengths": jnp.array([T, 0, 3]), "reverse": True}
        carry = rnnjax.HiddenState(0.5 * jax.random.normal(jax.random.key(4), carry.h.shape,
                                                           jnp.float64))
    (_, (ys_s, f_s)), g_s = _loss(cell, "sequential", kw)(params, xs, carry)
    (_, (ys_a, f_a)), g_a = _loss(cell, "associative", kw)(params, xs, carry)
    np.testing.assert_allclose(ys_a, ys_s, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f_a.h, f_s.h, rtol=1e-10, atol=1e-12)
    for a, s in zip(jax.tree.leaves(g_a), jax.tree.leaves(g_s)):
        np.testing.assert_allclose(a, s, rtol=1e-10, atol=1e-10 * max(1.0, float(
            jnp.abs(s).max())))
    if opts:
        assert float(jnp.abs(ys_a[1]).max()) == 0.0
        np.testing.assert_array_equal(f_a.h[1], carry.h[1])


def _silu(x):
    return x / (1.0 + np.exp(-x))


def mamba_block_forward(p, x, K):
    """NumPy float64 transcription of alxndrTL/mamba.py ``mambapy/mamba.py``
    ``MambaBlock.forward`` (``bias=False``, ``conv_bias=True``, sequential scan; its
    ``ssm`` is ``mamba_simple_projections`` + ``selective_scan_ref`` above).
    ``x (B, L, D)``."""
    _, L, _ = x.shape
    xz = x @ p["W_in"].T
    x, z = np.split(xz, 2, axis=-1)
    x = np.swapaxes(x, 1, 2)  # (B, ED, L)
    # nn.Conv1d(groups=ED, padding=K-1): both sides padded, then [:, :, :L]
    xpad = np.pad(x, ((0, 0), (0, 0), (K - 1, K - 1)))
    conv = np.stack([np.einsum("bdj,dj->bd", xpad[:, :, t:t + K], p["conv_w"])
                     for t in range(L + K - 1)], axis=2) + p["conv_b"][None, :, None]
    x = _silu(conv[:, :, :L])  # (B, ED, L)
    dt, Bm, C = mamba_simple_projections(p, x)
    y, _ = selective_scan_ref(x, dt, -np.exp(p["A_log"]), Bm, C, p["D"], p["dt_bias"])
    y = np.swapaxes(y, 1, 2) * _silu(z)
    return y @ p["W_out"].T


def test_mamba_block_equals_mambapy_forward():
    K = 3
    cell = cells.mamba_block(D, state_size=N, conv_size=K)
    params = to_f64(cell.init(jax.random.key(5), D))
    params["dt_bias"] = params["dt_bias"] + 2.0
    xs = jax.random.normal(jax.random.key(6), (B, T, D), jnp.float64)
    ys, final = rnnjax.run(cell, params, xs)
    p = {k: np.asarray(v) for k, v in params.items()}
    ref = mamba_block_forward(p, np.asarray(xs), K)
    np.testing.assert_allclose(np.asarray(ys), ref, rtol=1e-10, atol=1e-10)
    # the carry's window holds the last K-1 in-projected inputs
    u = np.asarray(xs[:, -(K - 1):]) @ p["W_in"][:2 * D].T
    np.testing.assert_allclose(np.asarray(final.conv).reshape(u.shape), u, rtol=1e-12,
                               atol=1e-12)
    assert cells.mamba_block(16).init(jax.random.key(0), 16)["W_dt"].shape == (32, 1)
