"""Deep residual models (rnnjax.layers.residual_stack, --depth): depth 1 with nothing
added is today's model; the block-by-block layer, the step-by-step cell and the
equations written out here agree in float64; every engine, the NNX module, the runner
(seeds, bfloat16, resume; eight devices in tests/test_distributed.py) and every new cell
work at depth 2."""

import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnjax
import rnnjax.layers.nnx as rnn
from rnnjax import cells, layers
from rnnjax.cli import main
from rnnjax.layers.readout import cell_with_readout
from rnnjax.training import Config, build, load_history, load_params, make_model, make_task
from rnnjax.training.config import make_cell, validate
from tests.helpers import to_f64

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F, B, T = 3, 3, 6
NEW_CELLS = ("mamba", "mamba_block", "mamba2", "mlstm", "slstm", "deltanet", "gla",
             "retention")


def _xs(seed=1):
    return jax.random.normal(jax.random.key(seed), (B, T, F), jnp.float64)


def test_depth_one_with_nothing_added_is_todays_model():
    config = Config(task="copy", cell="gru", T=3, hidden=5)
    assert not config.is_deep() and Config(depth=2).is_deep() and Config(norm="rms").is_deep()
    task = make_task(config)
    model = make_model(config, task)
    today = cell_with_readout(make_cell(config), task.input_size, task.output_size,
                              task.readout)
    key = jax.random.key(4)
    pm, pt = model.init(key), today.init(key)
    assert jax.tree.structure(pm) == jax.tree.structure(pt)
    jax.tree.map(np.testing.assert_array_equal, pm, pt)
    xs, ys = task.sample(jax.random.key(5), 3)
    enc = task.encode(xs)
    np.testing.assert_array_equal(model.apply(pm, enc), today.apply(pt, enc))
    assert task.loss(model.apply(pm, enc), ys) == task.loss(today.apply(pt, enc), ys)
    assert model.cell is today.cell  # the cell itself, no wrapper


def _rms(x, s):
    return x / np.sqrt(np.mean(x ** 2, -1, keepdims=True) + 1e-6) * (1 + s)


def _ln(x, g, b):
    mu = np.mean(x, -1, keepdims=True)
    return (x - mu) / np.sqrt(np.mean((x - mu) ** 2, -1, keepdims=True) + 1e-5) * g + b


def _reference(cell, p, xs, lengths, norm, act):
    """The equations of the module docstring, block by block (NumPy between the runs)."""
    def nrm(q, x):
        if q is None:
            return x
        return _rms(x, q["scale"]) if norm == "rms" else _ln(x, q["gain"], q["bias"])

    def mlp(q, x):
        u = np.einsum("btd,ced->cbte", x, q["W_up"]) + q["b_up"][:, None, None]
        g = (0.5 * u[0] * (1 + np.tanh(np.sqrt(2 / np.pi) * (u[0] + 0.044715 * u[0] ** 3)))
             if act == "gelu" else u[0] / (1 + np.exp(-u[0])))
        return (g * u[1]) @ q["W_down"].T + q["b_down"]

    x = np.asarray(xs) @ np.asarray(p["embed"]).T if "embed" in p else np.asarray(xs)
    for i, b in enumerate(p["blocks"]):
        ys, _ = rnnjax.run(cell, b["mixer"], nrm(b.get("norm"), x), lengths=lengths)
        ys = np.asarray(ys) @ np.asarray(b["proj"]).T if "proj" in b else np.asarray(ys)
        x = ys if (i == 0 and "embed" not in p) else x + ys
        if "mlp" in b:
            x = x + mlp(b["mlp"], nrm(b.get("mlp_norm"), x))
    y = nrm(p.get("norm"), x)
    return np.where((np.arange(T) < np.asarray(lengths)[:, None])[..., None], y, 0.0)


@pytest.mark.parametrize("d_model,norm,mlp,act", [(4, "rms", 1.5, "gelu"),
                                                  (None, "layer", 2.0, "silu")])
def test_layer_cell_and_equations_agree_in_float64(d_model, norm, mlp, act):
    cell = cells.lstm(5)  # d_model 4: a projection; None: the first block reads xs
    stack = layers.residual_stack(cell, 2, d_model=d_model, mlp=mlp, norm=norm,
                                  activation=act)
    p = to_f64(stack.cell.init(jax.random.key(0), F))
    p = jax.tree.map(lambda a: a + 0.1 * jnp.cos(jnp.arange(a.size).reshape(a.shape)), p)
    assert ("proj" in p["blocks"][0]) == (d_model == 4) and ("embed" in p) == bool(d_model)
    xs, lengths = _xs(), jnp.array([6, 3, 0])
    ys, carry = stack.layer.apply(p, xs, lengths=lengths)
    ys_cell, carry_cell = rnnjax.run(stack.cell, p, xs, lengths=lengths)
    np.testing.assert_allclose(ys, _reference(cell, p, xs, lengths, norm, act), atol=1e-12)
    np.testing.assert_allclose(ys_cell, ys, atol=1e-12)
    assert carry._fields == ("h_1", "c_1", "h_2", "c_2")
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-12), carry, carry_cell)
    # the final carry of block 2 is its mixer's own, frozen at each length
    np.testing.assert_array_equal(carry.h_2[2], 0.0)


def test_every_engine_and_grad_through_the_blocks():
    """scan='associative' for a linear mixer (mamba) and grad='manual' for one with a
    hand-written BPTT (lstm) give the sequential autodiff gradients (float64)."""
    xs, lengths = _xs(), jnp.array([6, 4, 1])
    for cell, opt in ((cells.mamba(4, state_size=2), {"scan": "associative"}),
                      (cells.lstm(4), {"grad": "manual"})):
        stack = layers.residual_stack(cell, 2, d_model=4, norm="rms")
        p = to_f64(stack.cell.init(jax.random.key(2), F))

        def loss(p, x, **o):
            ys, carry = stack.layer.apply(p, x, lengths=lengths, **o)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(c ** 2) for c in carry)

        ref = jax.jit(jax.grad(loss, argnums=(0, 1)))(p, xs)
        got = jax.jit(jax.grad(lambda p, x: loss(p, x, **opt), argnums=(0, 1)))(p, xs)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12),
                     got, ref)


def test_dropout_only_with_a_key_and_a_fresh_mask_per_key():
    stack = layers.residual_stack(cells.gru(4), 2, d_model=4, mlp=1.0, dropout=0.5)
    p = stack.cell.init(jax.random.key(0), F)
    xs = _xs().astype(jnp.float32)
    plain = stack.layer.apply(p, xs)[0]  # float32, two programs: 1.1e-5 apart at |y| ~ 35
    np.testing.assert_allclose(plain, rnnjax.run(stack.cell, p, xs)[0], rtol=1e-5, atol=1e-4)
    a = stack.layer.apply(p, xs, key=jax.random.key(1))[0]
    b = stack.layer.apply(p, xs, key=jax.random.key(2))[0]
    assert not np.allclose(a, plain) and not np.allclose(a, b)
    np.testing.assert_array_equal(a, stack.layer.apply(p, xs, key=jax.random.key(1))[0])


def test_nnx_residual_equals_the_functional_stack():
    m = rnn.Residual(cells.gru(4), F, depth=2, d_model=4, mlp=2.0, norm="layer",
                     rngs=nnx.Rngs(params=3))
    stack = layers.residual_stack(cells.gru(4), 2, d_model=4, mlp=2.0, norm="layer")
    expected = stack.cell.init(nnx.Rngs(params=3).params(), F)
    jax.tree.map(np.testing.assert_array_equal, m.to_params(), expected)
    m.from_params(to_f64(expected))
    xs = _xs()
    ys, carry = m(xs)
    ys_ref, carry_ref = stack.layer.apply(to_f64(expected), xs)
    np.testing.assert_array_equal(ys, ys_ref)
    jax.tree.map(np.testing.assert_array_equal, carry, carry_ref)
    grads = nnx.grad(lambda mod: jnp.sum(mod(xs)[0] ** 2))(m)
    ref = jax.grad(lambda p: jnp.sum(stack.layer.apply(p, xs)[0] ** 2))(to_f64(expected))
    got = jax.tree.leaves(grads)
    assert len(got) == len(jax.tree.leaves(ref))
    for g, r in zip(got, jax.tree.leaves(ref)):
        np.testing.assert_array_equal(g, r)
    one = rnn.Mamba(F, 4, rngs=nnx.Rngs(params=1), state_size=2)  # the new cells' modules
    assert one.output_size == 4 and one.cell.name == "mamba"
    with pytest.raises(ValueError, match="is the cell itself"):
        rnn.Residual(cells.gru(4), F, depth=1, norm="none", rngs=nnx.Rngs(0))


@pytest.mark.parametrize("change,match", [
    (dict(depth=0), "depth must be a positive integer"),
    (dict(d_model=0), "d_model"),
    (dict(mlp=-1.0), "mlp"),
    (dict(norm="batch"), "norm"),
    (dict(dropout=1.0), r"dropout must be a rate in \[0, 1\)"),
    (dict(depth=2, cell="wavenet"), "--depth 2 build residual blocks around a recurrent"),
    (dict(depth=2, bidirectional=True), "--bidirectional"),
    (dict(depth=2, orth_penalty=0.1), "act on a single cell"),
    (dict(task="charlm", dropout=0.1), "charlm"),
    (dict(task="charlm", depth=2, cell="lstm", grad="manual"), "no hand-written"),
    (dict(scan="associative", task="charlm"), "scan='associative'"),
])
def test_bad_deep_options_are_named_before_anything_is_built(change, match):
    with pytest.raises(ValueError, match=match):
        validate(Config(**{**dict(task="copy", cell="gru", T=3, hidden=4), **change}))


DEEP = ["train", "--task", "copy", "--cell", "mamba", "--depth", "2", "--d-model", "6",
        "--hidden", "6", "--cell-opt", "state_size=2", "--norm", "rms", "--mlp", "2",
        "--dropout", "0.1", "--T", "2", "--batch", "4", "--eval-batch", "4", "--log-every",
        "2", "--checkpoint-every", "2", "--num-seeds", "2", "--dtype", "bfloat16",
        "--no-progress"]


@pytest.mark.slow
def test_deep_copy_run_resumes_bitwise_with_seeds_and_bfloat16(tmp_path):
    """An uninterrupted run of 4 steps, and the same run resumed from its own
    checkpoint at step 2 (a copy of the folder without step 4): the same records and
    params bit for bit; the credit of the copy task is measured on the stack's carry."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(DEEP + ["--steps", "4", "--out", a]) == 0
    shutil.copytree(a, b)
    shutil.rmtree(os.path.join(b, "checkpoints", "4"))
    assert main(DEEP + ["--steps", "4", "--out", b, "--resume"]) == 0
    ha, hb = load_history(a), load_history(b)
    keep = ("step", "train_loss", "eval_loss", "train_grad_norm", "eval_credit_ratio_h_2")
    assert [{k: r[k] for k in keep} for r in ha] == [{k: r[k] for k in keep} for r in hb]
    assert [r["step"] for r in hb] == [2, 4] and ha[0]["train_loss"] != ha[-1]["train_loss"]
    pa, pb = load_params(a, 4), load_params(b, 4)
    assert set(pa["cell"]) == {"embed", "blocks", "norm"} and len(pa["cell"]["blocks"]) == 2
    jax.tree.map(np.testing.assert_array_equal, pa, pb)
    saved = Config.load(a)
    assert (saved.depth, saved.d_model, saved.mlp, saved.norm) == (2, 6, 2.0, "rms")


@pytest.mark.slow
def test_every_new_cell_trains_a_step_at_depth_two():
    with jax.enable_x64(False):
        for name in NEW_CELLS:
            opts = (("num_heads", 2),) if name in ("mamba2", "mlstm", "slstm", "deltanet",
                                                   "gla", "retention") else ()
            exp = build(Config(task="copy", cell=name, depth=2, d_model=4, hidden=4, T=1,
                               batch=2, eval_batch=2, norm="rms", mlp=1.0,
                               cell_options=opts + ((("state_size", 2),)
                                                    if name.startswith("mamba") else ())))
            state = exp.init(jnp.asarray(0, jnp.int32))
            new = exp.step(state)
            assert int(new.count) == 1, name  # a finite loss and gradient: not skipped
            moved = [not np.array_equal(x, y) for x, y in zip(
                jax.tree.leaves(new.params["cell"]["blocks"][1]["mixer"]),
                jax.tree.leaves(state.params["cell"]["blocks"][1]["mixer"]))]
            assert any(moved), name
