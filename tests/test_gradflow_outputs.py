"""Gradient-flow outputs: norms that do not underflow before float64's range, styles
that tell cells apart, |s - 1| for singular values, --checkpoint with --T."""

import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import analysis, cells, cli
from rnnjax.experiments import gradflow as gf
from rnnjax.plots.figures import cell_style
from rnnjax.plots.gradflow import plot_singular_values, sv_deviation
from rnnjax.training.runner import Config, train


def _log10_reference(W, U, b, xs, v):
    """log10 ||dL/dh_t|| for L = v . h_T of h_t = tanh(U x_t + W h_{t-1} + b), from
    dL/dh_t = W^T ((1 - h_{t+1}^2) * dL/dh_{t+1}) propagated as a unit vector and a
    log scale (never under- or overflows)."""
    h, hs = np.zeros(W.shape[0]), []
    for x in xs:
        h = np.tanh(U @ x + W @ h + b)
        hs.append(h)
    T = len(xs)
    logn, u = np.zeros(T), v / np.linalg.norm(v)
    logn[-1] = np.log10(np.linalg.norm(v))
    for t in range(T - 2, -1, -1):
        u = W.T @ ((1 - hs[t + 1] ** 2) * u)
        s = np.linalg.norm(u)
        u, logn[t] = u / s, logn[t + 1] + np.log10(s)
    return logn


def test_tanh_elman_T2000_norms_do_not_underflow_before_float64_range():
    rng = np.random.default_rng(0)
    H, F, T = 8, 2, 2000
    W = 0.8 * np.linalg.qr(rng.normal(size=(H, H)))[0]
    U, b = 0.5 * rng.normal(size=(H, F)), np.zeros(H)
    xs, v = rng.normal(size=(T, F)), rng.normal(size=H)
    ref = _log10_reference(W, U, b, xs, v)
    representable = ref > -300
    # the range the naive sqrt(sum g^2) loses (it is 0 below ~1e-154) is covered
    assert ((ref < -160) & representable).sum() > 300 and (~representable).sum() > 100
    cell = cells.elman(H, activation="tanh")
    params = {"W_xh": jnp.asarray(U), "W_hh": jnp.asarray(W), "b": jnp.asarray(b)}
    got = np.asarray(analysis.hidden_grad_norms(cell, params, jnp.asarray(xs),
                                                lambda ys: ys[-1] @ jnp.asarray(v)).h)
    assert got.dtype == np.float64
    assert np.all(np.isfinite(got)) and np.all(got[representable] > 0)
    np.testing.assert_allclose(np.log10(got[representable]), ref[representable], atol=1e-8)


def test_scaled_norm_equals_the_norm_and_survives_tiny_values():
    g = np.array([[3e-200, -4e-200], [3.0, 4.0]])
    np.testing.assert_allclose(np.asarray(analysis.scaled_norm(jnp.asarray(g))),
                               [5e-200, 5.0], rtol=1e-15)
    assert float(jnp.sqrt(jnp.sum(jnp.asarray(g[0]) ** 2))) == 0.0  # the naive form
    assert float(analysis.scaled_norm(jnp.zeros((3,)))) == 0.0


def test_styles_tell_cells_apart_and_keep_a_cell_s_colour():
    names = list(cells.REGISTRY)
    pairs = [(cell_style(n)["color"], cell_style(n)["marker"]) for n in names]
    assert len(set(pairs)) == len(names)
    assert len({cell_style(n)["color"] for n in names}) == len(names)  # one colour each
    for n in ("exprnn", "scornn", "householder"):
        assert cell_style(f"{n} (trained)")["color"] == cell_style(n)["color"]
        assert cell_style(f"{n} (trained)")["ls"] == "--" and cell_style(n)["ls"] == "-"


def test_singular_values_are_plotted_as_distance_from_one(tmp_path):
    A = np.random.default_rng(1).normal(size=(6, 6))
    Q = np.asarray(jax.scipy.linalg.expm(jnp.asarray(A - A.T)))
    sv = np.linalg.svd(Q, compute_uv=False)
    eps = np.finfo(np.float64).eps
    dev = sv_deviation(sv)
    assert np.all(dev >= eps) and np.all(dev <= 8 * eps)  # flat at the floor
    np.testing.assert_allclose(sv_deviation([2.0, 0.5, 1.0]), [1.0, 0.5, eps])
    path = plot_singular_values({"exprnn": sv, "elman": [2.0, 0.5]}, str(tmp_path / "s.png"))
    assert os.path.getsize(path) > 1000


def test_checkpoint_with_T_is_honoured_or_refused(tmp_path, capsys):
    run = str(tmp_path / "run")
    train(Config(task="copy", cell="elman", T=3, hidden=4, batch=4, eval_batch=4, steps=2,
                 log_every=2, checkpoint_every=2, out=run), progress=False)
    length = 3 + 20  # the copy task's sequence: T + 20 steps
    # a different --T is refused with the reason, before anything is written
    out = str(tmp_path / "gf")
    assert cli.main(["gradflow", "--checkpoint", run, "--T", "50", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--T 50 cannot be honoured" in err and f"length at {length}" in err
    assert not os.path.exists(out)
    # left out (or equal): the task's length
    res = gf.gradflow(None, None, out, checkpoint=run, lyap_steps=10, lyap_k=2,
                      print_fn=lambda *a: None)
    assert {r["T"] for r in res["rows"]} == {length}
    assert len(res["rows"]) == 2 * length
    # an .npz honours every --T
    cell = cells.make("elman", 4)
    npz = str(tmp_path / "p.npz")
    analysis.save_params_npz(npz, "elman", 4, cell.init(jax.random.key(0), 2), 2)
    res = gf.gradflow(None, [5, 9], str(tmp_path / "gf2"), checkpoint=npz, lyap_steps=10,
                      lyap_k=2, print_fn=lambda *a: None)
    assert sorted({(r["stage"], r["T"]) for r in res["rows"]}) == \
        [("init", 5), ("init", 9), ("trained", 5), ("trained", 9)]
