"""uRNN and EUNN: the dense W formed once per sequence and the structured per-step
application give the same outputs and gradients (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax


@pytest.mark.parametrize("name", ["urnn", "eunn"])
def test_dense_and_structured_agree(name):
    dense = rnnjax.cells.make(name, 6, apply="dense")
    structured = rnnjax.cells.make(name, 6, apply="structured")
    auto = rnnjax.cells.make(name, 6)
    params = jax.tree.map(lambda a: a.astype(jnp.float64),
                          dense.init(jax.random.key(0), 3))
    xs = jax.random.normal(jax.random.key(1), (2, 7, 3), jnp.float64)

    def loss(cell, p):
        ys, _ = rnnjax.run(cell, p, xs, lengths=jnp.array([7, 4]))
        return jnp.sum(jnp.sin(ys))

    for other in (structured, auto):
        y1, _ = rnnjax.run(dense, params, xs)
        y2, _ = rnnjax.run(other, params, xs)
        np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)
        g1 = jax.grad(lambda p: loss(dense, p))(params)
        g2 = jax.grad(lambda p: loss(other, p))(params)
        for k in g1:
            np.testing.assert_allclose(g1[k], g2[k], rtol=1e-10, atol=1e-12, err_msg=k)
    assert "W" in dense.prepare(params) and dense.prepare(params)["W"].shape == (6, 6)
    # "auto": dense for the uRNN; for EUNN (L = 2) dense up to 64 units, structured above
    assert ("W" in auto.prepare(params)) and (rnnjax.cells.make(name, 64).backward
                                              is not None)
    assert (rnnjax.cells.make(name, 66).backward is None) == (name == "eunn")
    with pytest.raises(ValueError, match="apply"):
        rnnjax.cells.make(name, 6, apply="fft")
