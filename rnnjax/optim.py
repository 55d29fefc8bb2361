r"""Optimizer recipe of the orthogonal / unitary RNN papers, built with optax.

expRNN (Lezcano-Casado & Martinez-Rubio 2019) and scoRNN (Helfrich et al. 2018) train
with RMSprop (or Adam) and give the parameters of the orthogonal map their own,
smaller learning rate (typically a tenth of the others).  :func:`recipe` builds that::

    tx = rnnjax.optim.recipe("rmsprop", lr=1e-3, lr_orth=1e-4, clip=1.0)
    opt_state = tx.init(params)
    updates, opt_state = tx.update(grads, opt_state, params)

Param groups (:func:`label_params`), decided by the dict key holding each leaf:

* ``"orthogonal"``: keys in :data:`ORTHOGONAL_KEYS` -- ``"skew"`` (expRNN, scoRNN,
  full-capacity uRNN generators), ``"reflections"`` (Householder vectors, uRNN
  reflections), ``"phases"`` (uRNN / EUNN diagonal phases), ``"angles"`` (EUNN
  rotations);
* ``"frozen"``: keys in :data:`FROZEN_KEYS` -- ``"base"``, the base of the dynamic
  trivialization, changed only by :func:`rnnjax.parametrize.retrivialize`;
* ``"other"``: everything else (input matrices, biases, readouts).

Global-norm clipping, when asked, is applied to all gradients together before the
groups are split.
"""

from __future__ import annotations

import optax
import jax

from rnnjax.checks import check_choice, check_optional_positive, check_positive_float

ORTHOGONAL_KEYS = frozenset({"skew", "reflections", "phases", "angles"})
FROZEN_KEYS = frozenset({"base"})
OPTIMIZERS = ("rmsprop", "adam", "sgd")


def _key_name(entry):
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return None


def label_params(params, orthogonal_keys=ORTHOGONAL_KEYS, frozen_keys=FROZEN_KEYS):
    """Pytree of labels ``"orthogonal"`` / ``"frozen"`` / ``"other"`` with the structure
    of ``params``: a leaf is labelled by the nearest enclosing dict key found in
    ``orthogonal_keys`` or ``frozen_keys`` (so ``{"cell": {"skew": ...}}`` works)."""

    def label(path, _):
        names = [_key_name(e) for e in path]
        for name in reversed(names):
            if name in frozen_keys:
                return "frozen"
            if name in orthogonal_keys:
                return "orthogonal"
        return "other"

    return jax.tree_util.tree_map_with_path(label, params)


def _base(optimizer, lr, decay, eps, momentum):
    if optimizer == "rmsprop":  # PyTorch's RMSprop, as used by the papers' code
        return optax.rmsprop(lr, decay=decay, eps=eps, eps_in_sqrt=False,
                             momentum=momentum or None)
    if optimizer == "adam":
        return optax.adam(lr, eps=eps)
    return optax.sgd(lr, momentum=momentum or None)


def recipe(optimizer: str = "rmsprop", lr=1e-3, lr_orth=None, clip: float | None = None,
           decay: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
           orthogonal_keys=ORTHOGONAL_KEYS, frozen_keys=FROZEN_KEYS
           ) -> optax.GradientTransformation:
    r"""The papers' optimizer: ``optimizer`` with learning rate ``lr`` for the ordinary
    params and ``lr_orth`` (default ``lr / 10``) for the orthogonal / unitary ones.

    Args:
      optimizer: ``"rmsprop"`` (``decay``, ``eps``, ``momentum``: PyTorch's ``alpha``,
        ``eps``, ``momentum``), ``"adam"`` or ``"sgd"``.
      lr, lr_orth: floats or optax schedules.
      clip: maximum global gradient norm (``optax.clip_by_global_norm``), or None.
      orthogonal_keys, frozen_keys: override the grouping of :func:`label_params`.

    Returns:
      ``optax.GradientTransformation``; params labelled ``"frozen"`` get zero updates.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check_optional_positive("clip", clip)
    for name, rate in (("lr", lr), ("lr_orth", lr_orth)):
        if rate is not None and not callable(rate):
            check_positive_float(name, rate)
    if lr_orth is None:
        if callable(lr):
            raise ValueError("lr_orth must be given when lr is a schedule")
        lr_orth = lr / 10.0
    tx = optax.multi_transform(
        {"orthogonal": _base(optimizer, lr_orth, decay, eps, momentum),
         "other": _base(optimizer, lr, decay, eps, momentum),
         "frozen": optax.set_to_zero()},
        lambda p: label_params(p, orthogonal_keys, frozen_keys))
    if clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(float(clip)), tx)
    return tx


from rnnjax.riemannian import riemannian  # noqa: E402  (re-export)

__all__ = ["FROZEN_KEYS", "OPTIMIZERS", "ORTHOGONAL_KEYS", "label_params", "recipe", "riemannian"]
