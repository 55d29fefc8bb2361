"""Smoke test: every benchmark suite runs on tiny sizes (``--quick``), so none can rot;
plus the checkpointed (``remat``) scan against the plain one."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from benchmarks import __main__ as bench_main
from benchmarks import device, peers, summary
from rnnjax import cells
from rnnjax.cli import bench as bench_cmd

# the quick runs of the other branches' suites take tens of seconds: marked slow
SLOW = ("scan", "orthogonal", "device", "seeds", "chunked")
SUITES = [pytest.param(s, marks=pytest.mark.slow) if s in SLOW else s
          for s in bench_main.SUITES]


@pytest.mark.parametrize("suite", SUITES)
def test_suite_quick(suite, tmp_path, capsys):
    out = tmp_path / "r.jsonl"
    bench_main.main([suite, "--quick", "--out", str(out)])
    lines = [json.loads(l) for l in out.read_text().splitlines()]
    assert lines, f"{suite} wrote no JSON line"
    for rec in lines:
        assert rec["machine"]["cores"] >= 1 and rec["machine"]["jax"] == jax.__version__
    if suite == "peers":
        libs = {r["library"] for r in lines}
        assert "rnnjax" in libs
        ours = [r for r in lines if r["library"] == "rnnjax" and "over_best_peer" in r]
        for r in ours:  # the ratio is what the rows say
            best = [p for p in lines if p["library"] == r["best_peer"]
                    and (p["cell"], p["mode"]) == (r["cell"], r["mode"])][0]
            assert r["over_best_peer"] == pytest.approx(r["median_s"] / best["median_s"])
    text = summary.summarize(lines)
    assert f"### {lines[0].get('bench', '?')}" in text


def test_absent_peer_is_a_note(monkeypatch, capsys):
    real = peers.have
    monkeypatch.setattr(peers, "have", lambda m: False if m == "torch" else real(m))
    recs = peers.bench("gru", 2, 3, 3, 4, "fwd", repeats=1, notes=set())
    assert "torch not installed" in capsys.readouterr().out
    assert "torch" not in {r["library"] for r in recs} and "rnnjax" in {
        r["library"] for r in recs}


def test_matmul_flops_formula():
    # LSTM, B=64, T=256, F=32, H=128: 2*64*256*4*128*(32+128) forward, x3 with backward
    assert peers.matmul_flops("lstm", 64, 256, 32, 128, "fwd") == 2 * 64 * 256 * 512 * 160
    assert peers.matmul_flops("gru", 1, 1, 2, 3, "fwdbwd") == 3 * 2 * 9 * 5


def test_cli_bench_error_outside_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(bench_cmd.importlib, "import_module",
                        lambda name: (_ for _ in ()).throw(ImportError(name)))
    with pytest.raises(FileNotFoundError, match="source checkout"):
        bench_cmd.load_benchmarks()


def test_unknown_suite_named():
    with pytest.raises(ValueError, match="suite must be one of .* got 'nope'"):
        bench_main.main(["nope"])


@pytest.mark.parametrize("T", [1, 7, 9])
def test_remat_equals_plain(T):
    """sqrt(T) chunked checkpointing (padded when T is not k*n) changes no value."""
    cell = cells.lstm(5)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 3))
    xs = jax.random.normal(jax.random.key(1), (2, T, 3), jnp.float64)
    lengths = jnp.array([T, max(T - 3, 0)])

    def loss(p, x, remat):
        ys, final = rnnjax.run(cell, p, x, lengths=lengths, reverse=True, remat=remat)
        return jnp.sum(ys ** 2) + jnp.sum(final.c * final.h)

    a = jax.grad(loss, (0, 1))(params, xs, False)
    b = jax.grad(loss, (0, 1))(params, xs, True)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss(params, xs, False), loss(params, xs, True), rtol=1e-13)


def test_device_without_gpu_says_so(tmp_path):
    """On CPU the cuDNN part is one line naming the backend, in the JSON lines and in the
    markdown under the device's name; bf16 is a row or, before cells take dtype, a line."""
    out, md = tmp_path / "r.jsonl", tmp_path / "device.md"
    device.main(["--quick", "--parts", "cudnn", "bf16", "--out", str(out), "--md", str(md)])
    recs = [json.loads(l) for l in out.read_text().splitlines()]
    text = md.read_text()
    assert text.startswith("## Device benchmark: cpu (cpu")
    cud = [r for r in recs if r["bench"] == "device-cudnn"]
    assert len(cud) == 1 and "no cuDNN on backend 'cpu'" in cud[0]["skipped"]
    assert cud[0]["skipped"] in text
    bf = [r for r in recs if r["bench"] == "device-bf16"]
    assert len(bf) == 1
    if "skipped" in bf[0]:
        assert "does not take dtype/param_dtype" in bf[0]["skipped"] and bf[0]["skipped"] in text
    else:  # the cells take dtype: bfloat16 within its rounding of float32
        assert bf[0]["loss_rel_diff"] < 5e-2 and "| lstm | 5 | 4 | 2 |" in text


def test_device_bf16_part_compares_like_with_like(monkeypatch, tmp_path):
    """The bf16 part's glue: a factory that ignores dtype gives the float32 cell twice,
    so loss and gradient differ by exactly zero."""
    real = device.cells.make
    monkeypatch.setattr(device.cells, "make",
                        lambda name, H, dtype=None, param_dtype=None, **kw: real(name, H, **kw))
    recs, notes = device.part_bf16(device.QUICK["bf16"], None)
    assert notes == [] and [r["cell"] for r in recs] == ["lstm"]
    assert recs[0]["loss_rel_diff"] == 0.0 and recs[0]["grad_rel_diff"] == 0.0
    assert recs[0]["bf16_over_f32"] == pytest.approx(
        recs[0]["bfloat16_s"] / recs[0]["float32_s"])


def test_device_rel_diff_and_md_folder(tmp_path):
    a = {"x": jnp.array([1.0, 2.0]), "y": jnp.array([[4.0]])}
    b = {"x": jnp.array([1.0, 2.5]), "y": jnp.array([[5.0]])}
    assert device.rel_diff(a, b) == pytest.approx(1.0 / 5.0)
    with pytest.raises(SystemExit):
        device.main(["--quick", "--md", str(tmp_path / "no" / "such" / "d.md")])


@pytest.mark.slow
def test_device_cudnn_part_glue_with_reference_kernel(monkeypatch):
    """The cuDNN part as it runs on a GPU, with JAX's reference LSTM standing in for the
    kernel: every variant agrees with the scan (jit-traced run(scan="cudnn") included)."""
    import jax.experimental.rnn as jrnn

    from rnnjax.engine import cudnn

    def fake(x, h0, c0, w, seq, F, H, layers, dropout, bidirectional):
        w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(w, F, H, layers, bidirectional)
        return jrnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, seq, F, H, layers, dropout,
                             bidirectional)

    monkeypatch.setattr(cudnn.jrnn, "lstm", fake)
    monkeypatch.setattr(cudnn, "cudnn_available", lambda: True)
    monkeypatch.setattr(device, "cudnn_available", lambda: True)
    recs, _ = device.part_cudnn(device.QUICK["cudnn"], None)
    assert [r["variant"] for r in recs] == ["sequential", "manual", "cudnn",
                                            "check lengths reverse=False",
                                            "check lengths reverse=True"]
    assert recs[0]["over_sequential"] == 1.0 and recs[0]["ys_rel_diff"] == 0.0
    for r in recs[1:]:
        assert r["ys_rel_diff"] < 1e-5 and r["grad_rel_diff"] < 1e-5, r
    assert "| 16 | 8 | check lengths reverse=True | - |" in device.markdown(
        {"cudnn": (recs, [], 1.0)}, 1.0, True)
