"""Smoke test: every benchmark suite runs on tiny sizes (``--quick``), so none can rot;
plus the checkpointed (``remat``) scan against the plain one."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from benchmarks import __main__ as bench_main
from benchmarks import peers, summary
from rnnjax import cells
from rnnjax.commands import bench as bench_cmd

# the quick runs of the other branches' suites take tens of seconds: marked slow
SLOW = ("scan", "orthogonal")
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
