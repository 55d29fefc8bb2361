"""Orthogonal and unitary cells: equations, prepare-once, complex carries, registry."""

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from helpers import to_f64
from rnnjax import parametrize as P

H, F, T = 6, 3, 7
ORTH = ["exprnn", "scornn", "householder"]
UNIT = ["urnn", "eunn", "fcurnn"]


def _manual(cell, params, xs):
    """The state equation h_t = modrelu(W h_{t-1} + V x_t, b) written out with the dense W."""
    w = np.asarray(rnnjax.recurrent_matrix(cell, params))
    if "V" in params:
        v = np.asarray(params["V"])
    else:
        v = np.asarray(params["V_re"]) + 1j * np.asarray(params["V_im"])
    b = np.asarray(params["b"])
    h = np.zeros(H, dtype=w.dtype if np.iscomplexobj(w) else float)
    ys = []
    for x in np.asarray(xs):
        z = w @ h + v @ x
        r = np.abs(z)
        h = np.where(r > 0, z / np.where(r > 0, r, 1) * np.maximum(r + b, 0), 0)
        ys.append(np.concatenate([h.real, h.imag]) if np.iscomplexobj(h) else h)
    return np.stack(ys), h


@pytest.mark.parametrize("name", ORTH + UNIT)
def test_cell_follows_its_state_equation(name):
    cell = rnnjax.cells.make(name, H)
    params = to_f64(cell.init(jax.random.key(0), F))
    xs = jax.random.normal(jax.random.key(1), (2, T, F), jnp.float64)
    ys, final = rnnjax.run(cell, params, xs)
    assert ys.shape == (2, T, cell.output_size)
    for i in range(2):
        ref_ys, ref_h = _manual(cell, params, xs[i])
        np.testing.assert_allclose(ys[i], ref_ys, atol=1e-10)
        np.testing.assert_allclose(final.h[i], ref_h, atol=1e-10)


@pytest.mark.parametrize("name", ORTH + UNIT)
def test_recurrent_matrix_is_orthogonal_or_unitary(name):
    cell = rnnjax.cells.make(name, H)
    w = rnnjax.recurrent_matrix(cell, cell.init(jax.random.key(2), F))
    assert w.shape == (H, H)
    assert jnp.iscomplexobj(w) == (name in UNIT)
    assert np.abs(np.asarray(w.conj().T @ w) - np.eye(H)).max() < 1e-5


@pytest.mark.parametrize("name", ["exprnn", "scornn", "fcurnn"])
def test_matrix_is_built_outside_the_scan_body(name):
    """The expm / solve of the map appears in prepare, never inside the scanned step."""
    cell = rnnjax.cells.make(name, H)
    params = cell.init(jax.random.key(0), F)
    xs = jnp.zeros((2, T, F))
    jaxpr = jax.make_jaxpr(lambda p: rnnjax.run(cell, p, xs))(params)
    heavy = {"lu", "triangular_solve", "cond", "while", "custom_linear_solve"}

    def prims(jx, inside):
        out = []
        for eqn in jx.eqns:
            if inside:
                out.append(eqn.primitive.name)
            # the time loop: the scan of length T (expm holds small scans of its own)
            loop = eqn.primitive.name == "scan" and eqn.params["length"] == T
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                out += prims(sub, inside or loop)
        return out

    everywhere = set(prims(jaxpr.jaxpr, True))
    in_scan = set(prims(jaxpr.jaxpr, False))
    assert heavy & everywhere, "the map itself should appear in the program"
    assert not heavy & in_scan, f"{heavy & in_scan} inside the scan body"


@pytest.mark.parametrize("name", UNIT)
def test_unitary_carry_is_complex_and_output_is_re_im(name):
    cell = rnnjax.cells.make(name, H)
    assert cell.initial_carry((2,), jnp.float32).h.dtype == jnp.complex64
    assert cell.initial_carry((), jnp.float64).h.dtype == jnp.complex128
    params = cell.init(jax.random.key(3), F)
    ys, final = rnnjax.run(cell, params, jax.random.normal(jax.random.key(4), (T, F), jnp.float32))
    assert ys.dtype == jnp.float32 and ys.shape == (T, 2 * H)
    # to one float32 rounding: XLA may compute Re h and the output in separate fusions
    np.testing.assert_allclose(ys[-1], jnp.concatenate([final.h.real, final.h.imag]),
                               rtol=3e-7, atol=0)


@pytest.mark.parametrize("name", ORTH + UNIT)
def test_norm_preserved_over_long_sequences(name):
    """With zero inputs and a negligible modReLU bias the state keeps its norm:
    ||h_T|| = ||h_0|| after T = 1000 steps (float32) -- no vanishing, no explosion."""
    cell = rnnjax.cells.make(name, 16)
    params = cell.init(jax.random.key(5), F)
    params["b"] = jnp.zeros_like(params["b"])
    h0 = (cell.initial_carry((), jnp.float32).h
          + jax.random.normal(jax.random.key(6), (16,), jnp.float32))
    _, final = rnnjax.run(cell, params, jnp.zeros((1000, F), jnp.float32),
                         carry=rnnjax.HiddenState(h0))
    np.testing.assert_allclose(jnp.linalg.norm(final.h), jnp.linalg.norm(h0), rtol=1e-3)


def test_householder_reflect_mode_equals_dense_mode():
    xs = jax.random.normal(jax.random.key(7), (2, T, F), jnp.float64)
    for m in (3, 6):
        a = rnnjax.cells.householder(H, reflections=m, mode="reflect")
        b = rnnjax.cells.householder(H, reflections=m, mode="dense")
        params = to_f64(a.init(jax.random.key(8), F))
        np.testing.assert_allclose(rnnjax.run(a, params, xs)[0], rnnjax.run(b, params, xs)[0],
                                   atol=1e-12)
        assert "q" in a.prepare(params) and "W" in b.prepare(params)


def test_exprnn_dynamic_trivialization_in_a_cell():
    cell = rnnjax.cells.exprnn(H, dynamic=True, init="haar")
    params = to_f64(cell.init(jax.random.key(9), F))
    np.testing.assert_array_equal(params["base"], np.eye(H))
    params["skew"] = params["skew"] + 0.1
    xs = jax.random.normal(jax.random.key(1), (T, F), jnp.float64)
    before = rnnjax.run(cell, params, xs)[0]
    new = rnnjax.parametrize.retrivialize(params)
    np.testing.assert_allclose(rnnjax.run(cell, new, xs)[0], before, atol=1e-12)
    assert not np.allclose(new["base"], np.eye(H))
    g = jax.grad(lambda p: jnp.sum(rnnjax.run(cell, p, xs)[0] ** 2))(new)
    np.testing.assert_array_equal(g["base"], 0)  # base is not trained by gradients


@pytest.mark.slow
@pytest.mark.parametrize("name", ORTH + UNIT)
def test_gradients_through_the_sequence(name):
    cell = rnnjax.cells.make(name, 4)
    params = to_f64(cell.init(jax.random.key(10), 2))
    params["b"] = params["b"] + 0.3  # keep away from the modReLU kink
    xs = jax.random.normal(jax.random.key(11), (3, 2), jnp.float64)
    if "base" in params:
        del params["base"]
    check_grads(lambda p: jnp.sum(jnp.sin(rnnjax.run(cell, p, xs)[0])), (params,), order=1,
                modes=("rev",), atol=1e-5, rtol=1e-5)


def test_lengths_freeze_a_complex_carry():
    cell = rnnjax.cells.urnn(H)
    params = cell.init(jax.random.key(12), F)
    xs = jax.random.normal(jax.random.key(13), (2, T, F), jnp.float32)
    ys, final = rnnjax.run(cell, params, xs, lengths=jnp.array([3, T]))
    _, short = rnnjax.run(cell, params, xs[0, :3])
    np.testing.assert_allclose(final.h[0], short.h, atol=1e-6)
    np.testing.assert_array_equal(ys[0, 3:], 0)


def test_eunn_capacity_and_urnn_parameter_counts():
    p = rnnjax.cells.eunn(8, capacity=3).init(jax.random.key(0), F)
    assert p["angles"].shape == (3, 2, 4) and p["phases"].shape == (8,)
    p = rnnjax.cells.urnn(8).init(jax.random.key(0), F)
    assert p["phases"].size + p["reflections"].size == 7 * 8  # Arjovsky's 7n
    p = rnnjax.cells.fcurnn(8).init(jax.random.key(0), F)
    assert p["skew"].size == 8 * 8  # Wisdom et al.'s n^2


def test_henaff_init_of_exprnn_is_rotations():
    cell = rnnjax.cells.exprnn(8, init="henaff")
    key = jax.random.key(14)
    params = cell.init(key, F)
    theta = P.block_angles(jax.random.split(key)[0], 8)
    w = rnnjax.recurrent_matrix(cell, params)
    np.testing.assert_allclose(np.sort(np.angle(np.linalg.eigvals(np.asarray(w, float)))),
                               np.sort(np.r_[theta, -theta]), atol=1e-5)


def test_registry_and_bad_arguments():
    for name in ORTH + UNIT:
        assert name in rnnjax.cells.REGISTRY
    with pytest.raises(ValueError, match="init"):
        rnnjax.cells.exprnn(4, init="glorot")
    with pytest.raises(ValueError, match="rho"):
        rnnjax.cells.scornn(4, rho=9)
    with pytest.raises(ValueError, match="reflections == hidden_size"):
        rnnjax.cells.householder(6, reflections=4, init="henaff")
    with pytest.raises(ValueError, match="mode"):
        rnnjax.cells.householder(6, mode="fast")
    with pytest.raises(ValueError, match="capacity"):
        rnnjax.cells.eunn(6, capacity=0)
    with pytest.raises(ValueError, match="input_size"):
        rnnjax.cells.urnn(4).init(jax.random.key(0), 0)
