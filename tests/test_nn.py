"""Flax NNX modules: same numbers as the pure functions they wrap."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import rnnjax
import rnnjax.layers.nnx as rnn
from rnnjax import cells, layers
from tests.helpers import to_f64

F, H, B, T = 3, 5, 4, 7


def _data(seed=0, dtype=jnp.float64):
    kx, kl = jax.random.split(jax.random.key(seed))
    xs = jax.random.normal(kx, (B, T, F), dtype)
    lengths = jnp.array([7, 3, 0, 5])
    return xs, lengths


@pytest.mark.parametrize("name", sorted(cells.REGISTRY))
def test_rnn_holds_cell_init_and_matches_run(name):
    """RNN draws cell.init(rngs.params(), F) and its call equals rnnjax.run."""
    options = {"model_size": F} if name == "lru" else {}  # the LRU reads and emits F features
    cell = cells.make(name, H, **options)
    m = rnn.RNN.from_name(name, F, H, rngs=nnx.Rngs(params=3), cell_options=options)
    expected = cell.init(nnx.Rngs(params=3).params(), F)
    jax.tree.map(np.testing.assert_array_equal, m.to_params(), expected)
    # the leaves are nnx.Params, one per array of the cell's dict
    state = nnx.state(m, nnx.Param)
    assert len(jax.tree.leaves(state)) == len(jax.tree.leaves(expected))
    xs, lengths = _data()
    m64 = rnn.RNN(cell, params=to_f64(expected))
    ys, carry = m64(xs, lengths=lengths)
    ys_ref, carry_ref = rnnjax.run(cell, to_f64(expected), xs, lengths=lengths)
    np.testing.assert_array_equal(ys, ys_ref)
    jax.tree.map(np.testing.assert_array_equal, carry, carry_ref)
    assert np.all(np.asarray(ys)[2] == 0.0)  # length-0 sequence: zero outputs


def test_convenience_constructors_pass_cell_options():
    m = rnn.LSTM(F, H, rngs=nnx.Rngs(1), init="uniform", forget_bias=0.0, unroll=2)
    ref = cells.lstm(H, forget_bias=0.0, init="uniform").init(nnx.Rngs(1).params(), F)
    jax.tree.map(np.testing.assert_array_equal, m.to_params(), ref)
    assert m.run_options == {"unroll": 2}
    g = rnn.GRU(F, H, rngs=nnx.Rngs(2))
    assert set(g.to_params()) == {"W_xh", "W_hh", "b", "b_hn"} and g.output_size == H
    assert isinstance(g, rnn.RNN) and g.cell.name == cells.gru(H).name
    e = rnn.Elman(F, H, rngs=nnx.Rngs(2), activation="relu", init="irnn")
    np.testing.assert_array_equal(e.to_params()["W_hh"], np.eye(H))


class Model(nnx.Module):
    """Two-layer bidirectional GRU over an LSTM, a linear readout of the last step."""

    def __init__(self, rngs):
        self.rnn = rnn.Stack([rnn.Bidirectional(cells.gru(H), F, rngs=rngs,
                                                param_dtype=jnp.float64),
                              rnn.LSTM(2 * H, H, rngs=rngs, param_dtype=jnp.float64)],
                             dropout=0.25, rngs=rngs)
        self.out = nnx.Linear(H, 2, rngs=rngs, param_dtype=jnp.float64)

    def __call__(self, xs, lengths, key=None):
        ys, _ = self.rnn(xs, lengths=lengths, rngs=key, deterministic=key is None)
        return self.out(ys[:, -1])


def _pure(params, w, b, xs, lengths, key=None):
    layer = layers.stack([layers.bidirectional(cells.gru(H)), cells.lstm(H)], dropout=0.25)
    ys, _ = layer.apply(params, xs, lengths=lengths, key=key)
    return ys[:, -1] @ w + b


def test_model_outputs_and_gradients_equal_pure_functions():
    model = Model(nnx.Rngs(params=0, dropout=1))
    params = model.rnn.to_params()
    assert params[0]["fwd"]["W_xh"].dtype == jnp.float64
    w, b = model.out.kernel.get_value(), model.out.bias.get_value()
    xs, lengths = _data(1)
    key = jax.random.key(9)
    # eval (no dropout): outputs
    np.testing.assert_array_equal(model(xs, lengths), _pure(params, w, b, xs, lengths))
    for k in (key,):  # training, dropout masks from the same key: outputs and gradients
        out = model(xs, lengths, k)
        np.testing.assert_array_equal(out, _pure(params, w, b, xs, lengths, k))

        def loss_nnx(m):
            return jnp.sum(jnp.sin(m(xs, lengths, k)))

        grads = nnx.grad(loss_nnx)(model)
        g_pure = jax.grad(lambda p, w, b: jnp.sum(jnp.sin(_pure(p, w, b, xs, lengths, k))),
                          argnums=(0, 1, 2))(params, w, b)
        grads = nnx.to_pure_dict(grads)
        g_rnn = grads["rnn"]["layers"]
        # Stack's children hold their params under .params (RNN) or .fwd/.bwd (Bidirectional)
        got = [{"fwd": g_rnn[0]["fwd"]["params"], "bwd": g_rnn[0]["bwd"]["params"]},
               g_rnn[1]["params"]]
        jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-14),
                     got, g_pure[0])
        np.testing.assert_allclose(grads["out"]["kernel"], g_pure[1], rtol=1e-12)
        np.testing.assert_allclose(grads["out"]["bias"], g_pure[2], rtol=1e-12)
        assert float(jnp.abs(g_pure[0][0]["bwd"]["W_hh"]).sum()) > 0


class Small(nnx.Module):
    """An LSTM and a linear readout of its last step."""

    def __init__(self, rngs):
        self.rnn = rnn.LSTM(F, H, rngs=rngs, param_dtype=jnp.float64)
        self.out = nnx.Linear(H, 2, rngs=rngs, param_dtype=jnp.float64)

    def __call__(self, xs, lengths):
        return self.out(self.rnn(xs, lengths=lengths)[0][:, -1])


def test_nnx_jit_and_optimizer_follow_optax_on_pure_params():
    model = Small(nnx.Rngs(params=0))
    params = (model.rnn.to_params(), model.out.kernel.get_value(), model.out.bias.get_value())
    tx = optax.adam(1e-2)
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    xs, lengths = _data(2)
    target = jnp.ones((B, 2))

    @nnx.jit
    def train_step(model, opt, xs, lengths):
        loss, grads = nnx.value_and_grad(
            lambda m: jnp.mean((m(xs, lengths) - target) ** 2))(model)
        opt.update(model, grads)
        return loss

    @jax.jit
    def pure_step(p, state):
        def loss_fn(p):
            ys, _ = rnnjax.run(cells.lstm(H), p[0], xs, lengths=lengths)
            return jnp.mean((ys[:, -1] @ p[1] + p[2] - target) ** 2)
        loss, g = jax.value_and_grad(loss_fn)(p)
        updates, state = tx.update(g, state, p)
        return loss, optax.apply_updates(p, updates), state

    state = tx.init(params)
    for _ in range(3):
        loss = train_step(model, opt, xs, lengths)
        ref_loss, params, state = pure_step(params, state)
        np.testing.assert_allclose(loss, ref_loss, rtol=1e-12)
    jax.tree.map(lambda a, e: np.testing.assert_allclose(a, e, rtol=1e-10, atol=1e-12),
                 model.rnn.to_params(), params[0])
    np.testing.assert_allclose(model.out.kernel.get_value(), params[1], rtol=1e-10)
    assert not np.allclose(model.rnn.to_params()["W_hh"],
                           Small(nnx.Rngs(params=0)).rnn.to_params()["W_hh"])


def test_dropout_train_eval_and_streams():
    cell = cells.lstm(H)
    m = rnn.RNN(cell, F, rngs=nnx.Rngs(params=0, dropout=5), recurrent_dropout=0.5,
                param_dtype=jnp.float64)
    xs, lengths = _data(3)
    pure = layers.unidirectional(cell, recurrent_dropout=0.5)
    p = m.to_params()
    # the module's stream yields the same keys as a fresh fork of the same seed
    stream = nnx.Rngs(params=0, dropout=5)["dropout"].fork()
    y1, _ = m(xs, lengths=lengths)
    y2, _ = m(xs, lengths=lengths)
    np.testing.assert_array_equal(y1, pure.apply(p, xs, lengths=lengths, key=stream())[0])
    np.testing.assert_array_equal(y2, pure.apply(p, xs, lengths=lengths, key=stream())[0])
    assert not np.allclose(y1, y2)  # a fresh mask per call
    m.eval()
    np.testing.assert_array_equal(m(xs, lengths=lengths)[0],
                                  rnnjax.run(cell, p, xs, lengths=lengths)[0])
    m.train()
    no_rngs = rnn.RNN(cell, params=p, recurrent_dropout=0.5)
    with pytest.raises(ValueError, match="holds no rngs"):
        no_rngs(xs)
    k = jax.random.key(4)
    np.testing.assert_array_equal(no_rngs(xs, rngs=k)[0], pure.apply(p, xs, key=k)[0])


def test_to_params_from_params_roundtrip_and_errors():
    m = rnn.Stack.of("gru", F, H, 2, rngs=nnx.Rngs(0), bidirectional=True)
    other = rnn.Stack.of("gru", F, H, 2, rngs=nnx.Rngs(1), bidirectional=True)
    p = other.to_params()
    assert jax.tree.structure(p) == jax.tree.structure(
        layers.stack([layers.bidirectional(cells.gru(H))] * 2).init(jax.random.key(0), F))
    m.from_params(p)
    jax.tree.map(np.testing.assert_array_equal, m.to_params(), p)
    xs, _ = _data(4, jnp.float32)
    np.testing.assert_array_equal(m(xs)[0], other(xs)[0])
    bad = jax.tree.map(lambda a: a, p)
    bad[1]["fwd"]["W_hh"] = jnp.zeros((3 * H, H + 1))
    with pytest.raises(ValueError, match=r"params\[1\]\['fwd'\]\['W_hh'\] has shape"):
        m.from_params(bad)
    with pytest.raises(ValueError, match="structure"):
        m.from_params(p[:1])
    # the module-level functions: from_params loads in place and returns the module
    fresh = rnn.Stack.of("gru", F, H, 2, rngs=nnx.Rngs(2), bidirectional=True)
    assert rnn.from_params(fresh, p) is fresh
    jax.tree.map(np.testing.assert_array_equal, rnn.to_params(fresh), p)


def test_bad_arguments():
    with pytest.raises(TypeError, match="cell must be an rnnjax.Cell"):
        rnn.RNN("lstm", F, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="input_size and rngs"):
        rnn.RNN(cells.lstm(H))
    with pytest.raises(ValueError, match="name must be one of"):
        rnn.RNN.from_name("lsmt", F, H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"layers\[1\] takes 3 features but layers\[0\] "
                                         r"outputs 10"):
        rnn.Stack([rnn.Bidirectional(cells.gru(H), F, rngs=nnx.Rngs(0)),
                   rnn.GRU(F, H, rngs=nnx.Rngs(0))])
    with pytest.raises(TypeError, match="unknown run options"):
        rnn.GRU(F, H, rngs=nnx.Rngs(0))(jnp.ones((1, 2, F)), unrol=2)
    with pytest.raises(ValueError, match="recurrent_dropout must be in"):
        rnn.LSTM(F, H, rngs=nnx.Rngs(0), recurrent_dropout=1.5)
