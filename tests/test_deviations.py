"""Behaviour matched to the papers' reference code (each test failed before the fix it
checks); float64 where the claim is exact."""

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnjax import run
from rnnjax.cells import elman, make, s4d
from rnnjax.cells.ssm import hippo_legs_diagonal
from rnnjax.core.cell import HiddenState
from rnnjax.engine.newton import NewtonOptions, elk_filter, elk_smoother, scan_newton
from rnnjax.optim import PAPER_RECIPES, recipe
from rnnjax.optim.constraints import Penalties, flossing_burn_in, flossing_penalty, penalty
from rnnjax.training.runner import Config, build
from rnnjax.training.update import init_state, make_update

# ------------------------------------------------------------------------------- ELK

def _damped_least_squares(a, b, z0, Y, lam):
    """Dense float64 solve of ``min sum_t (z_t - a_t z_{t-1} - b_t)^2 + lam |z - Y|^2``
    per coordinate: ``(D^T D + lam I) z = D^T c + lam Y``."""
    T, n = a.shape
    out = np.zeros((T, n))
    for i in range(n):
        D = np.eye(T) - np.diag(a[1:, i], -1)
        c = b[:, i].copy()
        c[0] += a[0, i] * z0[i]
        out[:, i] = np.linalg.solve(D.T @ D + lam * np.eye(T), D.T @ c + lam * Y[:, i])
    return out


def test_elk_is_the_levenberg_marquardt_step_not_the_filter():
    T, n, lam = 7, 3, 0.7
    rng = np.random.default_rng(0)
    a = rng.uniform(-1.5, 1.5, (T, n))
    b, Y, z0 = rng.normal(size=(T, n)), rng.normal(size=(T, n)), rng.normal(size=n)
    exact = _damped_least_squares(a, b, z0, Y, lam)
    smoothed = np.asarray(elk_smoother(a, b, z0, Y, lam))
    filtered = np.asarray(elk_filter(a, b, z0, Y, lam))
    assert np.max(np.abs(smoothed - exact)) < 1e-12
    assert np.max(np.abs(filtered[-1] - exact[-1])) < 1e-12  # equal at the last step only
    assert np.min(np.max(np.abs(filtered[:-1] - exact[:-1]), axis=1)) > 1e-3


def test_one_elk_iteration_of_scan_newton_is_the_dense_lm_step():
    # a one-unit Elman cell: its Jacobian is diagonal, so quasi-ELK is exact ELK
    T, lam = 9, 0.3
    cell = elman(1)
    p = {"W_xh": jnp.array([[0.8]]), "W_hh": jnp.array([[1.3]]), "b": jnp.array([0.1])}
    rng = np.random.default_rng(1)
    xs, guess = jnp.asarray(rng.normal(size=(T, 1, 1))), jnp.asarray(rng.normal(size=(T, 1, 1)))
    carry = HiddenState(jnp.full((1, 1), 0.2, jnp.float64))
    ys, final, it = scan_newton(cell, p, carry, xs, options=NewtonOptions(
        "elk", max_iters=1, tol=1e-300, init=guess, damping=lam))
    assert int(it[0]) == 1
    Y = np.asarray(guess[:, 0])
    prev = np.concatenate([[[0.2]], Y[:-1]])
    pre = 0.8 * np.asarray(xs[:, 0]) + 1.3 * prev + 0.1
    a = 1.3 * (1 - np.tanh(pre) ** 2)
    b = np.tanh(pre) - a * prev
    exact = _damped_least_squares(a, b, np.array([0.2]), Y, lam)
    # the iterate itself is the final carry and, one step on, the outputs
    assert abs(float(final.h[0, 0]) - exact[-1, 0]) < 1e-12
    step = np.tanh(0.8 * np.asarray(xs[:, 0]) + 1.3 * np.concatenate([[[0.2]], exact[:-1]])
                   + 0.1)
    assert np.max(np.abs(np.asarray(ys[:, 0]) - step)) < 1e-12


# ------------------------------------------------------------------------------- S4D

def test_s4d_legs_clamps_imaginary_b_to_two_as_state_spaces_s4():
    N = 16
    lam, V, Bh = hippo_legs_diagonal(N)
    B0 = V[:, :N // 2].conj().T @ Bh
    assert np.max(np.abs(B0.imag)) > 10  # unclipped V^* B_HiPPO
    p = s4d(1, state_size=N).init(jax.random.key(0), 1)
    assert np.max(np.abs(np.asarray(p["B_im"]))) <= 2.0
    assert np.allclose(np.asarray(p["B_im"][0]), np.clip(B0.imag, -2, 2), atol=1e-5)
    assert np.allclose(np.asarray(p["B_re"][0]), B0.real, atol=1e-5)


def test_s4d_real_part_is_minus_exp_so_no_update_makes_it_unstable():
    cell = s4d(2, state_size=8, init="lin")
    p = cell.init(jax.random.key(0), 2)
    assert "Lambda_re" not in p and np.allclose(np.asarray(p["log_Lambda_re"]), math.log(0.5))
    for shift in (-30.0, 3.0, 30.0):  # any value of the parameter, e.g. after a huge step
        q = {**p, "log_Lambda_re": p["log_Lambda_re"] + shift}
        mod = np.abs(np.asarray(jnp.diag(cell.recurrent_matrix(q))))
        assert np.all(mod <= 1.0) and np.all(np.isfinite(mod))


# ------------------------------------------------------------------------ Householder

def test_householder_recipe_is_the_reference_adam():
    r = PAPER_RECIPES["householder"]
    assert (r.optimizer, r.lr, r.lr_orth, r.clip) == ("adam", 1e-3, 1e-3, None)
    tx = recipe(r.optimizer, lr=r.lr, lr_orth=r.lr_orth, clip=r.clip)
    p = {"reflections": jnp.ones((3, 3), jnp.float64), "V": jnp.ones((3, 2), jnp.float64)}
    state = tx.init(p)
    m = v = 0.0
    for t, g in enumerate((0.5, -2.0, 0.1), start=1):  # zmhammedi/Orthogonal_RNN sgd.py
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        delta = -1e-3 * m / (1 - 0.9 ** t) / (math.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        u, state = tx.update(jax.tree.map(lambda a: jnp.full_like(a, g), p), state, p)
        for leaf in jax.tree.leaves(u):
            np.testing.assert_allclose(np.asarray(leaf), delta, rtol=1e-12)


# ------------------------------------------------------------------------ Lipschitz RNN

def test_lipschitz_defaults_are_the_current_reference_command():
    H, F = 64, 16
    cell = make("lipschitz", H)
    p = cell.init(jax.random.key(0), F)
    # M_A, M_W ~ N(0, (0.1 / H)^2): driver.py's --init_std default (the command sets none)
    assert np.asarray(p["M_A"]).std() == pytest.approx(0.1 / H, rel=0.05)
    # V, b: nn.Linear(F, H) defaults, U(-1/sqrt(F), 1/sqrt(F)): std 1/sqrt(3F), bias != 0
    k = 1 / math.sqrt(F)
    for name in ("V", "b"):
        a = np.asarray(p[name])
        assert np.abs(a).max() <= k and np.abs(a).max() > 0.9 * k
    assert np.asarray(p["V"]).std() == pytest.approx(k / math.sqrt(3), rel=0.05)
    # eps 0.03, beta 0.75, gamma 0.001: one step from h against the equations
    rng = np.random.default_rng(2)
    h, x = rng.normal(size=H), rng.normal(size=F)
    q = {k_: np.asarray(v, np.float64) for k_, v in p.items()}
    sym = lambda M: 0.75 * (M - M.T) + 0.25 * (M + M.T) - 0.001 * np.eye(H)  # noqa: E731
    want = h + 0.03 * sym(q["M_A"]) @ h + 0.03 * np.tanh(sym(q["M_W"]) @ h + q["V"] @ x
                                                         + q["b"])
    got = cell.step(cell.prepare(q), HiddenState(h), x)[1]
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------ IndRNN

def _indrnn_loss(cell, sign):
    xs = jnp.ones((2, 20, 1), jnp.float64)
    return lambda p: sign * jnp.sum(run(cell, p, xs)[0][:, -1])


def test_indrnn_clips_between_updates_so_the_gradient_does_not_die():
    T = 20
    cell = make("indrnn", 3, timesteps=T)
    bound = 2.0 ** (1 / T)
    p = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), cell.init(jax.random.key(0), 1))
    p = {**p, "W": jnp.ones_like(p["W"]), "u": jnp.array([0.5, bound + 0.05, bound])}
    # a u past the bound (an update overshot) still has its gradient in the forward ...
    g = jax.grad(_indrnn_loss(cell, 1.0))(p)["u"]
    assert np.all(np.abs(np.asarray(g)) > 0)
    # ... and the projection puts it on the bound, where its gradient lives too
    q = cell.project(p)
    np.testing.assert_array_equal(np.asarray(q["u"]), [0.5, bound, bound])
    assert np.all(np.abs(np.asarray(jax.grad(_indrnn_loss(cell, 1.0))(q)["u"])) > 0)
    # the update rule projects after each step: pushed up, u stops at the bound; pushed
    # down again, it leaves the bound (with the clip inside prepare it stayed stuck)
    tx = optax.sgd(1.0)
    step = jax.jit(make_update(lambda q, sign: _indrnn_loss(cell, sign)(q), tx,
                               project=cell.project))
    state = init_state(p, tx, jax.random.key(1))
    for _ in range(3):
        state, _ = step(state, -1.0)
    np.testing.assert_array_equal(np.asarray(state.params["u"]), bound)
    state, _ = step(state, 1.0)
    assert np.all(np.asarray(state.params["u"]) < bound)


def test_the_runner_projects_the_cell_params_after_every_step():
    T = 12
    config = Config(cell="indrnn", cell_options=(("timesteps", T),), task="adding", T=T,
                    hidden=4, batch=4, steps=1, log_every=1, eval_batch=4, lr=1e3,
                    optimizer="sgd", clip=None)
    exp = build(config)
    state = exp.init(jnp.asarray(0, jnp.int32))
    new = jax.jit(exp.step)(state)
    u = np.asarray(new.params["cell"]["u"])
    bound = 2.0 ** (1 / T)
    assert np.all(np.abs(u) <= bound) and np.any(np.abs(u) == np.float32(bound))
    assert not np.array_equal(u, np.asarray(state.params["cell"]["u"]))


def test_householder_mhammedi_keeps_triangular_unit_vectors_between_updates():
    cell = make("householder", 5, init="mhammedi")
    p = cell.init(jax.random.key(0), 2)
    moved = {**p, "reflections": p["reflections"] + 0.3}  # an update fills every entry
    u = np.asarray(cell.project(moved)["reflections"])
    assert np.all(u[np.tril_indices(5, -1)] == 0)
    np.testing.assert_allclose(np.linalg.norm(u, axis=1), 1.0, rtol=1e-6)
    want = np.triu(np.asarray(moved["reflections"]))
    np.testing.assert_allclose(u, want / np.linalg.norm(want, axis=1, keepdims=True), rtol=1e-6)
    assert make("householder", 5).project is None  # other inits: no constraint to keep


# ------------------------------------------------------------------------------- nnRNN

def test_nnrnn_input_matrix_keeps_pytorchs_default_uniform_init():
    H, F = 64, 32
    p = make("nnrnn", H).init(jax.random.key(0), F)
    V, k = np.asarray(p["V"]), 1 / math.sqrt(F)
    assert np.abs(V).max() <= k and np.abs(V).max() > 0.95 * k  # not He-normal N(0, 2/F)
    assert V.std() == pytest.approx(k / math.sqrt(3), rel=0.05)
    b = np.asarray(p["b"])  # the modReLU bias, U[-0.01, 0.01]
    assert np.abs(b).max() <= 0.01 and b.std() > 0.004


# --------------------------------------------------------- PyTorch's two biases (uniform)

def test_uniform_init_draws_both_pytorch_biases():
    # torch.nn.RNN / LSTM / GRU: bias_ih and bias_hh each U(-k, k), k = 1/sqrt(H); the
    # cells' b is their sum (the GRU's n block: bias_ih alone, its bias_hh is b_hn)
    from scipy.stats import ks_2samp
    H, F = 256, 3
    k = 1 / math.sqrt(H)
    rng = np.random.default_rng(0)
    torch_sum = rng.uniform(-k, k, 4 * H) + rng.uniform(-k, k, 4 * H)
    for name, cell in (("RNN", make("elman", H)),
                       ("LSTM", make("lstm", H, init="uniform", forget_bias=0.0)),
                       ("GRU", make("gru", H, init="uniform"))):
        p = cell.init(jax.random.key(0), F)
        b = np.asarray(p["b"])
        if name == "LSTM":  # the forget block is set to forget_bias (here 0), not drawn
            b = np.delete(b, np.s_[H:2 * H])
        if name == "GRU":
            b, b_in = b[:2 * H], b[2 * H:]
            for one in (b_in, np.asarray(p["b_hn"])):
                assert np.abs(one).max() <= k
                assert one.std() == pytest.approx(k / math.sqrt(3), rel=0.1)
        # a sum of two U(-k, k): beyond one draw's range, variance 2 k^2 / 3
        assert k < np.abs(b).max() <= 2 * k
        assert b.std() == pytest.approx(k * math.sqrt(2 / 3), rel=0.1)
        assert ks_2samp(b, torch_sum).pvalue > 0.01, name


# ---------------------------------------------------------------------------- flossing

def test_flossing_burn_in_is_the_reference_10_plus_ceil_tenth():
    # GradientFlossing_ExampleCode.jl: log|R_ii| summed for n > 10 + ceil(T / 10)
    assert [flossing_burn_in(T) for T in (13, 20, 21, 100, 1000)] == [12, 12, 13, 20, 110]
    with pytest.raises(ValueError, match="T = 12"):
        flossing_burn_in(12)
    cell = elman(3)
    p = cell.init(jax.random.key(0), 2)
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(2, 30, 2)), jnp.float32)
    got = penalty(cell, p, xs, Penalties(floss_weight=1.0, floss_batch=2), floss=True)
    want = flossing_penalty(cell, p, xs, k=1, burn_in=13)  # T = 30: 10 + 3 steps skipped
    assert float(got) == pytest.approx(float(want), rel=1e-6)


# ------------------------------------------------------------------ minGRU / minLSTM

def test_the_cell_table_says_which_scan_the_minimal_cells_run():
    page = (Path(__file__).resolve().parents[1] / "docs" / "guides" / "cells.md").read_text()
    row = next(line for line in page.splitlines() if line.startswith("| `mingru`"))
    assert "linear space" in row and "log_space_scan" in row
    assert "log-space scan |" not in row  # what `run` does not do
