"""Optional peer tests: the modern cells against the reference packages themselves, in
float64 PyTorch, with the same weights.  Each skips cleanly unless its package is
importable: mambapy (alxndrTL/mamba.py, pure PyTorch) and xlstm (NX-AI/xlstm; its
mLSTM backends and vanilla sLSTM run on CPU).  Both install beside torch 2.13.0 with
``pip install --no-deps mambapy xlstm mlstm_kernels einops`` (their other requirements
are not imported by these modules).  flash-linear-attention is not covered: importing
``fla`` needs triton, which does not install here."""

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from helpers import to_f64
from rnnjax import cells


def _require(module):
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 - ImportError, or a backend that fails to load
        pytest.skip(f"{module} is not importable here ({type(e).__name__}: {e})")


torch = pytest.importorskip("torch")

B, T = 2, 7


def _t(a):
    return torch.from_numpy(np.array(a, np.float64))


def _set(param, value):
    with torch.no_grad():
        param.copy_(_t(value).reshape(param.shape))


def _mambapy_block(params, d_model, N, K, pscan):
    mamba = _require("mambapy.mamba")
    config = mamba.MambaConfig(d_model=d_model, n_layers=1, d_state=N, expand_factor=2,
                               d_conv=K, pscan=pscan)
    block = mamba.MambaBlock(config).double()
    _set(block.in_proj.weight, params["W_in"])
    _set(block.conv1d.weight, params["conv_w"])
    _set(block.conv1d.bias, params["conv_b"])
    _set(block.x_proj.weight, params["W_x"])
    _set(block.dt_proj.weight, params["W_dt"])
    _set(block.dt_proj.bias, params["dt_bias"])
    _set(block.A_log, params["A_log"])
    _set(block.D, params["D"])
    _set(block.out_proj.weight, params["W_out"])
    return block, config


@pytest.mark.parametrize("pscan", [False, True])
def test_mamba_block_equals_mambapy(pscan):
    D, N, K = 4, 3, 4
    cell = cells.mamba_block(D, state_size=N, conv_size=K)
    params = to_f64(cell.init(jax.random.key(0), D))
    params["dt_bias"] = params["dt_bias"] + 2.0
    block, config = _mambapy_block(params, D, N, K, pscan)
    assert config.dt_rank == params["W_dt"].shape[1]
    xs = jax.random.normal(jax.random.key(1), (B, T, D), jnp.float64)
    ys, final = rnnjax.run(cell, params, xs)
    with torch.no_grad():
        ref = block(_t(xs)).numpy()
        cache = (None, torch.zeros(B, 2 * D, K - 1, dtype=torch.float64))
        for t in range(T):
            y_t, cache = block.step(_t(xs[:, t]), cache)
    np.testing.assert_allclose(np.asarray(ys), ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(ys[:, -1]), y_t.numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.asarray(final.h).reshape(B, 2 * D, N), cache[0].numpy(),
                               rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(np.asarray(final.conv).reshape(B, K - 1, 2 * D),
                               np.swapaxes(cache[1].numpy(), 1, 2),
                               rtol=1e-12, atol=1e-12)


def test_s6_cell_equals_mambapy_ssm():
    D, N, K = 4, 3, 4
    block, config = _mambapy_block(
        to_f64(cells.mamba_block(D, state_size=N, conv_size=K).init(jax.random.key(2), D)),
        D, N, K, pscan=False)
    cell = cells.mamba(2 * D, state_size=N, dt_rank=config.dt_rank)
    params = {"W_x": block.x_proj.weight, "W_dt": block.dt_proj.weight,
              "dt_bias": block.dt_proj.bias, "A_log": block.A_log, "D": block.D}
    params = {k: jnp.asarray(v.detach().numpy()) for k, v in params.items()}
    xs = jax.random.normal(jax.random.key(3), (B, T, 2 * D), jnp.float64)
    ys, _ = rnnjax.run(cell, params, xs)
    with torch.no_grad():
        ref = block.ssm(_t(xs), None).numpy()
    np.testing.assert_allclose(np.asarray(ys), ref, rtol=1e-10, atol=1e-10)


def _mlstm_reference(params, E, NH):
    cell_mod = _require("xlstm.blocks.mlstm.cell")
    ref = cell_mod.mLSTMCell(cell_mod.mLSTMCellConfig(context_length=T, embedding_dim=E,
                                                      num_heads=NH)).double()
    _set(ref.igate.weight, params["W_i"])
    _set(ref.igate.bias, params["b_i"])
    _set(ref.fgate.weight, params["W_f"])
    _set(ref.fgate.bias, params["b_f"])
    _set(ref.outnorm.weight, params["norm"])
    return ref


def test_mlstm_equals_xlstm_mlstm_cell():
    E, NH, F = 6, 2, 3
    cell = cells.mlstm(E, NH)
    params = to_f64(cell.init(jax.random.key(4), F))
    ks = jax.random.split(jax.random.key(5), 3)
    params["W_i"] = jax.random.normal(ks[0], params["W_i"].shape, jnp.float64)
    params["W_f"] = jax.random.normal(ks[1], params["W_f"].shape, jnp.float64)
    params["norm"] = 0.1 * jax.random.normal(ks[2], params["norm"].shape, jnp.float64)
    ref = _mlstm_reference(params, E, NH)
    fresh = cells.mlstm(E, NH).init(jax.random.key(0), F)  # init as reset_parameters
    np.testing.assert_allclose(np.asarray(fresh["b_f"]),
                               _mlstm_reference(fresh, E, NH).fgate.bias.detach().numpy(),
                               rtol=1e-6)
    xs = jax.random.normal(jax.random.key(6), (B, T, F), jnp.float64)
    ys, final = rnnjax.run(cell, params, xs)
    q, k, v = (_t(np.asarray(xs) @ np.asarray(params[n]).T) for n in ("W_q", "W_k", "W_v"))
    with torch.no_grad():
        par = ref(q, k, v).numpy()  # parallel_stabilized_simple, eps 1e-6
        state = None
        for t in range(T):
            h_t, state = ref.step(q[:, t:t + 1], k[:, t:t + 1], v[:, t:t + 1],
                                  mlstm_state=state)
    np.testing.assert_allclose(np.asarray(ys[:, -1]), h_t[:, 0].numpy(), rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(np.asarray(final.C).reshape(state[0].shape), state[0].numpy(),
                               rtol=1e-10,
                               atol=1e-10)
    np.testing.assert_allclose(np.asarray(final.m), state[2].numpy()[..., 0, 0], rtol=1e-10,
                               atol=1e-10)
    # the reference's parallel form stabilises without the initial state's term: equal up
    # to the eps it adds (1e-5, the peer tolerance)
    np.testing.assert_allclose(np.asarray(ys), par, rtol=1e-5, atol=1e-5)
    par_ours = jax.vmap(lambda x: rnnjax.cells.xlstm.mlstm_parallel(params, x,
                                                                    num_heads=NH)[0])(xs)
    np.testing.assert_allclose(np.asarray(par_ours), par, rtol=1e-5, atol=1e-5)


def test_slstm_equals_xlstm_vanilla_slstm_cell():
    cell_mod = _require("xlstm.blocks.slstm.cell")
    H, NH, F = 6, 2, 3
    ref = cell_mod.sLSTMCell(cell_mod.sLSTMCellConfig(hidden_size=H, num_heads=NH,
                                                      backend="vanilla")).double()
    fresh = cells.slstm(H, NH).init(jax.random.key(0), F)
    np.testing.assert_allclose(np.asarray(fresh["b"]).reshape(-1),
                               ref._bias_.detach().numpy(), rtol=1e-6, atol=1e-6)
    cell = cells.slstm(H, NH, recurrent_init="standard")
    params = to_f64(cell.init(jax.random.key(7), F))
    params["b"] = params["b"] + 0.5 * jax.random.normal(jax.random.key(8), (4, H),
                                                        jnp.float64)
    _set(ref._recurrent_kernel_, np.asarray(params["R"]).reshape(NH, 4 * (H // NH), H // NH))
    _set(ref._bias_, np.asarray(params["b"]).reshape(-1))
    xs = jax.random.normal(jax.random.key(9), (B, T, F), jnp.float64)
    ys, final = rnnjax.run(cell, params, xs)
    with torch.no_grad():
        out, state = ref(_t(np.asarray(xs) @ np.asarray(params["W"]).T))  # (B, NH, S, DH)
    out = out.numpy().transpose(0, 2, 1, 3).reshape(B, T, H)
    np.testing.assert_allclose(np.asarray(ys), out, rtol=1e-10, atol=1e-10)
    for got, want in zip(final, state.numpy()):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-10)
