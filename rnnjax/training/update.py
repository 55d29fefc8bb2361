r"""The one update rule every training loop of rnnjax runs, and :func:`fit`, the small
loop the applications use.

One step, for params ``theta``, optimiser state ``s`` and a batch ``b``::

    loss, g = value_and_grad(loss_fn)(theta, b)
    u, s'   = optimizer.update(g, s, theta)
    theta'  = project(theta + u)          if loss and ||g||_2 are finite
    theta', s' = theta, s                 otherwise (the step is skipped and counted)

``project`` is the identity unless given: the constraint a reference applies between
updates (:attr:`rnnjax.Cell.project`, e.g. IndRNN's clipping of ``u``).

With a loss-scaled optimiser (:func:`rnnjax.optim.dynamic_loss_scale`, float16) the
rule differentiates ``S * loss`` and divides the gradients by the state's scale ``S``;
a skipped step still lowers ``S``.

:func:`make_update` builds it over a :class:`TrainState` (params, optimiser state, PRNG
key, step and the metric accumulators of the current logging window).  The training
runner (:mod:`rnnjax.training.runner`) ``vmap``s it over seeds and adds metrics, checkpoints and
data parallelism; :func:`fit` runs it ``steps`` times for one model and returns the
per-step losses (``rnnjax colors``, ``forecast``, ``classify``, ``seq2seq`` and
``generate`` train through it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from rnnjax.core.checks import check_positive_float, check_positive_int
from rnnjax.optim import LossScaleState


class TrainState(NamedTuple):
    """State of one run (leaves gain a leading ``(seeds,)`` axis when stacked).

    ``key`` is raw key data (``jax.random.key_data``) so it checkpoints as an array;
    ``loss_sum``/``gnorm_sum``/``count`` accumulate the current logging window (finite
    steps only); ``nonfinite`` counts the current run of consecutive steps whose loss or
    gradient was not finite (their updates are skipped) and ``skipped`` all of them.
    ``carry`` is the recurrent state a stateful task passes from one batch to the next
    (None for the others): it is part of the state, so it is checkpointed and resumed.
    """

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array
    loss_sum: jax.Array
    gnorm_sum: jax.Array
    count: jax.Array
    nonfinite: jax.Array
    skipped: jax.Array
    carry: Any = None


def init_state(params, optimizer: optax.GradientTransformation, key) -> TrainState:
    """The :class:`TrainState` at step 0 (``key``: a typed PRNG key)."""
    z = jnp.zeros((), jnp.float32)
    i0 = jnp.zeros((), jnp.int32)
    return TrainState(params, optimizer.init(params), jax.random.key_data(key),
                      i0, z, z, i0, i0, i0)


def make_update(loss_fn: Callable, optimizer: optax.GradientTransformation, *,
                has_aux: bool = False, project: Callable | None = None) -> Callable:
    """``update(state, batch) -> (state, loss)``: one step of the rule in the module
    docstring, with ``loss_fn(params, batch) -> scalar``.  Pure and traceable (jit and
    vmap it); the state's key is split once per step (``key, _ = split(key)``).
    ``has_aux=True``: ``loss_fn(params, batch) -> (scalar, aux)`` (as
    ``jax.value_and_grad``) and ``update`` returns ``(state, (loss, aux))``; a stateful
    task's ``aux`` is the carry leaving the batch.  ``project``: ``params -> params``
    applied to the updated params (e.g. ``lambda p: {**p, "cell":
    cell.project(p["cell"])}``), or None."""

    def update(state: TrainState, batch):
        key, _ = jax.random.split(jax.random.wrap_key_data(state.key))
        scaled = isinstance(state.opt_state, LossScaleState)
        S = state.opt_state.scale if scaled else None

        def objective(p, b):  # dynamic loss scaling differentiates S * loss
            out = loss_fn(p, b)
            if not scaled:
                return out
            return (out[0] * S, out[1]) if has_aux else out * S

        value, grads = jax.value_and_grad(objective, has_aux=has_aux)(state.params, batch)
        loss = value[0] if has_aux else value
        if scaled:
            loss, grads = loss / S, jax.tree.map(lambda g: g / S.astype(g.dtype), grads)
        gnorm = optax.tree.norm(grads)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params, new_scale = optax.apply_updates(state.params, updates), opt_state
        if project is not None:
            params = project(params)
        # A non-finite loss or gradient norm skips the update (params and optimiser
        # state stay as they were) and is counted.
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        params, opt_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old),
                                         (params, opt_state), (state.params, state.opt_state))
        if scaled:  # the loss scale moves on a skipped step too
            opt_state = opt_state._replace(scale=new_scale.scale, good=new_scale.good)
        zero = jnp.zeros((), jnp.float32)
        new = TrainState(params, opt_state, jax.random.key_data(key), state.step + 1,
                         state.loss_sum + jnp.where(ok, loss.astype(jnp.float32), zero),
                         state.gnorm_sum + jnp.where(ok, gnorm.astype(jnp.float32), zero),
                         state.count + ok.astype(jnp.int32),
                         jnp.where(ok, 0, state.nonfinite + 1).astype(jnp.int32),
                         state.skipped + (~ok).astype(jnp.int32), state.carry)
        return new, ((loss, value[1]) if has_aux else loss)

    return update


def cell_projection(cell) -> Callable | None:
    """``project`` of :func:`make_update` for params ``{"cell": ..., ...}`` (the runner's
    and the models' layout): ``cell.project`` on the ``"cell"`` entry, or None when the
    cell has no projection."""
    if cell is None or cell.project is None:
        return None
    return lambda params: {**params, "cell": cell.project(params["cell"])}


def fit(loss_fn: Callable, params, batch_fn: Callable, *, steps: int, lr: float, key,
        clip: float = 1.0, optimizer: optax.GradientTransformation | None = None,
        log_every: int = 0, print_fn=print, name: str = "loss", scale: float = 1.0,
        project: Callable | None = None):
    """Minimise ``loss_fn(params, batch)`` for ``steps`` steps of :func:`make_update`.

    The optimiser is Adam with learning rate ``lr`` after global-norm clipping at
    ``clip``, unless ``optimizer`` is given.  Step ``i`` trains on ``batch_fn(k_i)``
    with ``k_1 .. k_steps = split(key, steps)``, drawn inside the jitted step (one
    compiled program).  Every ``log_every`` steps (and the first) prints
    ``step  <name> <loss * scale>`` (``scale = 1/ln 2`` prints nats as bits).
    ``project`` as :func:`make_update`.  Returns ``(params, losses)``, ``losses`` one
    float per step.
    """
    check_positive_int("steps", steps)
    if optimizer is None:
        check_positive_float("lr", lr)
        check_positive_float("clip", clip)
        optimizer = optax.chain(optax.clip_by_global_norm(clip), optax.adam(lr))
    update = make_update(loss_fn, optimizer, project=project)
    step = jax.jit(lambda state, k: update(state, batch_fn(k)))
    state = init_state(params, optimizer, key)
    losses = []
    for i, k in enumerate(jax.random.split(key, steps)):
        state, loss = step(state, k)
        losses.append(float(loss))
        if log_every and ((i + 1) % log_every == 0 or i == 0):
            print_fn(f"step {i + 1:5d}  {name} {losses[-1] * scale:.4f}")
    return state.params, losses


__all__ = ["TrainState", "cell_projection", "fit", "init_state", "make_update"]
