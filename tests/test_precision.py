"""Mixed precision (rnnjax.core.precision): every cell in bfloat16 against float32, the policy
(parametrisation in float32, linear recurrences carried in float32), loss scaling and
the runner's --dtype."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.linalg

import rnnjax
from rnnjax import cells, optim
from rnnjax.cells import gated
from rnnjax.training.runner import Config, train
from rnnjax.training.update import init_state, make_update

F, H, T, B = 3, 8, 12, 4
XS = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float32)


def _kw(name):
    return {"model_size": F} if name == "lru" else {}


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.mark.parametrize("name", sorted(cells.REGISTRY))
def test_every_cell_in_bfloat16(name):
    """Outputs bfloat16 and within 3e-2 (max-abs relative, T = 12) of the float32 cell
    with the same params; params float32; the carry in float32 exactly for the declared
    linear recurrences, complex64 for complex states, bfloat16 otherwise."""
    f32 = cells.make(name, H, **_kw(name))
    bf = cells.make(name, H, dtype=jnp.bfloat16, **_kw(name))
    params = f32.init(jax.random.key(0), F)
    got = bf.init(jax.random.key(0), F)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(params)):
        assert a.dtype == jnp.float32
        np.testing.assert_array_equal(a, b.astype(jnp.float32))
    ys32, _ = rnnjax.run(f32, params, XS)
    ys, final = rnnjax.run(bf, params, XS)
    assert ys.dtype == jnp.bfloat16
    assert _rel(jnp.real(ys.astype(jnp.float32)), jnp.real(ys32)) <= 3e-2
    want = jnp.float32 if f32.linear is not None else jnp.bfloat16
    for leaf in jax.tree.leaves(final):
        assert leaf.dtype == (jnp.complex64 if jnp.iscomplexobj(leaf) else want), leaf.dtype


@pytest.mark.parametrize("name", ["lstm", "gru", "exprnn", "lru", "rglru"])
def test_bfloat16_gradients_close_to_float32(name):
    f32 = cells.make(name, H, **_kw(name))
    bf = cells.make(name, H, dtype="bfloat16", **_kw(name))
    params = jax.tree.map(lambda a: a.astype(jnp.float32), f32.init(jax.random.key(0), F))

    def loss(cell):
        return lambda p: jnp.sum(jnp.real(rnnjax.run(cell, p, XS)[0]).astype(jnp.float32) ** 2)

    g32, gbf = jax.grad(loss(f32))(params), jax.grad(loss(bf))(params)
    for a, b in zip(jax.tree.leaves(gbf), jax.tree.leaves(g32)):
        assert a.dtype == jnp.float32
        assert float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b)) <= 5e-2


def test_defaults_leave_the_cell_as_written():
    cell, plain = cells.lstm(4), gated.lstm(4)
    assert cell.backward is not None and cell.step is not plain.step  # fresh closures
    p = cell.init(jax.random.key(0), 3)
    np.testing.assert_array_equal(rnnjax.run(cell, p, XS)[0], rnnjax.run(plain, p, XS)[0])
    # the same dtype for everything keeps the hand-written backward; mixed clears it
    assert cells.lstm(4, dtype="float64", param_dtype="float64").backward is not None
    assert cells.lstm(4, dtype="bfloat16").backward is None
    assert rnnjax.engine.bptt.choose_grad(cells.lstm(4, dtype="bfloat16"), "auto") == "autodiff"


def test_param_dtype_and_float16():
    cell = cells.gru(4, dtype=jnp.float16)
    p = cell.init(jax.random.key(0), 3)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(p))
    ys, final = rnnjax.run(cell, p, XS)
    assert ys.dtype == final.h.dtype == jnp.float16
    low = cells.elman(4, param_dtype=jnp.bfloat16)  # dtype follows param_dtype
    assert all(a.dtype == jnp.bfloat16 for a in jax.tree.leaves(low.init(jax.random.key(0), 3)))


def test_orthogonal_map_is_computed_in_float32():
    """expRNN under bfloat16: W = expm(A - A^T) computed from the float32 params, then
    rounded once to bfloat16 (not an expm in bfloat16)."""
    cell = cells.exprnn(H, dtype=jnp.bfloat16)
    p = cell.init(jax.random.key(0), F)
    W = cell.prepare(p)["W"]
    assert W.dtype == jnp.bfloat16
    want = cells.exprnn(H).prepare(p)["W"]  # the float32 map
    np.testing.assert_array_equal(W, want.astype(jnp.bfloat16))
    np.testing.assert_allclose(want.T @ want, np.eye(H), atol=1e-5)
    assert scipy.linalg.norm(np.asarray(W, np.float64).T @ np.asarray(W, np.float64)
                             - np.eye(H)) > 1e-4  # bfloat16 rounding shows


@pytest.mark.parametrize("bad", ["int32", "half-ish", jnp.complex64])
def test_bad_dtype_is_named(bad):
    with pytest.raises(ValueError, match="dtype must be one of bfloat16, float16"):
        cells.lstm(4, dtype=bad)


def test_dynamic_loss_scale_rule():
    tx = optim.dynamic_loss_scale(optax.sgd(0.1), init_scale=8.0, period=2)
    p = {"w": jnp.ones(3)}
    s = tx.init(p)
    _, s = tx.update({"w": jnp.ones(3)}, s, p)
    assert (float(s.scale), int(s.good)) == (8.0, 1)
    _, s = tx.update({"w": jnp.ones(3)}, s, p)
    assert (float(s.scale), int(s.good)) == (16.0, 0)  # grows after `period` finite steps
    _, s = tx.update({"w": jnp.array([1.0, jnp.inf, 0.0])}, s, p)
    assert (float(s.scale), int(s.good)) == (8.0, 0)  # halves on a non-finite gradient
    with pytest.raises(ValueError, match="period must be a positive integer, got 0"):
        optim.dynamic_loss_scale(optax.sgd(0.1), period=0)


def test_loss_scaled_update_equals_plain_and_skips_overflow():
    """With a power-of-two scale the scaled step equals the plain one to rounding; an
    overflowing step is skipped (params kept) and still halves the scale."""
    loss_fn = lambda p, b: jnp.sum((p["w"] * b) ** 2)  # noqa: E731
    p = {"w": jnp.array([0.5, -1.0, 2.0], jnp.float32)}
    batch = jnp.array([1.0, 2.0, 3.0], jnp.float32)
    plain, scaled = optax.sgd(0.01), optim.dynamic_loss_scale(optax.sgd(0.01), 2.0 ** 10)
    s1, l1 = make_update(loss_fn, plain)(init_state(p, plain, jax.random.key(0)), batch)
    s2, l2 = make_update(loss_fn, scaled)(init_state(p, scaled, jax.random.key(0)), batch)
    np.testing.assert_allclose(l2, l1, rtol=1e-7)
    np.testing.assert_allclose(s2.params["w"], s1.params["w"], rtol=1e-7)
    huge = optim.dynamic_loss_scale(optax.sgd(0.01), 2.0 ** 127)
    state = init_state(p, huge, jax.random.key(0))
    s3, _ = make_update(lambda q, b: loss_fn(q, b) * 1e30, huge)(state, batch)
    np.testing.assert_array_equal(s3.params["w"], p["w"])
    assert int(s3.skipped) == 1 and float(s3.opt_state.scale) == 2.0 ** 126


TINY = dict(task="copy", cell="lstm", T=4, hidden=8, batch=8, steps=40, lr=1e-2,
            log_every=20, eval_batch=16)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_runner_trains_in_half_precision(dtype):
    ref = train(Config(**TINY), progress=False)
    res = train(Config(**TINY, dtype=dtype), progress=False)
    losses = [r["train_loss"] for r in res.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    np.testing.assert_allclose(losses[-1], ref.history[-1]["train_loss"], rtol=5e-2)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(res.state.params))
    assert isinstance(res.state.opt_state, optim.LossScaleState) == (dtype == "float16")


def test_runner_refuses_dtype_for_a_baseline():
    with pytest.raises(ValueError, match="dtype='bfloat16' applies to the recurrent cells"):
        train(Config(**{**TINY, "cell": "wavenet", "dtype": "bfloat16"}), progress=False)
