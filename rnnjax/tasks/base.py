"""The :class:`Task` record shared by every task, and the losses they use."""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

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
    baseline: Optional[float]
    baseline_note: str
    time: int


def cross_entropy(logits: Array, labels: Array) -> Array:
    r"""Per-position cross-entropy ``-log softmax(logits)[label]`` (nats).

    ``logits (..., C)``, integer ``labels (...)`` -> ``(...)``.
    """
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]


def accuracy(logits: Array, labels: Array) -> Array:
    """Fraction of positions where ``argmax(logits) == labels``."""
    return jnp.mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32))


def one_hot_encoder(n: int):
    """``encode`` for integer token inputs: one-hot over ``n`` symbols (float32)."""
    return lambda xs: jax.nn.one_hot(xs, n, dtype=jnp.float32)


def identity_encoder(xs):
    return jnp.asarray(xs, jnp.float32)


__all__ = ["Task", "accuracy", "cross_entropy", "identity_encoder", "one_hot_encoder"]
