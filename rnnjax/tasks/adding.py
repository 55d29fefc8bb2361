r"""The adding problem (Hochreiter & Schmidhuber 1997; as in Arjovsky et al. 2016).

Input ``(batch, T, 2)``: channel 0 holds values ``U(0, 1)``; channel 1 is zero except
for one marker (1.0) at a uniform position in ``[0, T/2)`` and one in ``[T/2, T)``.
Target: the sum of the two marked values.  Loss: mean squared error of the output at
the last step.  Predicting the mean 1 scores ``Var(u_1 + u_2) = 2/12 = 1/6``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnjax.core.checks import check_positive_int
from rnnjax.tasks.base import Task, identity_encoder

BASELINE = 1.0 / 6.0


def adding_batch(key, batch: int, T: int):
    """``(xs (batch, T, 2) float32, ys (batch,) float32)``; ``T >= 2``."""
    check_positive_int("batch", batch)
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an integer >= 2 for the adding problem, got {T!r}")
    kv, k1, k2 = jax.random.split(key, 3)
    values = jax.random.uniform(kv, (batch, T), jnp.float32)
    i = jax.random.randint(k1, (batch,), 0, T // 2)
    j = jax.random.randint(k2, (batch,), T // 2, T)
    marks = jax.nn.one_hot(i, T, dtype=jnp.float32) + jax.nn.one_hot(j, T, dtype=jnp.float32)
    return jnp.stack([values, marks], -1), jnp.sum(values * marks, -1)


def adding_task(T: int = 100) -> Task:
    """The adding problem as a :class:`Task` (readout at the last step, 1 output)."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 2:
        raise ValueError(f"T must be an integer >= 2 for the adding problem, got {T!r}")

    def sample(key, batch):
        return adding_batch(key, batch, T)

    def loss(out, ys):
        return jnp.mean((out[..., 0] - ys) ** 2)

    def metrics(out, ys):
        return {"loss": loss(out, ys)}

    return Task(name="adding", sample=sample, eval_sample=sample, encode=identity_encoder,
                loss=loss, metrics=metrics, input_size=2, output_size=1, readout="last",
                baseline=BASELINE, baseline_note="predict 1: MSE 1/6", time=T)


__all__ = ["BASELINE", "adding_batch", "adding_task"]
