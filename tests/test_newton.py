"""Newton evaluation (DEER / quasi-DEER / ELK) against the sequential engine, float64."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.analysis.newton import convergence_cells, newton_convergence
from rnnjax.cells import REGISTRY, elman, exprnn, gru, lstm
from rnnjax.core.cell import HiddenState
from rnnjax.core.precision import cast_floating
from rnnjax.engine.newton import (
    NewtonOptions,
    carry_to_vector,
    check_newton_options,
    default_max_iters,
    scan_newton,
    vector_to_carry,
)
from rnnjax.engine.sequential import scan_cell

T, B, F, H = 24, 3, 2, 4
CELLS = {"elman": elman, "gru": gru, "lstm": lstm, "exprnn": exprnn}


def f64(tree):
    return jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), tree)


def setup(name, seed=0):
    cell = CELLS[name](H)
    params = f64(cell.init(jax.random.key(seed), F))
    xs = jax.random.normal(jax.random.key(seed + 1), (T, B, F), jnp.float64)
    carry = jax.tree.map(lambda a: 0.3 * jax.random.normal(jax.random.key(seed + 2), a.shape,
                                                           jnp.float64),
                         cell.initial_carry((B,), jnp.float64))
    return cell, params, xs, carry, jnp.array([T, 15, 0])


def loss(out):
    ys, final = out[0], out[1]
    return jnp.sum(jnp.sin(ys) * ys) + sum(jnp.sum(jnp.real(leaf ** 3))  # real: uRNN
                                           for leaf in jax.tree.leaves(final))


def max_diff(a, b):
    return max(float(jnp.max(jnp.abs(u - v))) for u, v in
               zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("name", list(CELLS))
def test_deer_equals_sequential_values_and_gradients(name, reverse):
    cell, params, xs, carry, lengths = setup(name)
    opts = NewtonOptions("deer", tol=1e-12)
    newton = jax.jit(lambda p, c, x: scan_newton(cell, p, c, x, lengths, reverse=reverse,
                                                 options=opts))
    seq = lambda p, c, x: scan_cell(cell, cell.prepare(p), c, x, lengths, reverse=reverse)
    ys, final, iters = newton(params, carry, xs)
    ys2, final2 = seq(params, carry, xs)
    assert max_diff(ys, ys2) < 1e-8 and max_diff(final, final2) < 1e-8
    assert float(jnp.max(jnp.abs(ys[15:, 1]))) == 0.0  # zero past the length
    assert max_diff(final.h[2], carry.h[2]) == 0.0  # length 0 keeps the carry
    # the DEER bound per example: max(length, 1) (one solve moves z_0 into the padding)
    assert np.all(np.asarray(iters) <= np.array([T, 15, 1]))
    # implicit-function-theorem gradients against autodiff through the sequential scan
    g1 = jax.jit(jax.grad(lambda *a: loss(newton(*a)), argnums=(0, 1, 2)))(params, carry, xs)
    g2 = jax.grad(lambda *a: loss(seq(*a)), argnums=(0, 1, 2))(params, carry, xs)
    assert max_diff(g1, g2) < 1e-8


@pytest.mark.parametrize("method", ["quasi", "elk"])
@pytest.mark.parametrize("name", ["elman", "gru", "lstm"])
def test_quasi_and_elk_converge_to_the_deer_trajectory(name, method):
    cell, params, xs, carry, lengths = setup(name, seed=3)
    run = lambda m, k: scan_newton(cell, params, carry, xs, lengths, reverse=True,
                                   options=NewtonOptions(m, max_iters=k, tol=1e-12))
    ys, final, iters = run("deer", None)
    ys2, final2, iters2 = run(method, 4 * T)
    assert int(jnp.max(iters2)) < 4 * T  # converged before the cap
    assert max_diff(ys, ys2) < 1e-9 and max_diff(final, final2) < 1e-9
    if method == "quasi":  # the first k states are exact after k iterations: bound T
        assert np.all(np.asarray(iters2) <= np.array([T, 15, 1]))
    # ELK's damping costs iterations against quasi-DEER, never the answer
    if method == "elk":
        quasi = run("quasi", 4 * T)[2]
        assert np.all(np.asarray(iters2) >= np.asarray(quasi))


def test_deer_contractive_elman_converges_in_few_iterations_at_T_1000():
    H2, T2 = 2, 1000
    W = jax.random.normal(jax.random.key(0), (H2, H2), jnp.float64)
    W = 0.5 * W / np.linalg.norm(np.asarray(W), 2)  # spectral norm 0.5
    params = {"W_xh": jax.random.normal(jax.random.key(1), (H2, 1), jnp.float64),
              "W_hh": W, "b": jnp.zeros((H2,), jnp.float64)}
    xs = jax.random.normal(jax.random.key(2), (T2, 1, 1), jnp.float64)
    carry = HiddenState(jnp.zeros((1, H2), jnp.float64))
    cell = elman(H2)
    ys, final, iters = scan_newton(cell, params, carry, xs, options=NewtonOptions(tol=1e-12))
    ys2, _ = scan_cell(cell, cell.prepare(params), carry, xs)
    assert int(iters[0]) <= 20
    assert max_diff(ys, ys2) < 1e-10


def test_deer_needs_up_to_T_iterations_on_a_chaotic_cell_and_still_solves_it():
    cells = convergence_cells(H, F, gains=(4.0,), key=jax.random.key(5))
    cell, params = cells["elman-g4"]
    xs = 0.1 * jax.random.normal(jax.random.key(6), (T, 1, F), jnp.float64)
    carry = HiddenState(jnp.full((1, H), 0.5))
    ys, _, iters = scan_newton(cell, params, carry, xs, options=NewtonOptions(tol=1e-12))
    ys2, _ = scan_cell(cell, cell.prepare(params), carry, xs)
    assert 5 < int(iters[0]) <= T
    assert max_diff(ys, ys2) < 1e-8


def test_warm_start_from_the_solution_costs_no_iteration():
    cell, params, xs, carry, lengths = setup("gru", seed=7)
    ys, final, iters = scan_newton(cell, params, carry, xs, lengths, reverse=True)
    assert int(jnp.max(iters)) > 0
    # HiddenState(ys) is the GRU's trajectory (past the length: zeros, not the frozen
    # carry, so the padded example needs iterations there; the full one needs none)
    warm = NewtonOptions(init=HiddenState(ys))
    ys2, _, iters2 = scan_newton(cell, params, carry, xs, lengths, reverse=True, options=warm)
    assert int(iters2[0]) == 0
    assert max_diff(ys, ys2) < 1e-9
    # a guess as flattened states (T, B, n); a partly right guess helps
    half = jnp.where(jnp.arange(T)[:, None, None] < T // 2, ys, 0.0)
    it_half = scan_newton(cell, params, carry, xs, options=NewtonOptions(init=half))[2]
    it_zero = scan_newton(cell, params, carry, xs)[2]
    assert int(it_half[0]) <= int(it_zero[0])


def test_carry_vector_round_trip_with_complex_leaves():
    like = (jax.ShapeDtypeStruct((3,), jnp.complex128), jax.ShapeDtypeStruct((2,), jnp.float64))
    tree = (jnp.array([1 + 2j, 3 - 1j, 0.5j]), jnp.array([4.0, 5.0]))
    z = carry_to_vector(tree)
    np.testing.assert_array_equal(z, [1, 3, 0, 2, -1, 0.5, 4, 5])
    back = vector_to_carry(z, like)
    assert max_diff(back, tree) == 0.0 and back[0].dtype == jnp.complex128


def test_helper_reports_more_iterations_for_the_larger_lyapunov_exponent():
    cells = convergence_cells(16, F, gains=(0.5, 3.0), key=jax.random.key(1))
    xs = 0.2 * jax.random.normal(jax.random.key(2), (64, F), jnp.float64)
    rows = {r.name: r for r in newton_convergence(
        {k: cells[k] for k in ("elman-g0.5", "elman-g3")}, xs, Ts=(16, 64))}
    lo, hi = rows["elman-g0.5"], rows["elman-g3"]
    assert hi.lyapunov > lo.lyapunov + 0.5
    assert hi.iterations[-1] > lo.iterations[-1]
    assert hi.iterations[-1] > hi.iterations[0]  # grows with T near the edge of chaos
    assert all(i <= t for i, t in zip(hi.iterations, hi.T))


@pytest.mark.parametrize("options, match", [
    (NewtonOptions(method="jacobi"), "method"),
    (NewtonOptions(max_iters=-1), "max_iters"),
    (NewtonOptions(tol=0.0), "tol"),
    (NewtonOptions(damping=0.0), "damping"),
    (NewtonOptions(init="ones"), "init"),
    (NewtonOptions(init=jnp.zeros((T, B, 5))), "init"),
    ({"method": "deer"}, "NewtonOptions"),
])
def test_bad_options_are_named(options, match):
    cell, params, xs, carry, lengths = setup("elman")
    with pytest.raises((ValueError, TypeError), match=match):
        scan_newton(cell, params, carry, xs, options=options)


@pytest.mark.parametrize("reverse", [False, True])
def test_resets_split_the_newton_system_like_the_sequential_engine(reverse):
    cell, params, xs, carry, lengths = setup("lstm", seed=11)
    resets = jnp.zeros((T, B), bool).at[jnp.array([5, 13, 20]), jnp.array([0, 0, 1])].set(True)
    opts = NewtonOptions("deer", tol=1e-12)
    newton = lambda p, c, x: scan_newton(cell, p, c, x, lengths, reverse=reverse,
                                         resets=resets, options=opts)
    seq = lambda p, c, x: scan_cell(cell, cell.prepare(p), c, x, lengths, reverse=reverse,
                                    resets=resets)
    out, out2 = newton(params, carry, xs), seq(params, carry, xs)
    assert max_diff(out[:2], out2) < 1e-8
    # segments of example 0: [0, 5), [5, 13), [13, 24); DEER solves them side by side,
    # so it needs at most the longest, 11 steps
    assert int(out[2][0]) <= 11
    g1 = jax.grad(lambda *a: loss(newton(*a)), argnums=(0, 1, 2))(params, carry, xs)
    g2 = jax.grad(lambda *a: loss(seq(*a)), argnums=(0, 1, 2))(params, carry, xs)
    assert max_diff(g1, g2) < 1e-8


def test_run_scan_newton_matches_the_sequential_engine_batch_major():
    cell, params, xs, carry, lengths = setup("lstm", seed=13)
    xs_bm = jnp.moveaxis(xs, 0, 1)  # (B, T, F)
    kw = dict(carry=carry, lengths=lengths, reverse=True)
    opts = NewtonOptions("deer", tol=1e-12, return_iterations=True)
    ys, final, iters = rnnjax.run(cell, params, xs_bm, scan="newton", newton=opts, **kw)
    ys2, final2 = rnnjax.run(cell, params, xs_bm, scan="sequential", **kw)
    assert max_diff((ys, final), (ys2, final2)) < 1e-8
    assert iters.shape == (B,) and np.all(np.asarray(iters) <= np.array([T, 15, 1]))
    g1 = jax.grad(lambda p: loss(rnnjax.run(cell, p, xs_bm, scan="newton", **kw)))(params)
    g2 = jax.grad(lambda p: loss(rnnjax.run(cell, p, xs_bm, scan="sequential", **kw)))(params)
    assert max_diff(g1, g2) < 1e-8


def test_run_warm_start_laid_out_like_ys_costs_no_iteration():
    cell, params, xs, carry, _ = setup("gru", seed=17)
    xs_bm = jnp.moveaxis(xs, 0, 1)[:, None]  # two batch axes (B, 1, T, F)
    carry = jax.tree.map(lambda a: a[:, None], carry)
    opts = NewtonOptions(return_iterations=True)
    ys, _, iters = rnnjax.run(cell, params, xs_bm, carry=carry, scan="newton", newton=opts)
    assert iters.shape == (B, 1) and int(jnp.min(iters)) > 0
    ys2, _, iters2 = rnnjax.run(cell, params, xs_bm, carry=carry, scan="newton",
                                newton=opts._replace(init=HiddenState(ys)))
    assert int(jnp.max(iters2)) == 0 and max_diff(ys, ys2) < 1e-9


@pytest.mark.parametrize("kwargs, match", [
    (dict(grad="manual"), "grad"), (dict(remat=True), "remat"), (dict(truncate=4), "truncate"),
    (dict(unroll=2), "unroll"), (dict(scan="sequential", newton=NewtonOptions()), "newton")])
def test_run_newton_rejects_what_it_cannot_do(kwargs, match):
    cell, params, xs, carry, lengths = setup("elman")
    kwargs = {"scan": "newton", **kwargs}
    with pytest.raises(ValueError, match=match):
        rnnjax.run(cell, params, xs, **kwargs)


# ELK's defaults converge where DEER does (issue 33): before the damping schedule
# (a fixed lambda = 0.01 and max_iters = T) ELK stopped short on every cell at T = 1-16.
# The whole registry is swept in docs/guides/deer.md (every nonlinear cell, measured);
# the test keeps one cell of each kind of carry (one compiled program each): a plain
# hidden state (elman, gru), a two-field carry (lstm) and a complex carry (urnn).
ELK_CELLS = ("elman", "gru", "lstm", "urnn")


@pytest.mark.slow
@pytest.mark.parametrize("name", ELK_CELLS)
def test_elk_defaults_converge_where_deer_does_values_and_gradients(name):
    """Default ``NewtonOptions("elk")`` on lengths 1, 3 and 8 of one batch: every
    sequence converges (no NewtonWarning, residual at tol 1e-10 within
    ``default_max_iters = T + 14``), outputs, final carry and implicit gradients equal
    the sequential engine's to 1e-8 in float64."""
    Tn, lengths = 8, jnp.array([1, 3, 8])
    cell = REGISTRY[name](3)
    params = cast_floating(cell.init(jax.random.key(0), F), jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (Tn, 3, F), jnp.float64)
    carry = cell.initial_carry((3,), jnp.float64)
    opts = NewtonOptions("elk")
    assert default_max_iters(opts, Tn) == Tn + 14

    def both(p, c, x):
        def elk(p, c, x):
            ys, fin, it, failed = scan_newton(cell, p, c, x, lengths, options=opts,
                                              with_failures=True)
            return loss((ys, fin)), (ys, fin, it, failed)

        def seq(p, c, x):
            ys, fin = scan_cell(cell, cell.prepare(p), c, x, lengths)
            return loss((ys, fin)), (ys, fin)
        (_, a), ga = jax.value_and_grad(elk, (0, 1, 2), has_aux=True)(p, c, x)
        (_, b), gb = jax.value_and_grad(seq, (0, 1, 2), has_aux=True)(p, c, x)
        return a, ga, b, gb

    (ys, fin, iters, failed), g1, (ys2, fin2), g2 = jax.jit(both)(params, carry, xs)
    assert not np.any(np.asarray(failed)), np.asarray(iters)
    assert np.all(np.asarray(iters) < Tn + 14)
    assert max_diff(ys, ys2) < 1e-8 and max_diff(fin, fin2) < 1e-8
    assert max_diff(g1, g2) < 1e-8


def test_elk_damping_schedule_options():
    assert default_max_iters(NewtonOptions("deer"), 7) == 7
    assert default_max_iters(NewtonOptions("quasi"), 7) == 7
    assert default_max_iters(NewtonOptions("elk", damping=1.0), 7) == 7 + 16
    assert default_max_iters(NewtonOptions("elk", damping_decay=1.0), 7) == 70
    assert default_max_iters(NewtonOptions("elk", damping=1e-20), 7) == 7
    for bad in (0, 1.5, -0.1, True, "0.1"):
        with pytest.raises(ValueError, match="damping_decay must be a number in"):
            check_newton_options(NewtonOptions("elk", damping_decay=bad))
