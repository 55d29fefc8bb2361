"""Gradient-flow measurements against closed forms and dense autodiff."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import analysis, cells
from rnnjax.core.cell import Cell, HiddenState
from rnnjax.engine.newton import carry_to_vector, vector_to_carry
from tests.helpers import to_f64

H, F, T = 4, 3, 12


def _haar(key, n, dtype=jnp.float64):
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype))
    return q * jnp.sign(jnp.diagonal(r))


def _linear(W, key=jax.random.key(1)):
    """Linear Elman cell h_t = W h_{t-1} + U x_t (b = 0) with the given W."""
    cell = cells.elman(W.shape[0], activation="identity")
    p = to_f64(cell.init(key, F))
    return cell, {**p, "W_hh": W, "b": jnp.zeros_like(p["b"])}


def _v_dot_last(v):
    return lambda ys: ys[-1] @ v


def _xs(key=jax.random.key(2), shape=(T, F)):
    return jax.random.normal(key, shape, jnp.float64)


# --------------------------------------------------------- dL/dh_t: closed forms

def test_linear_grad_is_transposed_power_times_v():
    W = jax.random.normal(jax.random.key(0), (H, H), jnp.float64) / 2
    cell, p = _linear(W)
    v = jnp.array([1.0, -2.0, 0.5, 3.0])
    got = analysis.hidden_grad_norms(cell, p, _xs(), _v_dot_last(v)).h
    want = [np.linalg.norm(np.linalg.matrix_power(np.asarray(W).T, T - t) @ np.asarray(v))
            for t in range(1, T + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_orthogonal_linear_norms_all_equal_norm_v():
    cell, p = _linear(_haar(jax.random.key(3), H))
    v = jnp.array([0.3, 1.0, -2.0, 0.1])
    got = analysis.hidden_grad_norms(cell, p, _xs(), _v_dot_last(v)).h
    np.testing.assert_allclose(got, np.full(T, np.linalg.norm(v)), rtol=1e-12)


def test_scaled_orthogonal_norms_are_powers_of_a():
    a = 0.8
    cell, p = _linear(a * _haar(jax.random.key(4), H))
    v = jnp.array([1.0, 0.0, 2.0, -1.0])
    got = analysis.hidden_grad_norms(cell, p, _xs(), _v_dot_last(v)).h
    want = a ** (T - np.arange(1, T + 1)) * np.linalg.norm(v)
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ------------------------------------------------- dL/dh_t against explicit jacrev

class _Pair(NamedTuple):
    h: jax.Array


def _complex_linear(U):
    """h_t = U h_{t-1} + B x_t with complex h; outputs [Re h, Im h] (test-only cell)."""
    n = U.shape[0]

    def init(key, f):
        k1, k2 = jax.random.split(key)
        return {"B_re": jax.random.normal(k1, (n, f)), "B_im": jax.random.normal(k2, (n, f))}

    def prepare(p):
        return {"U": U, "B": p["B_re"] + 1j * p["B_im"]}

    def initial_carry(batch_shape=(), dtype=jnp.float64):
        cdt = jnp.result_type(dtype, jnp.complex64)
        return HiddenState(jnp.zeros(tuple(batch_shape) + (n,), cdt))

    def step(w, c, x):
        h = w["U"] @ c.h + w["B"] @ x
        return HiddenState(h), jnp.concatenate([h.real, h.imag])

    return Cell(init, prepare, initial_carry, step, lambda p: p["B_re"].shape[1], 2 * n,
                name="complex-linear", recurrent_matrix=lambda p: U)


def _unitary(key, n):
    k1, k2 = jax.random.split(key)
    z = jax.random.normal(k1, (n, n)) + 1j * jax.random.normal(k2, (n, n))
    q, r = jnp.linalg.qr(z)
    return q * (jnp.diagonal(r) / jnp.abs(jnp.diagonal(r)))


def _cells():
    return {
        "elman": cells.elman(H),
        "lstm": cells.lstm(H),
        "gru": cells.gru(H),
        "lstm-ln": cells.lstm(H, layer_norm=True),
        "complex": _complex_linear(_unitary(jax.random.key(9), H)),
    }


def _jacrev_norms(cell, p, xs, loss_fn):
    """Reference: L as a function of the state after step t (0-based index t), by
    jax.jacrev, one t at a time; complex leaves differentiated in Re and Im parts."""
    B, n_steps = xs.shape[0], xs.shape[1]
    w = cell.prepare(p)
    step = jax.vmap(cell.step, in_axes=(None, 0, 0))
    c = cell.initial_carry((B,), xs.dtype)
    carries, ys_ref = [], []
    for t in range(n_steps):
        c, y = step(w, c, xs[:, t])
        carries.append(c)
        ys_ref.append(y)
    out = []
    for t in range(n_steps):
        def rest(re, im, t=t):
            cc = jax.tree.map(lambda a, b, s: (a + 1j * b).astype(s.dtype)
                              if jnp.iscomplexobj(s) else a, re, im, carries[t])
            ys = list(ys_ref[:t]) + [analysis.carry_readout(cc)]  # y_t = readout(h_t)
            for s in range(t + 1, n_steps):
                cc, y = step(w, cc, xs[:, s])
                ys.append(y)
            return loss_fn(jnp.stack(ys, 1))
        re = jax.tree.map(jnp.real, carries[t])
        im = jax.tree.map(jnp.imag, carries[t])
        gr, gi = jax.jacrev(rest, argnums=(0, 1))(re, im)
        out.append(jax.tree.map(
            lambda a, b, s: jnp.sqrt(jnp.sum(a ** 2) + (jnp.sum(b ** 2)
                                                        if jnp.iscomplexobj(s) else 0.0)),
            gr, gi, carries[t]))
    return jax.tree.map(lambda *a: jnp.stack(a), *out)


@pytest.mark.parametrize("name", list(_cells()))
def test_hidden_grad_norms_equal_jacrev(name):
    cell = _cells()[name]
    p = to_f64(cell.init(jax.random.key(5), F))
    xs = _xs(shape=(2, 5, F))
    v = jax.random.normal(jax.random.key(6), (cell.output_size,), jnp.float64)
    # a loss reading every output, so that outputs after t matter as well as the last one
    loss = lambda ys: jnp.sum(jnp.sin(ys @ v)) + jnp.sum(ys[:, -1] ** 2)
    got = analysis.hidden_grad_norms(cell, p, xs, loss)
    want = jax.jit(lambda p, xs: _jacrev_norms(cell, p, xs, loss))(p, xs)
    jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-14),
                 got, want)
    if name.startswith("lstm"):
        # c_t acts only through later steps: c_T (with h_T held fixed) has no effect
        assert set(got._fields) == {"h", "c"} and np.all(np.asarray(got.c[:-1]) > 0)
        assert float(got.c[-1]) == 0.0


def test_complex_unitary_linear_norms_constant():
    cell = _complex_linear(_unitary(jax.random.key(9), H))
    p = to_f64(cell.init(jax.random.key(5), F))
    v = jax.random.normal(jax.random.key(6), (2 * H,), jnp.float64)
    got = analysis.hidden_grad_norms(cell, p, _xs(), _v_dot_last(v)).h
    np.testing.assert_allclose(got, np.full(T, np.linalg.norm(v)), rtol=1e-12)


def test_per_example_norms_combine_to_batch_norm():
    cell = cells.gru(H)
    p = to_f64(cell.init(jax.random.key(0), F))
    xs = _xs(shape=(3, 7, F))
    loss = lambda ys: jnp.sum(ys[:, -1] ** 2)
    per = analysis.hidden_grad_norms(cell, p, xs, loss, per_example=True).h
    tot = analysis.hidden_grad_norms(cell, p, xs, loss).h
    assert per.shape == (3, 7)
    np.testing.assert_allclose(np.sqrt(np.sum(per ** 2, 0)), tot, rtol=1e-12)
    # rows are independent: row 0 alone gives the same curve
    alone = analysis.hidden_grad_norms(cell, p, xs[0], lambda ys: jnp.sum(ys[-1] ** 2)).h
    np.testing.assert_allclose(per[0], alone, rtol=1e-12)


def test_hidden_grad_norms_bad_input():
    cell = cells.elman(H)
    p = cell.init(jax.random.key(0), F)
    with pytest.raises(ValueError, match="5 features"):
        analysis.hidden_grad_norms(cell, p, jnp.zeros((4, 5)), jnp.sum)
    with pytest.raises(TypeError, match="floating"):
        analysis.hidden_grad_norms(cell, p, jnp.zeros((4, F), jnp.int32), jnp.sum)
    with pytest.raises(TypeError, match="loss_fn"):
        analysis.hidden_grad_norms(cell, p, jnp.zeros((4, F)), None)
    with pytest.raises(ValueError, match="scalar"):
        analysis.hidden_grad_norms(cell, p, jnp.zeros((4, F)), lambda ys: ys)


# ------------------------------------------------------------ Jacobian products

def _dense_product(cell, p, xs, s, t):
    w = cell.prepare(p)
    zs = analysis.state_trajectory(cell, p, xs)
    like = jax.eval_shape(lambda: cell.initial_carry((), xs.dtype))
    P = np.eye(zs.shape[1])
    for k in range(s + 1, t + 1):  # J_k = dz_k/dz_{k-1} at z_{k-1}
        f = lambda z: carry_to_vector(cell.step(w, vector_to_carry(z, like), xs[k - 1])[0])
        P = np.asarray(jax.jacfwd(f)(zs[k - 1])) @ P
    return P


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_jacobian_product_norm_equals_dense(name):
    cell = _cells()[name]
    p = to_f64(cell.init(jax.random.key(7), F))
    xs = _xs(shape=(T, F))
    s, t = 3, 10
    P = _dense_product(cell, p, xs, s, t)
    want = np.linalg.svd(P, compute_uv=False)
    got = analysis.jacobian_product_svals(cell, p, xs, (s, t), k=3, n_iter=300)
    np.testing.assert_allclose(got, want[:3], rtol=1e-8)
    dense = analysis.jacobian_product_svals(cell, p, xs, (s, t), k=3, method="dense")
    np.testing.assert_allclose(dense, want[:3], rtol=1e-12)


def test_jacobian_product_linear_closed_form_and_complex():
    a = 0.9
    cell, p = _linear(a * _haar(jax.random.key(3), H))
    sv = analysis.jacobian_product_svals(cell, p, _xs(), (2, 9), k=H, n_iter=5)
    np.testing.assert_allclose(sv, np.full(H, a ** 7), rtol=1e-12)
    cc = _complex_linear(_unitary(jax.random.key(9), H))
    pc = to_f64(cc.init(jax.random.key(5), F))
    sv = analysis.jacobian_product_svals(cc, pc, _xs(), (0, T), k=2 * H, n_iter=3)
    np.testing.assert_allclose(sv, np.ones(2 * H), rtol=1e-12)
    with pytest.raises(ValueError, match="span"):
        analysis.jacobian_product_svals(cell, p, _xs(), (5, 2))


# ------------------------------------------------------ recurrent-matrix spectrum

def test_recurrent_spectrum_and_orthogonality_error():
    Q = _haar(jax.random.key(3), H)
    cell, p = _linear(0.5 * Q)
    spec = analysis.recurrent_spectrum(cell, p)
    np.testing.assert_allclose(spec["singular_values"], np.full(H, 0.5), rtol=1e-12)
    np.testing.assert_allclose(np.abs(spec["eigenvalues"]), np.full(H, 0.5), rtol=1e-12)
    # ||0.25 I - I||_F = 0.75 * sqrt(H)
    np.testing.assert_allclose(spec["orthogonality_error"], 0.75 * np.sqrt(H), rtol=1e-12)
    cell, p = _linear(Q)
    assert float(analysis.orthogonality_error(cell, p)) < 1e-13
    lstm = cells.lstm(H)  # orthogonal gate blocks at init: each block is orthogonal
    pl = to_f64(lstm.init(jax.random.key(0), F))
    assert float(analysis.orthogonality_error(lstm, pl)) < 1e-6
    assert analysis.recurrent_spectrum(lstm, pl)["singular_values"].shape == (4, H)
    cu = _complex_linear(_unitary(jax.random.key(9), H))
    assert float(analysis.orthogonality_error(cu, None)) < 1e-12


# ------------------------------------------------------------------- Lyapunov

def test_lyapunov_orthogonal_is_zero():
    cell, p = _linear(_haar(jax.random.key(3), H))
    lam = analysis.lyapunov_spectrum(cell, p, _xs(shape=(200, F)))
    np.testing.assert_allclose(lam, np.zeros(H), atol=1e-12)


def test_lyapunov_normal_matrix_is_log_abs_eig():
    Q = _haar(jax.random.key(3), H)
    d = jnp.array([1.1, 0.9, 0.6, 0.3], jnp.float64)
    W = Q @ jnp.diag(d) @ Q.T  # symmetric, hence normal
    cell, p = _linear(W)
    lam = analysis.lyapunov_spectrum(cell, p, _xs(shape=(400, F)), burn_in=100)
    np.testing.assert_allclose(lam, np.log(np.sort(np.asarray(d))[::-1]), atol=1e-3)
    top2 = analysis.lyapunov_spectrum(cell, p, _xs(shape=(400, F)), k=2, burn_in=100)
    np.testing.assert_allclose(top2, lam[:2], atol=1e-3)


def test_lyapunov_rotation_blocks_normal_nonsymmetric():
    """A normal, non-symmetric W with complex eigenvalues r e^{+-i theta}."""
    def rot(r, th):
        return r * jnp.array([[jnp.cos(th), -jnp.sin(th)], [jnp.sin(th), jnp.cos(th)]])
    W = jnp.zeros((H, H), jnp.float64).at[:2, :2].set(rot(0.95, 0.7)).at[2:, 2:].set(
        rot(0.5, 1.3))
    cell, p = _linear(W)
    lam = analysis.lyapunov_spectrum(cell, p, _xs(shape=(600, F)), burn_in=100)
    np.testing.assert_allclose(lam, np.log([0.95, 0.95, 0.5, 0.5]), atol=1e-3)


# --------------------------------------------------------------- runner hooks

def test_grad_norms_by_layer():
    g = {"cell": {"W_hh": jnp.full((2, 2), 1.0), "b": jnp.array([3.0, 4.0])},
         "w": jnp.array([0.0, 2.0])}
    out = analysis.grad_norms_by_layer(g)
    np.testing.assert_allclose(out["['cell']"], np.sqrt(4 + 25))
    np.testing.assert_allclose(out["['w']"], 2.0)
    np.testing.assert_allclose(out["global"], np.sqrt(33))
    leaf = analysis.grad_norms_by_layer(g, depth=None)
    np.testing.assert_allclose(leaf["['cell']['b']"], 5.0)
    jitted = jax.jit(analysis.grad_norms_by_layer)(g)
    np.testing.assert_allclose(jitted["global"], np.sqrt(33))


def test_hidden_grad_norms_under_jit_equals_eager():
    cell = cells.elman(H)
    p = to_f64(cell.init(jax.random.key(0), F))
    xs = _xs(shape=(2, 6, F))
    loss = lambda ys: jnp.sum(ys[:, -1] ** 2)
    eager = analysis.hidden_grad_norms(cell, p, xs, loss).h
    jitted = jax.jit(lambda p, xs: analysis.hidden_grad_norms(cell, p, xs, loss))(p, xs).h
    np.testing.assert_allclose(jitted, eager, rtol=1e-12)


def test_carry_or_step_readout_falls_back_where_outputs_are_a_readout():
    xs = jax.random.normal(jax.random.key(0), (2, 6, 4), jnp.float64)
    loss = lambda ys: jnp.sum(ys[:, -1] ** 2)  # noqa: E731
    for cell, fallback in ((cells.s4d(4, state_size=4), "step"), (cells.gru(4), "auto")):
        params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(1), 4))
        got = analysis.hidden_grad_norms(cell, params, xs, loss, readout="carry_or_step")
        want = analysis.hidden_grad_norms(cell, params, xs, loss, readout=fallback)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=1e-12)
