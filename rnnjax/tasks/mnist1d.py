r"""MNIST-1D (Greydanus 2020, "Scaling down deep learning", arXiv:2011.14439) as a
sequence-classification task: ``T = 40`` steps, one feature, 10 classes.

The data are generated procedurally, offline, by the ``mnist1d`` package
(``mnist1d.data.make_dataset(get_dataset_args())``, the paper's default arguments:
5,000 examples from ten 1-D digit templates after random padding, translation, shear,
scaling and correlated plus i.i.d. noise, then centred and scaled to unit standard
deviation; seed 42).  Splits: the package's 4,000 / 1,000 train/test split; the last
400 training examples (the package shuffles them) are held out for validation: 3,600
train, 400 valid, 1,000 test.  One feature per step, the class read at the last step,
cross-entropy loss, uniform predictor ``ln 10``.

``mnist1d_full`` is the same data with the split of the package's reference training
code (greydanus/mnist1d ``notebooks/train.py``, ``train_model``): all 4,000 training
examples are trained on and no validation split is held out; test 1,000 as above.

Published test accuracies on this split (the mnist1d README, "Comparing MNIST and
MNIST-1D"): logistic regression 32%, MLP 68%, CNN 94%, GRU 91%; human expert 96%.

Needs the ``data`` extra (``pip install -e ".[data]"``).
"""

from __future__ import annotations

import functools

import numpy as np

from rnnjax.tasks.base import Task, dataset_task

T_MNIST1D = 40
N_VALID = 400


def _mnist1d():
    try:
        from mnist1d import data
    except ImportError:
        raise ImportError("the mnist1d task needs the mnist1d package: pip install -e "
                          "\".[data]\"") from None
    return data


@functools.lru_cache(maxsize=1)
def _generate() -> tuple:
    data = _mnist1d()
    state = np.random.get_state()  # make_dataset seeds NumPy's global generator
    try:
        d = data.make_dataset(data.get_dataset_args())
    finally:
        np.random.set_state(state)
    return tuple(np.asarray(d[k]) for k in ("x", "y", "x_test", "y_test"))


def load_mnist1d(n_valid: int = N_VALID) -> dict:
    """``{"x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test"}``: ``x``
    float32 ``(N, 40)``, ``y`` int32 ``(N,)``; the last ``n_valid`` of the package's
    4,000 training examples are the validation split (3,600 / 400 / 1,000 examples by
    default, the module docstring); ``n_valid=0``: 4,000 / none / 1,000, with
    ``x_valid`` and ``y_valid`` None.  Generated once per process (about 4 s), the same
    every time."""
    x, y, x_test, y_test = _generate()
    if isinstance(n_valid, bool) or not isinstance(n_valid, int) or not 0 <= n_valid < len(y):
        raise ValueError(f"n_valid must be an integer in [0, {len(y)}), got {n_valid!r}")
    x, x_test = x.astype(np.float32), x_test.astype(np.float32)
    y, y_test = y.astype(np.int32), y_test.astype(np.int32)
    n = len(y) - n_valid
    valid = (x[n:], y[n:]) if n_valid else (None, None)
    return {"x_train": x[:n], "y_train": y[:n], "x_valid": valid[0], "y_valid": valid[1],
            "x_test": x_test, "y_test": y_test}


def mnist1d_task() -> Task:
    """MNIST-1D as a :class:`Task` (:func:`rnnjax.tasks.base.dataset_task`): xs
    ``(batch, 40, 1)``, ys ``(batch,)``, ``task.splits`` the fixed splits."""
    return dataset_task("mnist1d", load_mnist1d())


def mnist1d_full_task() -> Task:
    """MNIST-1D with the reference code's split (``mnist1d_full``, the module docstring):
    ``task.splits`` 4,000 train, no validation split (``splits.valid`` None), 1,000
    test."""
    return dataset_task("mnist1d_full", load_mnist1d(n_valid=0))


__all__ = ["N_VALID", "T_MNIST1D", "load_mnist1d", "mnist1d_full_task", "mnist1d_task"]
