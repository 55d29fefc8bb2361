r"""Pixel-by-pixel handwritten digits: the small real cousin of sMNIST/pMNIST.

The data are scikit-learn's 1,797 8x8 digit images (shipped inside the package,
``sklearn.datasets.load_digits``; UCI "Optical Recognition of Handwritten Digits" test
set), pixel values ``0..16`` scaled to ``[0, 1]``.  Each image is a sequence of ``T = 64``
pixels read row by row (``digits``) or in one fixed permutation of the 64 positions
(``pdigits``, as permuted MNIST of Le, Jaitly & Hinton 2015); one feature per step, the
class read at the last step, cross-entropy loss, uniform predictor ``ln 10``.

Splits (:func:`load_digits`): the stratified train/test split of
``sklearn.model_selection.train_test_split(test_size=0.2, stratify=y,
random_state=split_seed)`` (1,437 / 360 images), then a stratified validation split of
10% of the training part (``random_state=split_seed + 1``): 1,293 train, 144 valid, 360
test.  The permutation is ``numpy.random.default_rng(permutation_seed).permutation(64)``
unless one is given (the runner saves it in ``config.json`` and reuses it).

Needs the ``data`` extra (``pip install -e ".[data]"``).
"""

from __future__ import annotations

import numpy as np

from rnnjax.tasks.base import Task, check_permutation, dataset_task

T_DIGITS = 64
TEST_FRACTION = 0.2
VALID_FRACTION = 0.1


def _sklearn():
    try:
        import sklearn.datasets
        import sklearn.model_selection
    except ImportError:
        raise ImportError("the digits tasks need scikit-learn: pip install -e \".[data]\"") \
            from None
    return sklearn


def load_digits(split_seed: int = 0) -> dict:
    """``{"x_train", "y_train", "x_valid", "y_valid", "x_test", "y_test"}``: ``x``
    float32 ``(N, 64)`` in ``[0, 1]``, ``y`` int32 ``(N,)``; the splits of the module
    docstring, deterministic in ``split_seed``."""
    sk = _sklearn()
    d = sk.datasets.load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int32)
    split = sk.model_selection.train_test_split
    xtr, xte, ytr, yte = split(x, y, test_size=TEST_FRACTION, stratify=y,
                               random_state=split_seed)
    xtr, xva, ytr, yva = split(xtr, ytr, test_size=VALID_FRACTION, stratify=ytr,
                               random_state=split_seed + 1)
    return {"x_train": xtr, "y_train": ytr, "x_valid": xva, "y_valid": yva,
            "x_test": xte, "y_test": yte}


def permutation(seed: int = 0) -> np.ndarray:
    """The fixed pixel order of ``pdigits``."""
    return np.random.default_rng(seed).permutation(T_DIGITS)


def digits_task(permuted: bool = False, permutation_seed: int = 0, split_seed: int = 0,
                perm=None) -> Task:
    """``digits`` / ``pdigits`` as a :class:`Task` (:func:`rnnjax.tasks.base.dataset_task`):
    xs ``(batch, 64, 1)``, ys ``(batch,)``, with ``task.splits`` the fixed
    train/valid/test :class:`Splits`."""
    arrays = load_digits(split_seed)
    order = None
    if permuted:
        order = check_permutation(permutation(permutation_seed) if perm is None else perm,
                                  T_DIGITS)
    return dataset_task("pdigits" if permuted else "digits", arrays, order=order,
                        permuted=permuted)


__all__ = ["T_DIGITS", "TEST_FRACTION", "VALID_FRACTION", "digits_task", "load_digits",
           "permutation"]
