r"""Soft constraints added to a training loss: the orthogonality penalty, gradient
flossing, and the nnRNN recipe's penalties.

* :func:`orthogonality_penalty`: ``lam ||W^H W - I||_F^2`` of any cell exposing
  ``recurrent_matrix`` (summed over the gate blocks of a fused ``(G*H, H)`` matrix):
  the soft form of the constraint ``W^H W = I`` (e.g. Vorontsov et al. 2017, sec. 2.2).
* :func:`flossing_penalty`: gradient flossing (Engelken 2023, "Gradient flossing:
  improving gradient descent through dynamic control of Jacobians"): ``sum_{i<=k}
  lambda_i^2`` of the top-``k`` Lyapunov exponents of the cell driven by input
  sequences, from :func:`rnnjax.analysis.lyapunov_spectrum` -- the QR method, whose
  ``log|R_ii|`` terms are differentiated through ``jnp.linalg.qr`` -- so its gradient
  pushes the exponents towards 0 (neither exploding nor vanishing products of
  Jacobians).
* :func:`nnrnn_penalty`: ``alpha_lam sum_k (alpha_k - 1)^2 + (t_decay / 2) ||T||_F^2``,
  the regularisers of the nnRNN code (``KyleGoyette/nnRNN``: ``alpha_loss`` and the
  weight decay ``Tdecay`` on the upper-triangular ``T``).

:class:`Penalties` and :func:`penalty` combine them into the one extra term the
training runner adds to the task loss (``rnnjax train --orth-penalty``,
``--floss-every/--floss-k/--floss-weight``, ``--nnrnn-alpha/--nnrnn-decay``)::

    L(theta) = task_loss + orth ||W^H W - I||_F^2 + nnrnn terms
               [+ floss_weight sum_{i<=k} lambda_i^2   on flossing steps]

Each returns a scalar that is added to the task loss before ``jax.grad``.

Flossing in the runner and in Engelken's reference code
(``RainerEngelken/GradientFlossing``): there, flossing is a separate phase -- ``Ep``
steps before training and ``Ei`` steps every ``Ef`` epochs, each minimising
``mean_i (lambda_i - 0)^2`` alone on one fresh sequence (batch 1, transient
discarded) with its own Adam.  Here it keeps the one update rule: on every
``floss_every``-th step (the first included, "preflossing") the loss gains
``floss_weight sum_{i<=k} lambda_i^2`` on the first ``floss_batch`` training sequences,
the first ``10 + ceil(T / 10)`` steps of each discarded as the transient
(:func:`flossing_burn_in`; the reference's ``n > nStepTransient + nStepTransientONS``
with ``nStepTransient = 10``, ``nStepTransientONS = ceil(Int, nStep / 10)``,
``GradientFlossing_ExampleCode.jl``), under the run's optimiser.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax import analysis
from rnnjax.core.cell import Cell

__all__ = ["Penalties", "flossing_burn_in", "flossing_penalty", "lyapunov_exponents",
           "nnrnn_penalty",
           "orthogonality_penalty", "penalty"]


def _check_cell(cell):
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be an rnnjax.Cell, got {type(cell).__name__}")


def _check_nonneg(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")


def orthogonality_penalty(cell: Cell, params, lam: float = 1.0):
    r"""``lam sum_g ||W_g^H W_g - I||_F^2`` over the ``(H, H)`` blocks ``W_g`` of the
    cell's recurrent matrix (one block for ``(H, H)`` cells, ``G`` for fused gates)."""
    _check_cell(cell)
    if cell.recurrent_matrix is None:
        raise ValueError(f"the {cell.name} cell exposes no recurrent matrix "
                         "(recurrent_matrix is None)")
    _check_nonneg("lam", lam)
    W = cell.recurrent_matrix(params)
    if W.ndim != 2 or W.shape[0] % W.shape[1]:
        raise ValueError(f"the recurrent matrix must be (H, H) or (G*H, H), got {W.shape}")
    H = W.shape[1]
    B = W.reshape(-1, H, H)
    E = jnp.einsum("gki,gkj->gij", B.conj(), B) - jnp.eye(H, dtype=B.dtype)
    return lam * jnp.sum(jnp.abs(E) ** 2)


def lyapunov_exponents(cell: Cell, params, xs, *, k: int = 1, burn_in: int = 0, key=None):
    """Top-``k`` Lyapunov exponents ``(k,)`` for one sequence ``xs (T, F)``, or
    ``(batch, k)`` for ``xs (batch, T, F)`` (one QR iteration per sequence, the same
    initial basis from ``key``); differentiable in ``params``."""
    _check_cell(cell)
    opts = dict(k=k, burn_in=burn_in, key=key)
    if jnp.ndim(xs) == 3:
        return jax.vmap(lambda x: analysis.lyapunov_spectrum(cell, params, x, **opts))(xs)
    return analysis.lyapunov_spectrum(cell, params, xs, **opts)


def flossing_penalty(cell: Cell, params, xs, *, k: int = 1, burn_in: int = 0, key=None):
    r"""Gradient flossing loss ``sum_{i<=k} lambda_i^2`` (Engelken 2023), averaged over
    the batch when ``xs`` is ``(batch, T, F)``; see :func:`lyapunov_exponents`.

    The gradient is the exact derivative of the finite-time exponents, through the
    state trajectory as well as the Jacobians and the QR steps.  (Tried and dropped:
    stopping it at the states, whose part grows like ``exp(lambda_1 T)`` on a chaotic
    trajectory; with Adam and a decaying step the exact gradient settled ``lambda_1``
    of a gain-4 Elman cell near 0 and the truncated one did not.)"""
    lam = lyapunov_exponents(cell, params, xs, k=k, burn_in=burn_in, key=key)
    return jnp.mean(jnp.sum(lam ** 2, axis=-1))


def nnrnn_penalty(params, alpha_lam: float = 1e-4, t_decay: float = 1e-6):
    r"""``alpha_lam sum_k (alpha_k - 1)^2 + (t_decay/2) ||triu(upper, 1)||_F^2`` for the
    params of :func:`rnnjax.cells.nnrnn` (the cell's own dict)."""
    if not isinstance(params, dict) or not {"alphas", "upper"} <= set(params):
        raise ValueError("params must be the nnrnn cell's params (keys 'alphas' and "
                         f"'upper'), got {type(params).__name__}"
                         + (f" with keys {sorted(params)}" if isinstance(params, dict) else ""))
    _check_nonneg("alpha_lam", alpha_lam)
    _check_nonneg("t_decay", t_decay)
    T = jnp.triu(params["upper"], 1)
    return alpha_lam * jnp.sum((params["alphas"] - 1.0) ** 2) + 0.5 * t_decay * jnp.sum(T ** 2)


def flossing_burn_in(T: int) -> int:
    """Steps of a length-``T`` sequence excluded from the flossed exponents: ``10 +
    ceil(T / 10)``, as RainerEngelken/GradientFlossing (``GradientFlossing_ExampleCode.jl``:
    the QR terms are summed for ``n > nStepTransient + nStepTransientONS``).  Raises
    ``ValueError`` when no step would be left (``T <= 12``)."""
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be a positive integer, got {T!r}")
    burn = 10 + -(-T // 10)
    if burn >= T:
        raise ValueError(f"gradient flossing discards the first 10 + ceil(T/10) = {burn} "
                         f"steps as transient, which leaves nothing of sequences of "
                         f"length T = {T}; use sequences of at least 13 steps")
    return burn


class Penalties(NamedTuple):
    """The soft constraints of a run (all off by default); see :func:`penalty`.

    ``orth``: ``lam`` of :func:`orthogonality_penalty`; ``nnrnn_alpha``,
    ``nnrnn_decay``: ``alpha_lam``, ``t_decay`` of :func:`nnrnn_penalty`;
    ``floss_weight``, ``floss_k``, ``floss_batch``: the weight, number of exponents and
    number of training sequences of :func:`flossing_penalty` (added only when
    :func:`penalty` is called with ``floss=True``)."""

    orth: float = 0.0
    nnrnn_alpha: float = 0.0
    nnrnn_decay: float = 0.0
    floss_weight: float = 0.0
    floss_k: int = 1
    floss_batch: int = 1


def penalty(cell: Cell, params, xs, spec: Penalties, *, floss: bool = False):
    r"""The extra loss of ``spec`` for ``cell`` with its ``params`` on the encoded
    training inputs ``xs (batch, T, F)``::

        orth ||W^H W - I||_F^2 + nnrnn_alpha sum_k (alpha_k - 1)^2
          + (nnrnn_decay / 2) ||T||_F^2
          + [floss] floss_weight mean_b sum_{i<=floss_k} lambda_i(xs_b)^2

    (terms whose coefficient is 0 are left out; ``lambda_i`` over the first
    ``floss_batch`` sequences with burn-in :func:`flossing_burn_in`).  Returns a scalar (0.0 when
    nothing is on)."""
    if not isinstance(spec, Penalties):
        raise TypeError(f"spec must be a constraints.Penalties, got {type(spec).__name__}")
    total = 0.0
    if spec.orth:
        total = total + orthogonality_penalty(cell, params, spec.orth)
    if spec.nnrnn_alpha or spec.nnrnn_decay:
        total = total + nnrnn_penalty(params, spec.nnrnn_alpha, spec.nnrnn_decay)
    if floss and spec.floss_weight:
        seqs = xs[:spec.floss_batch]
        total = total + spec.floss_weight * flossing_penalty(
            cell, params, seqs, k=spec.floss_k, burn_in=flossing_burn_in(seqs.shape[1]))
    return jnp.asarray(total)
