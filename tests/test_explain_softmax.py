"""rnnjax bptt-explain with a softmax cross-entropy output over K classes."""

import contextlib
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.analysis import explain
from rnnjax.cli import main


def _spec(K=4, H=3, F=2, T=5, label=2, seed=0):
    rng = np.random.default_rng(seed)
    r = lambda *s: rng.standard_normal(s).round(3).tolist()  # noqa: E731
    return {"inputs": r(T, F), "W_xh": r(H, F), "W_hh": r(H, H), "b_h": r(H), "W_ho": r(K, H),
            "b_o": r(K), "h0": r(H), "label": label, "loss": "softmax"}


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_softmax_matches_jax_grad(activation):
    spec = {**_spec(), "activation": activation}
    r = explain.explain(spec)
    p = {k: jnp.array(spec[k], jnp.float64) for k in ("W_xh", "W_hh", "b_h", "W_ho", "b_o",
                                                      "h0")}
    xs = jnp.array(spec["inputs"], jnp.float64)

    def loss(p):
        ys, _ = rnnjax.run(cells.elman(3, activation), {"W_xh": p["W_xh"], "W_hh": p["W_hh"],
                                                        "b": p["b_h"]}, xs,
                           carry=rnnjax.HiddenState(p["h0"]))
        return -jax.nn.log_softmax(p["W_ho"] @ ys[-1] + p["b_o"])[spec["label"]]

    assert abs(float(loss(p)) - r["loss"]) <= 1e-12
    logit = np.array(r["logit"])
    np.testing.assert_allclose(r["y"], np.exp(logit) / np.exp(logit).sum(), rtol=1e-12)
    g = jax.grad(loss)(p)
    for k in ("W_xh", "W_hh", "b_h", "W_ho", "b_o", "h0"):
        np.testing.assert_allclose(np.array(r["grads"][k]), g[k], rtol=1e-10, atol=1e-12)


def test_softmax_cli_and_refusals(tmp_path):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(_spec()))
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["bptt-explain", str(path)]) == 0
    out = buf.getvalue()
    r = explain.explain(_spec())
    assert "y = softmax(W_ho h_T + b_o)" in out and "label class 2 (l = e_2)" in out
    assert f"Loss: -log y_2 = {r['loss']:.3f}" in out
    with pytest.raises(ValueError, match=r"label must be a class index in \[0, 4\).*got 4"):
        explain.explain(_spec(label=4))
    with pytest.raises(ValueError, match=r"label must be a class index.*got 1.5"):
        explain.explain({**_spec(), "label": 1.5})
    with pytest.raises(ValueError, match=r"b_o must have shape \(4,\)"):
        explain.explain({**_spec(), "b_o": [0.0, 1.0]})
