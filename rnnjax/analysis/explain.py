r"""Worked examples of backpropagation through time, step by step.

:func:`explain` runs the hand-written BPTT of the Elman cell (:mod:`rnnjax.engine.bptt`, with
the cell's own backward from :mod:`rnnjax.cells.elman`) on a small network given as a
JSON-like spec and returns every intermediate quantity; :func:`format_report` turns it
into the tables ``rnnjax bptt-explain`` prints (forward pre-activations, states and
output; backward deltas and each step's contribution to ``dW_xh``, ``dW_hh``, ``db_h``;
the totals).
"""

from __future__ import annotations

import json
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cells import elman
from rnnjax.core.cell import HiddenState
from rnnjax.core.ops import ACTIVATIONS
from rnnjax.engine.bptt import Stored, backward_sweep, forward_states
from rnnjax.engine.spec import Spec

__all__ = ["example_spec", "explain", "format_report"]


def explain(spec: dict) -> dict:
    r"""Forward and backward of a one-sequence Elman classifier, step by step.

    ``spec`` (see ``rnnjax/data/sentiment_example.json``): ``inputs`` (a list of
    vectors) or ``tokens`` with ``embeddings`` (token -> vector); ``W_xh (H, F)``,
    ``W_hh (H, H)``, ``b_h (H,)``, ``W_ho (O, H)``, ``b_o (O,)``; optional ``h0``
    (zeros), ``activation`` (``"tanh"``), ``label`` and ``loss``:

    * ``"bce"``: ``y = sigmoid(W_ho h_T + b_o)``, ``L = -sum(l log y + (1-l) log(1-y))``,
      so ``dL/d(logit) = y - l``;
    * ``"mse"``: ``y = W_ho h_T + b_o``, ``L = 1/2 ||y - l||^2``, ``dL/d(logit) = y - l``;
    * ``"softmax"`` (``K`` classes, ``W_ho (K, H)``, ``b_o (K,)``, ``label`` a class
      index ``k``): ``y = softmax(W_ho h_T + b_o)``, ``L = -log y_k``, so
      ``dL/d(logit) = y - e_k`` (``l = e_k``, the one-hot label, below).

    Forward ``z_t = W_xh x_t + W_hh h_{t-1} + b_h``, ``h_t = f(z_t)``.  Backward (the
    hand-written BPTT of :func:`bptt`, run on ``dL/dh_T = W_ho^T (y - l)``)::

        delta_t = dh_t * f'(z_t),   dh_{t-1} = W_hh^T delta_t
        dW_xh += delta_t x_t^T,     dW_hh += delta_t h_{t-1}^T,    db_h += delta_t

    Returns a dict of plain lists (float64): ``steps`` (per step: ``t`` from 1,
    ``token``, ``x``, ``z``, ``h``, ``dh``, ``delta``, ``dW_xh``, ``dW_hh``, ``db_h``
    contributions), ``logit``, ``y``, ``loss``, ``dL_dlogit``, the totals ``grads``
    (``W_xh``, ``W_hh``, ``b_h``, ``W_ho``, ``b_o``, ``h0``).
    """
    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict (parsed JSON), got {type(spec).__name__}")
    for key in ("W_xh", "W_hh", "b_h", "W_ho", "b_o", "label"):
        if key not in spec:
            raise ValueError(f"spec must have the key {key!r}; it has {sorted(spec)}")
    if "inputs" in spec:
        tokens = [str(t + 1) for t in range(len(spec["inputs"]))]
        inputs = spec["inputs"]
    elif "tokens" in spec and "embeddings" in spec:
        tokens = list(spec["tokens"])
        missing = [t for t in tokens if t not in spec["embeddings"]]
        if missing:
            raise ValueError(f"spec tokens {missing} have no entry in embeddings "
                             f"(which has {sorted(spec['embeddings'])})")
        inputs = [spec["embeddings"][t] for t in tokens]
    else:
        raise ValueError("spec must have 'inputs' (a list of vectors) or 'tokens' with "
                         f"'embeddings'; it has {sorted(spec)}")
    act = spec.get("activation", "tanh")
    loss_kind = spec.get("loss", "bce")
    if act not in ACTIVATIONS:
        raise ValueError(f"spec activation must be one of {sorted(ACTIVATIONS)}, got {act!r}")
    if loss_kind not in ("bce", "mse", "softmax"):
        raise ValueError(f"spec loss must be one of ['bce', 'mse', 'softmax'], got "
                         f"{loss_kind!r}")

    with jax.enable_x64(True):
        f64 = lambda a: jnp.asarray(np.asarray(a, np.float64))  # noqa: E731
        xs = f64(inputs)
        T, F = xs.shape
        params = {"W_xh": f64(spec["W_xh"]), "W_hh": f64(spec["W_hh"]), "b": f64(spec["b_h"])}
        H = params["W_hh"].shape[0]
        shapes = {"W_xh": (H, F), "W_hh": (H, H), "b": (H,)}
        for k, s in shapes.items():
            if params[k].shape != s:
                name = "b_h" if k == "b" else k
                raise ValueError(f"spec {name} must have shape {s} (H={H}, F={F}), "
                                 f"got {params[k].shape}")
        W_ho, b_o = f64(spec["W_ho"]).reshape(-1, H), f64(spec["b_o"]).reshape(-1)
        if loss_kind == "softmax":
            K, k = W_ho.shape[0], spec["label"]
            if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < K:
                raise ValueError(f"spec label must be a class index in [0, {K}) for the "
                                 f"softmax loss (K = rows of W_ho), got {k!r}")
            if b_o.shape != (K,):
                raise ValueError(f"spec b_o must have shape ({K},) (K = rows of W_ho), got "
                                 f"{b_o.shape}")
            label = jax.nn.one_hot(k, K, dtype=jnp.float64)
        else:
            label = f64(spec["label"]).reshape(-1)
        if loss_kind == "bce" and not bool(jnp.all((label >= 0) & (label <= 1))):
            raise ValueError(f"spec label must lie in [0, 1] for loss 'bce' (a "
                             f"probability), got {np.asarray(label).tolist()}")
        h0 = f64(spec.get("h0", np.zeros(H))).reshape(1, H)

        cell = elman(H, act)
        weights, prepare_vjp = jax.vjp(cell.prepare, params)
        carry0 = HiddenState(h0)
        _, final, states = forward_states(cell, weights, carry0, xs[:, None], None, False)
        hs = states[0]
        hprev = jnp.concatenate([h0[None], hs[:-1]])
        h_T = final.h[0]
        logit = W_ho @ h_T + b_o
        if loss_kind == "bce":
            y = jax.nn.sigmoid(logit)
            loss = -jnp.sum(label * jnp.log(y) + (1 - label) * jnp.log1p(-y))
        elif loss_kind == "softmax":
            y = jax.nn.softmax(logit)
            loss = -jnp.sum(label * jax.nn.log_softmax(logit))
        else:
            y = logit
            loss = 0.5 * jnp.sum((y - label) ** 2)
        dlogit = y - label
        dh_T = W_ho.T @ dlogit
        dys = jnp.zeros((T, 1, H))
        d_w, dxs, dh0, deltas = backward_sweep(cell, weights, Stored(xs[:, None], carry0, states),
                                               dys, HiddenState(dh_T[None]), Spec("manual"),
                                               with_deltas=True)
        (grads,) = prepare_vjp(d_w)
        hp, d, hh = hprev[:, 0], deltas[:, 0], hs[:, 0]
        z = xs @ params["W_xh"].T + hp @ params["W_hh"].T + params["b"]
        # dh_t (total gradient of h_t): dh_T at the last step, W_hh^T delta_{t+1} before
        dh = jnp.concatenate([d[1:] @ params["W_hh"], dh_T[None]], 0)
        L = lambda a: np.asarray(a).tolist()  # noqa: E731
        steps = [{"t": t + 1, "token": tokens[t], "x": L(xs[t]), "z": L(z[t]), "h": L(hh[t]),
                  "dh": L(dh[t]), "delta": L(d[t]), "dW_xh": L(jnp.outer(d[t], xs[t])),
                  "dW_hh": L(jnp.outer(d[t], hp[t])), "db_h": L(d[t])} for t in range(T)]
        return {
            "activation": act, "loss_kind": loss_kind, "steps": steps,
            "logit": L(logit), "y": L(y), "label": L(label), "loss": float(loss),
            "dL_dlogit": L(dlogit),
            "grads": {"W_xh": L(grads["W_xh"]), "W_hh": L(grads["W_hh"]),
                      "b_h": L(grads["b"]), "W_ho": L(jnp.outer(dlogit, h_T)),
                      "b_o": L(dlogit), "h0": L(dh0.h[0]), "inputs": L(dxs[:, 0])},
        }


def example_spec(name: str = "sentiment_example") -> dict:
    """A spec shipped in ``rnnjax/data`` (``sentiment_example``: the worked example)."""
    return json.loads(resources.files("rnnjax").joinpath("data", f"{name}.json").read_text())


def _v(a, p):
    if a and isinstance(a[0], list):
        return "[" + "; ".join(_v(r, p)[1:-1] for r in a) + "]"
    return "[" + ", ".join(f"{x:{p + 3}.{p}f}" for x in a) + "]"


def format_report(r: dict, precision: int = 3) -> str:
    """The readable tables of :func:`explain`'s result."""
    p = precision
    f = {"tanh": "tanh", "relu": "relu", "identity": "id"}[r["activation"]]
    fp = {"tanh": "1 - h_t^2", "relu": "[z_t > 0]", "identity": "1"}[r["activation"]]
    out = [f"Forward: z_t = W_xh x_t + W_hh h_(t-1) + b_h,  h_t = {f}(z_t)", ""]
    w = max(len("token"), *(len(s["token"]) for s in r["steps"]))
    out.append(f"{'t':>3}  {'token':<{w}}  {'x_t':<26}{'z_t':<26}h_t")
    for s in r["steps"]:
        out.append(f"{s['t']:>3}  {s['token']:<{w}}  {_v(s['x'], p):<26}{_v(s['z'], p):<26}"
                   f"{_v(s['h'], p)}")
    out.append("")
    if r["loss_kind"] == "bce":
        out.append(f"Output: y = sigmoid(W_ho h_T + b_o) = sigmoid({_v(r['logit'], p)}) "
                   f"= {_v(r['y'], p)};  label {_v(r['label'], p)}")
        out.append(f"Loss: -[l log y + (1-l) log(1-y)] = {r['loss']:.{p}f}")
    elif r["loss_kind"] == "softmax":
        k = int(np.argmax(r["label"]))
        out.append(f"Output: y = softmax(W_ho h_T + b_o) = softmax({_v(r['logit'], p)}) "
                   f"= {_v(r['y'], p)};  label class {k} (l = e_{k})")
        out.append(f"Loss: -log y_{k} = {r['loss']:.{p}f}")
    else:
        out.append(f"Output: y = W_ho h_T + b_o = {_v(r['y'], p)};  label {_v(r['label'], p)}")
        out.append(f"Loss: 1/2 ||y - l||^2 = {r['loss']:.{p}f}")
    g = r["grads"]
    out += [f"dL/db_o = y - l = {_v(g['b_o'], p)}   dL/dW_ho = (y - l) h_T^T = "
            f"{_v(g['W_ho'], p)}", "",
            f"Backward: dh_T = W_ho^T (y - l);  delta_t = dh_t * ({fp});  "
            "dh_(t-1) = W_hh^T delta_t", ""]
    out.append(f"{'t':>3}  {'token':<{w}}  {'dh_t':<26}delta_t = dL/dz_t")
    for s in reversed(r["steps"]):
        out.append(f"{s['t']:>3}  {s['token']:<{w}}  {_v(s['dh'], p):<26}{_v(s['delta'], p)}")
    out += ["", "Per-step contributions: dW_xh += delta_t x_t^T, dW_hh += delta_t h_(t-1)^T, "
            "db_h += delta_t (rows separated by ';')", ""]
    for s in reversed(r["steps"]):
        out.append(f"{s['t']:>3}  {s['token']:<{w}}  dW_xh {_v(s['dW_xh'], p)}")
        out.append(f"{'':>3}  {'':<{w}}  dW_hh {_v(s['dW_hh'], p)}")
        out.append(f"{'':>3}  {'':<{w}}  db_h  {_v(s['db_h'], p)}")
    out += ["", "Totals (sum over steps):",
            f"  dW_xh = {_v(g['W_xh'], p)}", f"  dW_hh = {_v(g['W_hh'], p)}",
            f"  db_h  = {_v(g['b_h'], p)}", f"  dh_0  = {_v(g['h0'], p)}"]
    return "\n".join(out)
