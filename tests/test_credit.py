"""Credit assignment (rnnjax.analysis.credit_*): closed forms, finite differences, dense
Jacobians and underflow reported as underflow."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import analysis, cells
from tests.helpers import to_f64

H, F = 4, 3


def _haar(key, n):
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), jnp.float64))
    return q * jnp.sign(jnp.diagonal(r))


def _scaled_orthogonal(a, dtype=jnp.float64):
    """h_t = W h_{t-1} + U x_t with W = a Q, Q orthogonal (b = 0)."""
    cell = cells.elman(H, activation="identity")
    p = to_f64(cell.init(jax.random.key(1), F))
    p = {**p, "W_hh": a * _haar(jax.random.key(0), H), "b": jnp.zeros_like(p["b"])}
    return cell, jax.tree.map(lambda x: x.astype(dtype), p)


def _targets_loss(first, v):
    return lambda ys: jnp.sum(jnp.tanh(ys[:, first:] @ v))


def test_scaled_orthogonal_ratio_is_a_to_the_span():
    a, L, s, r = 0.8, 30, 4, 21
    cell, p = _scaled_orthogonal(a)
    xs = jax.random.normal(jax.random.key(2), (3, L, F), jnp.float64)
    loss = _targets_loss(r + 1, jnp.array([1.0, -0.5, 2.0, 0.3]))
    prof = analysis.credit_profile(cell, p, xs, loss)
    assert list(prof.norms) == ["h"]  # the carry NamedTuple's fields
    assert analysis.credit_ratio(prof, s, r)["h"] == pytest.approx(a ** (r - s), rel=1e-10)
    got = analysis.credit_assignment(cell, p, xs, loss, s, r)
    assert got["ratio"]["h"] == pytest.approx(a ** (r - s), rel=1e-10)
    assert got["jacobian_norm"] == pytest.approx(a ** (r - s), rel=1e-10)


def test_float32_underflow_is_reported_as_underflow_and_float64_is_exact():
    a, L, s, r = 0.05, 64, 2, 52  # a^50 = 8.9e-66: below float32's range
    xs = jax.random.normal(jax.random.key(2), (2, L, F), jnp.float32)
    loss = _targets_loss(r + 1, jnp.array([1.0, -0.5, 2.0, 0.3]))
    cell, p64 = _scaled_orthogonal(a)
    got64 = analysis.credit_assignment(cell, p64, xs.astype(jnp.float64), loss, s, r)
    assert got64["ratio"]["h"] == pytest.approx(a ** (r - s), rel=1e-10)
    _, p32 = _scaled_orthogonal(a, jnp.float32)
    prof = analysis.credit_profile(cell, p32, xs, loss)
    assert prof.underflow["h"][s] and np.isnan(prof.norms["h"][s])
    assert not prof.underflow["h"][r] and prof.norms["h"][r] > 0
    assert not prof.underflow["h"][-1]  # no later gradient: not an underflow
    assert analysis.credit_ratio(prof, s, r) == {"h": None}
    got32 = analysis.credit_assignment(cell, p32, xs, loss, s, r)
    assert got32["ratio"] == {"h": None}
    # the Jacobian norm is rescaled step by step: exact in float32 too
    assert got32["jacobian_norm"] == pytest.approx(a ** (r - s), rel=1e-4)
    # a ratio still inside float32's range is a number, equal to float64's
    ok32 = analysis.credit_assignment(cell, p32, xs, loss, 30, r)["ratio"]["h"]
    assert ok32 == pytest.approx(a ** (r - 30), rel=1e-4)


def _lstm_loss_of_c_perturbation(cell, p, xs, loss):
    """L as a function of additive perturbations of c_t (t = 0..L-1), by a plain scan."""
    w = cell.prepare(p)
    step = jax.vmap(cell.step, in_axes=(None, 0, 0))

    def f(dc):
        def body(c, inp):
            x, d = inp
            new, y = step(w, c, x)
            new = new._replace(c=new.c + d)
            return new, new.h
        c0 = cell.initial_carry((xs.shape[0],), xs.dtype)
        _, hs = jax.lax.scan(body, c0, (jnp.swapaxes(xs, 0, 1), dc))
        return loss(jnp.swapaxes(hs, 0, 1))
    return jax.jit(f)


def test_lstm_c_profile_matches_finite_differences():
    cell = cells.lstm(3)
    p = to_f64(cell.init(jax.random.key(0), F))
    B, L = 2, 7
    xs = jax.random.normal(jax.random.key(1), (B, L, F), jnp.float64)
    loss = _targets_loss(5, jnp.array([0.7, -1.2, 0.4]))
    prof = analysis.credit_profile(cell, p, xs, loss)
    assert set(prof.norms) == {"h", "c"}
    f = _lstm_loss_of_c_perturbation(cell, p, xs, loss)
    zero = jnp.zeros((L, B, 3), jnp.float64)
    eps = 1e-6
    fd = np.zeros((L, B, 3))
    for t in range(L):
        for b in range(B):
            for i in range(3):
                e = zero.at[t, b, i].set(eps)
                fd[t, b, i] = (f(e) - f(-e)) / (2 * eps)
    want = np.linalg.norm(fd.reshape(L, -1), axis=1)
    np.testing.assert_allclose(prof.norms["c"], want, rtol=1e-6, atol=1e-12)
    assert prof.norms["c"][-1] == 0.0 and not prof.underflow["c"][-1]


@pytest.mark.parametrize("name", ["lstm", "urnn"])
def test_jacobian_norm_matches_dense_spectral_norm(name):
    cell = cells.make(name, 3)
    p = to_f64(cell.init(jax.random.key(0), F))
    xs = jax.random.normal(jax.random.key(1), (2, 8, F), jnp.float64)
    s, r = 2, 6
    got = analysis.jacobian_norm(cell, p, xs, s, r, n_iter=200, per_example=True)
    # z_t (0-based, after x_t) is h_{t+1} of jacobian_product_svals' convention
    dense = analysis.jacobian_product_svals(cell, p, xs[1], (s + 1, r + 1), method="dense")
    assert got[1] == pytest.approx(float(dense[0]), rel=1e-8)


def test_bad_steps_and_arguments_raise_value_errors():
    cell, p = _scaled_orthogonal(0.9)
    xs = jnp.zeros((2, 5, F), jnp.float64)
    loss = _targets_loss(4, jnp.ones(H))
    prof = analysis.credit_profile(cell, p, xs, loss)
    with pytest.raises(ValueError, match="source and reference must satisfy"):
        analysis.credit_ratio(prof, 3, 2)
    with pytest.raises(ValueError, match="got source=0, reference=5"):
        analysis.jacobian_norm(cell, p, xs, 0, 5)
    with pytest.raises(ValueError, match="source must be an integer"):
        analysis.credit_ratio(prof, 1.5, 2)
    with pytest.raises(ValueError, match="n_iter must be a positive integer, got 0"):
        analysis.jacobian_norm(cell, p, xs, 0, 2, n_iter=0)
    with pytest.raises(ValueError, match="profile must be a CreditProfile"):
        analysis.credit_ratio({"h": np.ones(5)}, 0, 1)
    with pytest.raises(TypeError, match="loss_fn must be a callable"):
        analysis.credit_profile(cell, p, xs, None)
