"""What the lab's token tasks share: a target of ``-1`` marks a step without a target
(no loss, no accuracy), and the loss and accuracy are means over the marked steps.

``loss(logits, ys) = sum_{b,t: y_bt >= 0} CE(logits_bt, y_bt) / max(1, #{y >= 0})``,
``accuracy = #{y_bt >= 0: argmax logits_bt = y_bt} / max(1, #{y >= 0})``; the same
functions serve any subset of the steps (the credit loss restricts them to
:attr:`rnnjax.tasks.Task.credit`'s targets)."""

from __future__ import annotations

import jax.numpy as jnp

from rnnjax.core.checks import check_positive_int
from rnnjax.tasks.base import CreditSteps, Task, cross_entropy, one_hot_encoder

IGNORE = -1  # the target of a step the loss does not read


def masked_loss(logits, ys):
    """Mean cross-entropy over the steps with a target (``ys >= 0``)."""
    mask = ys >= 0
    ce = cross_entropy(logits, jnp.where(mask, ys, 0))
    return jnp.sum(jnp.where(mask, ce, 0.0)) / jnp.maximum(jnp.sum(mask), 1)


def masked_accuracy(logits, ys):
    """Fraction of the steps with a target where ``argmax(logits) == ys``."""
    mask = ys >= 0
    right = (jnp.argmax(logits, -1) == ys) & mask
    return jnp.sum(right) / jnp.maximum(jnp.sum(mask), 1)


def masked_metrics(logits, ys):
    """``{"loss", "accuracy"}`` over the steps with a target."""
    return {"loss": masked_loss(logits, ys), "accuracy": masked_accuracy(logits, ys)}


def token_task(name, sample, *, n_inputs, n_classes, baseline, baseline_note, T,
               credit: CreditSteps) -> Task:
    """A :class:`Task` over integer tokens (one-hot over ``n_inputs``) with a target per
    step (``-1``: none), the masked loss and metrics, readout at every step."""
    check_positive_int("T", T)
    return Task(name=name, sample=sample, eval_sample=sample,
                encode=one_hot_encoder(n_inputs), loss=masked_loss, metrics=masked_metrics,
                input_size=n_inputs, output_size=n_classes, readout="all",
                baseline=float(baseline), baseline_note=baseline_note, time=T,
                credit=credit)


__all__ = ["IGNORE", "masked_accuracy", "masked_loss", "masked_metrics", "token_task"]
