r"""Sequential and permuted pixel MNIST (Le, Jaitly & Hinton 2015), from a local file.

Each 28x28 image is read as a sequence of 784 pixels (one feature, scaled to [0, 1]),
row by row; ``permuted=True`` applies one fixed permutation of the 784 positions drawn
from ``jax.random.key(permutation_seed)``.  The class is read at the last step; loss:
cross-entropy; the constant (uniform) predictor scores ``ln 10``.

Nothing is downloaded.  ``path`` is either

* a directory holding the standard IDX files ``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``
  (each optionally gzipped, ``.gz``), or
* an ``.npz`` file with arrays ``x_train (N, 28, 28) uint8``, ``y_train (N,)``,
  ``x_test``, ``y_test`` (the layout of Keras' ``mnist.npz``).
"""

from __future__ import annotations

import gzip
import math
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.tasks.base import (
    Splits,
    Task,
    arrays_sha256,
    check_permutation,
    classification_metrics,
    identity_encoder,
    mean_cross_entropy,
)

EXPECTED_FORMAT = (
    "a directory with the MNIST IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, "
    "t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (optionally .gz), or an .npz file with "
    "arrays x_train, y_train, x_test, y_test")
IDX_FILES = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}


def read_idx(path: str) -> np.ndarray:
    """Read one IDX file (``magic = 0x0000 08 ndim``, big-endian dims, uint8 data)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file (magic {data[:4].hex()})")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find(directory, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    return None


def load_mnist(path) -> dict:
    """Load ``{"x_train", "y_train", "x_test", "y_test"}`` from ``path`` (see module doc).

    Raises ``FileNotFoundError`` naming the path and the expected format when missing.
    """
    if path is None:
        raise FileNotFoundError(f"the MNIST task needs --data PATH: {EXPECTED_FORMAT}")
    path = os.fspath(path)
    if os.path.isdir(path):
        found = {k: _find(path, stem) for k, stem in IDX_FILES.items()}
        missing = [IDX_FILES[k] for k, v in found.items() if v is None]
        if missing:
            raise FileNotFoundError(
                f"MNIST data not found in {path!r}: missing {missing}; expected "
                f"{EXPECTED_FORMAT}")
        arrays = {k: read_idx(v) for k, v in found.items()}
    elif os.path.isfile(path):
        if not path.endswith(".npz"):
            raise ValueError(f"MNIST file {path!r} is not an .npz; expected {EXPECTED_FORMAT}")
        with np.load(path) as z:
            missing = [k for k in IDX_FILES if k not in z.files]
            if missing:
                raise ValueError(f"MNIST file {path!r} lacks arrays {missing}; expected "
                                 f"{EXPECTED_FORMAT}")
            arrays = {k: np.asarray(z[k]) for k in IDX_FILES}
    else:
        raise FileNotFoundError(f"MNIST data not found at {path!r}: expected {EXPECTED_FORMAT}")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or y.shape != x.shape[:1]:
            raise ValueError(f"MNIST {split} arrays in {path!r} have shapes {x.shape}, {y.shape};"
                             f" expected (N, 28, 28) and (N,)")
    return arrays


def permutation(seed: int = 0) -> np.ndarray:
    """The fixed pixel permutation of permuted MNIST: ``jax.random.permutation(key(seed), 784)``."""
    return np.asarray(jax.random.permutation(jax.random.key(seed), 784))


def pixels(rows):
    """Stored uint8 rows ``(b, 784)`` -> inputs ``(b, 784, 1)`` in ``[0, 1]``."""
    return (rows.astype(jnp.float32) / 255.0)[..., None]


def mnist_task(path, permuted: bool = False, permutation_seed: int = 0, perm=None) -> Task:
    """Pixel MNIST as a :class:`Task`: xs ``(batch, 784, 1)``, labels ``(batch,)``;
    ``task.splits`` holds the whole train and test parts (no validation part).  ``perm``:
    a saved pixel order (``config.json``) instead of the one drawn from the seed.
    ``task.fingerprint``: the SHA-256 of the loaded arrays (their dtypes, shapes and
    bytes), checked when a run resumes."""
    arrays = load_mnist(path)
    if permuted:
        perm = check_permutation(permutation(permutation_seed) if perm is None else perm, 784)
    else:
        perm = np.arange(784)

    def as_sequences(x):
        return jnp.asarray(x.reshape(len(x), 784)[:, perm])  # uint8 (N, 784)

    splits = {s: (as_sequences(arrays[f"x_{s}"]), jnp.asarray(arrays[f"y_{s}"], jnp.int32))
              for s in ("train", "test")}

    def sampler(split):
        xs_all, ys_all = splits[split]

        def sample(key, batch):
            idx = jax.random.randint(key, (batch,), 0, xs_all.shape[0])
            return pixels(xs_all[idx]), ys_all[idx]
        return sample

    return Task(name="pmnist" if permuted else "smnist", sample=sampler("train"),
                eval_sample=sampler("test"), encode=identity_encoder,
                loss=mean_cross_entropy, metrics=classification_metrics, input_size=1,
                output_size=10, readout="last",
                baseline=math.log(10), baseline_note="uniform over 10 classes: ln 10",
                time=784, splits=Splits(splits["train"], None, splits["test"],
                                        perm if permuted else None, pixels),
                fingerprint=arrays_sha256(*(arrays[k] for k in sorted(arrays))))


__all__ = ["EXPECTED_FORMAT", "IDX_FILES", "load_mnist", "mnist_task", "permutation",
           "pixels", "read_idx"]
