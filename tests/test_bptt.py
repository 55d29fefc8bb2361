"""Hand-written BPTT (rnnjax.engine.bptt) against jax.grad of the engine, in float64."""

import contextlib
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.analysis import explain
from rnnjax.cli import main
from rnnjax.engine import bptt
from rnnjax.layers import recurrent
from tests.helpers import to_f64

CELLS = {
    "elman": lambda H: cells.elman(H),
    "elman-relu": lambda H: cells.elman(H, activation="relu"),
    "elman-identity": lambda H: cells.elman(H, activation="identity", init="orthogonal"),
    "lstm": lambda H: cells.lstm(H, init="uniform"),
    "gru": lambda H: cells.gru(H, init="uniform"),
}


def rel_err(a, b):
    a, b = jnp.asarray(a), jnp.asarray(b)
    return float(jnp.max(jnp.abs(a - b)) / jnp.maximum(jnp.max(jnp.abs(b)), 1e-300))


def _problem(name, seed, batch_shape, T, F, H):
    cell = CELLS[name](H)
    k = jax.random.split(jax.random.key(seed), 5)
    params = to_f64(cell.init(k[0], F))
    if name == "gru":  # non-zero b_hn so its gradient is exercised
        params["b_hn"] = jax.random.normal(k[4], (H,), jnp.float64) * 0.3
    xs = jax.random.normal(k[1], batch_shape + (T, F), jnp.float64)
    carry = jax.tree.map(lambda a: 0.5 * jax.random.normal(k[2], a.shape, jnp.float64),
                         cell.initial_carry(batch_shape, jnp.float64))
    kd = jax.random.split(k[3], 3)
    dys = jax.random.normal(kd[0], batch_shape + (T, H), jnp.float64)
    dcarry = jax.tree.map(lambda a: jax.random.normal(kd[1], a.shape, jnp.float64), carry)
    return cell, params, xs, carry, dys, dcarry


def _autodiff(cell, params, xs, carry, dys, dcarry, **kw):
    """(ys, final) of rnnjax.run and the gradients of sum(dys*ys) + sum(dcarry*final)."""
    kw.setdefault("grad", "autodiff")
    out, vjp = jax.vjp(lambda p, x, c: rnnjax.run(cell, p, x, carry=c, **kw),
                       params, xs, carry)
    return out, vjp((dys, dcarry))


CASES = [  # (batch_shape, T, F, H, lengths-kind, truncate, reverse)
    ((3,), 7, 4, 5, None, None, False),
    ((2, 2), 9, 3, 4, "zeros", None, False),
    ((4,), 11, 2, 3, None, 3, False),
    ((4,), 10, 3, 6, "zeros", 4, False),
    ((3,), 8, 3, 4, "zeros", 2, True),
    ((), 6, 5, 2, None, 1, False),
]


# Every cell runs the three cases that between them cover each option -- lengths with
# zeros and batch shape (2, 2) (case 1), lengths + truncate + reverse (case 4), no batch
# axis with truncate=1 (case 5) -- plus one of the remaining cases (plain, truncate alone,
# lengths + truncate) in rotation, so every case still runs for some cell.  The full
# product (30 compiles of three programs each) repeated the same checks.
COVER = (1, 4, 5)
ROTATE = (0, 2, 3)


def _cell_cases():
    for i, name in enumerate(CELLS):
        for case in sorted(COVER + (ROTATE[i % len(ROTATE)],)):
            yield pytest.param(name, case, id=f"{case}-{name}")


@pytest.mark.parametrize("name,case", list(_cell_cases()))
def test_manual_equals_autodiff(name, case):
    batch_shape, T, F, H, lk, truncate, reverse = CASES[case]
    seed = 17 * case + len(name)
    cell, params, xs, carry, dys, dcarry = _problem(name, seed, batch_shape, T, F, H)
    lengths = None
    if lk == "zeros":
        lengths = jax.random.randint(jax.random.key(seed + 1), batch_shape, 0, T + 1)
        lengths = lengths.reshape(-1).at[0].set(0).at[-1].set(T).reshape(batch_shape)
    kw = dict(lengths=lengths, truncate=truncate, reverse=reverse)
    # chunks of 3 steps: several chunks and a shorter last one (T = 6..11); the
    # custom_vjp path below runs with the default chunk (one chunk at these T)
    got = bptt.bptt(cell, params, xs, dys, dcarry, carry=carry, chunk=3, **kw)
    (ys, final), (dp, dx, dc) = _autodiff(cell, params, xs, carry, dys, dcarry, **kw)
    assert rel_err(got.ys, ys) <= 1e-12
    for k in params:
        assert rel_err(got.d_params[k], dp[k]) <= 1e-10, k
    assert rel_err(got.d_xs, dx) <= 1e-10
    for a, b in zip(jax.tree.leaves(got.d_carry), jax.tree.leaves(dc)):
        assert rel_err(a, b) <= 1e-10
    for a, b in zip(jax.tree.leaves(got.final_carry), jax.tree.leaves(final)):
        assert rel_err(a, b) <= 1e-12
    # the custom_vjp path gives the same gradients through jax.grad
    (ysm, _), grads_m = _autodiff(cell, params, xs, carry, dys, dcarry, grad="manual", **kw)
    assert rel_err(ysm, ys) <= 1e-12
    for a, b in zip(jax.tree.leaves(grads_m), jax.tree.leaves((dp, dx, dc))):
        assert rel_err(a, b) <= 1e-10


def test_truncate_cuts_carry_gradient():
    """With truncate=1 the loss on the last output sees only the last step's input."""
    cell, params, xs, carry, _, _ = _problem("elman", 0, (2,), 5, 3, 4)
    dys = jnp.zeros((2, 5, 4)).at[:, -1].set(1.0)
    g = bptt.bptt(cell, params, xs, dys, carry=carry, truncate=1)
    assert float(jnp.max(jnp.abs(g.d_xs[:, :-1]))) == 0.0
    assert float(jnp.max(jnp.abs(g.d_xs[:, -1]))) > 0.0
    assert float(jnp.max(jnp.abs(g.d_carry.h))) == 0.0


def test_length_zero_passes_carry_gradient():
    cell, params, xs, carry, dys, dcarry = _problem("lstm", 1, (2,), 4, 3, 2)
    g = bptt.bptt(cell, params, xs, dys, dcarry, carry=carry, lengths=jnp.array([0, 4]))
    np.testing.assert_array_equal(g.d_carry.h[0], dcarry.h[0])
    np.testing.assert_array_equal(g.d_carry.c[0], dcarry.c[0])
    assert float(jnp.max(jnp.abs(g.d_xs[0]))) == 0.0


def test_manual_refuses_cells_without_backward_and_bad_grad():
    cell, params, xs, carry, dys, dcarry = _problem("gru", 2, (2,), 5, 3, 4)
    with pytest.raises(ValueError, match="lstm-ln"):
        rnnjax.run(cells.lstm(3, layer_norm=True),
                   cells.lstm(3, layer_norm=True).init(jax.random.key(0), 2),
                   jnp.ones((1, 4, 2)), grad="manual")
    with pytest.raises(ValueError, match="grad must be one of"):
        rnnjax.run(cell, params, xs, grad="by-hand")
    with pytest.raises(ValueError, match="remat"):
        rnnjax.run(cell, params, xs, grad="manual", remat=True)
    with pytest.raises(ValueError, match="dys must have the shape"):
        bptt.bptt(cell, params, xs, jnp.ones((2, 5, 3)))
    with pytest.raises(ValueError, match="chunk must be a positive integer, got 0"):
        bptt.bptt(cell, params, xs, chunk=0)


def test_float32_params_float64_inputs():
    """Mixed dtypes: the custom_vjp returns cotangents in each primal's dtype."""
    cell = cells.lstm(4)
    params = cell.init(jax.random.key(0), 3)
    xs = jax.random.normal(jax.random.key(1), (2, 6, 3), jnp.float64)
    f = lambda p, g: jnp.sum(rnnjax.run(cell, p, xs, grad=g)[0] ** 2)  # noqa: E731
    ga, gm = jax.grad(f)(params, "autodiff"), jax.grad(f)(params, "manual")
    for k in params:
        assert gm[k].dtype == params[k].dtype
        np.testing.assert_allclose(gm[k], ga[k], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_manual_training_matches_autodiff(name):
    H, F, T = 5, 3, 8
    cell = CELLS[name](H)
    k = jax.random.split(jax.random.key(3), 4)
    p0 = {"cell": to_f64(cell.init(k[0], F)),
          "w": jax.random.normal(k[1], (H,), jnp.float64)}
    xs = jax.random.normal(k[2], (6, T, F), jnp.float64)
    target = jax.random.normal(k[3], (6,), jnp.float64)
    lengths = jnp.array([8, 3, 0, 5, 8, 1])
    opt = optax.adam(1e-2)

    def train(grad):
        def loss(p):
            ys, final = rnnjax.run(cell, p["cell"], xs, lengths=lengths, truncate=3,
                                   grad=grad)
            return jnp.mean((final.h @ p["w"] + ys.mean((1, 2)) - target) ** 2)

        @jax.jit
        def step(p, s):
            g = jax.grad(loss)(p)
            u, s = opt.update(g, s, p)
            return optax.apply_updates(p, u), s

        p, s = p0, opt.init(p0)
        for _ in range(20):
            p, s = step(p, s)
        return p, float(loss(p)), float(loss(p0))

    pa, la, l0 = train("autodiff")
    pm, lm, _ = train("manual")
    for a, b in zip(jax.tree.leaves(pm), jax.tree.leaves(pa)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # training did lower the loss, and by the same amount
    assert la < l0
    np.testing.assert_allclose(lm, la, rtol=1e-9)


# ----------------------------------------------------------------- worked example

EXPECTED = {  # the hand-worked figures (rounded at each step: agree to 0.003)
    "h1": [0.226, 0.309, 0.263], "h2": [0.402, 0.610, 0.572], "h6": [0.667, 0.821, 0.784],
    "y": 0.685, "loss": 0.377, "db_o": -0.316, "dW_ho": [-0.211, -0.259, -0.248],
    "delta6": [-0.053, -0.020, -0.049],
}


def _check_expected(r):
    s = r["steps"]
    np.testing.assert_allclose(s[0]["h"], EXPECTED["h1"], atol=3e-3)
    np.testing.assert_allclose(s[1]["h"], EXPECTED["h2"], atol=3e-3)
    np.testing.assert_allclose(s[5]["h"], EXPECTED["h6"], atol=3e-3)
    np.testing.assert_allclose(r["y"], [EXPECTED["y"]], atol=3e-3)
    np.testing.assert_allclose(r["loss"], EXPECTED["loss"], atol=3e-3)
    np.testing.assert_allclose(r["grads"]["b_o"], [EXPECTED["db_o"]], atol=3e-3)
    np.testing.assert_allclose(r["grads"]["W_ho"], [EXPECTED["dW_ho"]], atol=3e-3)
    np.testing.assert_allclose(s[5]["delta"], EXPECTED["delta6"], atol=3e-3)


def test_worked_example_library():
    spec = explain.example_spec()
    r = explain.explain(spec)
    _check_expected(r)
    # exact check against jax.grad of the same loss, and per-step sums equal totals
    emb = spec["embeddings"]
    xs = jnp.array([emb[t] for t in spec["tokens"]], jnp.float64)
    p = {k: jnp.array(spec[k], jnp.float64) for k in ("W_xh", "W_hh", "b_h", "W_ho", "b_o")}

    def loss(p):
        ys, _ = rnnjax.run(cells.elman(3), {"W_xh": p["W_xh"], "W_hh": p["W_hh"],
                                            "b": p["b_h"]}, xs)
        return -jnp.log(jax.nn.sigmoid(p["W_ho"] @ ys[-1] + p["b_o"]))[0]

    g = jax.grad(loss)(p)
    assert abs(float(loss(p)) - r["loss"]) <= 1e-14
    for k in g:
        np.testing.assert_allclose(np.array(r["grads"][k]), g[k], rtol=1e-10, atol=1e-15)
    for k in ("dW_xh", "dW_hh", "db_h"):
        total = sum(np.array(s[k]) for s in r["steps"])
        np.testing.assert_allclose(total, r["grads"][k[1:]], rtol=1e-12, atol=1e-15)


def _cli(args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(args)
    return rc, buf.getvalue()


def test_worked_example_cli():
    rc, out = _cli(["bptt-explain"])
    assert rc == 0
    lines = out.splitlines()
    row = next(l for l in lines if l.strip().startswith("6  amazing  [ 0.500"))
    h6 = [float(v) for v in row.split("[")[-1].rstrip("]").split(",")]
    np.testing.assert_allclose(h6, EXPECTED["h6"], atol=3e-3)
    assert "= [ 0.685];" in out and "Loss: -[l log y + (1-l) log(1-y)] = 0.378" in out
    delta_row = next(l for l in lines if l.strip().startswith("6  amazing  [-0.094"))
    d6 = [float(v) for v in delta_row.split("[")[-1].rstrip("]").split(",")]
    np.testing.assert_allclose(d6, EXPECTED["delta6"], atol=3e-3)
    rc, out = _cli(["bptt-explain", "--json"])
    assert rc == 0
    _check_expected(json.loads(out))


def test_explain_spec_errors(tmp_path):
    spec = explain.example_spec()
    del spec["W_hh"]
    with pytest.raises(ValueError, match="W_hh"):
        explain.explain(spec)
    spec = explain.example_spec()
    spec["tokens"] = ["i", "hate"]
    path = tmp_path / "s.json"
    path.write_text(json.dumps(spec))
    with contextlib.redirect_stderr(io.StringIO()) as err:
        assert main(["bptt-explain", str(path)]) == 2
    assert "hate" in err.getvalue()
    spec = explain.example_spec()
    del spec["tokens"], spec["embeddings"]
    spec["inputs"] = [[0.1, 0.2, 0.3], [0.4, 0.1, 0.5]]
    spec["loss"] = "mse"
    r = explain.explain(spec)
    np.testing.assert_allclose(r["steps"][1]["h"], EXPECTED["h2"], atol=3e-3)
    np.testing.assert_allclose(r["dL_dlogit"], np.array(r["y"]) - 1.0, rtol=1e-14)


def test_benchmark_quick(capsys):
    from benchmarks import bptt as bench
    records = bench.main(["--quick", "--cells", "elman", "gru"])
    assert len(records) == 2
    for r in records:
        assert r["manual_median_s"] > 0 and r["auto_median_s"] > 0
        assert r["max_rel_grad_diff"] < 1e-4
    assert capsys.readouterr().out.count('"bench": "bptt"') == 2


# ------------------------------------------------- grad="auto": the faster exact path

def test_choose_grad_rule():
    lstm, gru = cells.lstm(3), cells.gru(3)
    assert bptt.choose_grad(lstm, "auto", backend="cpu") == "manual"
    assert bptt.choose_grad(lstm, "auto", backend="gpu") == "autodiff"  # not measured there
    assert bptt.choose_grad(gru, "auto", backend="cpu") == "autodiff"  # on par on CPU
    assert bptt.choose_grad(cells.exprnn(4), "auto", backend="cpu") == "autodiff"  # slower
    assert bptt.choose_grad(cells.mgu(3), "auto", backend="cpu") == "autodiff"  # none
    assert bptt.choose_grad(lstm, "auto", backend="cpu", remat=True) == "autodiff"
    assert bptt.choose_grad(lstm, "auto", backend="cpu", scan="associative") == "autodiff"
    for g in ("autodiff", "manual"):
        assert bptt.choose_grad(gru, g, backend="cpu") == g
    # recurrent dropout changes the step and clears the backward (rnnjax.layers)
    assert bptt.choose_grad(recurrent._masked_cell(lstm), "auto", backend="cpu") == "autodiff"


SWITCHED = [n for n in CELLS  # the cells grad="auto" runs by hand on this backend
            if bptt.choose_grad(CELLS[n](2), "auto") == "manual"]


@pytest.mark.parametrize("name", SWITCHED)
@pytest.mark.parametrize("case", [1, 4, 5])  # lengths/zeros, +truncate+reverse, no batch
def test_auto_equals_autodiff(name, case):
    """Default grad='auto' (the hand-written backward where it is the faster) gives the
    autodiff values and gradients to 1e-10, with every option it may switch on with."""
    batch_shape, T, F, H, lk, truncate, reverse = CASES[case]
    cell, params, xs, carry, dys, dcarry = _problem(name, 5 + case, batch_shape, T, F, H)
    lengths = None
    if lk == "zeros":
        lengths = jnp.arange(int(np.prod(batch_shape))).reshape(batch_shape) % (T + 1)
    resets = jax.random.bernoulli(jax.random.key(case), 0.2, batch_shape + (T,))
    kw = dict(lengths=lengths, truncate=truncate, reverse=reverse, resets=resets)
    (ys, fin), grads = _autodiff(cell, params, xs, carry, dys, dcarry, **kw)
    (ys_a, fin_a), grads_a = _autodiff(cell, params, xs, carry, dys, dcarry, grad="auto",
                                       **kw)
    for a, b in zip(jax.tree.leaves((ys_a, fin_a, grads_a)),
                    jax.tree.leaves((ys, fin, grads))):
        assert rel_err(a, b) <= 1e-10


def test_auto_is_the_manual_path_here_and_forward_mode_needs_autodiff():
    """On CPU grad='auto' runs the LSTM's custom_vjp (so jax.jvp through it is refused by
    JAX), while grad='autodiff' supports forward mode."""
    assert "lstm" in SWITCHED and "gru" not in SWITCHED
    cell = cells.lstm(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.ones((1, 4, 2))
    f = lambda x, g: rnnjax.run(cell, params, x, grad=g)[0].sum()  # noqa: E731
    with pytest.raises(TypeError, match="custom_vjp"):
        jax.jvp(lambda x: f(x, "auto"), (xs,), (xs,))
    jax.jvp(lambda x: f(x, "autodiff"), (xs,), (xs,))
