"""Mamba-2's SSD recurrence: the cell (sequential and associative) equals a NumPy
transcription of state-spaces/mamba ``mamba_ssm/modules/ssd_minimal.py``
(``ssd_minimal_discrete``, the chunked SSD algorithm), with an initial state; it
initialises as ``modules/mamba2.py``."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import cells

D, N, NH, B, T, CHUNK = 6, 3, 2, 2, 8, 4
P = D // NH


def segsum(x):
    """``segsum`` (the stable one): ``out[..., i, j] = sum_{j < k <= i} x[..., k]`` for
    ``j <= i``, ``-inf`` above the diagonal."""
    T_ = x.shape[-1]
    x = np.repeat(x[..., None], T_, axis=-1)  # "... d -> ... d e"
    mask = np.tril(np.ones((T_, T_), dtype=bool), k=-1)
    x = np.where(mask, x, 0.0)
    x_segsum = np.cumsum(x, axis=-2)
    mask = np.tril(np.ones((T_, T_), dtype=bool), k=0)
    return np.where(mask, x_segsum, -np.inf)


def ssd_minimal_discrete(X, A, Bm, C, block_len, initial_states=None):
    """NumPy float64 transcription of ``ssd_minimal_discrete``: ``X (b, l, h, p)``,
    ``A (b, l, h)``, ``B, C (b, l, g, n)``; returns ``(Y (b, l, h, p), final_state (b,
    h, p, n))`` (one group: the reference's ``g`` axis is kept)."""
    b, l = X.shape[:2]
    c = l // block_len
    chunk = lambda a: a.reshape((b, c, block_len) + a.shape[2:])
    X, A, Bm, C = (chunk(a) for a in (X, A, Bm, C))
    A = A.transpose(0, 3, 1, 2)  # b c l h -> b h c l
    A_cumsum = np.cumsum(A, axis=-1)
    L = np.exp(segsum(A))
    Y_diag = np.einsum("bclgn,bcsgn,bhcls,bcshp->bclhp", C, Bm, L, X)
    decay_states = np.exp(A_cumsum[:, :, :, -1:] - A_cumsum)
    states = np.einsum("bclgn,bhcl,bclhp->bcghpn", Bm, decay_states, X)
    if initial_states is None:
        initial_states = np.zeros_like(states[:, :1])
    states = np.concatenate([initial_states, states], axis=1)
    decay_chunk = np.exp(segsum(np.pad(A_cumsum[:, :, :, -1], ((0, 0), (0, 0), (1, 0)))))
    new_states = np.einsum("bhzc,bcghpn->bzghpn", decay_chunk, states)
    states, final_state = new_states[:, :-1], new_states[:, -1]
    state_decay_out = np.exp(A_cumsum)
    Y_off = np.einsum("bclgn,bcghpn,bhcl->bclhp", C, states, state_decay_out)
    return (Y_diag + Y_off).reshape(b, l, X.shape[3], X.shape[4]), final_state


@pytest.mark.parametrize("scan", ["sequential", "associative"])
def test_cell_equals_the_chunked_ssd_reference(scan):
    cell = cells.mamba2(D, state_size=N, num_heads=NH)
    p = to_f64(cell.init(jax.random.key(0), D))
    p["dt_bias"] = p["dt_bias"] + 3.0  # decays well below 1
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)
    h0 = jax.random.normal(jax.random.key(2), (B, NH, P, N), jnp.float64)
    ys, final = rnnjax.run(cell, p, xs, carry=rnnjax.HiddenState(h0.reshape(B, -1)),
                           scan=scan)
    pn = {k: np.asarray(v) for k, v in p.items()}
    u = np.asarray(xs)
    dt = np.logaddexp(0.0, u @ pn["W_dt"].T + pn["dt_bias"])  # (b, l, h), softplus
    A = -np.exp(pn["A_log"])
    X = u.reshape(B, T, NH, P)
    Bm, C = (u @ pn[n].T for n in ("W_B", "W_C"))
    Y, final_ref = ssd_minimal_discrete(X * dt[..., None], A * dt, Bm[:, :, None],
                                        C[:, :, None], CHUNK,
                                        initial_states=np.asarray(h0)[:, None, None])
    ref = (Y + pn["D"][:, None] * X).reshape(B, T, D)  # the D skip, outside the SSD
    assert np.exp(A * dt).min() < 0.8
    np.testing.assert_allclose(np.asarray(ys), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(final.h).reshape(B, NH, P, N), final_ref[:, 0],
                               rtol=1e-10, atol=1e-10)


def test_initialisation_follows_mamba2():
    p = cells.mamba2(8, state_size=4, num_heads=4).init(jax.random.key(0), 8)
    A = np.exp(np.asarray(p["A_log"]))
    assert A.shape == (4,) and np.all((A >= 1) & (A <= 16))
    np.testing.assert_array_equal(p["D"], 1.0)
    dt = np.asarray(jax.nn.softplus(p["dt_bias"]))
    assert dt.min() >= 1e-3 * (1 - 1e-5) and dt.max() <= 1e-1 * (1 + 1e-5)
    assert "E" not in p and "E" in cells.mamba2(8).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="multiple of num_heads"):
        cells.mamba2(6, num_heads=4)


def test_associative_equals_sequential_with_gradients():
    cell = cells.mamba2(4, state_size=2, num_heads=2)
    params = to_f64(cell.init(jax.random.key(3), 3))
    xs = jax.random.normal(jax.random.key(4), (3, T, 3), jnp.float64)
    h = cell.initial_carry((3,), jnp.float64).h
    carry = rnnjax.HiddenState(0.5 * jax.random.normal(jax.random.key(5), h.shape,
                                                       jnp.float64))
    kw = {"lengths": jnp.array([T, 0, 3]), "reverse": True}

    def loss(scan):
        def f(params, xs, carry):
            ys, final = rnnjax.run(cell, params, xs, scan=scan, carry=carry, **kw)
            wy = jnp.cos(jnp.arange(ys.size, dtype=ys.dtype)).reshape(ys.shape)
            return (ys * wy).sum() + (final.h ** 2).sum(), (ys, final)
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))

    (_, (ys_s, f_s)), g_s = loss("sequential")(params, xs, carry)
    (_, (ys_a, f_a)), g_a = loss("associative")(params, xs, carry)
    np.testing.assert_allclose(ys_a, ys_s, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(f_a.h, f_s.h, rtol=1e-10, atol=1e-12)
    for a, s in zip(jax.tree.leaves(g_a), jax.tree.leaves(g_s)):
        np.testing.assert_allclose(a, s, rtol=1e-10, atol=1e-10 * max(1.0, float(
            jnp.abs(s).max())))
    assert float(jnp.abs(ys_a[1]).max()) == 0.0
