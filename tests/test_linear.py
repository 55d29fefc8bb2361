"""Linear recurrences: the associative scan equals the sequential one; the LRU and the
gated linear cell follow their equations, initialise as the paper says and train."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.test_util import check_grads

import rnnjax
from helpers import to_f64
from rnnjax import analysis
from rnnjax.cells import REGISTRY, elman, gated_linear, lru, lstm, make
from rnnjax.engine.associative import choose_scan, linear_scan
from rnnjax.layers import lru_block

F, H, B, T = 3, 5, 4, 13
TOL = {jnp.float32: 1e-5, jnp.float64: 1e-12}

CELLS = {
    "lru": lambda: lru(H, 0.5, 0.95, math.pi, model_size=F),
    "gated_linear": lambda: gated_linear(H),
    "elman_identity": lambda: elman(H, activation="identity", init="orthogonal"),
}


def _setup(name, dtype, seed=0):
    cell = CELLS[name]()
    params = cell.init(jax.random.key(seed), F)
    if dtype == jnp.float64:
        params = to_f64(params)
    xs = jax.random.normal(jax.random.key(seed + 1), (B, T, F), dtype)
    return cell, params, xs


def _carry(cell, dtype, seed=7):
    h = cell.initial_carry((B,), dtype).h
    k1, k2 = jax.random.split(jax.random.key(seed))
    v = jax.random.normal(k1, h.shape, dtype)
    if jnp.iscomplexobj(h):
        v = v + 1j * jax.random.normal(k2, h.shape, dtype)
    return rnnjax.HiddenState(v.astype(h.dtype))


OPTIONS = {
    "plain": {},
    "all": {"lengths": True, "reverse": True, "carry": True},
}


def _options(opt, cell, dtype):
    kw = {}
    if opt.get("lengths"):
        kw["lengths"] = jnp.array([T, 0, 5, 1])
    if opt.get("reverse"):
        kw["reverse"] = True
    if opt.get("carry"):
        kw["carry"] = _carry(cell, dtype)
    return kw


def _loss(cell, scan, xs, kw):
    """One jitted program: (loss, (ys, final)) and the gradients of the loss with respect
    to params, inputs and the initial carry -- outputs and gradients in one compile."""
    wy = jax.random.normal(jax.random.key(3), (B, T, cell.output_size), xs.dtype)

    def loss(params, xs, carry):
        ys, final = rnnjax.run(cell, params, xs, scan=scan, **{**kw, "carry": carry})
        return (ys * wy).sum() + jnp.abs(final.h).sum() + (final.h.real ** 2).sum(), (ys, final)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))


def _cases():
    """Every cell without any option and with all of lengths (including a zero length),
    reverse and an initial carry at once, in both precisions.  (Each option alone was
    also run before: the combined case goes through every one of those code paths, and
    compiling the associative scan's gradient is what dominates the suite's time.)"""
    for name in CELLS:
        for opt in ("plain", "all"):
            for dtype, dname in ((jnp.float32, "f32"), (jnp.float64, "f64")):
                yield pytest.param(name, opt, dtype, id=f"{name}-{opt}-{dname}")


@pytest.mark.parametrize("name,opt,dtype", list(_cases()))
def test_associative_equals_sequential(name, opt, dtype):
    """Outputs, final carry and gradients (params, inputs, initial carry) agree."""
    cell, params, xs = _setup(name, dtype)
    kw = _options(OPTIONS[opt], cell, dtype)
    tol = TOL[dtype]
    carry = kw.pop("carry", None)
    if carry is None:
        carry = cell.initial_carry((B,), dtype)
    (_, (ys_s, f_s)), g_s = _loss(cell, "sequential", xs, kw)(params, xs, carry)
    (_, (ys_a, f_a)), g_a = _loss(cell, "associative", xs, kw)(params, xs, carry)
    assert ys_a.dtype == ys_s.dtype and f_a.h.dtype == f_s.h.dtype
    np.testing.assert_allclose(ys_a, ys_s, rtol=tol, atol=tol)
    np.testing.assert_allclose(f_a.h, f_s.h, rtol=tol, atol=tol)
    if "lengths" in kw:  # padded outputs exactly zero in both
        assert float(jnp.abs(ys_a[1]).max()) == 0.0
        assert float(jnp.abs(ys_a[2, 5:]).max()) == 0.0
    for a, s in zip(jax.tree.leaves(g_a), jax.tree.leaves(g_s)):
        scale = max(1.0, float(jnp.abs(s).max()))
        np.testing.assert_allclose(a, s, rtol=tol, atol=tol * scale)


def test_batch_axes_and_time_major():
    cell, params, xs = _setup("lru", jnp.float64)
    xs = xs.reshape(2, 2, T, F)
    lengths = jnp.array([[T, 3], [0, 7]])
    ref, rf = rnnjax.run(cell, params, xs, lengths=lengths, scan="sequential")
    ys, f = rnnjax.run(cell, params, jnp.moveaxis(xs, 2, 0), lengths=lengths,
                       time_major=True, scan="associative")
    np.testing.assert_allclose(jnp.moveaxis(ys, 0, 2), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(f.h, rf.h, rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_remat_gradients():
    cell, params, xs = _setup("lru", jnp.float64)
    lengths = jnp.array([T, 3, 0, 7])
    loss = lambda p, remat: rnnjax.run(cell, p, xs, lengths=lengths, scan="associative",
                                       remat=remat)[0].sum()
    for a, b in zip(jax.tree.leaves(jax.grad(loss)(params, True)),
                    jax.tree.leaves(jax.grad(loss)(params, False))):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_associative_gradients_match_finite_differences():
    cell, params, xs = _setup("lru", jnp.float64)
    xs = xs[:2, :6]
    f = lambda p: rnnjax.run(cell, p, xs, scan="associative", lengths=jnp.array([6, 4]))[0]
    check_grads(lambda p: (f(p) ** 2).sum(), (params,), order=1,
                              modes=("rev",), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("kind", ["diagonal", "dense"])
def test_linear_scan_equals_loop(kind):
    """linear_scan against h_t = A_t h_{t-1} + b_t written as a numpy loop."""
    rng = np.random.default_rng(0)
    n, d = 9, 4
    a = rng.normal(size=(n, d) if kind == "diagonal" else (n, d, d)) * 0.6
    b = rng.normal(size=(n, d))
    h0 = rng.normal(size=(d,))
    h, expected = h0, []
    for t in range(n):
        h = (a[t] * h if kind == "diagonal" else a[t] @ h) + b[t]
        expected.append(h)
    got = linear_scan(kind, jnp.asarray(a), jnp.asarray(b), jnp.asarray(h0))
    np.testing.assert_allclose(got, np.stack(expected), rtol=1e-12, atol=1e-12)


def test_lru_equations():
    """The sequential LRU step against the paper's equations, written out in numpy."""
    cell = lru(H, 0.4, 0.9, 2.0, model_size=F)
    p = jax.tree.map(np.asarray, to_f64(cell.init(jax.random.key(4), F)))
    xs = np.random.default_rng(1).normal(size=(T, F))
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    Bn = (p["B_re"] + 1j * p["B_im"]) * np.exp(p["gamma_log"])[:, None]
    C = p["C_re"] + 1j * p["C_im"]
    h, ys = np.zeros(H, complex), []
    for x in xs:
        h = lam * h + Bn @ x
        ys.append((C @ h).real + p["D"] * x)
    got, final = rnnjax.run(cell, to_f64(cell.init(jax.random.key(4), F)), jnp.asarray(xs),
                            scan="sequential")
    np.testing.assert_allclose(got, np.stack(ys), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(final.h, h, rtol=1e-12, atol=1e-12)
    assert final.h.dtype == jnp.complex128
    assert cell.initial_carry((2,), jnp.float32).h.dtype == jnp.complex64


@pytest.mark.parametrize("r_min,r_max,max_phase", [(0.0, 1.0, 2 * math.pi),
                                                   (0.9, 0.999, math.pi / 10),
                                                   (0.4, 0.6, 1.0)])
def test_lru_ring_initialisation(r_min, r_max, max_phase):
    cell = lru(1024, r_min, r_max, max_phase)
    p = cell.init(jax.random.key(0), cell.output_size)
    lam = np.asarray(jnp.diagonal(rnnjax.recurrent_matrix(cell, p)))
    mod, phase = np.abs(lam), np.angle(lam) % (2 * np.pi)
    eps = 1e-6
    assert mod.min() >= r_min - eps and mod.max() <= r_max + eps
    assert phase.min() >= -eps and phase.max() <= max_phase + 1e-5
    # |lambda|^2 is uniform on [r_min^2, r_max^2] (uniform on the ring's area)
    np.testing.assert_allclose(np.mean(mod ** 2), (r_min ** 2 + r_max ** 2) / 2, atol=0.03)
    np.testing.assert_allclose(np.mean(phase), max_phase / 2, rtol=0.08)
    # input normalisation gamma = sqrt(1 - |lambda|^2)
    np.testing.assert_allclose(np.exp(p["gamma_log"]), np.sqrt(1 - mod ** 2), rtol=1e-4,
                               atol=1e-6)
    # the analysis spectrum is |lambda|
    eig = np.linalg.eigvals(np.asarray(rnnjax.recurrent_matrix(cell, p))[:64, :64])
    np.testing.assert_allclose(np.sort(np.abs(eig)), np.sort(mod[:64]), rtol=1e-5)


def test_gated_linear_equations():
    """minGRU form: h_t = a_t h_{t-1} + (1 - a_t)(W_x x_t + b_x), a_t = sigmoid(...)."""
    cell = gated_linear(H)
    p = to_f64(cell.init(jax.random.key(2), F))
    q = jax.tree.map(np.asarray, p)
    xs = np.random.default_rng(3).normal(size=(T, F))
    h, ys = np.zeros(H), []
    for x in xs:
        a = 1 / (1 + np.exp(-(q["W_a"] @ x + q["b_a"])))
        h = a * h + (1 - a) * (q["W_x"] @ x + q["b_x"])
        ys.append(h)
    for scan in ("sequential", "associative"):
        got, _ = rnnjax.run(cell, p, jnp.asarray(xs), scan=scan)
        np.testing.assert_allclose(got, np.stack(ys), rtol=1e-12, atol=1e-12)


def test_auto_rule_and_registry():
    diag = "sequential" if jax.default_backend() == "cpu" else "associative"
    assert choose_scan(lru(4), "auto", 100) == diag
    assert choose_scan(gated_linear(4), "auto", 100) == diag
    assert choose_scan(lstm(4), "auto", 100) == "sequential"
    assert choose_scan(elman(4, activation="identity"), "auto", 100) == "sequential"
    assert choose_scan(lru(4), "auto", 100, truncate=5) == "sequential"
    assert choose_scan(lru(4), "auto", 100, unroll=4) == "sequential"
    assert choose_scan(lru(4), "sequential", 100) == "sequential"
    assert choose_scan(lru(4), "associative", 100) == "associative"
    assert make("lru", 6).name == "lru" and REGISTRY["gated_linear"] is gated_linear


def test_bad_arguments():
    cell, params, xs = _setup("lru", jnp.float32)
    with pytest.raises(ValueError, match="scan must be one of"):
        rnnjax.run(cell, params, xs, scan="parallel")
    with pytest.raises(ValueError, match="truncate"):
        rnnjax.run(cell, params, xs, scan="associative", truncate=4)
    with pytest.raises(ValueError, match="unroll"):
        rnnjax.run(cell, params, xs, scan="associative", unroll=2)
    l = lstm(4)
    with pytest.raises(ValueError, match="lstm cell declares none"):
        rnnjax.run(l, l.init(jax.random.key(0), F), xs, scan="associative")
    with pytest.raises(ValueError, match="r_min and r_max"):
        lru(4, r_min=0.9, r_max=0.5)
    with pytest.raises(ValueError, match="max_phase"):
        lru(4, max_phase=0.0)
    with pytest.raises(ValueError, match="model_size 4"):
        lru(4).init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="mlp"):
        lru_block(4, 3, mlp="ffn")


def test_recurrent_dropout_layer_keeps_sequential_semantics():
    """A layer with recurrent dropout wraps the step; it must not take the linear path."""
    cell = gated_linear(H)
    params = cell.init(jax.random.key(0), F)
    xs = jax.random.normal(jax.random.key(1), (B, T, F))
    layer = rnnjax.unidirectional(cell, recurrent_dropout=0.5)
    ys, _ = layer.apply(params, xs, key=jax.random.key(2), scan="auto")
    ys_seq, _ = layer.apply(params, xs, key=jax.random.key(2), scan="sequential")
    np.testing.assert_allclose(ys, ys_seq, rtol=1e-6, atol=1e-6)
    clean, _ = layer.apply(params, xs, scan="associative")  # no key: no dropout
    assert float(jnp.abs(ys - clean).max()) > 1e-3  # the mask was applied
    with pytest.raises(ValueError, match="declares none"):  # the masked step is not linear
        layer.apply(params, xs, key=jax.random.key(2), scan="associative")


def test_lru_block_padded_equals_unpadded():
    block = lru_block(6, F, 0.5, 0.9, mlp="mlp")
    p = to_f64(block.init(jax.random.key(0), F))
    xs = jax.random.normal(jax.random.key(1), (2, T, F), jnp.float64)
    lengths = jnp.array([T, 6])
    ys, _ = block.apply(p, xs, lengths=lengths)
    alone, final = block.apply(p, xs[1:, :6])
    np.testing.assert_allclose(ys[1, :6], alone[0], rtol=1e-12, atol=1e-12)
    assert float(jnp.abs(ys[1, 6:]).max()) == 0.0
    # residual: the block is x + MLP(LRU(norm(x)))
    v, _ = rnnjax.run(block_cell := lru(6, 0.5, 0.9, model_size=F), p["lru"],
                      (xs - xs.mean(-1, keepdims=True))
                      / jnp.sqrt(xs.var(-1, keepdims=True) + 1e-5))
    z = jax.nn.gelu(v @ p["W_1"].T) @ p["W_2"].T
    full, _ = block.apply(p, xs)
    np.testing.assert_allclose(full, xs + z, rtol=1e-10, atol=1e-10)
    assert block_cell.output_size == F


def _adding_batch(key, batch, steps):
    """Adding problem (Hochreiter & Schmidhuber 1997): channel 0 U(0,1), channel 1 marks
    one position in each half; target = sum of the marked values (MSE baseline 1/6)."""
    k1, k2, k3 = jax.random.split(key, 3)
    vals = jax.random.uniform(k1, (batch, steps))
    i = jax.random.randint(k2, (batch,), 0, steps // 2)
    j = jax.random.randint(k3, (batch,), steps // 2, steps)
    marks = jax.nn.one_hot(i, steps) + jax.nn.one_hot(j, steps)
    return jnp.stack([vals, marks], -1), (vals * marks).sum(-1)


def test_lru_learns_the_adding_problem():
    """Encoder, one LRU block (GLU), linear readout of the last output; Adam.  The test
    MSE must fall well below the 1/6 of always answering 1."""
    steps, M, N = 30, 16, 32
    block = lru_block(N, M, r_min=0.9, r_max=0.999, max_phase=math.pi)

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"enc": jax.random.normal(k1, (2, M)) / math.sqrt(2),
                "block": block.init(k2, M),
                "out": jax.random.normal(k3, (M,)) / math.sqrt(M), "b": jnp.zeros(())}

    def loss(p, xs, target):
        ys, _ = block.apply(p["block"], xs @ p["enc"], scan="associative")
        return ((ys[:, -1] @ p["out"] + p["b"] - target) ** 2).mean()

    opt = optax.adam(1e-2)

    @jax.jit
    def train(p):
        def update(carry, key):
            p, s = carry
            l, g = jax.value_and_grad(loss)(p, *_adding_batch(key, 64, steps))
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), l
        (p, _), losses = jax.lax.scan(update, (p, opt.init(p)),
                                      jax.random.split(jax.random.key(1), 400))
        return p, losses

    p, losses = train(init(jax.random.key(0)))
    test_mse = float(loss(p, *_adding_batch(jax.random.key(99), 512, steps)))
    assert losses[0] > 0.1
    assert test_mse < 0.05, test_mse  # baseline 1/6 = 0.167


def test_analysis_sees_the_lru_spectrum():
    """The gradient-flow tools treat the LRU like any other cell: its recurrent spectrum
    is lambda, and its Lyapunov exponents (h in R^{2N}: each lambda twice) log|lambda|."""
    cell = lru(3, 0.5, 0.9, 1.0, model_size=2)
    p = to_f64(cell.init(jax.random.key(0), 2))
    lam = np.asarray(jnp.diagonal(rnnjax.recurrent_matrix(cell, p)))
    spec = analysis.recurrent_spectrum(cell, p)
    np.testing.assert_allclose(np.abs(spec["eigenvalues"]), np.sort(np.abs(lam))[::-1],
                               rtol=1e-10)
    xs = jax.random.normal(jax.random.key(1), (400, 2), jnp.float64)
    lyap = np.asarray(analysis.lyapunov_spectrum(cell, p, xs, burn_in=50))
    expected = np.sort(np.repeat(np.log(np.abs(lam)), 2))[::-1]
    # the sum is log|det J| every step, exactly; each rotation's pair converges as 1/T
    np.testing.assert_allclose(lyap.sum(), expected.sum(), rtol=1e-10)
    np.testing.assert_allclose(lyap, expected, atol=0.02)
