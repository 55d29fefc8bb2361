"""The conformance suite: every entry of ``cells.REGISTRY`` (a new one included, with no
test code of its own) keeps the Cell protocol's promises, in float64.

For each cell, from a random initial carry: ``run`` equals a Python loop over ``step``;
``jit`` equals eager; a padded batch (NaN in the padding, a zero length among the
lengths) equals each sequence alone, forwards and reversed; outputs are causal;
gradients pass ``check_grads``; the hand-written backward equals autodiff where the cell
carries one (``cell.backward``); the associative scan equals the sequential one where it
declares a linear recurrence (``cell.linear``); the chunked engine equals the sequential
one (values and gradients for params, inputs and the initial carry, with lengths, resets
and reverse) where it declares a chunk form (``cell.chunk``); its factory has a runnable
example
(tests/test_architecture.py runs them)."""

import inspect
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import rnnjax
from helpers import to_f64
from rnnjax import cells

jax.config.update("jax_enable_x64", True)

H, T = 4, 5
NAMES = sorted(cells.REGISTRY)


def _features(name):
    """Cells whose input must match a model size (LRU, S5) are built to take F = 3."""
    takes = inspect.signature(cells.REGISTRY[name]).parameters
    return {"model_size": 3} if "model_size" in takes else {}


def _problem(name, batch=2, seed=0):
    cell = cells.make(name, H, **_features(name))
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = to_f64(cell.init(k1, 3))
    xs = jax.random.normal(k2, (batch, T, 3), jnp.float64)
    return cell, params, xs


def _close(a, b, tol=1e-10):
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(u, v, rtol=tol, atol=tol)


def _carry(cell, batch, seed=7):
    """An initial carry away from zeros: every leaf (real and imaginary part) moved by
    0.3 * N(0, 1), so a step that ignores or mishandles the carry shows."""
    zeros = cell.initial_carry(batch, jnp.float64)
    keys = iter(jax.random.split(jax.random.key(seed), 2 * len(jax.tree.leaves(zeros))))

    def move(a):
        v = 0.3 * jax.random.normal(next(keys), a.shape, jnp.float64)
        if jnp.iscomplexobj(a):
            v = v + 0.3j * jax.random.normal(next(keys), a.shape, jnp.float64)
        return a + v.astype(a.dtype)
    return jax.tree.map(move, zeros)


@pytest.mark.parametrize("name", NAMES)
def test_run_equals_a_loop_jit_equals_eager_and_padding_changes_nothing(name):
    cell, params, xs = _problem(name, batch=3)
    carry0 = _carry(cell, (3,))
    ys, final = rnnjax.run(cell, params, xs, carry=carry0)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves((ys, final)))
    w = cell.prepare(params)
    for b in range(xs.shape[0]):  # a Python loop over step, one sequence at a time
        carry = jax.tree.map(lambda a: a[b], carry0)
        for t in range(T):
            carry, y = cell.step(w, carry, xs[b, t])
            np.testing.assert_allclose(ys[b, t], y, rtol=1e-10, atol=1e-12)
        _close(jax.tree.map(lambda a: a[b], final), carry)
    _close(jax.jit(lambda p, x, c: rnnjax.run(cell, p, x, carry=c))(params, xs, carry0),
           (ys, final))
    # lengths (T, 3, 0), forwards and reversed inside each length, with NaN in the
    # padding: each sequence equals itself run alone, padded outputs are exactly zero,
    # and a length-0 sequence returns its initial carry
    lengths = np.array([T, 3, 0])
    padded = xs.at[1, 3:].set(jnp.nan).at[2].set(jnp.nan)
    for reverse in (False, True):
        ys_p, final_p = rnnjax.run(cell, params, padded, carry=carry0,
                                   lengths=jnp.asarray(lengths), reverse=reverse)
        for b, n in enumerate(lengths):
            start = jax.tree.map(lambda a: a[b:b + 1], carry0)
            assert np.all(np.asarray(ys_p[b, n:]) == 0)
            if n == 0:
                _close(jax.tree.map(lambda a: a[b:b + 1], final_p), start)
                continue
            ys_a, final_a = rnnjax.run(cell, params, xs[b:b + 1, :n], carry=start,
                                       reverse=reverse)
            np.testing.assert_allclose(ys_p[b, :n], ys_a[0], rtol=1e-10, atol=1e-12)
            _close(jax.tree.map(lambda a: a[b:b + 1], final_p), final_a)
    # causal: the output at step 2 has no gradient from the inputs after it
    out_2 = lambda x: jnp.sum(jnp.sin(jnp.real(rnnjax.run(cell, params, x)[0][:, 2])))  # noqa: E731
    g = jax.grad(out_2)(xs)
    assert np.all(np.asarray(g[:, 3:]) == 0) and np.any(np.asarray(g[:, :3]) != 0)


def _loss(cell, **options):
    def f(p, x, carry=None):
        ys, final = rnnjax.run(cell, p, x, carry=carry, **options)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(jnp.abs(a) ** 2)
                                          for a in jax.tree.leaves(final))
    return f


@pytest.mark.parametrize("name", NAMES)
def test_gradients_pass_finite_differences(name):
    cell, params, xs = _problem(name, seed=1)
    check_grads(_loss(cell, lengths=jnp.array([T, 2])), (params, xs), order=1,
                modes=("rev",), atol=1e-5, rtol=1e-5, eps=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if cells.make(
    n, H, **_features(n)).backward is not None])
def test_hand_written_backward_equals_autodiff(name):
    cell, params, xs = _problem(name, seed=2)
    lengths = jnp.array([T, 3])
    manual = jax.grad(_loss(cell, grad="manual", lengths=lengths), argnums=(0, 1))
    auto = jax.grad(_loss(cell, grad="autodiff", lengths=lengths), argnums=(0, 1))
    _close(manual(params, xs), auto(params, xs), tol=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if cells.make(
    n, H, **_features(n)).linear is not None])
def test_associative_scan_equals_sequential(name):
    """Without options, and with lengths (a zero among them), reverse and an initial
    carry at once: outputs, final carry and the gradients with respect to params,
    inputs and the initial carry."""
    cell, params, xs = _problem(name, batch=3, seed=3)
    carry = _carry(cell, (3,))
    options = {"lengths": jnp.array([T, 2, 0]), "reverse": True}
    for given in ({}, {**options, "carry": carry}):
        _close(rnnjax.run(cell, params, xs, scan="associative", **given),
               rnnjax.run(cell, params, xs, scan="sequential", **given))
    grad = lambda scan: jax.grad(_loss(cell, scan=scan, **options), argnums=(0, 1, 2))  # noqa: E731
    _close(grad("associative")(params, xs, carry), grad("sequential")(params, xs, carry),
           tol=1e-9)


@pytest.mark.parametrize("name", [n for n in NAMES if cells.make(
    n, H, **_features(n)).chunk is not None])
def test_chunked_engine_equals_sequential(name):
    """T = 5 in chunks of 2 (the last one padded), lengths with a zero, resets, reverse
    and a random initial carry, all at once: outputs, final carry and gradients."""
    cell, params, xs = _problem(name, batch=3, seed=4)
    carry = _carry(cell, (3,), seed=5)
    resets = jnp.zeros((3, T), bool).at[0, 2].set(True).at[2, 1].set(True)
    options = {"lengths": jnp.array([T, 0, 4]), "resets": resets, "reverse": True}
    run = lambda scan, **extra: rnnjax.run(cell, params, xs, carry=carry, scan=scan,  # noqa: E731
                                           **options, **extra)
    _close(run("chunked", chunk=2), run("sequential"))
    grad = lambda scan, **extra: jax.jit(jax.grad(  # noqa: E731
        _loss(cell, scan=scan, **options, **extra), argnums=(0, 1, 2)))(params, xs, carry)
    _close(grad("chunked", chunk=2), grad("sequential"), tol=1e-9)


def test_every_registered_cell_has_a_row_in_the_cell_table():
    page = pathlib.Path(__file__).parents[1] / "docs" / "guides" / "cells.md"
    rows = [line for line in page.read_text().splitlines() if line.startswith("| `")]
    named = {n for row in rows for n in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])}
    assert set(NAMES) <= named, sorted(set(NAMES) - named)
