r"""Worked examples of backpropagation through time, step by step.

:func:`explain` runs the hand-written BPTT of the Elman cell (:mod:`rnnjax.bptt`, with
the cell's own backward from :mod:`rnnjax.cells.elman`) on a small network given as a
JSON-like spec and returns every intermediate quantity; ``rnnjax bptt-explain`` prints
it as tables.
"""

from __future__ import annotations

import json
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.bptt import backward_sweep, forward_states
from rnnjax.cell import HiddenState
from rnnjax.cells import elman
from rnnjax.ops import ACTIVATIONS

__all__ = ["example_spec", "explain"]


def explain(spec: dict) -> dict:
    r"""Forward and backward of a one-sequence Elman classifier, step by step.

    ``spec`` (see ``rnnjax/data/sentiment_example.json``): ``inputs`` (a list of
    vectors) or ``tokens`` with ``embeddings`` (token -> vector); ``W_xh (H, F)``,
    ``W_hh (H, H)``, ``b_h (H,)``, ``W_ho (O, H)``, ``b_o (O,)``; optional ``h0``
    (zeros), ``activation`` (``"tanh"``), ``label`` and ``loss``:

    * ``"bce"``: ``y = sigmoid(W_ho h_T + b_o)``, ``L = -sum(l log y + (1-l) log(1-y))``,
      so ``dL/d(logit) = y - l``;
    * ``"mse"``: ``y = W_ho h_T + b_o``, ``L = 1/2 ||y - l||^2``, ``dL/d(logit) = y - l``.

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
    if loss_kind not in ("bce", "mse"):
        raise ValueError(f"spec loss must be one of ['bce', 'mse'], got {loss_kind!r}")

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
        label = f64(spec["label"]).reshape(-1)
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
        else:
            y = logit
            loss = 0.5 * jnp.sum((y - label) ** 2)
        dlogit = y - label
        dh_T = W_ho.T @ dlogit
        dys = jnp.zeros((T, 1, H))
        d_w, dxs, dh0, deltas = backward_sweep(cell, weights, xs[:, None], carry0, states,
                                               None, False, None, 1, dys,
                                               HiddenState(dh_T[None]), with_deltas=True)
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
