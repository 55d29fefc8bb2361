"""The chunkwise-parallel engine (``scan="chunked"``) beyond the registry's conformance
test (tests/test_registry.py runs every cell that declares ``cell.chunk`` with its
defaults): the multi-head, gated, negative-eigenvalue and DeltaProduct variants against
the sequential engine, DeltaProduct's step against a NumPy transcription of its
reference, the engine's refusals, and the mLSTM stabiliser at T = 4096 in float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import cells

jax.config.update("jax_enable_x64", True)

B, T, F = 3, 7, 3


def _close(a, b, tol=1e-10):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


VARIANTS = {
    "deltaproduct": lambda: cells.deltanet(6, 2, gated=True, negative_eigenvalues=True,
                                           num_householder=2),
    "mlstm_exp": lambda: cells.mlstm(6, 2, forget_gate="exp"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variants_chunked_equal_sequential(variant):
    """Forwards (the registry test reads backwards), T = 7 in chunks of 3, lengths with
    a zero, resets (one on the first step) and a random initial carry: values and the
    gradients for params, inputs and carry."""
    cell = VARIANTS[variant]()
    params = to_f64(cell.init(jax.random.key(0), F))
    if "W_i" in params:  # gates that depend on the input (the initial zeros would not)
        params = {**params, "W_i": 0.3 * jax.random.normal(jax.random.key(9),
                                                           params["W_i"].shape)}
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float64)
    carry = jax.tree.map(lambda a: 0.5 * jax.random.normal(jax.random.key(2), a.shape),
                         cell.initial_carry((B,), jnp.float64))
    resets = jnp.zeros((B, T), bool).at[0, 3].set(True).at[1, 0].set(True).at[2, 6].set(True)
    lengths = jnp.array([T, 5, 0])

    def value_and_grad(scan, **extra):
        def f(p, x, c):
            ys, final = rnnjax.run(cell, p, x, carry=c, lengths=lengths, resets=resets,
                                   scan=scan, **extra)
            loss = jnp.sum(jnp.sin(ys)) + sum(jnp.sum(a ** 2) for a in jax.tree.leaves(final))
            return loss, (ys, final)
        return jax.jit(jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True))(
            params, xs, carry)

    _close(value_and_grad("chunked", chunk=3), value_and_grad("sequential"))


def naive_recurrent_gated_delta_product(q, k, v, g, beta, num_householder):
    """NumPy float64 transcription of fla ``fla/ops/gated_delta_product/naive.py``
    (``naive_recurrent_gated_delta_product``) for one example: ``q (T, H, K)``, ``k, v
    (T * n, H, .)``, ``beta (T * n, H)``, ``g (T, H)``; returns ``o (T, H, V)``."""
    Tn, H, K = q.shape
    h = np.zeros((H, K, v.shape[-1]))
    o = np.zeros((Tn, H, v.shape[-1]))
    n = num_householder
    for i in range(Tn):
        h = h * np.exp(g[i])[:, None, None]
        for j in range(n):
            k_ij, v_ij, b_ij = k[i * n + j], v[i * n + j], beta[i * n + j]
            h = h + (v_ij - (h * k_ij[..., None]).sum(-2))[:, None, :] * k_ij[..., None] \
                * b_ij[:, None, None]
        o[i] = (h * q[i][..., None]).sum(-2)
    return o


def test_deltaproduct_step_equals_the_reference():
    E, NH, n = 6, 2, 3
    D = E // NH
    cell = cells.deltanet(E, NH, gated=True, num_householder=n)
    p = to_f64(cell.init(jax.random.key(3), F))
    xs = np.asarray(jax.random.normal(jax.random.key(4), (5, F), jnp.float64))
    ys, _ = rnnjax.run(cell, p, xs[None], scan="sequential")

    def norm(a):
        return a / np.linalg.norm(a, axis=-1, keepdims=True)
    pn = {k: np.asarray(a) for k, a in p.items()}
    q = norm((xs @ pn["W_q"].T).reshape(5, NH, D)) / np.sqrt(D)
    k = norm((xs @ pn["W_k"].T).reshape(5, n, NH, D)).reshape(5 * n, NH, D)
    v = (xs @ pn["W_v"].T).reshape(5 * n, NH, D)
    beta = (1 / (1 + np.exp(-xs @ pn["W_b"].T))).reshape(5 * n, NH)
    g = -np.exp(pn["A_log"]) * np.logaddexp(0.0, xs @ pn["W_a"].T + pn["dt_bias"])
    o = naive_recurrent_gated_delta_product(q, k, v, g, beta, n)
    np.testing.assert_allclose(ys[0], o.reshape(5, E), rtol=1e-10, atol=1e-12)


def test_refusals_name_the_argument():
    lstm = cells.lstm(3)
    p = lstm.init(jax.random.key(0), 2)
    xs = jnp.ones((1, 4, 2))
    with pytest.raises(ValueError, match=r"scan='chunked' needs .*Cell.chunk.*lstm"):
        rnnjax.run(lstm, p, xs, scan="chunked")
    gla = cells.gla(4)
    pg = gla.init(jax.random.key(0), 2)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="chunk must be a positive integer"):
            rnnjax.run(gla, pg, xs, scan="chunked", chunk=bad)
    with pytest.raises(ValueError, match="scan='sequential' .*cannot be combined with chunk=8"):
        rnnjax.run(gla, pg, xs, scan="sequential", chunk=8)
    with pytest.raises(ValueError, match="scan='chunked' .*cannot be combined with remat"):
        rnnjax.run(gla, pg, xs, scan="chunked", remat=True)
    assert cells.gla(4, dtype=jnp.bfloat16).chunk is not None  # kept by mixed precision
