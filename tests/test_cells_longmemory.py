"""The long-memory cells (oscillator, minimal-gate and state-space families): each step
equals its equations in NumPy, gradients pass second-order ``check_grads``, the log-space
scan equals the sequential one, and each initialisation has the statistics its paper
states.

The engine's promises for these cells (the scan equals a loop over ``step`` from a
random initial carry, padding and reversal inside lengths with a zero length, the
associative scan equals the sequential one with gradients for params, inputs and the
initial carry) are checked for every registered cell by tests/test_registry.py; they do
not depend on the param values, which matter for the step's equations checked here."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from helpers import to_f64
from rnnjax.cells import make
from rnnjax.cells.minimal import log_space_scan, mingru_log_coeffs, minlstm_log_coeffs, positive
from rnnjax.cells.ssm import hippo_legs, hippo_legs_diagonal, ring_init, sqrt_bound_derivative

F, H, B, T = 3, 4, 3, 6

CELLS = {
    "cornn": {}, "unicornn": {}, "lipschitz": {}, "antisymmetric": {},
    "indrnn": {"timesteps": T}, "mgu": {}, "mingru": {}, "minlstm": {},
    "rglru": {"num_heads": 2}, "s4d": {"state_size": 4}, "s5": {"state_size": 4},
}
REV_ONLY = ("rglru",)  # sqrt_bound_derivative is a custom_vjp


def _setup(name, seed=0):
    cell = make(name, H, **CELLS[name])
    params = to_f64(cell.init(jax.random.key(seed), F))
    # move the biases and gates off their zero init so every term of a step matters
    params = jax.tree.map(lambda a: a + 0.1 * jax.random.normal(
        jax.random.key(seed + 5), a.shape, a.dtype) if name in ("lipschitz", "antisymmetric",
                                                                  "cornn", "unicornn")
        else a, params)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, F), jnp.float64)
    return cell, params, xs


def _random_carry(cell, seed=3):
    carry = cell.initial_carry((), jnp.float64)
    keys = jax.random.split(jax.random.key(seed), 2 * len(carry))
    leaves = []
    for i, leaf in enumerate(carry):
        v = 0.5 * jax.random.normal(keys[2 * i], leaf.shape, jnp.float64)
        if jnp.iscomplexobj(leaf):
            v = v + 0.5j * jax.random.normal(keys[2 * i + 1], leaf.shape, jnp.float64)
        leaves.append(jnp.abs(v) if cell.name == "indrnn" else v)
    return type(carry)(*leaves)


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _softplus(v):
    return np.log1p(np.exp(v))


def _numpy_step(name, p, carry, x):
    """One step of each cell written out from its paper's equations (NumPy)."""
    p = {k: np.asarray(v) for k, v in p.items()}
    c = [np.asarray(a) for a in carry]
    if name == "cornn":
        h, z = c
        dt, gamma, eps = 0.042, 2.7, 4.7
        i2h = np.concatenate([p["W_x"], p["W_z"], p["W_h"]], 1)  # nn.Linear on [x, z, y]
        z = z + dt * (np.tanh(i2h @ np.concatenate([x, z, h]) + p["b"]) - gamma * h - eps * z)
        h = h + dt * z
        return (h, z), h
    if name == "unicornn":  # the CUDA kernel's loop body
        h, z = c
        d = 0.19 * _sig(p["c"])
        z = z - d * (np.tanh(h * p["w"] + p["V"] @ x + p["b"]) + 30.65 * h)
        h = h + d * z
        return (h, z), h
    if name in ("lipschitz", "antisymmetric"):
        (h,) = c
        I = np.eye(H)
        if name == "lipschitz":
            beta, gamma, eps = 0.75, 0.001, 0.03
            sym = lambda M: beta * (M - M.T) + (1 - beta) * (M + M.T) - gamma * I  # noqa
            A, W = sym(p["M_A"]), sym(p["M_W"])
            h = h + eps * A @ h + eps * np.tanh(W @ h + p["V"] @ x + p["b"])
        else:
            W = p["M"] - p["M"].T - 0.01 * I
            h = h + 0.01 * np.tanh(W @ h + p["V"] @ x + p["b"])
        return (h,), h
    if name == "indrnn":
        (h,) = c
        h = np.maximum(p["W"] @ x + p["u"] * h + p["b"], 0.0)  # clipped between updates
        return (h,), h
    if name == "mgu":
        (h,) = c
        Wx, Wh, b = p["W_xh"], p["W_hh"], p["b"]
        f = _sig(Wx[:H] @ x + Wh[:H] @ h + b[:H])
        hh = np.tanh(Wx[H:] @ x + Wh[H:] @ (f * h) + b[H:])
        h = (1 - f) * h + f * hh
        return (h,), h
    if name in ("mingru", "minlstm"):
        (h,) = c
        k = p["W"] @ x + p["b"]
        g = lambda v: np.where(v >= 0, v + 0.5, _sig(v))  # noqa: E731
        if name == "mingru":
            z = _sig(k[:H])
            h = (1 - z) * h + z * g(k[H:])
        else:
            f, i = _sig(k[:H]), _sig(k[H:2 * H])
            h = f / (f + i) * h + i / (f + i) * g(k[2 * H:])
        return (h,), h
    u = x @ p["E"].T if "E" in p else x
    if name == "rglru":
        (h,) = c
        blk = lambda W, v: np.concatenate([v[:2] @ W[0], v[2:] @ W[1]])  # noqa: E731
        r = _sig(blk(p["W_a"], u) + p["b_a"])
        i = _sig(blk(p["W_x"], u) + p["b_x"])
        a = np.exp(-8.0 * r * _softplus(p["Lambda"]))
        h = a * h + np.sqrt(1 - a ** 2) * (i * u)
        return (h,), h
    (h,) = c
    if name == "s4d":  # per channel k: SISO ZOH system with N/2 = 2 complex states
        lam = -np.exp(p["log_Lambda_re"]) + 1j * p["Lambda_im"]
        dt = np.exp(p["log_dt"])[:, None]
        lam_bar = np.exp(lam * dt)
        B_bar = (lam_bar - 1) / lam * (p["B_re"] + 1j * p["B_im"])
        hk = lam_bar * h.reshape(H, 2) + B_bar * u[:, None]
        y = 2 * ((p["C_re"] + 1j * p["C_im"]) * hk).sum(1).real + p["D"] * u
        return (hk.reshape(-1),), y
    lam = p["Lambda_re"] + 1j * p["Lambda_im"]  # s5
    lam_bar = np.exp(lam * np.exp(p["log_step"]))
    B_bar = ((lam_bar - 1) / lam)[:, None] * (p["B_re"] + 1j * p["B_im"])
    h = lam_bar * h + B_bar @ u
    y = 2 * ((p["C_re"] + 1j * p["C_im"]) @ h).real + p["D"] * u
    return (h,), y


@pytest.mark.parametrize("name", sorted(CELLS))
def test_step_equals_equations(name):
    cell, params, xs = _setup(name)
    carry = _random_carry(cell)
    new, y = cell.step(cell.prepare(params), carry, xs[0, 0])
    want_carry, want_y = _numpy_step(name, params, carry, np.asarray(xs[0, 0]))
    np.testing.assert_allclose(y, want_y, rtol=1e-11, atol=1e-12)
    for got, want in zip(new, want_carry):
        np.testing.assert_allclose(got, want, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", sorted(CELLS))
def test_check_grads_order_2(name):
    cell, params, xs = _setup(name)
    xs = xs[:1, :4]
    v = jax.random.normal(jax.random.key(9), (1, 4, cell.output_size), jnp.float64)

    def loss(params, xs):
        ys, final = rnnjax.run(cell, params, xs)
        return (ys * v).sum() + sum(jnp.sum(jnp.abs(a) ** 2) for a in final)

    modes = ("rev",) if name in REV_ONLY else ("fwd", "rev")
    check_grads(loss, (params, xs), order=2, modes=modes, eps=1e-4, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name,log_coeffs", [("mingru", mingru_log_coeffs),
                                             ("minlstm", minlstm_log_coeffs)])
def test_log_space_scan_equals_sequential_with_gradients(name, log_coeffs):
    cell, params, xs = _setup(name)
    xs = xs[0]
    h0 = jnp.abs(_random_carry(cell).h) + 0.1  # log space needs h_0 > 0
    v = jax.random.normal(jax.random.key(2), (T, H), jnp.float64)

    def seq(params):
        ys, _ = rnnjax.run(cell, params, xs, carry=rnnjax.HiddenState(h0))
        return (ys * v).sum(), ys

    def logscan(params):
        log_a, log_b = jax.vmap(log_coeffs, (None, 0))(params, xs)
        ys = log_space_scan(log_a, log_b, jnp.log(h0))
        return (ys * v).sum(), ys

    log_a, log_b = jax.vmap(log_coeffs, (None, 0))(params, xs)
    a, b = jax.vmap(cell.linear.coeffs, (None, 0))(params, xs)
    np.testing.assert_allclose(jnp.exp(log_a), a, rtol=1e-13)
    np.testing.assert_allclose(jnp.exp(log_b), b, rtol=1e-13)
    (l1, y1), g1 = jax.value_and_grad(seq, has_aux=True)(params)
    (l2, y2), g2 = jax.value_and_grad(logscan, has_aux=True)(params)
    np.testing.assert_allclose(y2, y1, rtol=1e-12)
    for a, b in zip(jax.tree.leaves(g1), jax.tree.leaves(g2)):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-12)
    assert np.all(np.asarray(positive(jnp.linspace(-30, 30, 101))) > 0)


# ---- initialisations ------------------------------------------------------------------

def test_indrnn_init_respects_the_magnitude_bound():
    steps, mag = 100, 2.0
    cell = make("indrnn", 2048, timesteps=steps, mag=mag)
    p = cell.init(jax.random.key(0), 2)
    bound = mag ** (1 / steps)
    u = np.asarray(p["u"])
    assert u.min() >= 0.0 and u.max() <= bound and u.max() > 0.99 * bound
    assert abs(u.mean() - bound / 2) < 0.02  # U(0, MAG^(1/T))
    # the constraint holds after the projection (applied between updates) for any raw
    # value, and a unit's gradient factor over T steps (relu active) is at most MAG
    w = cell.project({**p, "u": p["u"] * 3.0 - 1.5})
    assert np.abs(np.asarray(w["u"])).max() <= bound + 1e-7
    assert np.abs(np.asarray(w["u"])).max() ** steps <= mag * (1 + 1e-5)
    assert np.asarray(p["W"]).std() == pytest.approx(1e-3, rel=0.05)
    last = make("indrnn", 2048, timesteps=steps, recurrent_min=mag ** (-1 / steps))
    assert np.asarray(last.init(jax.random.key(1), 2)["u"]).min() >= mag ** (-1 / steps)


def test_hippo_legs_diagonal_eigenvalues():
    N = 16
    A, S, Bh = hippo_legs(N)
    # HiPPO-LegS: A_nk = -sqrt(2n+1) sqrt(2k+1) below the diagonal, -(n+1) on it
    n = np.arange(N)
    assert np.allclose(np.diag(A), -(n + 1))
    assert np.isclose(A[3, 1], -math.sqrt(7 * 3)) and A[1, 3] == 0
    lam, V, _ = hippo_legs_diagonal(N)
    # the normal part S = A + P P^T has eigenvalues -1/2 + i w, in conjugate pairs,
    # and V diagonalises it
    assert np.allclose(lam.real, -0.5)
    ref = np.linalg.eigvals(S)
    assert np.allclose(ref.real, -0.5)
    assert np.allclose(np.sort(ref.imag), np.sort(lam.imag), atol=1e-9)
    assert np.allclose(np.sort(lam.imag), np.sort(-lam.imag))
    assert np.allclose(V @ np.diag(lam) @ V.conj().T, S, atol=1e-9)
    # the cells start from the first half (negative imaginary parts) of those values
    cell = make("s4d", 2, state_size=N)
    p = cell.init(jax.random.key(0), 2)
    assert np.allclose(-np.exp(p["log_Lambda_re"]), -0.5)
    assert np.allclose(p["Lambda_im"][0], lam.imag[:N // 2], atol=1e-5)
    assert np.all(np.asarray(p["Lambda_im"]) < 0)
    B0 = V[:, :N // 2].conj().T @ Bh  # S4D clamps Im B to [-2, 2] (test_deviations.py)
    assert np.allclose(np.asarray(p["B_re"][0]) + 1j * np.asarray(p["B_im"][0]),
                       B0.real + 1j * np.clip(B0.imag, -2, 2), atol=1e-4)
    s5 = make("s5", 8, state_size=N, blocks=2)
    p5 = s5.init(jax.random.key(0), 8)
    lam8 = hippo_legs_diagonal(N // 2)[0][:N // 4]
    assert np.allclose(p5["Lambda_im"], np.tile(lam8.imag, 2), atol=1e-5)
    assert "E" not in p5 and "E" in s5.init(jax.random.key(0), 3)


def test_ssm_time_steps_are_log_uniform():
    cell = make("s4d", 4096, state_size=2)
    steps = np.exp(np.asarray(cell.init(jax.random.key(0), 4096)["log_dt"]))
    assert steps.min() >= 1e-3 and steps.max() <= 0.1
    logs = np.log(steps)
    assert abs(logs.mean() - (math.log(1e-3) + math.log(0.1)) / 2) < 0.1
    # ZOH keeps the discretised eigenvalues inside the unit disc (Re Lambda = -1/2)
    s5 = make("s5", 8, state_size=64)
    p = s5.init(jax.random.key(0), 8)
    lam_bar = np.asarray(s5.recurrent_matrix(p)).diagonal()
    step = np.exp(np.asarray(p["log_step"]))
    assert np.all(np.abs(lam_bar) < 1)
    assert np.allclose(np.abs(lam_bar), np.exp(-0.5 * step), rtol=1e-5)


def test_rglru_init_ring_and_guarded_sqrt():
    cell = make("rglru", 256)
    p = cell.init(jax.random.key(0), 256)
    lam = ring_init(jax.random.key(1), (100_000,))
    r0 = np.exp(-np.asarray(jax.nn.softplus(lam), np.float64))
    assert r0.min() >= 0.9 - 1e-6 and r0.max() <= 0.999 + 1e-6
    # uniform in area on the ring: r0^2 ~ U(0.81, 0.998)
    assert abs((r0 ** 2).mean() - (0.81 + 0.999 ** 2) / 2) < 0.005
    assert np.asarray(p["W_a"]).std() == pytest.approx(1 / math.sqrt(256), rel=0.05)
    # a = r0^(c r) with the gate r in (0, 1): the recurrence with the gate open is r0^8
    r_cell = np.exp(-np.asarray(jax.nn.softplus(p["Lambda"]), np.float64))
    np.testing.assert_allclose(np.diag(cell.recurrent_matrix(p)), r_cell ** 8, rtol=1e-5)
    # sqrt(1 - a^2) has its derivative capped at 1000 (the reference max_gradient)
    g = jax.grad(lambda x: sqrt_bound_derivative(x, 1000.0))
    assert float(g(0.0)) == pytest.approx(1000.0)
    assert float(g(0.25)) == pytest.approx(1.0)


def test_oscillator_and_antisymmetric_inits():
    Hb, Fb = 128, 4
    uni = make("unicornn", Hb).init(jax.random.key(0), Fb)
    assert 0 <= float(uni["w"].min()) and float(uni["w"].max()) <= 1
    assert -0.1 <= float(uni["c"].min()) and float(uni["c"].max()) <= 0.1
    assert float(jnp.abs(uni["V"]).max()) <= math.sqrt(6 / (65 * Fb))
    co = make("cornn", Hb).init(jax.random.key(0), Fb)
    assert float(jnp.abs(co["W_h"]).max()) <= 1 / math.sqrt(Fb + 2 * Hb)
    lip = make("lipschitz", Hb)
    p = lip.init(jax.random.key(0), Fb)
    assert np.asarray(p["M_A"]).std() == pytest.approx(0.1 / Hb, rel=0.03)
    # A = (1-beta)(M+M^T) + beta(M-M^T) - gamma I: its symmetric part is (1-beta)(M+M^T)
    # - gamma I, its skew part beta (M - M^T)
    A = np.asarray(lip.recurrent_matrix(p))[:Hb]
    M = np.asarray(p["M_A"])
    assert np.allclose((A + A.T) / 2, 0.25 * (M + M.T) - 0.001 * np.eye(Hb), atol=1e-6)
    assert np.allclose((A - A.T) / 2, 0.75 * (M - M.T), atol=1e-6)
    anti = make("antisymmetric", Hb)
    W = np.asarray(anti.recurrent_matrix(anti.init(jax.random.key(1), Fb)), np.float64)
    assert np.allclose(np.linalg.eigvals(W).real, -0.01, atol=1e-5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mag"):
        make("indrnn", 4, mag=1.0)
    with pytest.raises(ValueError, match="state_size"):
        make("s4d", 4, state_size=3)
    with pytest.raises(ValueError, match="num_heads"):
        make("rglru", 6, num_heads=4)
    with pytest.raises(ValueError, match="beta"):
        make("lipschitz", 4, beta=1.5)
    with pytest.raises(ValueError, match="dt"):
        make("cornn", 4, dt=0.0)


def test_nnx_wrappers_run_the_pure_cell():
    from flax import nnx

    import rnnjax.layers.nnx as rnn_nn
    cell, params, xs = _setup("mingru")
    module = rnn_nn.MinGRU(F, H, rngs=nnx.Rngs(params=0), params=params)
    ys, _ = module(xs)
    np.testing.assert_allclose(ys, rnnjax.run(cell, params, xs)[0], rtol=1e-12)
    for name in ("CoRNN", "S5", "RGLRU", "IndRNN"):
        m = getattr(rnn_nn, name)(F, H, rngs=nnx.Rngs(params=0))
        assert m.cell.name == {"CoRNN": "cornn", "S5": "s5", "RGLRU": "rglru",
                               "IndRNN": "indrnn"}[name]
