"""The engine table: each engine one entry that refuses by name what it does not take,
an engine added by one entry runs through rnnjax.run, Newton's method says when it did
not converge, every engine runs T = 0, and equal cells share their compiled programs."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import CountCompiles, to_f64
from rnnjax import cells
from rnnjax.engine import table
from rnnjax.engine.newton import NewtonDidNotConverge, NewtonOptions, NewtonWarning

jax.config.update("jax_enable_x64", True)

OPTIONS = {"remat": True, "truncate": 2, "unroll": 2, "resets": np.zeros((2, 5), bool)}


def _lru_problem(T=5):
    cell = cells.lru(3, model_size=2)
    params = to_f64(cell.init(jax.random.key(0), 2))
    return cell, params, jax.random.normal(jax.random.key(1), (2, T, 2), jnp.float64)


@pytest.mark.parametrize("name", ["sequential", "associative", "newton", "manual"])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_engine_takes_its_options_and_refuses_the_others_by_name(name, option):
    cell = cells.lstm(3) if name == "manual" else cells.lru(3, model_size=2)
    params = to_f64(cell.init(jax.random.key(0), 2))
    xs = jnp.ones((2, 5, 2), jnp.float64)
    how = {"grad": "manual", "scan": "sequential"} if name == "manual" else {"scan": name}
    if option in table.ENGINES[name].takes:
        ys, _ = rnnjax.run(cell, params, xs, **how, **{option: OPTIONS[option]})
        ref, _ = rnnjax.run(cell, params, xs, scan="sequential", grad="autodiff",
                            **{option: OPTIONS[option]})
        np.testing.assert_allclose(ys, ref, rtol=1e-9, atol=1e-12)
    else:
        with pytest.raises(ValueError, match=f"cannot be combined with {option}="):
            rnnjax.run(cell, params, xs, **how, **{option: OPTIONS[option]})


def test_explicit_grads_are_checked_against_the_engine():
    cell, params, xs = _lru_problem()
    with pytest.raises(ValueError, match="scan='associative' combines .*grad='manual'"):
        rnnjax.run(cell, params, xs, scan="associative", grad="manual")
    with pytest.raises(ValueError, match="scan='newton' solves .*grad='autodiff'"):
        rnnjax.run(cell, params, xs, scan="newton", grad="autodiff")
    with pytest.raises(ValueError, match="scan must be one of"):
        rnnjax.run(cell, params, xs, scan="manual")  # reached through grad= only


def test_auto_resolves_by_the_table():
    cell, params, xs = _lru_problem()
    lstm = cells.lstm(3)
    lp = lstm.init(jax.random.key(0), 2)
    assert table.resolve(cell, params, xs, 5)[0].engine == "sequential"  # CPU: measured
    assert table.resolve(lstm, lp, xs, 5)[0].engine == "manual"  # faster_on cpu
    assert table.resolve(lstm, lp, xs, 5, remat=True)[0].engine == "sequential"
    assert table.resolve(lstm, lp, xs, 5, grad="autodiff")[0].engine == "sequential"


def test_an_engine_added_as_one_entry_runs_through_run(monkeypatch):
    calls = []

    def loop(cell, params, carry, xs, lengths, resets, init, spec):  # a Python loop
        calls.append(spec)
        w, ys = cell.prepare(params), []
        step = jax.vmap(cell.step, in_axes=(None, 0, 0))
        for t in range(xs.shape[0]):
            carry, y = step(w, carry, xs[t])
            ys.append(y)
        return jnp.stack(ys), carry, None

    monkeypatch.setitem(table.ENGINES, "loop", table.Engine("loop", loop, "is a Python loop"))
    cell, params, xs = _lru_problem()
    ys, final = rnnjax.run(cell, params, xs, scan="loop")
    ref, ref_final = rnnjax.run(cell, params, xs, scan="sequential")
    np.testing.assert_allclose(ys, ref, rtol=1e-12)
    np.testing.assert_allclose(final.h, ref_final.h, rtol=1e-12)
    assert calls and calls[0].engine == "loop"
    with pytest.raises(ValueError, match="scan='loop' is a Python loop; it cannot be "
                                         "combined with remat=True"):
        rnnjax.run(cell, params, xs, scan="loop", remat=True)


# ------------------------------------------------------------------ Newton's reports

def _chaotic_elman(T=12):
    cell = cells.elman(4)
    params = to_f64(cell.init(jax.random.key(3), 2))
    params = {**params, "W_hh": 3.0 * params["W_hh"]}  # strongly expanding: slow Newton
    xs = jax.random.normal(jax.random.key(4), (3, T, 2), jnp.float64)
    return cell, params, xs


def test_newton_warns_raises_or_falls_back_when_it_does_not_converge():
    cell, params, xs = _chaotic_elman()
    ref, ref_final = rnnjax.run(cell, params, xs, scan="sequential")
    few = NewtonOptions(max_iters=2)
    with pytest.warns(NewtonWarning, match=r"did not converge for \d of 3 sequences"):
        ys, _ = rnnjax.run(cell, params, xs, scan="newton", newton=few)
    assert float(jnp.max(jnp.abs(ys - ref))) > 1e-3  # the unconverged answer is wrong
    with pytest.raises(NewtonDidNotConverge, match="raise max_iters"):
        rnnjax.run(cell, params, xs, scan="newton", newton=few._replace(on_fail="raise"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ys, final = rnnjax.run(cell, params, xs, scan="newton",
                               newton=few._replace(on_fail="sequential"))
        np.testing.assert_allclose(ys, ref, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(final.h, ref_final.h, rtol=1e-12, atol=1e-12)
        rnnjax.run(cell, params, xs, scan="newton", newton=few._replace(on_fail="ignore"))
        ys, _ = rnnjax.run(cell, params, xs, scan="newton")  # converged: silent
        np.testing.assert_allclose(ys, ref, rtol=1e-8, atol=1e-8)


def test_newton_sequential_fallback_under_jit_and_grad():
    cell, params, xs = _chaotic_elman(T=8)
    few = NewtonOptions(max_iters=2, on_fail="sequential")
    loss = lambda p, o: jnp.sum(jnp.sin(rnnjax.run(cell, p, xs, **o)[0]))  # noqa: E731
    g_newton = jax.jit(jax.grad(lambda p: loss(p, {"scan": "newton", "newton": few})))(params)
    g_seq = jax.grad(lambda p: loss(p, {"scan": "sequential"}))(params)
    for k in g_seq:
        np.testing.assert_allclose(g_newton[k], g_seq[k], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("bad, match", [
    ({"max_iters": 0}, "max_iters must be None or an integer >= 1"),
    ({"tol": float("inf")}, "tol must be None or a finite positive number"),
    ({"on_fail": "retry"}, "on_fail must be one of"),
])
def test_newton_options_that_cannot_work_are_refused(bad, match):
    cell, params, xs = _chaotic_elman(T=3)
    with pytest.raises(ValueError, match=match):
        rnnjax.run(cell, params, xs, scan="newton", newton=NewtonOptions(**bad))


@pytest.mark.parametrize("name", ["lru", "elman", "lstm"])
@pytest.mark.parametrize("scan", ["sequential", "associative", "newton"])
def test_every_engine_runs_zero_steps(name, scan):
    cell = cells.make(name, 3, **({"model_size": 2} if name == "lru" else {}))
    if scan == "associative" and cell.linear is None:
        pytest.skip("the associative scan needs a linear recurrence")
    params = to_f64(cell.init(jax.random.key(0), 2))
    carry = jax.tree.map(lambda a: a + 0.5, cell.initial_carry((2,), jnp.float64))
    ys, final = rnnjax.run(cell, params, jnp.zeros((2, 0, 2)), carry=carry, scan=scan)
    assert ys.shape == (2, 0, cell.output_size)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(carry)):
        np.testing.assert_array_equal(a, b)


# -------------------------------------------------------------- shared compilations

def test_equal_cells_are_one_object_and_share_their_programs():
    assert cells.elman(4) is cells.elman(4)
    assert cells.lstm(3, forget_bias=1.0) is cells.lstm(3, forget_bias=1.0)
    assert cells.elman(4) is not cells.elman(5)
    assert cells.lstm(3, layer_norm=True) is not cells.lstm(3, layer_norm=1)  # other types
    xs = jnp.ones((2, 3, 2))
    rnnjax.run(cells.elman(4), cells.elman(4).init(jax.random.key(0), 2), xs)
    with CountCompiles() as c:
        for i in range(200):  # a sweep that rebuilds its cell every time
            cell = cells.elman(4)
            rnnjax.run(cell, cell.init(jax.random.key(i), 2), xs)
    assert c.count <= 1, c.count  # at most the init, once: not 200 programs


def test_a_changed_cell_compiles_its_own_program():
    cell = cells.elman(4)
    params = to_f64(cell.init(jax.random.key(0), 2))
    xs = jnp.ones((2, 3, 2), jnp.float64)
    doubled = cell._replace(step=lambda w, c, x: jax.tree.map(lambda a: 2 * a,
                                                              cell.step(w, c, x)))
    a, _ = rnnjax.run(cell, params, xs)
    b, _ = rnnjax.run(doubled, params, xs)
    assert not np.allclose(a, b)
