r"""State-tracking tasks of the lab: parity, modular addition, permutation composition
(the S3 and S5 word problems) and cycle navigation.  Each is a token task
(:mod:`rnnjax.tasks.masked`) of ``T`` steps whose target at step ``t >= 1`` is the
running state after reading ``x_0..x_t`` (step 0 has no target, ``-1``), so a model
trained at ``T`` is scored at ``2T, 4T, 8T`` by the same rule (length generalisation).

- **parity** (:func:`parity_task`): ``x_t`` uniform in ``{0, 1}``,
  ``y_t = (x_0 + .. + x_t) mod 2``.
- **modular addition** (:func:`modadd_task`, ``modulus=5``): ``x_t`` uniform in
  ``0..m-1``, ``y_t = (x_0 + .. + x_t) mod m``.
- **permutation composition** (:func:`permutation_task`, ``n=3`` or ``5``; Merrill,
  Petty & Sabharwal 2024, "The Illusion of State in State-Space Models"): ``x_t`` the
  index of a uniform element of ``S_n`` in ``itertools.permutations(range(n))`` order,
  ``y_t`` the index of ``g_t o .. o g_0`` with ``(a o b)(i) = a[b[i]]`` (the state
  after applying ``g_0`` first).
- **cycle navigation** (:func:`cycle_task`, ``n=5``; Deletang et al. 2023, with a
  uniform start): ``x_0`` a start position in ``0..n-1``, ``x_t`` for ``t >= 1`` a move
  token ``n`` (stay), ``n+1`` (+1), ``n+2`` (-1); ``y_t`` the position on the
  ``n``-cycle.

Baseline: for ``t >= 1`` the running state is uniform and independent of ``x_t`` (a
uniform group element times an independent one), so the best memoryless strategy, one
that reads only the current token, guesses uniformly: ``ln |states|`` (``ln 2``,
``ln m``, ``ln n!``, ``ln n``).  Metrics: ``loss`` and ``accuracy`` over steps
``1..T-1``.  Credit: target ``T-1`` (the last state), source ``0`` (the first token,
which the last state depends on), reference ``T-2``.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.checks import check_positive_int
from rnnjax.tasks.base import CreditSteps
from rnnjax.tasks.masked import IGNORE, token_task


def _check_T(T):
    if isinstance(T, bool) or not isinstance(T, int) or T < 3:
        raise ValueError(f"T must be an integer >= 3 for a state-tracking task, got {T!r}")


def _credit(T):
    return CreditSteps((T - 1,), 0, T - 2)


def _no_first(ys):
    return ys.at[:, 0].set(IGNORE)


def parity_task(T: int = 32):
    """Running parity as a :class:`rnnjax.tasks.Task` (module doc)."""
    _check_T(T)

    def sample(key, batch):
        xs = jax.random.randint(key, (batch, T), 0, 2, dtype=jnp.int32)
        return xs, _no_first(jnp.cumsum(xs, axis=1) % 2).astype(jnp.int32)

    return token_task("parity", sample, n_inputs=2, n_classes=2, baseline=math.log(2),
                      baseline_note="memoryless: uniform over {0, 1}: ln 2", T=T,
                      credit=_credit(T))


def modadd_task(T: int = 32, modulus: int = 5):
    """Running sum mod ``modulus`` as a :class:`rnnjax.tasks.Task` (module doc)."""
    _check_T(T)
    check_positive_int("modulus", modulus)
    m = modulus

    def sample(key, batch):
        xs = jax.random.randint(key, (batch, T), 0, m, dtype=jnp.int32)
        return xs, _no_first(jnp.cumsum(xs, axis=1) % m).astype(jnp.int32)

    return token_task("modadd", sample, n_inputs=m, n_classes=m, baseline=math.log(m),
                      baseline_note=f"memoryless: uniform over {m} residues: ln {m}", T=T,
                      credit=_credit(T))


def permutation_table(n: int) -> np.ndarray:
    """``table[a, b]``: the index of ``a o b`` (``(a o b)(i) = a[b[i]]``) among
    ``itertools.permutations(range(n))``; ``(n!, n!)`` int32."""
    perms = list(itertools.permutations(range(n)))
    index = {p: i for i, p in enumerate(perms)}
    return np.array([[index[tuple(a[b[i]] for i in range(n))] for b in perms]
                     for a in perms], np.int32)


def permutation_task(T: int = 32, n: int = 3):
    """The ``S_n`` word problem as a :class:`rnnjax.tasks.Task` (module doc); named
    ``s3``, ``s5``, ... after ``n``."""
    _check_T(T)
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= 6:
        raise ValueError(f"n must be an integer in 2..6 (S_n has n! elements), got {n!r}")
    table = jnp.asarray(permutation_table(n))
    size = math.factorial(n)

    def sample(key, batch):
        xs = jax.random.randint(key, (batch, T), 0, size, dtype=jnp.int32)
        # y_t = x_t o y_{t-1}: an associative combine of (earlier, later) prefixes
        ys = jax.lax.associative_scan(lambda a, b: table[b, a], xs, axis=1)
        return xs, _no_first(ys)

    return token_task(f"s{n}", sample, n_inputs=size, n_classes=size,
                      baseline=math.log(size),
                      baseline_note=f"memoryless: uniform over the {size} elements of "
                                    f"S_{n}: ln {size}", T=T, credit=_credit(T))


def cycle_task(T: int = 32, n: int = 5):
    """Cycle navigation as a :class:`rnnjax.tasks.Task` (module doc)."""
    _check_T(T)
    check_positive_int("n", n)

    def sample(key, batch):
        ks, km = jax.random.split(key)
        start = jax.random.randint(ks, (batch, 1), 0, n, dtype=jnp.int32)
        moves = jax.random.randint(km, (batch, T - 1), 0, 3, dtype=jnp.int32)
        delta = jnp.array([0, 1, -1], jnp.int32)[moves]
        xs = jnp.concatenate([start, moves + n], 1)
        pos = jnp.cumsum(jnp.concatenate([start, delta], 1), axis=1) % n
        return xs, _no_first(pos).astype(jnp.int32)

    return token_task("cycle", sample, n_inputs=n + 3, n_classes=n, baseline=math.log(n),
                      baseline_note=f"memoryless: uniform over {n} positions: ln {n}", T=T,
                      credit=_credit(T))


__all__ = ["cycle_task", "modadd_task", "parity_task", "permutation_table",
           "permutation_task"]
