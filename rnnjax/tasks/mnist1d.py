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


def load_mnist1d() -> dict:
    """``{"x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test"}``: ``x``
    float32 ``(N, 40)``, ``y`` int32 ``(N,)``; 3,600 / 400 / 1,000 examples (the module
    docstring).  Generated once per process (about 4 s), the same every time."""
    x, y, x_test, y_test = _generate()
    x, x_test = x.astype(np.float32), x_test.astype(np.float32)
    y, y_test = y.astype(np.int32), y_test.astype(np.int32)
    n = len(y) - N_VALID
    return {"x_train": x[:n], "y_train": y[:n], "x_valid": x[n:], "y_valid": y[n:],
            "x_test": x_test, "y_test": y_test}


def mnist1d_task() -> Task:
    """MNIST-1D as a :class:`Task` (:func:`rnnjax.tasks.base.dataset_task`): xs
    ``(batch, 40, 1)``, ys ``(batch,)``, ``task.splits`` the fixed splits."""
    return dataset_task("mnist1d", load_mnist1d())


__all__ = ["N_VALID", "T_MNIST1D", "load_mnist1d", "mnist1d_task"]
