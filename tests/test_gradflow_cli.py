"""``rnnjax gradflow``: files written, one CSV row per (cell, T, t), values checked."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import analysis, cells, cli
from rnnjax.cli import gradflow as gf


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_cli_writes_csv_figures_summary(tmp_path, capsys):
    out = str(tmp_path / "run")
    rc = cli.main(["gradflow", "--cells", "elman,lstm,nosuchcell", "--T", "5,9",
                   "--hidden", "6", "--batch", "2", "--features", "3", "--lyap-steps", "20",
                   "--lyap-k", "3", "--out", out])
    assert rc == 0
    assert "nosuchcell" in capsys.readouterr().out  # skipped with a note
    for name in ("gradnorm_T5.png", "gradnorm_T9.png", "singular_values.png", "lyapunov.png",
                 "summary.md", "gradflow.csv"):
        path = os.path.join(out, name)
        assert os.path.getsize(path) > 0, name
    with open(os.path.join(out, "gradnorm_T5.png"), "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    rows = _read_csv(os.path.join(out, "gradflow.csv"))
    keys = [(r["cell"], r["T"], r["t"]) for r in rows]
    assert len(keys) == len(set(keys)) == 2 * (5 + 9)  # one row per (cell, T, t)
    assert {r["t"] for r in rows if r["T"] == "9"} == {str(t) for t in range(1, 10)}
    assert all(r["grad_norm_c"] == "" for r in rows if r["cell"] == "elman")
    assert all(r["grad_norm_c"] != "" for r in rows if r["cell"] == "lstm")

    # the CSV holds exactly what hidden_grad_norms gives for the documented setup
    jax.config.update("jax_enable_x64", True)
    k_p, k_x, k_v = jax.random.split(jax.random.key(0), 3)
    xs = jax.random.normal(k_x, (2, 20, 3), jnp.float64)[:, :9]
    cell = cells.make("lstm", 6)
    p = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(k_p, 3))
    v = jax.random.normal(k_v, (6,), jnp.float64)
    v = v / jnp.linalg.norm(v)
    want = analysis.hidden_grad_norms(cell, p, xs, lambda ys: jnp.mean(ys[:, -1] @ v))
    got_h = [float(r["grad_norm"]) for r in rows if r["cell"] == "lstm" and r["T"] == "9"]
    got_c = [float(r["grad_norm_c"]) for r in rows if r["cell"] == "lstm" and r["T"] == "9"]
    np.testing.assert_allclose(got_h, want.h, rtol=1e-12)
    np.testing.assert_allclose(got_c, want.c, rtol=1e-12)

    summary = open(os.path.join(out, "summary.md")).read()
    assert "| elman | init | 9 | h |" in summary and "| lstm | init | 5 | c |" in summary
    # the measured credit ratio and Jacobian norm are rnnjax.analysis's
    cr = analysis.credit_assignment(cell, p, xs, lambda ys: jnp.mean(ys[:, -1] @ v), 0, 8,
                                    readout="carry_or_step")
    rows_ = {f: [c.strip() for c in next(r for r in summary.splitlines() if r.startswith(
        f"| lstm | init | 9 | {f} |")).split("|")[1:-1]] for f in ("h", "c")}
    assert rows_["h"][4] == "0, 8"
    assert float(rows_["h"][5]) == pytest.approx(cr["ratio"]["h"], rel=1e-3)
    assert float(rows_["h"][6]) == pytest.approx(cr["jacobian_norm"], rel=1e-3)
    # dL/dc_T = 0 (c_T acts only through later steps): no ratio, and not an underflow
    assert cr["ratio"]["c"] is None and rows_["c"][5] == "n/a (0 at r)"
    assert os.path.getsize(os.path.join(out, "credit_T.png")) > 0


def test_decay_fit_closed_form():
    a, T = 0.7, 30
    norms = 2.0 * a ** (T - np.arange(1, T + 1))
    ratio, rate = gf.decay_fit(norms)
    np.testing.assert_allclose(ratio, a ** (T - 1), rtol=1e-12)
    np.testing.assert_allclose(rate, a, rtol=1e-12)
    norms[:5] = 0.0  # underflow at the start: left out of the fit, ratio 0
    ratio, rate = gf.decay_fit(norms)
    assert ratio == 0.0
    np.testing.assert_allclose(rate, a, rtol=1e-12)


def test_checkpoint_npz_trained_vs_init(tmp_path):
    cell = cells.make("elman", 5)
    params = cell.init(jax.random.key(3), 2)
    params = {**params, "W_hh": 0.5 * params["W_hh"]}  # "trained": a different W
    path = str(tmp_path / "p.npz")
    analysis.save_params_npz(path, "elman", 5, params, 2)
    name, hidden, kw, back = analysis.load_params_npz(path)
    assert (name, hidden, kw) == ("elman", 5, {})
    jax.tree.map(np.testing.assert_array_equal, back, params)
    out = str(tmp_path / "ck")
    res = gf.gradflow(None, [7], out, checkpoint=path, lyap_steps=10, lyap_k=2,
                      print_fn=lambda *a: None)
    stages = {(r["stage"]) for r in res["rows"]}
    assert stages == {"init", "trained"}
    rows = _read_csv(os.path.join(out, "gradflow.csv"))
    assert len(rows) == 2 * 7  # the npz analysis runs the first T, init and trained
    trained = [s for s in res["summary"] if s.get("stage") == "trained" and "orth_error" in s]
    np.testing.assert_allclose(trained[0]["sv_max"],
                               np.linalg.svd(np.asarray(params["W_hh"]), compute_uv=False)[0],
                               rtol=1e-6)


def test_bad_arguments(tmp_path, capsys):
    assert cli.main(["gradflow", "--T", "10,x", "--out", str(tmp_path)]) == 2
    assert "--T" in capsys.readouterr().err
    assert cli.main(["gradflow", "--cells", "nope", "--out", str(tmp_path)]) == 2
    assert "registered" in capsys.readouterr().err
    with pytest.raises(ValueError, match="hidden"):
        gf.gradflow(["elman"], [5], str(tmp_path), hidden=0)
