r"""Memory tasks of the lab: selective copying, multi-query associative recall (MQAR)
and induction heads.  Each is a token task (:mod:`rnnjax.tasks.masked`): one-hot inputs,
logits at every step, a target ``-1`` where there is none, the loss and accuracy are
means over the steps with a target.  ``T`` is the whole sequence length (evaluation at
``4T`` draws sequences of ``4T`` steps); the other sizes are options.

**Selective copying** (Gu & Dao 2023, "Mamba", Sec. 3.1 / Fig. 2), :func:`selective_copy_task`
``(T, n_tokens=4, vocab=8)``: tokens ``0`` noise, ``1..vocab`` data, ``vocab+1``
marker::

    input : [n_tokens data tokens at uniform distinct positions of 0..T-n-1, noise
             elsewhere] | marker x n            (n = n_tokens)
    target: -1 x (T-n)                          | the data tokens in order of position

Baseline: the memoryless strategy sees only the marker at a recall step and guesses
uniformly over the data: ``ln vocab``.  Credit: targets ``T-n..T-1``, source ``0``
(the earliest step a data token can sit at), reference ``T-n-1``.

**MQAR** (Arora et al. 2023, "Zoology", the layout of ``zoology/data/multiquery_ar.py``),
:func:`mqar_task` ``(T, vocab=32, pairs=4, power_a=0.01)``: keys are drawn without
replacement from ``1..vocab//2 - 1``, values from ``vocab//2..vocab-1``; the context
``k_1 v_1 .. k_P v_P`` fills steps ``0..2P-1``; the query region (steps ``2P..T-1``)
holds each key once, key ``i`` at step ``2P + 2 g_i`` with gaps ``g`` drawn without
replacement from ``0..(T-2P)/2 - 1`` with probability ``proportional to a (g+1)^(a-1)``
(``a = power_a``, Zoology's power law); every other query-region step is a uniform
random token of ``0..vocab-1`` (Zoology's ``random_non_queries``).  Target at a query
step: the key's value; ``-1`` elsewhere.  Baseline: a memoryless model sees the key
only and guesses uniformly over the ``vocab - vocab//2`` values:
``ln(vocab - vocab//2)``.  Credit: targets ``2P..T-1`` (the query region), source
``1`` (the first value), reference ``2P-1`` (the last context step).

**Induction heads** (Olsson et al. 2022; the Mamba paper's Table 2 task),
:func:`induction_task` ``(T, vocab=8)``: tokens ``0..vocab-1`` uniform data, ``vocab``
the trigger; the trigger sits at one uniform step ``p`` of ``0..T-3`` and at step
``T-1``; the target at ``T-1`` is the token after the first trigger, ``x_{p+1}``
(``-1`` elsewhere).  Baseline: the memoryless strategy sees the trigger and guesses
uniformly: ``ln vocab``.  Credit: target ``T-1``, source ``0``, reference ``T-2``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.core.checks import check_positive_int
from rnnjax.tasks.base import CreditSteps
from rnnjax.tasks.masked import IGNORE, token_task


def _distinct(key, batch, n, k):
    """``(batch, k)``: ``k`` distinct uniform draws from ``0..n-1`` per row."""
    return jnp.argsort(jax.random.uniform(key, (batch, n)), axis=1)[:, :k].astype(jnp.int32)


def _place(length, pos, values):
    """``(batch, length)`` int32: ``values (batch, k)`` at positions ``pos (batch, k)``,
    0 elsewhere."""
    hot = jax.nn.one_hot(pos, length, dtype=jnp.int32)  # (batch, k, length)
    return jnp.sum(hot * values[..., None], axis=1)


def selective_copy_batch(key, batch: int, T: int, n_tokens: int = 4, vocab: int = 8):
    """``(inputs, targets)``, both ``int32 (batch, T)``; see the module doc."""
    n = n_tokens
    kp, kd = jax.random.split(key)
    pos = jnp.sort(_distinct(kp, batch, T - n, n), axis=1)
    data = jax.random.randint(kd, (batch, n), 1, vocab + 1, dtype=jnp.int32)
    region = _place(T - n, pos, data)
    inputs = jnp.concatenate([region, jnp.full((batch, n), vocab + 1, jnp.int32)], 1)
    targets = jnp.concatenate([jnp.full((batch, T - n), IGNORE, jnp.int32), data], 1)
    return inputs, targets


def selective_copy_task(T: int = 32, n_tokens: int = 4, vocab: int = 8):
    """Selective copying as a :class:`rnnjax.tasks.Task` (module doc); ``T >= 2 n_tokens``."""
    check_positive_int("T", T)
    check_positive_int("n_tokens", n_tokens)
    check_positive_int("vocab", vocab)
    if T < 2 * n_tokens:
        raise ValueError(f"T must be >= 2 n_tokens = {2 * n_tokens} for selective copying, "
                         f"got {T}")

    def sample(key, batch):
        return selective_copy_batch(key, batch, T, n_tokens, vocab)

    return token_task("selective_copy", sample, n_inputs=vocab + 2, n_classes=vocab + 2,
                      baseline=math.log(vocab),
                      baseline_note=f"memoryless: uniform over the {vocab} data tokens at "
                                    f"the recall steps: ln {vocab}", T=T,
                      credit=CreditSteps(tuple(range(T - n_tokens, T)), 0,
                                         T - n_tokens - 1))


def mqar_gap_probs(space: int, power_a: float):
    """Zoology's power law over the gaps ``0..space-1``: ``p_g ~ a (g+1)^(a-1)``."""
    g = jnp.arange(1, space + 1, dtype=jnp.float32)
    p = power_a * g ** (power_a - 1)
    return p / jnp.sum(p)


def mqar_batch(key, batch: int, T: int, vocab: int = 32, pairs: int = 4,
               power_a: float = 0.01):
    """``(inputs, targets)``, both ``int32 (batch, T)``; see the module doc.  The gaps
    are drawn without replacement by the Gumbel top-k trick (the same law as NumPy's
    sequential ``choice(replace=False, p=...)``)."""
    P, half = pairs, vocab // 2
    kk, kv, kg, kr = jax.random.split(key, 4)
    keys = _distinct(kk, batch, half - 1, P) + 1
    values = _distinct(kv, batch, vocab - half, P) + half
    context = jnp.stack([keys, values], -1).reshape(batch, 2 * P)
    space = (T - 2 * P) // 2
    logp = jnp.log(mqar_gap_probs(space, power_a))
    gumbel = jax.random.gumbel(kg, (batch, space))
    gaps = jax.lax.top_k(logp + gumbel, P)[1].astype(jnp.int32)
    L = T - 2 * P
    is_query = _place(L, 2 * gaps, jnp.ones_like(gaps)) > 0
    noise = jax.random.randint(kr, (batch, L), 0, vocab, dtype=jnp.int32)
    region = jnp.where(is_query, _place(L, 2 * gaps, keys), noise)
    labels = jnp.where(is_query, _place(L, 2 * gaps, values), IGNORE)
    inputs = jnp.concatenate([context, region], 1)
    targets = jnp.concatenate([jnp.full((batch, 2 * P), IGNORE, jnp.int32), labels], 1)
    return inputs, targets


def mqar_task(T: int = 32, vocab: int = 32, pairs: int = 4, power_a: float = 0.01):
    """MQAR as a :class:`rnnjax.tasks.Task` (module doc); ``T`` even, ``T >= 4 pairs``,
    ``vocab//2 - 1 >= pairs``."""
    check_positive_int("T", T)
    check_positive_int("pairs", pairs)
    check_positive_int("vocab", vocab)
    if T % 2 or T < 4 * pairs:
        raise ValueError(f"T must be even and >= 4 pairs = {4 * pairs} for MQAR "
                         f"(Zoology's layout), got {T}")
    if vocab // 2 - 1 < pairs:
        raise ValueError(f"vocab must give at least pairs={pairs} keys (vocab//2 - 1), "
                         f"got vocab={vocab}")
    if not 0 < power_a <= 1:
        raise ValueError(f"power_a must be in (0, 1], got {power_a!r}")

    def sample(key, batch):
        return mqar_batch(key, batch, T, vocab, pairs, power_a)

    n_values = vocab - vocab // 2
    return token_task("mqar", sample, n_inputs=vocab, n_classes=vocab,
                      baseline=math.log(n_values),
                      baseline_note=f"memoryless: uniform over the {n_values} values at "
                                    f"each query: ln {n_values}", T=T,
                      credit=CreditSteps(tuple(range(2 * pairs, T)), 1, 2 * pairs - 1))


def induction_batch(key, batch: int, T: int, vocab: int = 8):
    """``(inputs, targets)``, both ``int32 (batch, T)``; see the module doc."""
    kx, kp = jax.random.split(key)
    xs = jax.random.randint(kx, (batch, T), 0, vocab, dtype=jnp.int32)
    p = jax.random.randint(kp, (batch,), 0, T - 2, dtype=jnp.int32)
    t = jnp.arange(T)
    xs = jnp.where((t == p[:, None]) | (t == T - 1), vocab, xs)
    answer = jnp.take_along_axis(xs, (p + 1)[:, None], axis=1)
    targets = jnp.where(t == T - 1, answer, IGNORE).astype(jnp.int32)
    return xs, targets


def induction_task(T: int = 32, vocab: int = 8):
    """Induction heads as a :class:`rnnjax.tasks.Task` (module doc); ``T >= 3``."""
    check_positive_int("vocab", vocab)
    if isinstance(T, bool) or not isinstance(T, int) or T < 3:
        raise ValueError(f"T must be an integer >= 3 for induction heads, got {T!r}")

    def sample(key, batch):
        return induction_batch(key, batch, T, vocab)

    return token_task("induction", sample, n_inputs=vocab + 1, n_classes=vocab,
                      baseline=math.log(vocab),
                      baseline_note=f"memoryless: uniform over the {vocab} tokens at the "
                                    f"second trigger: ln {vocab}", T=T,
                      credit=CreditSteps((T - 1,), 0, T - 2))


__all__ = ["induction_batch", "induction_task", "mqar_batch", "mqar_gap_probs", "mqar_task",
           "selective_copy_batch", "selective_copy_task"]
