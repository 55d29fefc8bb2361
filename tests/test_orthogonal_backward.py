"""Hand-written BPTT of the orthogonal and unitary cells (Cell.backward) against
autodiff through rnnjax.run, float64, relative 1e-10: every param, x_t and the initial
carry, with lengths (zeros included), reverse and truncate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.engine import bptt

CASES = {
    "exprnn": {}, "exprnn-dynamic": {"dynamic": True}, "scornn": {},
    "householder": {"mode": "dense"}, "exprnn-tanh": {"activation": "tanh"},
    "fcurnn": {}, "urnn": {"apply": "dense"}, "eunn": {"apply": "dense"},
}


def _cell(case):
    return rnnjax.cells.make(case.split("-")[0], 5, **CASES[case])


def _inputs(cell, B=3, T=7, F=2, seed=0):
    k = jax.random.split(jax.random.key(seed), 5)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(k[0], F))
    if "base" in params:  # a non-trivial base of the dynamic trivialization
        params = rnnjax.parametrize.retrivialize(
            {**params, "skew": params["skew"] + 0.3 * jax.random.normal(k[4], (5, 5))})
        params["skew"] = 0.2 * jax.random.normal(k[3], (5, 5), jnp.float64)
    xs = jax.random.normal(k[1], (B, T, F), jnp.float64)
    dys = jax.random.normal(k[2], (B, T, cell.output_size), jnp.float64)
    carry = jax.tree.map(lambda a: a + 0.3 * jax.random.normal(k[3], a.shape).astype(a.dtype),
                         cell.initial_carry((B,), jnp.float64))
    if jnp.iscomplexobj(carry.h):
        carry = type(carry)(carry.h + 0.2j * jax.random.normal(k[4], carry.h.shape))
    dcarry = jax.tree.map(lambda a: jnp.ones_like(a) * (0.5 - 0.25j if jnp.iscomplexobj(a)
                                                        else 0.5), carry)
    return params, xs, dys, carry, dcarry


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("opts", [{}, {"lengths": [7, 0, 4]}, {"reverse": True,
                                   "lengths": [5, 7, 0]}, {"truncate": 3}])
def test_manual_backward_equals_autodiff(case, opts):
    cell = _cell(case)
    assert cell.backward is not None
    params, xs, dys, carry, dcarry = _inputs(cell)
    kw = dict(opts)
    if "lengths" in kw:
        kw["lengths"] = jnp.asarray(kw["lengths"])

    def f(p, x, c):
        return rnnjax.run(cell, p, x, carry=c, grad="autodiff", **kw)

    @jax.jit  # one program for both paths: compiles faster than op-by-op dispatch
    def both(params, xs, carry, dys, dcarry):
        (ys, _), vjp = jax.vjp(f, params, xs, carry)
        return ys, vjp((dys, dcarry)), bptt.bptt(cell, params, xs, dys, dcarry,
                                                 carry=carry, chunk=3, **kw)

    ys, (want_p, want_x, want_c), got = both(params, xs, carry, dys, dcarry)
    np.testing.assert_allclose(got.ys, ys, rtol=1e-12, atol=1e-12)
    for k in want_p:
        np.testing.assert_allclose(got.d_params[k], want_p[k], rtol=1e-10, atol=1e-12,
                                   err_msg=f"{case} {k}")
    np.testing.assert_allclose(got.d_xs, want_x, rtol=1e-10, atol=1e-12)
    for a, b in zip(jax.tree.leaves(got.d_carry), jax.tree.leaves(want_c)):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_structured_and_reflect_modes_have_no_manual_backward():
    assert rnnjax.cells.urnn(4, apply="structured").backward is None
    assert rnnjax.cells.householder(4, reflections=2, mode="reflect").backward is None
