"""The cuDNN LSTM path (rnnjax.engine.cudnn): the params layout both ways, bit for bit; the
conventions of ``rnnjax.run`` through JAX's reference LSTM (``lstm_ref``, any backend);
and the errors a CPU and unsupported options get."""

import jax
import jax.experimental.rnn as jrnn
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.core.cell import LSTMState
from rnnjax.engine import cudnn
from rnnjax.engine.table import resolve

F, H = 3, 5


def _params(dtype, seed=0):
    p = cells.lstm(H, init="uniform").init(jax.random.key(seed), F)
    return jax.tree.map(lambda a: a.astype(dtype), p)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_layout_round_trips_bit_for_bit(dtype):
    p = _params(dtype)
    flat = cudnn.to_cudnn(p)
    assert flat.shape == (jrnn.get_num_params_in_lstm(F, H, 1, False),)
    assert flat.dtype == dtype
    back = cudnn.from_cudnn(flat, F, H)
    for k in p:
        assert back[k].dtype == dtype
        np.testing.assert_array_equal(back[k], p[k])
    # cuDNN -> rnnjax -> cuDNN: exact when b_hh = 0 (what to_cudnn writes)
    w = jax.random.normal(jax.random.key(3), flat.shape, dtype).at[-4 * H:].set(0)
    np.testing.assert_array_equal(cudnn.to_cudnn(cudnn.from_cudnn(w, F, H)), w)
    # JAX's own unpacking of the flat vector finds the same blocks
    w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(flat, F, H, 1, False)
    np.testing.assert_array_equal(w_ih[0], p["W_xh"])
    np.testing.assert_array_equal(w_hh[0], p["W_hh"])
    np.testing.assert_array_equal(b_ih[0] + b_hh[0], p["b"])
    assert not np.any(b_hh[0])


def test_two_biases_are_summed():
    w = jax.random.normal(jax.random.key(4), (4 * H * (F + H + 2),), jnp.float64)
    p = cudnn.from_cudnn(w, F, H)
    np.testing.assert_array_equal(p["b"], w[-8 * H:-4 * H] + w[-4 * H:])


@pytest.mark.parametrize("reverse", [False, True])
def test_reference_lstm_gives_what_run_gives(reverse):
    """Flat weights through jax.experimental.rnn.lstm_ref (the cuDNN layout's reference)
    equal rnnjax.run: outputs, final carry and gradients (float64), lengths 0..T."""
    cell = cells.lstm(H)
    p = _params(jnp.float64, seed=1)
    T, B = 6, 4
    xs = jax.random.normal(jax.random.key(2), (T, B, F), jnp.float64)
    lengths = jnp.array([6, 3, 0, 1])
    xs = jnp.where((jnp.arange(T)[:, None] < lengths)[..., None], xs, 0.0)  # as run does
    k1, k2 = jax.random.split(jax.random.key(5))
    carry = LSTMState(jax.random.normal(k1, (B, H), jnp.float64),
                      jax.random.normal(k2, (B, H), jnp.float64))

    def loss(fn, p, x, c):
        ys, final = fn(p, x, c)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final.h * final.c), (ys, final)

    ref = lambda p, x, c: cudnn.scan_cudnn(p, c, x, lengths, reverse=reverse,  # noqa: E731
                                           reference=True)
    ours = lambda p, x, c: rnnjax.run(cell, p, x, carry=c, lengths=lengths,  # noqa: E731
                                      reverse=reverse, time_major=True, scan="sequential")
    (la, (ya, fa)), ga = jax.value_and_grad(lambda *a: loss(ref, *a), (0, 1, 2),
                                            has_aux=True)(p, xs, carry)
    (lb, (yb, fb)), gb = jax.value_and_grad(lambda *a: loss(ours, *a), (0, 1, 2),
                                            has_aux=True)(p, xs, carry)
    np.testing.assert_allclose(ya, yb, rtol=1e-12, atol=1e-13)
    assert not np.any(ya[3:, 1]) and not np.any(ya[:, 2])  # zero past each length
    np.testing.assert_array_equal(fa.h[2], carry.h[2])  # length 0 keeps the carry
    for u, v in zip(jax.tree.leaves((fa, ga)), jax.tree.leaves((fb, gb))):
        np.testing.assert_allclose(u, v, rtol=1e-11, atol=1e-12)


def _fake_cudnn(monkeypatch):
    """Stand JAX's reference LSTM in for the cuDNN kernel, so run's wiring runs on CPU."""
    def fake(x, h0, c0, w, seq, F_, H_, layers, dropout, bidirectional):
        w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(w, F_, H_, layers, bidirectional)
        return jrnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, seq, F_, H_, layers,
                             dropout, bidirectional)
    monkeypatch.setattr(cudnn.jrnn, "lstm", fake)
    monkeypatch.setattr(cudnn, "cudnn_available", lambda: True)


def test_run_scan_cudnn_wiring(monkeypatch):
    """run(scan="cudnn") with two batch axes, batch-major, lengths: as the scan."""
    _fake_cudnn(monkeypatch)
    cell = cells.lstm(H)
    p = _params(jnp.float32, seed=2)
    xs = jax.random.normal(jax.random.key(6), (2, 3, 7, F), jnp.float32)
    lengths = jnp.array([[7, 0, 2], [5, 1, 7]])
    a = rnnjax.run(cell, p, xs, lengths=lengths, scan="cudnn")
    b = rnnjax.run(cell, p, xs, lengths=lengths, scan="sequential")
    assert a[0].shape == (2, 3, 7, H) and a[1].h.shape == (2, 3, H)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(u, v, rtol=2e-6, atol=2e-6)
    xt = jnp.moveaxis(xs[0], 1, 0)  # time-major (7, 3, F), read backwards
    a = rnnjax.run(cell, p, xt, lengths=lengths[0], reverse=True, time_major=True,
                   scan="cudnn")
    b = rnnjax.run(cell, p, xt, lengths=lengths[0], reverse=True, time_major=True,
                   scan="sequential")
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(u, v, rtol=2e-6, atol=2e-6)


def test_cpu_backend_is_named():
    cell = cells.lstm(H)
    p = _params(jnp.float32)
    with pytest.raises(RuntimeError, match="needs a CUDA GPU with cuDNN, but the backend is "
                                           "'cpu'"):
        rnnjax.run(cell, p, jnp.ones((2, 4, F), jnp.float32), scan="cudnn")
    # a cell with the LSTM's equations under another name passes every check but the backend
    with pytest.raises(RuntimeError, match="'cpu'"):
        rnnjax.run(cell._replace(name="mine"), p, jnp.ones((4, F), jnp.float32), scan="cudnn")
    # forget_bias lives in b (cuDNN's b_ih): any value is the plain LSTM
    with pytest.raises(RuntimeError, match="'cpu'"):
        rnnjax.run(cells.lstm(H, forget_bias=0.0), p, jnp.ones((4, F), jnp.float32),
                   scan="cudnn")


@pytest.mark.parametrize("option, value", [("grad", "manual"), ("remat", True),
                                           ("truncate", 2), ("unroll", 2),
                                           ("resets", np.zeros((2, 4), bool))])
def test_unsupported_option_is_named(option, value):
    cell = cells.lstm(H)
    with pytest.raises(ValueError, match=f"cannot be combined with {option}="):
        rnnjax.run(cell, _params(jnp.float32), jnp.ones((2, 4, F), jnp.float32),
                   scan="cudnn", **{option: value})


def test_other_cells_and_dtypes_are_refused():
    xs = jnp.ones((2, 4, F), jnp.float32)
    ln = cells.lstm(H, layer_norm=True)
    with pytest.raises(ValueError, match="no layer norm.*ln_c_bias"):
        rnnjax.run(ln, ln.init(jax.random.key(0), F), xs, scan="cudnn")
    gru = cells.gru(H)
    with pytest.raises(ValueError, match="plain LSTM's"):
        rnnjax.run(gru, gru.init(jax.random.key(0), F), xs, scan="cudnn")
    plain = cells.lstm(H)

    def step(w, carry, x):  # the LSTM's params, other equations (a coupled forget gate)
        new, _ = plain.step(w, carry, x)
        return new._replace(h=0.5 * new.h), 0.5 * new.h

    other = plain._replace(step=step, backward=None)
    with pytest.raises(ValueError, match="step computes another h"):
        rnnjax.run(other, _params(jnp.float32), xs, scan="cudnn")
    with pytest.raises(ValueError, match="float32 only.*float64"):
        rnnjax.run(plain, _params(jnp.float64), xs, scan="cudnn")
    with jax.default_matmul_precision("bfloat16"), pytest.raises(
            ValueError, match=r"default_matmul_precision\('bfloat16'\)"):
        rnnjax.run(plain, _params(jnp.float32), xs, scan="cudnn")


def test_auto_never_picks_cudnn_on_cpu(monkeypatch):
    cell = cells.lstm(H)
    p, xs = _params(jnp.float32), jnp.ones((2, 4, F), jnp.float32)
    assert not cudnn.choose_cudnn(cell, p, xs)
    np.testing.assert_array_equal(rnnjax.run(cell, p, xs)[0],
                                  rnnjax.run(cell, p, xs, scan="sequential")[0])
    # where the benchmark has put the backend in the set, auto takes it for supported calls
    monkeypatch.setattr(cudnn, "CUDNN_AUTO_BACKENDS", frozenset({"cpu"}))
    monkeypatch.setattr(cudnn, "cudnn_available", lambda: True)
    assert cudnn.choose_cudnn(cell, p, xs)
    assert resolve(cell, p, xs, 4)[0].engine == "cudnn"
    assert resolve(cell, p, xs, 4, truncate=2)[0].engine == "manual"  # not cuDNN's option
    assert not cudnn.choose_cudnn(cells.gru(H), cells.gru(H).init(jax.random.key(0), F), xs)


def test_bad_flat_weights_named():
    with pytest.raises(ValueError, match=r"weights must have shape \(200,\).*got \(7,\)"):
        cudnn.from_cudnn(jnp.zeros(7), F, H)
    with pytest.raises(ValueError, match=r"params\['b'\] must have shape \(20,\)"):
        cudnn.to_cudnn({"W_xh": jnp.zeros((20, F)), "W_hh": jnp.zeros((20, H)),
                        "b": jnp.zeros(3)})


def test_step_check_without_a_cpu_backend(monkeypatch):
    """JAX_PLATFORMS may leave no CPU backend: the step check then runs where it is."""
    real = jax.devices

    def devices(backend=None):
        if backend == "cpu":
            raise RuntimeError("Unknown backend cpu")
        return real(backend)

    monkeypatch.setattr(jax, "devices", devices)
    cudnn._step_error.cache_clear()
    assert cudnn._step_error(cells.lstm(H), F, H) is None
    assert "computes another h" in cudnn._step_error(
        cells.lstm(H)._replace(step=lambda w, c, x: (c, c.h)), F, H)
    cudnn._step_error.cache_clear()
