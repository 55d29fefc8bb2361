"""Plain params files (``.npz``) of one cell: what ``rnnjax gradflow --checkpoint`` reads
beside the training runner's orbax checkpoints (:mod:`rnnjax.training.checkpointing`).  One
array per params leaf (keyed by its ``keystr`` path) and a JSON entry ``__meta__``
(registry name, hidden size, input size, factory keyword arguments) from which the
cell is rebuilt.  Re-exported by :mod:`rnnjax.analysis`.
"""

from __future__ import annotations

import json
import os
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import cells
from rnnjax.io.outputs import atomic_open


def save_params_npz(path: str, cell_name: str, hidden_size: int, params, input_size: int,
                    **cell_kwargs) -> None:
    """Save a cell's params to ``path`` (``.npz``) for ``rnnjax gradflow --checkpoint``.

    The file holds one array per leaf (keyed by its ``keystr`` path) and a JSON entry
    ``__meta__`` with the registry name, hidden size, input size and factory keyword
    arguments, so :func:`load_params_npz` can rebuild the cell.
    """
    path = os.fspath(path)
    if os.path.isdir(path) or not path.endswith(".npz"):
        what = "a folder" if os.path.isdir(path) else "a name without .npz"
        raise ValueError(f"path must be a file name ending in .npz, got {what} {path!r}")
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    arrays = {jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves}
    meta = {"cell": cell_name, "hidden": int(hidden_size), "input_size": int(input_size),
            "kwargs": cell_kwargs}
    with atomic_open(path, "wb") as f:
        np.savez(f, __meta__=np.array(json.dumps(meta)), **arrays)


def load_params_npz(path: str):
    """Read a file of :func:`save_params_npz`: ``(cell_name, hidden, kwargs, params)``."""
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files") or "__meta__" not in f:
                raise ValueError("no __meta__ entry")
            meta = json.loads(str(f["__meta__"]))
            arrays = {k: f[k] for k in f.files if k != "__meta__"}
            if not isinstance(meta, dict) or not {"cell", "hidden", "input_size",
                                                  "kwargs"} <= set(meta):
                raise ValueError("__meta__ lacks cell, hidden, input_size or kwargs")
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
        raise ValueError(f"{path} is not a params file of save_params_npz "
                         f"({type(e).__name__}: {e})") from None
    cell = cells.make(meta["cell"], meta["hidden"], **meta["kwargs"])
    like = jax.eval_shape(lambda k: cell.init(k, meta["input_size"]), jax.random.key(0))
    paths, treedef = jax.tree_util.tree_flatten_with_path(like)
    leaves = []
    for k, s in paths:
        name = jax.tree_util.keystr(k)
        if name not in arrays or arrays[name].shape != s.shape:
            raise ValueError(f"{path}: params leaf {name} of shape {s.shape} is missing "
                             "or has another shape")
        leaves.append(jnp.asarray(arrays[name]))
    return meta["cell"], meta["hidden"], meta["kwargs"], jax.tree.unflatten(treedef, leaves)


__all__ = ["load_params_npz", "save_params_npz"]
