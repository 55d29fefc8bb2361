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
* ``"manifold"``: only when asked (``manifold_keys``, e.g. ``{"W_hh"}``): matrices
  kept on the orthogonal group by a Riemannian optimiser (``recipe(...,
  retraction="cayley")``, :func:`rnnjax.optim.riemannian.riemannian`);
* ``"other"``: everything else (input matrices, biases, readouts).

Global-norm clipping, when asked, is applied to all gradients together before the
groups are split.

Three RMSprop conventions exist in the papers' code and differ in the first steps:

* ``"rmsprop"``: PyTorch's (expRNN): ``v <- a v + (1-a) g^2`` from ``v = 0``,
  ``p <- p - lr g / (sqrt(v) + eps)``, ``a = 0.99``, ``eps = 1e-8``;
* ``"rmsprop_tf1"`` (:func:`rmsprop_tf1`): TensorFlow 1's ``tf.train.RMSPropOptimizer``
  (scoRNN, EUNN): ``v`` starts at **1**, ``a = 0.9``, ``eps = 1e-10`` *inside* the root;
* ``"rmsprop_theano"`` (:func:`rmsprop_theano`): Arjovsky's Theano ``rms_prop``
  (``amarshah/complex_RNN: optimizations.py``): ``v`` starts at ``1e-3``, ``a = 0.9``,
  no ``eps``.

:data:`PAPER_RECIPES` names, per cell, the initialisation and optimiser of its paper's
reference code for the copy task.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rnnjax.core.checks import check_choice, check_optional_positive, check_positive_float
from rnnjax.optim.riemannian import RETRACTIONS, riemannian

__all__ = ["FROZEN_KEYS", "LossScaleState", "MANIFOLD_KEYS", "OPTIMIZERS", "ORTHOGONAL_KEYS",
           "PAPER_RECIPES", "PaperRecipe", "RETRACTIONS", "dynamic_loss_scale",
           "label_params", "recipe", "riemannian", "rmsprop_accumulator", "rmsprop_tf1",
           "rmsprop_theano"]

ORTHOGONAL_KEYS = frozenset({"skew", "reflections", "phases", "angles"})
FROZEN_KEYS = frozenset({"base"})
MANIFOLD_KEYS = frozenset({"W_hh"})
OPTIMIZERS = ("rmsprop", "rmsprop_tf1", "rmsprop_theano", "adam", "sgd")
# (decay, eps) of each RMSprop convention when recipe() is not told otherwise.
_RMSPROP_DEFAULTS = {"rmsprop": (0.99, 1e-8), "rmsprop_tf1": (0.9, 1e-10),
                     "rmsprop_theano": (0.9, 0.0)}


class _AccumulatorState(NamedTuple):
    nu: optax.Updates


def rmsprop_accumulator(lr, decay: float, eps: float, initial: float
                        ) -> optax.GradientTransformation:
    r"""RMSprop with ``eps`` inside the root and a non-zero starting accumulator::

        v_0 = initial,   v_t = decay v_{t-1} + (1 - decay) g_t^2,
        update_t = -lr g_t / sqrt(v_t + eps)

    (``lr`` a float or an optax schedule of the step count).
    """
    def init(params):
        return (_AccumulatorState(jax.tree.map(lambda p: jnp.full_like(p, initial), params)),
                optax.ScaleByScheduleState(jnp.zeros([], jnp.int32)))

    def update(grads, state, params=None):
        del params
        acc, count = state
        nu = jax.tree.map(lambda v, g: decay * v + (1.0 - decay) * g * g, acc.nu, grads)
        rate = lr(count.count) if callable(lr) else lr
        upd = jax.tree.map(lambda g, v: -rate * g / jnp.sqrt(v + eps), grads, nu)
        return upd, (_AccumulatorState(nu), optax.ScaleByScheduleState(
            optax.safe_int32_increment(count.count)))

    return optax.GradientTransformation(init, update)


def rmsprop_tf1(lr, decay: float = 0.9, eps: float = 1e-10) -> optax.GradientTransformation:
    """TensorFlow 1's ``tf.train.RMSPropOptimizer`` (no momentum): accumulator starts at
    1, ``eps`` inside the root.  Used by scoRNN (``SpartinStuff/scoRNN``) and EUNN
    (``jingli9111/EUNN-tensorflow``)."""
    return rmsprop_accumulator(lr, decay, eps, 1.0)


def rmsprop_theano(lr, decay: float = 0.9) -> optax.GradientTransformation:
    """Arjovsky's Theano ``rms_prop`` (``amarshah/complex_RNN: optimizations.py``):
    accumulator starts at ``1e-3``, no ``eps``."""
    return rmsprop_accumulator(lr, decay, 0.0, 1e-3)


def _key_name(entry):
    for attr in ("key", "name", "idx"):
        if hasattr(entry, attr):
            return getattr(entry, attr)
    return None


def label_params(params, orthogonal_keys=ORTHOGONAL_KEYS, frozen_keys=FROZEN_KEYS,
                 manifold_keys=()):
    """Pytree of labels ``"orthogonal"`` / ``"frozen"`` / ``"manifold"`` / ``"other"``
    with the structure of ``params``: a leaf is labelled by the nearest enclosing dict
    key found in ``orthogonal_keys``, ``frozen_keys`` or ``manifold_keys`` (so
    ``{"cell": {"skew": ...}}`` works)."""

    def label(path, _):
        names = [_key_name(e) for e in path]
        for name in reversed(names):
            if name in frozen_keys:
                return "frozen"
            if name in orthogonal_keys:
                return "orthogonal"
            if name in manifold_keys:
                return "manifold"
        return "other"

    return jax.tree_util.tree_map_with_path(label, params)


def _base(optimizer, lr, decay, eps, momentum):
    if optimizer == "rmsprop_tf1":
        return rmsprop_tf1(lr, decay, eps)
    if optimizer == "rmsprop_theano":
        return rmsprop_accumulator(lr, decay, eps, 1e-3)
    if optimizer == "rmsprop":  # PyTorch's RMSprop, as used by the papers' code
        return optax.rmsprop(lr, decay=decay, eps=eps, eps_in_sqrt=False,
                             momentum=momentum or None)
    if optimizer == "adam":
        return optax.adam(lr, eps=eps)
    return optax.sgd(lr, momentum=momentum or None)


def recipe(optimizer: str = "rmsprop", lr=1e-3, lr_orth=None, clip: float | None = None,
           decay: float | None = None, eps: float | None = None, momentum: float = 0.0,
           orthogonal_keys=ORTHOGONAL_KEYS, frozen_keys=FROZEN_KEYS,
           retraction: str | None = None, manifold_keys=MANIFOLD_KEYS
           ) -> optax.GradientTransformation:
    r"""The papers' optimizer: ``optimizer`` with learning rate ``lr`` for the ordinary
    params and ``lr_orth`` (default ``lr / 10``) for the orthogonal / unitary ones.

    Args:
      optimizer: ``"rmsprop"`` (``decay``, ``eps``, ``momentum``: PyTorch's ``alpha``,
        ``eps``, ``momentum``; defaults 0.99, 1e-8), ``"rmsprop_tf1"`` (defaults 0.9,
        1e-10), ``"rmsprop_theano"`` (0.9, 0), ``"adam"`` (``eps`` 1e-8) or ``"sgd"``.
      lr, lr_orth: floats or optax schedules.
      clip: maximum global gradient norm (``optax.clip_by_global_norm``), or None.
      orthogonal_keys, frozen_keys: override the grouping of :func:`label_params`.
      retraction: ``None``, or ``"cayley"``/``"qr"``/``"polar"``: the leaves under
        ``manifold_keys`` (default ``{"W_hh"}``, square and orthogonal at init) are
        moved on ``O(n)`` by :func:`rnnjax.optim.riemannian.riemannian` of ``optimizer`` at
        ``lr_orth`` (constrained optimisation, e.g. Wisdom et al. 2016's Cayley step).

    Returns:
      ``optax.GradientTransformation``; params labelled ``"frozen"`` get zero updates.
    """
    check_choice("optimizer", optimizer, OPTIMIZERS)
    if retraction is not None:
        check_choice("retraction", retraction, RETRACTIONS)
    d0, e0 = _RMSPROP_DEFAULTS.get(optimizer, (0.99, 1e-8))
    decay = d0 if decay is None else decay
    eps = e0 if eps is None else eps
    check_optional_positive("clip", clip)
    for name, rate in (("lr", lr), ("lr_orth", lr_orth)):
        if rate is not None and not callable(rate):
            check_positive_float(name, rate)
    if lr_orth is None:
        if callable(lr):
            raise ValueError("lr_orth must be given when lr is a schedule")
        lr_orth = lr / 10.0
    groups = {"orthogonal": _base(optimizer, lr_orth, decay, eps, momentum),
              "other": _base(optimizer, lr, decay, eps, momentum),
              "frozen": optax.set_to_zero()}
    if retraction is not None:
        groups["manifold"] = riemannian(_base(optimizer, lr_orth, decay, eps, momentum),
                                        "orthogonal", retraction)
    keys = manifold_keys if retraction is not None else ()
    tx = optax.multi_transform(
        groups, lambda p: label_params(p, orthogonal_keys, frozen_keys, keys))
    if clip is not None:
        tx = optax.chain(optax.clip_by_global_norm(float(clip)), tx)
    return tx


class PaperRecipe(NamedTuple):
    """A cell's copy-task recipe from its paper's reference code.

    ``cell_options``: keyword arguments of the cell factory (initialisation);
    ``optimizer``, ``lr``, ``lr_orth``, ``clip``: :func:`recipe` arguments (``clip`` per
    element when ``clip_mode="element"``); ``source``: repository and files read.
    """

    cell_options: tuple
    optimizer: str
    lr: float
    lr_orth: float
    clip: float | None
    clip_mode: str
    source: str


PAPER_RECIPES = {
    # 1_copying.py: RMSprop(lr 2e-4) with the orthogonal params at lr 2e-5, no clipping;
    # Henaff init; orthogonal.py: input kaiming_normal_ (relu), modReLU bias U[-0.01, 0.01].
    "exprnn": PaperRecipe((("init", "henaff"),), "rmsprop", 2e-4, 2e-5, None, "global_norm",
                          "lezcano/expRNN: 1_copying.py, orthogonal.py, initialization.py"),
    # scoRNN_copying.py: TF1 RMSProp, lr 1e-3 (inputs/outputs) and 1e-4 (A); inputs
    # U[-0.01, 0.01], bias 0; Cayley init of A.
    "scornn": PaperRecipe((("init", "cayley"), ("input_init", "uniform")), "rmsprop_tf1",
                          1e-3, 1e-4, None, "global_norm",
                          "SpartinStuff/scoRNN: scoRNN.py, scoRNN_copying.py"),
    # copying_task.py: TF1 RMSProp lr 1e-3 decay 0.9 for every param; inputs U[-0.01, 0.01].
    "eunn": PaperRecipe((("input_init", "uniform"),), "rmsprop_tf1", 1e-3, 1e-3, None,
                        "global_norm", "jingli9111/EUNN-tensorflow: eunn.py, copying_task.py"),
    # models.py complex_RNN + optimizations.py rms_prop: Glorot V and reflections, bias
    # U[-0.01, 0.01], theta U[-pi, pi], Theano RMSprop lr 1e-3 for every param.
    "urnn": PaperRecipe((("init", "arjovsky"), ("input_init", "glorot")), "rmsprop_theano",
                        1e-3, 1e-3, None, "global_norm",
                        "amarshah/complex_RNN: models.py, optimizations.py, memory_problem.py"),
    # memory_problem.py: the tanh RNN baseline clips every gradient entry to [-1, 1]
    # (T.clip) and trains with the same Theano RMSprop, lr 1e-3 (its init is not copied).
    "elman": PaperRecipe((), "rmsprop_theano", 1e-3, 1e-3, 1.0, "element",
                         "amarshah/complex_RNN: memory_problem.py, optimizations.py"),
    # RNN_models.py: reflection vectors lower-triangular N(0, 0.01), unit-normalised;
    # sgd.py train(): its own Adam (beta 0.9 / 0.999, eps 1e-8 outside the root, bias
    # corrected) at lambda_ = 1e-3 (loop_jobs.sh lr 0.001) for every param, no clipping.
    "householder": PaperRecipe((("init", "mhammedi"),), "adam", 1e-3, 1e-3, None,
                               "global_norm",
                               "zmhammedi/Orthogonal_RNN: RNN_models.py, sgd.py, loop_jobs.sh"),
    # expRNN's LSTM baseline: torch nn.LSTMCell defaults (weights U[-1/sqrt(H), 1/sqrt(H)],
    # bias b_ih + b_hh), forget bias 0 here, same RMSprop as the expRNN run.
    "lstm": PaperRecipe((("init", "uniform"), ("forget_bias", 0.0)), "rmsprop", 2e-4, 2e-4,
                        None, "global_norm",
                        "lezcano/expRNN: 1_copying.py (nn.LSTMCell)"),
}


# ------------------------------------------------------------ dynamic loss scaling

class LossScaleState(NamedTuple):
    """State of :func:`dynamic_loss_scale`: the inner optimiser's state, the current
    loss scale ``scale`` and the finite steps ``good`` since it last changed."""

    inner: Any
    scale: jax.Array
    good: jax.Array


def dynamic_loss_scale(inner: optax.GradientTransformation, init_scale: float = 2.0 ** 15,
                       period: int = 2000, factor: float = 2.0
                       ) -> optax.GradientTransformation:
    r"""Dynamic loss scaling for float16 training (Micikevicius et al. 2018; the rule of
    ``jmp.DynamicLossScale`` and PyTorch's ``GradScaler``), around ``inner``.

    :func:`rnnjax.training.make_update` reads ``state.scale = S`` and differentiates
    ``S * loss`` (so small float16 cotangents do not flush to zero), divides the
    gradients by ``S`` and passes them on; this transformation applies ``inner`` and
    moves the scale::

        finite gradients:  good += 1;  S <- factor * S and good <- 0 once good == period
        otherwise:         S <- S / factor (at least 1), good <- 0  (the step is skipped)
    """
    check_positive_float("init_scale", init_scale)
    check_positive_float("factor", factor)
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ValueError(f"period must be a positive integer, got {period!r}")

    def init(params):
        return LossScaleState(inner.init(params), jnp.asarray(init_scale, jnp.float32),
                              jnp.zeros((), jnp.int32))

    def update(grads, state, params=None):
        updates, inner_state = inner.update(grads, state.inner, params)
        ok = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)]))
        good = jnp.where(ok, state.good + 1, 0)
        grow = good >= period
        scale = jnp.where(ok, jnp.where(grow, state.scale * factor, state.scale),
                          jnp.maximum(state.scale / factor, 1.0))
        return updates, LossScaleState(inner_state, scale,
                                       jnp.where(grow, 0, good).astype(jnp.int32))

    return optax.GradientTransformation(init, update)

