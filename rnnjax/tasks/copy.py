r"""The copy memory task (Arjovsky, Shah & Bengio 2016, "Unitary evolution RNNs").

Alphabet (one-hot over 10 symbols): ``0`` blank, ``1..8`` data, ``9`` marker.

Arjovsky's definition (``variant="arjovsky"``, default), with ``S = 10`` symbols and
delay ``T``; input and target have length ``T + 20``::

    input : s_1 .. s_10 | 0 x (T-1) | 9 | 0 x 10
    target: 0 x (T+10)              | s_1 .. s_10

so the marker sits at index ``T+9`` (0-based) and recall starts one step later, at
index ``T+10``.  ``variant="exprnn"`` is the timing of the expRNN code
(Lezcano-Casado & Martinez-Rubio 2019): ``input = s | 0 x T | 9 | 0 x 9``, the marker at
index ``T+10`` and recall starting *at* the marker step.

Credit (``Task.credit``, :class:`rnnjax.tasks.CreditSteps`): in both layouts the recall
targets are steps ``T+10 .. T+19``; the credit ratio compares the last symbol step
``9`` (source) with step ``T+9`` (reference), the last step before the first recall
target: the marker step in the arjovsky layout, the blank just before the marker in the
exprnn layout (whose marker step ``T+10`` already carries a recall target).  So
``L_recall`` is the mean cross-entropy of the 10 recall steps and the ratio
``||dL_recall/dz_9|| / ||dL_recall/dz_{T+9}||`` spans the ``T`` steps of the delay.

Loss: mean cross-entropy over all ``T+20`` steps and the batch.  The memoryless
strategy (blank for ``T+10`` steps, then uniform over the 8 data symbols) scores

    baseline = 10 ln 8 / (T + 20).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.core.checks import check_choice, check_positive_int
from rnnjax.tasks.base import CreditSteps, Task, accuracy, cross_entropy, one_hot_encoder

N_SYMBOLS = 10  # symbols to remember
N_DATA = 8  # data categories 1..8
BLANK, MARKER = 0, 9
N_CLASSES = 10  # one-hot size of inputs and outputs
VARIANTS = ("arjovsky", "exprnn")


def baseline(T: int) -> float:
    """Cross-entropy of the memoryless strategy: ``10 ln 8 / (T + 20)`` nats."""
    return N_SYMBOLS * math.log(N_DATA) / (T + 2 * N_SYMBOLS)


def copy_batch(key, batch: int, T: int, variant: str = "arjovsky"):
    """A batch of the copy task as integer symbols.

    Returns ``(inputs, targets)``, both ``int32 (batch, T + 20)``; see the module doc.
    """
    check_positive_int("T", T)
    check_positive_int("batch", batch)
    check_choice("variant", variant, VARIANTS)
    S = N_SYMBOLS
    seq = jax.random.randint(key, (batch, S), 1, N_DATA + 1, dtype=jnp.int32)
    lead = T - 1 if variant == "arjovsky" else T  # blanks between the data and the marker
    zeros = lambda n: jnp.zeros((batch, n), jnp.int32)
    marker = jnp.full((batch, 1), MARKER, jnp.int32)
    inputs = jnp.concatenate([seq, zeros(lead), marker, zeros(T + 2 * S - S - lead - 1)], 1)
    targets = jnp.concatenate([zeros(T + S), seq], 1)
    return inputs, targets


def credit_steps(T: int) -> CreditSteps:
    """The copy task's credit steps: recall targets ``T+10..T+19``, source ``9`` (the last
    symbol), reference ``T+9`` (the last step before the first target); both layouts."""
    check_positive_int("T", T)
    S = N_SYMBOLS
    return CreditSteps(targets=tuple(range(T + S, T + 2 * S)), source=S - 1,
                       reference=T + S - 1)


def copy_task(T: int = 100, variant: str = "arjovsky") -> Task:
    """The copy task as a :class:`Task` (readout at every step, 10 classes)."""
    check_positive_int("T", T)
    check_choice("variant", variant, VARIANTS)

    def sample(key, batch):
        return copy_batch(key, batch, T, variant)

    def loss(logits, ys):
        return jnp.mean(cross_entropy(logits, ys))

    def metrics(logits, ys):
        recall = slice(T + N_SYMBOLS, T + 2 * N_SYMBOLS)
        return {"loss": loss(logits, ys),
                "accuracy": accuracy(logits[:, recall], ys[:, recall])}

    return Task(name="copy", sample=sample, eval_sample=sample,
                encode=one_hot_encoder(N_CLASSES), loss=loss, metrics=metrics,
                input_size=N_CLASSES, output_size=N_CLASSES, readout="all",
                baseline=baseline(T),
                baseline_note="memoryless: blanks, then uniform over 8 symbols: "
                              "10 ln 8 / (T+20)",
                time=T + 2 * N_SYMBOLS, credit=credit_steps(T))


__all__ = ["N_CLASSES", "N_DATA", "N_SYMBOLS", "VARIANTS", "baseline", "copy_batch",
           "copy_task", "credit_steps"]
