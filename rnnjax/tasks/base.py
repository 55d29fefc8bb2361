"""The :class:`Task` record shared by every task, and the losses they use."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


class Task(NamedTuple):
    """A training task: pure batch generators, a loss, metrics and a stated baseline.

    Attributes:
      name: task name (a key of :data:`rnnjax.tasks.TASKS`).
      sample: ``(key, batch) -> (xs, ys)``, a training batch; a pure function of the key.
      eval_sample: ``(key, batch) -> (xs, ys)``, a held-out batch (the synthetic tasks
        draw from the same distribution; data-set tasks draw from their test split).
      encode: ``xs -> (batch, time, input_size)`` float features (one-hot for tokens).
      loss: ``(outputs, ys) -> scalar``; ``outputs`` are the model's logits
        ``(batch, time, output_size)`` when ``readout == "all"``, else
        ``(batch, output_size)``.
      metrics: ``(outputs, ys) -> dict`` of scalars (includes ``"loss"``).
      input_size: features after ``encode``.
      output_size: number of classes (or regression outputs).
      readout: ``"all"`` (an output per time step) or ``"last"`` (the last step only).
      baseline: loss of the stated memoryless / constant strategy, or None.
      baseline_note: what the baseline is.
      time: sequence length.
      splits: for data-set tasks, their fixed :class:`Splits` (whole-split evaluation,
        training by epochs); None for generated tasks.
      stream: for stateful tasks (char LM), their
        :class:`rnnjax.tasks.stateful.Stream`: the runner trains on consecutive windows
        with the carry passed on and evaluates whole texts; None for the others.
      fingerprint: SHA-256 (hex) of the task's data (a file's bytes, or the arrays of a
        generated data set), checked when a run resumes; None when the other config
        fields determine the data.
      credit: the steps of a credit-assignment measurement (:class:`CreditSteps`) that
        the runner logs on the held-out batch at every logged step
        (:func:`rnnjax.analysis.credit_metrics`); None for none.
    """

    name: str
    sample: Callable
    eval_sample: Callable
    encode: Callable
    loss: Callable
    metrics: Callable
    input_size: int
    output_size: int
    readout: str
    baseline: float | None
    baseline_note: str
    time: int
    splits: Any | None = None
    stream: Any | None = None
    fingerprint: str | None = None
    credit: CreditSteps | None = None


class CreditSteps(NamedTuple):
    """Where credit is measured (0-based steps of the model's outputs, ``z_t`` the carry
    after reading ``x_t``): the loss restricted to the ``targets`` steps,
    ``L_target = Task.loss(outputs[:, targets], ys[:, targets])``, and the ratio
    ``||dL_target/dz_source|| / ||dL_target/dz_reference||`` with
    ``source <= reference < min(targets)``, and ``||dz_reference/dz_source||_2``."""

    targets: tuple
    source: int
    reference: int


class Splits(NamedTuple):
    """The fixed parts of a data set: ``train``, ``valid`` (or None) and ``test`` are
    ``(xs, ys)`` pairs of NumPy arrays as ``Task.sample`` returns them (``xs`` before
    ``encode``) after ``prepare`` (rows are stored compactly, e.g. MNIST's uint8 pixels,
    and ``prepare`` maps a batch of stored rows to what ``sample`` returns);
    ``permutation`` is the fixed pixel order of a permuted task (or None)."""

    train: tuple
    valid: tuple | None
    test: tuple
    permutation: Any | None = None
    prepare: Callable = lambda xs: xs


def arrays_sha256(*arrays) -> str:
    """SHA-256 (hex) of the dtypes, shapes and bytes of ``arrays`` (a data set's
    fingerprint, :attr:`Task.fingerprint`)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def dataset_task(name: str, arrays: dict, *, order=None, permuted: bool = False,
                 n_classes: int = 10) -> Task:
    """A sequence-classification :class:`Task` over a fixed data set with one feature
    per step, read in ``order`` (a fixed permutation of the time steps; the identity
    when None): ``arrays`` holds ``x_train, y_train, x_valid, y_valid, x_test, y_test``
    with ``x (N, T)`` float and ``y (N,)`` integer classes (``x_valid``/``y_valid`` None
    or absent: no validation split, ``splits.valid`` None).  xs ``(batch, T, 1)``, ys
    ``(batch,)``, the class read at the last step, mean cross-entropy loss, uniform
    predictor ``ln n_classes``; ``task.splits`` are the fixed :class:`Splits`
    (``permutation = order`` when ``permuted``) and ``task.fingerprint`` their
    :func:`arrays_sha256`.  ``sample`` / ``eval_sample`` draw uniform rows of the train
    / test split."""
    T = arrays["x_train"].shape[1]
    order = np.arange(T) if order is None else order

    def part(s):
        if arrays.get(f"x_{s}") is None:  # a data set without this split (no validation)
            return None
        return (np.asarray(arrays[f"x_{s}"], np.float32)[:, order][..., None],
                np.asarray(arrays[f"y_{s}"], np.int32))

    splits = Splits(part("train"), part("valid"), part("test"), order if permuted else None)

    def sampler(data):
        xs_all, ys_all = (jnp.asarray(a) for a in data)

        def sample(key, batch):
            idx = jax.random.randint(key, (batch,), 0, xs_all.shape[0])
            return xs_all[idx], ys_all[idx]
        return sample

    return Task(name=name, sample=sampler(splits.train), eval_sample=sampler(splits.test),
                encode=identity_encoder, loss=mean_cross_entropy,
                metrics=classification_metrics, input_size=1, output_size=n_classes,
                readout="last", baseline=math.log(n_classes),
                baseline_note=f"uniform over {n_classes} classes: ln {n_classes}", time=T,
                splits=splits,
                fingerprint=arrays_sha256(*(a for part_ in (splits.train, splits.valid,
                                                            splits.test)
                                            if part_ is not None for a in part_)))


def check_permutation(perm, n: int) -> np.ndarray:
    """``perm`` as int32 ``(n,)`` after checking it is a permutation of ``0..n-1``."""
    perm = np.asarray(perm)
    if perm.shape != (n,) or not np.array_equal(np.sort(perm), np.arange(n)):
        raise ValueError(f"permutation must be a permutation of 0..{n - 1}, got "
                         f"{perm.shape[0] if perm.ndim == 1 else perm.shape} entries")
    return perm.astype(np.int32)


def steps_per_epoch(n: int, batch: int) -> int:
    """``floor(n / batch)``: an epoch drops the last partial batch (fixed shapes)."""
    if batch > n:
        raise ValueError(f"batch must be <= the {n} training examples of the split, "
                         f"got {batch}")
    return n // batch


def epoch_batch(data, key, step, batch: int, prepare=lambda xs: xs):
    """Batch ``j = step mod E`` of epoch ``e = step div E`` (``E`` =
    :func:`steps_per_epoch`): rows ``perm_e[j B : (j+1) B]`` of ``data = (xs, ys)``, with
    ``perm_e = jax.random.permutation(fold_in(key, e), N)``, so every training example is
    seen once per epoch in an order fixed by ``key``; ``prepare`` as in
    :class:`Splits`.  Traceable in ``step``."""
    xs, ys = data
    n = xs.shape[0]
    per = steps_per_epoch(n, batch)
    perm = jax.random.permutation(jax.random.fold_in(key, step // per), n)
    idx = jax.lax.dynamic_slice(perm, ((step % per) * batch,), (batch,))
    return prepare(jnp.asarray(xs)[idx]), jnp.asarray(ys)[idx]


def split_metrics(logits_fn: Callable, data, batch: int, prepare=lambda xs: xs) -> dict:
    r"""Loss and accuracy over a *whole* split, in batches of ``batch`` (traceable; jit
    the caller).  ``logits_fn(xs) -> (b, C)``; ``data = (xs (N, ...), ys (N,))`` stored
    rows, each batch passed through ``prepare`` (:class:`Splits`).

    ``loss = (1/N) sum_n CE(logits_n, y_n)``, ``accuracy = (1/N) #{n: argmax logits_n =
    y_n}``; the split is zero-padded to a multiple of ``batch`` and padded rows are masked
    out, so every example counts exactly once."""
    xs, ys = data
    n = xs.shape[0]
    nb = -(-n // batch)
    pad = nb * batch - n
    xs = jnp.concatenate([jnp.asarray(xs), jnp.zeros((pad,) + xs.shape[1:], xs.dtype)])
    ys = jnp.concatenate([jnp.asarray(ys), jnp.zeros((pad,), ys.dtype)])
    mask = (jnp.arange(nb * batch) < n).reshape(nb, batch)

    def one(args):
        x, y, m = args
        logits = logits_fn(prepare(x))
        ce = cross_entropy(logits, y)
        right = (jnp.argmax(logits, -1) == y)
        return (jnp.sum(jnp.where(m, ce, 0.0)),
                jnp.sum(jnp.where(m, right, False).astype(jnp.int32)))

    ce, right = jax.lax.map(one, (xs.reshape((nb, batch) + xs.shape[1:]),
                                  ys.reshape(nb, batch), mask))
    return {"loss": jnp.sum(ce) / n, "accuracy": jnp.sum(right) / n}


def cross_entropy(logits: Array, labels: Array) -> Array:
    r"""Per-position cross-entropy ``-log softmax(logits)[label]`` (nats).

    ``logits (..., C)``, integer ``labels (...)`` -> ``(...)``.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def accuracy(logits: Array, labels: Array) -> Array:
    """Fraction of positions where ``argmax(logits) == labels``."""
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def mean_cross_entropy(logits: Array, labels: Array) -> Array:
    """Mean of :func:`cross_entropy` (the loss of the classification tasks)."""
    return jnp.mean(cross_entropy(logits, labels))


def classification_metrics(logits: Array, labels: Array) -> dict:
    """``{"loss": mean cross-entropy, "accuracy"}`` of one batch."""
    return {"loss": mean_cross_entropy(logits, labels), "accuracy": accuracy(logits, labels)}


def one_hot_encoder(n: int):
    """``encode`` for integer token inputs: one-hot over ``n`` symbols (float32)."""
    return lambda xs: jax.nn.one_hot(xs, n, dtype=jnp.float32)


def identity_encoder(xs):
    return jnp.asarray(xs, jnp.float32)


__all__ = ["CreditSteps", "Splits", "Task", "accuracy", "arrays_sha256", "check_permutation",
           "classification_metrics", "cross_entropy", "dataset_task", "epoch_batch",
           "identity_encoder", "mean_cross_entropy",
           "one_hot_encoder", "split_metrics", "steps_per_epoch"]
