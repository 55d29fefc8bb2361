"""rnnjax.interop: parity with PyTorch nn.RNN/LSTM/GRU and Flax linen LSTMCell/GRUCell.

PyTorch tests skip (with a reason) when torch is absent; the Flax tests still run.
All comparisons are float32 at atol 1e-5.
"""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import cells, interop, run

ATOL = 1e-5
MODULES = {"rnn_tanh": ("RNN", {"nonlinearity": "tanh"}),
           "rnn_relu": ("RNN", {"nonlinearity": "relu"}),
           "lstm": ("LSTM", {}), "gru": ("GRU", {})}
LENGTHS = np.array([6, 2, 1, 5, 3])  # unsorted: enforce_sorted=False


@pytest.fixture(autouse=True)
def _full_float32_matmuls():
    """Full float32 matmuls in JAX (no TF32/bf16 passes on accelerators), so 1e-5 holds
    wherever the tests run; CPU is unaffected."""
    with jax.default_matmul_precision("float32"):
        yield


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="PyTorch parity tests need torch installed")


def _module(torch, mode, seed=0, **kw):
    name, extra = MODULES[mode]
    torch.manual_seed(seed)
    return getattr(torch.nn, name)(**extra, **kw)


def _torch_run(torch, m, x, lengths=None, state=None, batch_first=False):
    """Outputs padded with zeros and the final state tuple of module ``m``."""
    xt = torch.from_numpy(x)
    if lengths is not None:
        xt = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.from_numpy(lengths), batch_first=batch_first, enforce_sorted=False)
    out, st = m(xt, state)
    if lengths is not None:
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=batch_first, total_length=x.shape[1 if batch_first else 0])
    st = st if isinstance(st, tuple) else (st,)
    return out.detach().numpy(), [s.detach().numpy() for s in st]


def _apply(layer, params, x, carry=None, lengths=None, time_major=False):
    """``layer.apply`` compiled as one program (faster to compile than one per layer)."""
    f = jax.jit(lambda p, x, c, l: layer.apply(p, x, carry=c, lengths=l,
                                                time_major=time_major))
    return f(params, x, carry, lengths)


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.mark.parametrize("mode, batch_first", [("rnn_tanh", True), ("rnn_relu", False),
                                               ("lstm", True), ("gru", False)])
def test_packed_bidirectional_two_layers_match_torch(torch, mode, batch_first):
    """Packed variable lengths (unsorted), 2 layers, both directions; batch_first is
    alternated across modes (the layout is handled by the engine, not the cell; the
    bias=False test covers the other layout for every mode)."""
    B, T, F, H = len(LENGTHS), 6, 3, 4
    m = _module(torch, mode, input_size=F, hidden_size=H, num_layers=2, bidirectional=True,
                batch_first=batch_first)
    x = np.random.default_rng(1).normal(size=(B, T, F) if batch_first else (T, B, F))
    x = x.astype(np.float32)
    want_y, want_state = _torch_run(torch, m, x, LENGTHS, batch_first=batch_first)

    layer, params = interop.from_torch_module(m)
    ys, finals = _apply(layer, params, x, lengths=LENGTHS, time_major=not batch_first)
    ys = np.asarray(ys)
    assert ys.shape == want_y.shape == ((B, T, 2 * H) if batch_first else (T, B, 2 * H))
    np.testing.assert_allclose(ys, want_y, atol=ATOL)  # torch pads with zeros too
    # padded positions are exactly zero in rnnjax
    t = np.arange(T)
    pad = t[None, :] >= LENGTHS[:, None]  # (B, T)
    ys_bt = ys if batch_first else ys.transpose(1, 0, 2)
    assert pad.any() and np.all(ys_bt[pad] == 0.0)
    got_state = _as_tuple(interop.carry_to_torch(finals))
    assert len(got_state) == len(want_state) == (2 if mode == "lstm" else 1)
    for g, w in zip(got_state, want_state):
        assert g.shape == w.shape == (4, B, H)  # (num_layers * 2, B, H)
        np.testing.assert_allclose(np.asarray(g), w, atol=ATOL)


@pytest.mark.parametrize("mode", list(MODULES))
def test_initial_state_unidirectional_matches_torch(torch, mode):
    """Non-zero h_0 (and c_0) via carry_from_torch, full-length sequences."""
    B, T, F, H, L = 3, 5, 2, 4, 3
    m = _module(torch, mode, input_size=F, hidden_size=H, num_layers=L)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(T, B, F)).astype(np.float32)
    h0 = rng.normal(size=(L, B, H)).astype(np.float32)
    c0 = rng.normal(size=(L, B, H)).astype(np.float32)
    state = (torch.from_numpy(h0), torch.from_numpy(c0)) if mode == "lstm" \
        else torch.from_numpy(h0)
    want_y, want_state = _torch_run(torch, m, x, state=state)
    layer, params = interop.from_torch_module(m)
    carry = interop.carry_from_torch(h0, c0 if mode == "lstm" else None, num_layers=L)
    ys, finals = _apply(layer, params, x, carry=carry, time_major=True)
    np.testing.assert_allclose(np.asarray(ys), want_y, atol=ATOL)
    for g, w in zip(_as_tuple(interop.carry_to_torch(finals)), want_state):
        np.testing.assert_allclose(np.asarray(g), w, atol=ATOL)


@pytest.mark.parametrize("mode", list(MODULES))
def test_bias_false_matches_torch_and_exports(torch, mode):
    B, T, F, H = 2, 4, 3, 5
    m = _module(torch, mode, input_size=F, hidden_size=H, num_layers=2, bidirectional=True,
                bias=False, batch_first=True)
    x = np.random.default_rng(3).normal(size=(B, T, F)).astype(np.float32)
    want_y, want_state = _torch_run(torch, m, x, batch_first=True)
    layer, params = interop.from_torch_module(m)
    for p in params:
        for d in ("fwd", "bwd"):
            assert not np.any(np.asarray(p[d]["b"]))
    ys, finals = _apply(layer, params, x)
    np.testing.assert_allclose(np.asarray(ys), want_y, atol=ATOL)
    for g, w in zip(_as_tuple(interop.carry_to_torch(finals)), want_state):
        np.testing.assert_allclose(np.asarray(g), w, atol=ATOL)
    sd = interop.to_torch(params, mode=mode, bias=False, as_tensors=True)
    assert list(sd) == list(m.state_dict())
    m2 = _module(torch, mode, seed=9, input_size=F, hidden_size=H, num_layers=2,
                 bidirectional=True, bias=False, batch_first=True)
    m2.load_state_dict(sd)
    np.testing.assert_allclose(_torch_run(torch, m2, x, batch_first=True)[0], want_y, atol=ATOL)


@pytest.mark.parametrize("mode", list(MODULES))
def test_export_round_trip(torch, mode):
    F, H = 3, 4
    m = _module(torch, mode, input_size=F, hidden_size=H, num_layers=2, bidirectional=True)
    sd = m.state_dict()
    layer, params = interop.from_torch_module(m)
    out = interop.to_torch(params, mode=mode)
    assert list(out) == list(sd)  # PyTorch's key order
    for k in sd:
        w = sd[k].numpy()
        if k.startswith("weight"):
            np.testing.assert_array_equal(out[k], w)
        elif k.startswith("bias_ih"):
            b_hh = sd[k.replace("bias_ih", "bias_hh")].numpy().copy()
            if mode == "gru":
                b_hh[2 * H:] = 0.0  # GRU keeps b_hn apart
            np.testing.assert_allclose(out[k], w + b_hh, rtol=0, atol=1e-7)
        else:  # bias_hh: zeros, except the GRU's n block
            want = np.zeros_like(w)
            if mode == "gru":
                want[2 * H:] = w[2 * H:]
            np.testing.assert_array_equal(out[k], want)
    # from_torch(to_torch(p)) is the identity on rnnjax params
    _, back = interop.from_torch(out, mode=mode, hidden_size=H, num_layers=2, bidirectional=True)
    jax.tree.map(np.testing.assert_array_equal, back, params)
    # a fresh module loaded (strict) with the exported weights computes the same function
    fresh = _module(torch, mode, seed=7, input_size=F, hidden_size=H, num_layers=2,
                    bidirectional=True)
    fresh.load_state_dict(interop.to_torch(params, mode=mode, as_tensors=True))
    x = np.random.default_rng(4).normal(size=(6, len(LENGTHS), F)).astype(np.float32)
    y0, s0 = _torch_run(torch, m, x, LENGTHS)
    y1, s1 = _torch_run(torch, fresh, x, LENGTHS)
    np.testing.assert_allclose(y1, y0, atol=ATOL)
    for a, b in zip(s1, s0):
        np.testing.assert_allclose(a, b, atol=ATOL)


def test_lstm_gradients_match_torch_autograd(torch):
    B, T, F, H = 3, 5, 2, 4
    m = _module(torch, "lstm", input_size=F, hidden_size=H, num_layers=2, bidirectional=True,
                batch_first=True)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(B, T, F)).astype(np.float32)
    lengths = np.array([5, 2, 4])
    wy = rng.normal(size=(B, T, 2 * H)).astype(np.float32)
    wc = rng.normal(size=(4, B, H)).astype(np.float32)

    xt = torch.from_numpy(x).requires_grad_(True)
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.from_numpy(lengths),
                                                     batch_first=True, enforce_sorted=False)
    out, (h_n, c_n) = m(packed)
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)
    loss = (out * torch.from_numpy(wy)).sum() + (c_n * torch.from_numpy(wc)).sum()
    loss.backward()

    layer, params = interop.from_torch_module(m)

    def f(params, x):
        ys, finals = layer.apply(params, x, lengths=lengths)
        return jnp.sum(ys * wy) + jnp.sum(interop.carry_to_torch(finals)[1] * wc)

    np.testing.assert_allclose(float(f(params, x)), loss.item(), rtol=1e-5)
    gp, gx = jax.jit(jax.grad(f, argnums=(0, 1)))(params, x)
    np.testing.assert_allclose(np.asarray(gx), xt.grad.numpy(), atol=ATOL)
    # weight gradients too; d/db = d/db_ih = d/db_hh since rnnjax's b is their sum
    np.testing.assert_allclose(np.asarray(gp[1]["bwd"]["W_hh"]),
                               m.weight_hh_l1_reverse.grad.numpy(), atol=ATOL)
    np.testing.assert_allclose(np.asarray(gp[0]["fwd"]["W_xh"]),
                               m.weight_ih_l0.grad.numpy(), atol=ATOL)
    np.testing.assert_allclose(np.asarray(gp[0]["fwd"]["b"]), m.bias_hh_l0.grad.numpy(),
                               atol=ATOL)


def test_from_torch_errors_name_key_expected_and_got(torch):
    m = _module(torch, "lstm", input_size=3, hidden_size=4, num_layers=2)
    sd = dict(m.state_dict())
    with pytest.raises(ValueError, match=r"mode must be one of .*got 'LSTMX'"):
        interop.from_torch(sd, mode="LSTMX", hidden_size=4)
    with pytest.raises(ValueError,
                       match=r"weight_ih_l0.*\(12, input_size\).*mode='gru'.*\(16, 3\)"):
        interop.from_torch(sd, mode="gru", hidden_size=4, num_layers=2)
    with pytest.raises(ValueError,
                       match=r"weight_ih_l0.*\(20, input_size\).*hidden_size=5.*\(16, 3\)"):
        interop.from_torch(sd, mode="lstm", hidden_size=5, num_layers=2)
    missing = {k: v for k, v in sd.items() if k != "bias_hh_l1"}
    with pytest.raises(ValueError, match=r"missing key 'bias_hh_l1'"):
        interop.from_torch(missing, mode="lstm", hidden_size=4, num_layers=2)
    with pytest.raises(ValueError, match=r"missing key 'weight_ih_l0_reverse'"):
        interop.from_torch(sd, mode="lstm", hidden_size=4, num_layers=2, bidirectional=True)
    with pytest.raises(ValueError, match=r"keys \['bias_hh_l1', 'bias_ih_l1', 'weight_hh_l1', "
                                         r"'weight_ih_l1'\].*num_layers=1"):
        interop.from_torch(sd, mode="lstm", hidden_size=4, num_layers=1)
    with pytest.raises(ValueError, match=r"keys \['bias_hh_l0'.*bias=False"):
        interop.from_torch(sd, mode="lstm", hidden_size=4, num_layers=2, bias=False)
    bad = dict(sd, weight_hh_l1=torch.zeros(16, 5))
    with pytest.raises(ValueError, match=r"state_dict\['weight_hh_l1'\] must have shape "
                                         r"\(16, 4\), got \(16, 5\)"):
        interop.from_torch(bad, mode="lstm", hidden_size=4, num_layers=2)
    with pytest.raises(ValueError, match=r"proj_size must be 0 .*, got 2"):
        interop.from_torch_module(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(TypeError, match=r"module must be a torch nn.RNN.*Linear"):
        interop.from_torch_module(torch.nn.Linear(3, 4))


def test_to_torch_errors():
    _, params = interop.from_torch(_numpy_gru_state_dict(), mode="gru", hidden_size=2)
    with pytest.raises(ValueError, match=r"bias=False needs zero biases.*params\[0\]"):
        interop.to_torch(params, mode="gru", bias=False)
    with pytest.raises(ValueError, match=r"params\[0\] must hold exactly \['W_hh', 'W_xh', "
                                         r"'b'\] for mode='lstm'.*'b_hn'"):
        interop.to_torch(params, mode="lstm")
    with pytest.raises(ValueError, match=r"W_hh'\] must have shape \(1\*H, H\).*\(6, 2\)"):
        interop.to_torch([{k: params[0][k] for k in ("W_xh", "W_hh", "b")}], mode="rnn_tanh")


def _numpy_gru_state_dict():
    rng = np.random.default_rng(0)
    return {"weight_ih_l0": rng.normal(size=(6, 3)), "weight_hh_l0": rng.normal(size=(6, 2)),
            "bias_ih_l0": rng.normal(size=(6,)), "bias_hh_l0": rng.normal(size=(6,))}


def test_gru_bias_split_by_equation():
    """b = b_ih + [b_hr, b_hz, 0], b_hn = b_hh[2H:], checked against the GRU equations
    written out in numpy (float64), no torch needed."""
    sd = _numpy_gru_state_dict()
    layer, params = interop.from_torch(sd, mode="gru", hidden_size=2)
    x = np.random.default_rng(1).normal(size=(4, 3))
    h = np.zeros(2)
    sig = lambda v: 1 / (1 + np.exp(-v))
    for t in range(4):
        gi = sd["weight_ih_l0"] @ x[t] + sd["bias_ih_l0"]
        gh = sd["weight_hh_l0"] @ h + sd["bias_hh_l0"]
        r, z = sig(gi[:2] + gh[:2]), sig(gi[2:4] + gh[2:4])
        n = np.tanh(gi[4:] + r * gh[4:])
        h = (1 - z) * n + z * h
    p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    ys, finals = layer.apply(p64, jnp.asarray(x, jnp.float64))
    np.testing.assert_allclose(np.asarray(finals[0].h), h, rtol=1e-12)
    np.testing.assert_allclose(np.asarray(ys[-1]), h, rtol=1e-12)


def test_interop_imports_and_converts_without_torch():
    code = ("import sys; sys.modules['torch'] = None\n"
            "import numpy as np, rnnjax\n"
            "from rnnjax import interop\n"
            "sd = {'weight_ih_l0': np.ones((3, 2), np.float32),"
            " 'weight_hh_l0': np.ones((3, 3), np.float32)}\n"
            "layer, p = interop.from_torch(sd, mode='RNN_TANH', hidden_size=3, bias=False)\n"
            "out = interop.to_torch(p, mode='rnn_tanh', bias=False)\n"
            "assert sorted(out) == sorted(sd)\n"
            "assert 'torch' not in type(out['weight_ih_l0']).__module__\n"
            "print('ok')\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


# ----------------------------------------------------------------------------- Flax

def _flax_rnn(kind, H):
    import flax.linen as fnn

    cell = {"lstm": fnn.LSTMCell, "optimized_lstm": fnn.OptimizedLSTMCell,
            "gru": fnn.GRUCell}[kind](features=H)
    return fnn.RNN(cell, return_carry=True)


_FLAX_CASES = {}


def _flax_case(kind, B=4, T=6, F=3, H=5):
    """(jitted nn.RNN apply, variables, x, H), built once per kind."""
    if kind not in _FLAX_CASES:
        rnn = _flax_rnn(kind, H)
        rng = np.random.default_rng(6)
        x = jnp.asarray(rng.normal(size=(B, T, F)), jnp.float32)
        # names and shapes from Flax itself (eval_shape: no compile), random values
        # everywhere (Flax's own init puts biases at zero, which would hide bias mistakes)
        shapes = jax.eval_shape(rnn.init, jax.random.key(0), x)
        variables = jax.tree.map(
            lambda s: jnp.asarray(0.5 * rng.normal(size=s.shape), s.dtype), shapes)
        _FLAX_CASES[kind] = (jax.jit(rnn.apply), variables, x, H)
    return _FLAX_CASES[kind]


@pytest.mark.parametrize("kind", ["lstm", "optimized_lstm", "gru"])
def test_flax_parity_full_length(kind):
    apply, variables, x, H = _flax_case(kind)
    carry, want = apply(variables, x)
    is_lstm = kind != "gru"
    conv = interop.from_flax_lstm if is_lstm else interop.from_flax_gru
    params = conv(variables)
    cell = cells.lstm(H) if is_lstm else cells.gru(H)
    ys, final = run(cell, params, x)
    np.testing.assert_allclose(np.asarray(ys), np.asarray(want), atol=ATOL)
    if is_lstm:  # Flax's LSTM carry is (c, h)
        np.testing.assert_allclose(np.asarray(final.c), np.asarray(carry[0]), atol=ATOL)
        np.testing.assert_allclose(np.asarray(final.h), np.asarray(carry[1]), atol=ATOL)
    else:
        np.testing.assert_allclose(np.asarray(final.h), np.asarray(carry), atol=ATOL)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_flax_parity_seq_lengths(kind):
    """Flax nn.RNN(seq_lengths=L) keeps running the cell over the padding (its outputs
    there are not zero) and returns, with return_carry, the carry after step L-1 (the
    carry of step -1, i.e. the LAST, for L = 0).  rnnjax freezes the carry at t >= L.
    So valid outputs and final carries (L >= 1) are compared; padding is zero in rnnjax."""
    apply, variables, x, H = _flax_case(kind)
    lengths = jnp.array([6, 1, 3, 4])
    carry, want = apply(variables, x, seq_lengths=lengths)
    cell = cells.lstm(H) if kind == "lstm" else cells.gru(H)
    params = (interop.from_flax_lstm if kind == "lstm" else interop.from_flax_gru)(variables)
    ys, final = run(cell, params, x, lengths=lengths)
    valid = np.arange(x.shape[1])[None, :] < np.asarray(lengths)[:, None]
    np.testing.assert_allclose(np.asarray(ys)[valid], np.asarray(want)[valid], atol=ATOL)
    assert np.all(np.asarray(ys)[~valid] == 0.0)
    h_flax = carry[1] if kind == "lstm" else carry
    np.testing.assert_allclose(np.asarray(final.h), np.asarray(h_flax), atol=ATOL)
    if kind == "lstm":
        np.testing.assert_allclose(np.asarray(final.c), np.asarray(carry[0]), atol=ATOL)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_to_flax_round_trip(kind):
    apply, variables, x, H = _flax_case(kind)
    frm, to = ((interop.from_flax_lstm, interop.to_flax_lstm) if kind == "lstm"
               else (interop.from_flax_gru, interop.to_flax_gru))
    back = to(frm(variables))
    jax.tree.map(np.testing.assert_array_equal, back, variables["params"]["cell"])
    # and rnnjax params made from scratch run identically in Flax
    G = 4 if kind == "lstm" else 3
    cell = cells.lstm(H) if kind == "lstm" else cells.gru(H)
    rng = np.random.default_rng(8)
    p = {"W_xh": rng.normal(size=(G * H, x.shape[-1])), "W_hh": rng.normal(size=(G * H, H)),
         "b": rng.normal(size=(G * H,))}
    if kind == "gru":
        p["b_hn"] = rng.normal(size=(H,))
    p = jax.tree.map(lambda a: jnp.asarray(0.5 * a, jnp.float32), p)
    _, want = apply({"params": {"cell": to(p)}}, x)
    np.testing.assert_allclose(np.asarray(run(cell, p, x)[0]), np.asarray(want), atol=ATOL)


def test_flax_errors():
    _, variables, _, _ = _flax_case("gru")
    with pytest.raises(ValueError, match=r"LSTMCell params must have a 'ii' entry, got "
                                         r"\['hn', 'hr', 'hz', 'in', 'ir', 'iz'\]"):
        interop.from_flax_lstm(variables)
    p = dict(variables["params"]["cell"])
    p["hz"] = {"kernel": jnp.zeros((5, 4))}
    with pytest.raises(ValueError, match=r"params\['hz'\]\['kernel'\] must have 5 output "
                                         r"features like 'hr', got shape \(5, 4\)"):
        interop.from_flax_gru(p)
    with pytest.raises(ValueError, match=r"rnnjax lstm params with keys \['W_hh', 'W_xh', "
                                         r"'b'\], got \['W_hh', 'W_xh', 'b', 'b_hn'\]"):
        interop.to_flax_lstm(interop.from_flax_gru(variables))
