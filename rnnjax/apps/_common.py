"""Helpers shared by the applications: output folders, JSON summaries and a dense
layer.  They train through :func:`rnnjax.training.update.fit`, check arguments with
:mod:`rnnjax.core.checks` and draw with :mod:`rnnjax.plots.figures`."""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.checks import check_positive_float, check_positive_int
from rnnjax.io.outputs import atomic_open


def out_dir(path) -> str:
    """Create ``path`` (and parents) and return it as a string."""
    path = os.fspath(path)
    os.makedirs(path, exist_ok=True)
    return path


def check_fit(*, steps, lr, batch=None, steps_name="steps"):
    """The training arguments of an application, checked before any work: ``steps``
    and ``batch`` positive integers, ``lr`` a positive finite number."""
    check_positive_int(steps_name, steps)
    if batch is not None:
        check_positive_int("batch", batch)
    check_positive_float("lr", lr)


def write_json(path, obj):
    def default(o):
        if isinstance(o, (np.generic, jnp.ndarray, np.ndarray)):
            return np.asarray(o).tolist()
        raise TypeError(f"cannot serialise {type(o).__name__}")

    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=2, default=default)
        f.write("\n")


def dense_init(key, n_in, n_out, scale=None):
    """``{"W": (n_out, n_in), "b": (n_out,)}`` with ``W ~ N(0, 1/n_in)`` (or ``scale^2``)."""
    s = (1.0 / np.sqrt(n_in)) if scale is None else scale
    return {"W": s * jax.random.normal(key, (n_out, n_in), jnp.float32),
            "b": jnp.zeros((n_out,), jnp.float32)}


def dense(p, x):
    """``x @ W^T + b`` over any leading axes."""
    return x @ p["W"].T + p["b"]


def random_rows(*arrays, batch: int):
    """``key -> tuple``: the same ``min(batch, n)`` rows, drawn uniformly with
    replacement, of each of ``arrays`` (``n`` rows each): a training batch for ``fit``."""
    n = arrays[0].shape[0]

    def batch_fn(key):
        i = jax.random.randint(key, (min(batch, n),), 0, n)
        return tuple(a[i] for a in arrays)

    return batch_fn


__all__ = ["check_fit", "dense", "dense_init", "out_dir", "random_rows", "write_json"]
