"""Helpers shared by the applications: a small Adam training loop, output folders,
summaries and argument checks.  Kept private: the public API is in each app module."""

from __future__ import annotations

import json
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax


def fit(loss_fn: Callable, params, batch_fn: Callable, *, steps: int, lr: float, key,
        clip: float = 1.0, log_every: int = 0, print_fn=print, name="loss"):
    """Minimise ``loss_fn(params, batch)`` with Adam (global-norm clipping at ``clip``).

    ``batch_fn(key) -> batch`` draws one batch inside the jitted step, so the whole
    update is one compiled program.  Returns ``(params, losses)`` with ``losses`` a
    list of floats, one per step.
    """
    opt = optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr))
    state = opt.init(params)

    @jax.jit
    def update(p, s, k):
        loss, g = jax.value_and_grad(loss_fn)(p, batch_fn(k))
        u, s = opt.update(g, s, p)
        return optax.apply_updates(p, u), s, loss

    losses = []
    for i, k in enumerate(jax.random.split(key, steps)):
        params, state, loss = update(params, state, k)
        losses.append(float(loss))
        if log_every and ((i + 1) % log_every == 0 or i == 0):
            print_fn(f"step {i + 1:5d}  {name} {losses[-1]:.4f}")
    return params, losses


def out_dir(path) -> str:
    """Create ``path`` (and parents) and return it as a string."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    return path


def write_json(path, obj):
    def default(o):
        if isinstance(o, (np.generic, jnp.ndarray, np.ndarray)):
            return np.asarray(o).tolist()
        raise TypeError(f"cannot serialise {type(o).__name__}")

    with open(path, "w") as f:
        json.dump(obj, f, indent=2, default=default)
        f.write("\n")


def check_positive_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def check_nonneg_float(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def check_file(name, path):
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"{name} must be an existing file, got {os.fspath(path)!r}")


def dense_init(key, n_in, n_out, scale=None):
    """``{"W": (n_out, n_in), "b": (n_out,)}`` with ``W ~ N(0, 1/n_in)`` (or ``scale^2``)."""
    s = (1.0 / np.sqrt(n_in)) if scale is None else scale
    return {"W": s * jax.random.normal(key, (n_out, n_in), jnp.float32),
            "b": jnp.zeros((n_out,), jnp.float32)}


def dense(p, x):
    """``x @ W^T + b`` over any leading axes."""
    return x @ p["W"].T + p["b"]


def figure(**kwargs):
    """A matplotlib ``Figure`` drawn with the Agg canvas (no pyplot, no display needed)."""
    from matplotlib.figure import Figure
    return Figure(**kwargs)


def savefig(fig, path):
    fig.savefig(path, dpi=100, bbox_inches="tight")
