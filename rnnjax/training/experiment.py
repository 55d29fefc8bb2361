r"""What a :class:`Config` builds: the task, the model (cell or baseline, readout), the
optimiser and the pure step functions of one seed (:func:`build`, an
:class:`Experiment`); the stacked initial states of the run's seeds
(:func:`initial_state`); and the credit-assignment measurements the runner records
(:func:`credit_metrics`, for tasks that name their source and target steps)."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnjax import analysis, layers, optim
from rnnjax import tasks as tasks_lib
from rnnjax.core.precision import cast_floating
from rnnjax.layers import baselines
from rnnjax.layers.readout import Model, layer_with_readout
from rnnjax.layers.residual import residual_with_readout
from rnnjax.optim import constraints
from rnnjax.tasks import stateful
from rnnjax.training.config import (
    Config,
    has_orthogonal_params,
    make_cell,
    make_task,
    penalties,
    validate,
)
from rnnjax.training.update import TrainState, cell_projection, init_state, make_update

__all__ = ["CREDIT_SETTINGS", "Experiment", "build", "credit_loss", "credit_metrics",
           "credit_values", "has_credit", "initial_state", "make_model", "make_optimizer",
           "make_task", "resolve", "seed_list"]


def _per_epoch(config: Config, task) -> int | None:
    """Steps of one epoch: ``floor(N_train / batch)`` for a data set, the
    :func:`rnnjax.tasks.stateful.windows_per_epoch` of a stateful task, None for a
    generated one."""
    if task.stream is not None:
        return stateful.windows_per_epoch(len(task.stream.train), config.batch,
                                          task.stream.length)
    if task.splits is not None:
        return tasks_lib.steps_per_epoch(len(task.splits.train[1]), config.batch)
    return None


def resolve(config: Config, task) -> Config:
    """``config`` with what the built task fixes filled in: ``steps = epochs * E`` and
    ``log_every = E`` (one epoch, :func:`_per_epoch`) when ``epochs`` is set (a
    ``ValueError`` for a generated task, or a training split smaller than ``batch``),
    the pixel ``permutation`` of a permuted task and the data fingerprint
    ``data_sha256`` (``Task.fingerprint``)."""
    splits = task.splits
    per = _per_epoch(config, task)  # also checks that a stateful task has a window
    if config.epochs is not None:
        if per is None:
            raise ValueError(f"epochs is for data-set tasks; the {config.task!r} task is "
                             f"generated: give steps instead")
        config = dataclasses.replace(config, steps=config.epochs * per, log_every=per)
    if task.fingerprint is not None:
        config = dataclasses.replace(config, data_sha256=task.fingerprint)
    if splits is not None and splits.permutation is not None and config.permutation is None:
        config = dataclasses.replace(
            config, permutation=tuple(int(i) for i in np.asarray(splits.permutation)))
    return config


def make_model(config: Config, task) -> Model:
    """Cell + linear readout, or a non-recurrent baseline (:mod:`rnnjax.layers.baselines`:
    ``wavenet``, ``attention``) of width ``hidden``.  With ``config.bidirectional`` or
    ``config.readout`` the cell runs as a layer (:func:`rnnjax.layers.bidirectional` or
    :func:`rnnjax.layers.unidirectional`) under :func:`rnnjax.layers.readout.layer_with_readout`
    (``readout="flatten"``: the task must read one output per sequence).  Otherwise
    :func:`rnnjax.layers.residual_with_readout` with the deep-model fields (``depth``,
    ``d_model``, ``mlp``, ``mlp_activation``, ``norm``, ``dropout``), which at their
    defaults is the cell + readout of :func:`rnnjax.layers.readout.cell_with_readout`."""
    if config.cell in baselines.MODELS:
        return baselines.make(config.cell, task.input_size, task.output_size, task.readout,
                              hidden=config.hidden, **dict(config.cell_options))
    if not (config.bidirectional or config.readout is not None):
        return residual_with_readout(
            make_cell(config), task.input_size, task.output_size, task.readout,
            depth=config.depth, d_model=config.d_model, mlp=config.mlp, norm=config.norm,
            dropout=config.dropout, activation=config.mlp_activation, grad=config.grad,
            scan=config.scan)
    readout = config.readout or task.readout
    if readout == "flatten" and task.readout != "last":
        raise ValueError(f"readout='flatten' maps a whole sequence to one output, so it "
                         f"needs a sequence-classification task (one output per "
                         f"sequence); the {config.task!r} task reads an output at "
                         f"every step")
    cell = make_cell(config)
    layer = layers.bidirectional(cell) if config.bidirectional else \
        layers.unidirectional(cell)
    return layer_with_readout(layer, task.input_size, task.output_size, readout,
                              time=task.time, grad=config.grad)


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """The optimiser of ``config``: :func:`rnnjax.optim.recipe` (the orthogonal/unitary
    parameters get ``lr_orth``, or ``lr / 10`` when it is None, the recipe's rule; with
    ``riemannian`` the cell's ``W_hh`` moves on ``O(H)`` at that rate), after per-element
    clipping when ``clip_mode="element"``; with dynamic loss scaling when
    ``dtype="float16"``."""
    global_clip = config.clip if config.clip_mode == "global_norm" else None
    tx = optim.recipe(config.optimizer, lr=config.lr, lr_orth=config.lr_orth,
                      clip=global_clip, retraction=config.riemannian)
    if config.clip is not None and config.clip_mode == "element":
        tx = optax.chain(optax.clip(config.clip), tx)
    return optim.dynamic_loss_scale(tx) if config.dtype == "float16" else tx


class Experiment(NamedTuple):
    """The built pieces of a run: pure functions over one seed's state."""

    config: Config
    task: Any
    model: Model
    optimizer: optax.GradientTransformation
    init: Any  # seed -> TrainState
    step: Any  # TrainState -> TrainState
    evaluate: Any  # (TrainState, eval batch) -> dict of metrics
    eval_batch: Any  # seed -> held-out (xs, ys)
    orthogonal: bool
    batch: Any = None  # TrainState -> the training batch (xs, ys) of its step
    update: Any = None  # (TrainState, (xs, ys)) -> TrainState; step = update(s, batch(s))
    # (params, (xs, ys), floss=False) -> the training objective: task loss + the
    # config's penalties (+ the flossing term with floss=True)
    objective: Any = None
    # Gradient flossing (config.floss_every): the same step with the flossing term added
    floss_step: Any = None
    floss_update: Any = None


def build(config: Config, *, checked: bool = False) -> Experiment:
    """Validate ``config`` (:func:`rnnjax.training.config.validate`) and build the task,
    model, optimiser and pure step functions.  ``checked=True``: the caller has
    validated ``config`` already (the copy job checks every cell before its folder is
    touched), so only the task is made."""
    task = make_task(config) if checked else validate(config)
    config = resolve(config, task)
    splits, stream = task.splits, task.stream
    # Epoch order: one key per run (shared by the seeds of one program).
    order_key = jax.random.fold_in(jax.random.key(config.seed), 2 << 20)
    model = make_model(config, task)
    opt = make_optimizer(config)
    orthogonal = (model.cell is not None and model.cell.recurrent_matrix is not None
                  and (config.has_constraint() or has_orthogonal_params(
                      jax.eval_shape(model.init, jax.random.key(0)))))

    def init(seed):
        k_init, k_data = jax.random.split(jax.random.key(seed))
        # The runner trains in float32 whatever jax_enable_x64 says (a cell drawing an
        # array without a dtype would otherwise get float64 params under x64).
        params = cast_floating(model.init(k_init), jnp.float32)
        state = init_state(params, opt, k_data)
        if stream is not None:
            state = state._replace(carry=model.cell.initial_carry((config.batch,),
                                                                  jnp.float32))
        return state

    spec = penalties(config)

    def objective(params, data, floss=False):
        # task loss + the soft constraints (rnnjax.optim.constraints.penalty; 0 when none)
        xs, ys, *key = data  # a dropout key (dropout_data) after the batch
        enc = task.encode(xs)
        logits = model.apply(params, enc, key=key[0]) if key else model.apply(params, enc)
        loss = task.loss(logits, ys)
        if not config.has_constraint():
            return loss
        return loss + constraints.penalty(model.cell, params["cell"], enc, spec, floss=floss)

    def loss_fn(params, data):  # evaluation's gradient norms: the task loss only
        xs, ys = data
        return task.loss(model.apply(params, task.encode(xs)), ys)

    def loss_and_logits(params, data):
        xs, ys = data
        logits = model.apply(params, task.encode(xs))
        return task.loss(logits, ys), logits

    # the cell's constraint between updates (Cell.project: IndRNN's clip of u)
    project = cell_projection(model.cell)
    update_with_loss = make_update(objective, opt, project=project)
    floss_with_loss = (make_update(lambda p, d: objective(p, d, True), opt, project=project)
                       if config.floss_every else None)

    def dropout_data(state: TrainState, data):
        # With dropout the batch carries the step's dropout key, a pure function of the
        # state's key (a stream of its own: the batch draws from split(key)[1]).
        if not config.dropout:
            return data
        return (*data, jax.random.fold_in(jax.random.wrap_key_data(state.key), 3 << 20))

    def sampled_update(state: TrainState, data) -> TrainState:
        return update_with_loss(state, dropout_data(state, data))[0]

    update = sampled_update

    if stream is not None:  # stateful: consecutive windows, the carry passed on
        if model.cell is None:
            raise ValueError(f"the {config.task!r} task is stateful and needs a recurrent "
                             f"cell; got the baseline {config.cell!r}")
        if config.has_constraint():
            raise ValueError(f"the {config.task!r} task is stateful; the penalties, flossing "
                             f"and riemannian options apply to the sampled-batch tasks")
        streams = jnp.asarray(stateful.batchify(stream.train, config.batch))
        per_epoch = _per_epoch(config, task)
        update_window = make_update(
            lambda params, b: stateful.window_loss(model.cell, params, *b, stream.vocab,
                                                   config.grad), opt, has_aux=True,
            project=project)

        def stateful_update(state: TrainState, data) -> TrainState:
            # data: window k = step mod K of every stream; the carry left by window k-1
            # enters window k (zeros at the start of each epoch); window_loss cuts its
            # gradient.
            xs, ys = data
            k = state.step % per_epoch
            carry = jax.tree.map(lambda c: jnp.where(k == 0, jnp.zeros_like(c), c),
                                 state.carry)
            new, (_, carry) = update_window(state, (carry, xs, ys))
            # A non-finite carry (a diverged window) is not passed on.
            carry = jax.tree.map(lambda c: jnp.where(jnp.isfinite(c), c, 0), carry)
            return new._replace(carry=carry)

        update = stateful_update

    def floss_update(state: TrainState, data) -> TrainState:
        return floss_with_loss(state, data)[0]

    def batch(state: TrainState):
        # The training batch of this step, a pure function of the state: the stateful
        # task's window k = step mod K, the data set's batch of the epoch order, or a
        # fresh draw from the run's PRNG key.
        if stream is not None:
            return stateful.window_at(streams, state.step % per_epoch, stream.length)
        if config.epochs is not None:
            return tasks_lib.epoch_batch(splits.train, order_key, state.step,
                                         config.batch, splits.prepare)
        _, k_batch = jax.random.split(jax.random.wrap_key_data(state.key))
        return task.sample(k_batch, config.batch)

    def step(state: TrainState) -> TrainState:
        return update(state, batch(state))

    def floss_step(state: TrainState) -> TrainState:
        return floss_update(state, batch(state))

    def eval_batch(seed):
        # A held-out batch fixed by the seed, from a key the training stream never uses.
        return task.eval_sample(jax.random.fold_in(jax.random.key(seed), 1 << 20),
                                config.eval_batch)

    def evaluate(state: TrainState, data):
        xs, ys = data
        if stream is not None:  # the whole test ("eval") and valid texts, state carried
            out = {}
            for name, part in (("eval", stream.test), ("valid", stream.valid)):
                out.update({f"{name}_{k}": v for k, v in stateful.text_metrics(
                    model.cell, state.params, part, stream.length, stream.vocab).items()})
            grads = jax.grad(loss_fn)(state.params, data)
        else:  # one forward pass for the metrics and the gradient
            grads, logits = jax.grad(loss_and_logits, has_aux=True)(state.params, data)
            out = {f"eval_{k}": v for k, v in task.metrics(logits, ys).items()}
        if splits is not None:  # the whole test (and validation) split
            def logits(x):
                return model.apply(state.params, task.encode(x))
            for name, part in (("eval", splits.test), ("valid", splits.valid)):
                if part is not None:
                    out.update({f"{name}_{k}": v for k, v in tasks_lib.split_metrics(
                        logits, part, config.eval_batch, splits.prepare).items()})
        if orthogonal:
            out["orth_error"] = analysis.orthogonality_error(model.cell, state.params["cell"])
        for name, norm in analysis.grad_norms_by_layer(grads).items():
            if name != "global":  # eval_grad_norm_cell, ..._readout: on held-out data
                out["eval_grad_norm_" + name.strip("[]'")] = norm
        if has_credit(model, task):
            out.update(credit_values(credit_metrics(model, task, state.params, data)))
        return out

    flossing = config.floss_every > 0
    return Experiment(config, task, model, opt, init, step, evaluate, eval_batch, orthogonal,
                      batch, update, objective, floss_step if flossing else None,
                      floss_update if flossing else None)


# The credit measurement of the runner's records (and of the copy report, which calls
# credit_metrics with these settings): the Jacobian norm over the first 4 examples of
# the held-out batch, 6 power iterations (the product of T step Jacobians has a large
# gap sigma_1/sigma_2 unless the cell is close to orthogonal, where every sigma_i is
# close to sigma_1, so a few iterations settle it; the tests compare with dense SVDs).
# "step": the cell's own outputs; before the first target (every step the ratio
# compares) that is the whole gradient.
CREDIT_SETTINGS = {"jacobian_examples": 4, "n_iter": 6, "readout": "step"}


def has_credit(model, task) -> bool:
    """Whether the runner measures credit: the task names its steps (``Task.credit``)
    and the model is a recurrent cell with a readout (``Model.readout``)."""
    return (task.credit is not None and model.cell is not None
            and getattr(model, "readout", None) is not None and task.stream is None)


def credit_metrics(model, task, params, data, profile: bool = False) -> dict:
    r"""The credit measurement of one seed's ``params`` on the batch ``data = (xs, ys)``
    (traceable): :func:`rnnjax.analysis.credit_metrics` with the loss restricted to the
    task's targets, ``L_target = task.loss(project(y)[:, targets], ys[:, targets])``
    (for the copy task the mean cross-entropy of the 10 recall steps), source and
    reference from :attr:`rnnjax.tasks.Task.credit`, and :data:`CREDIT_SETTINGS`.
    ``{"ratio": {field: rho^f (nan: underflow)}, "log_jacobian_norm": ...}`` (and the
    per-step ``"profile"``, :func:`rnnjax.analysis.credit_arrays`, when ``profile``)."""
    xs, ys = data
    spec = task.credit
    return analysis.credit_metrics(model.cell, params["cell"], task.encode(xs),
                                   credit_loss(model, task, params, ys), spec.source,
                                   spec.reference, profile=profile, **CREDIT_SETTINGS)


def credit_loss(model, task, params, ys):
    """``outs -> L_target``: the task's loss on its credit targets only,
    ``task.loss(project(outs)[:, targets], ys[:, targets])`` (``outs`` the cell's outputs
    ``(batch, time, H_out)``)."""
    tgt = jnp.asarray(task.credit.targets)

    def loss(outs):
        return task.loss(model.readout(params, outs[:, tgt]), ys[:, tgt])
    return loss


def credit_values(m: dict) -> dict:
    """:func:`credit_metrics` as record values: ``eval_credit_ratio_<field>`` and
    ``eval_credit_log_jacobian_norm`` (its ``exp``, in float64, becomes
    ``eval_credit_jacobian_norm`` when the record is made)."""
    out = {f"eval_credit_ratio_{f}": v for f, v in m["ratio"].items()}
    out["eval_credit_log_jacobian_norm"] = m["log_jacobian_norm"]
    return out


def seed_list(config: Config) -> list:
    return [config.seed + i for i in range(config.seeds)]


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def initial_state(exp: Experiment):
    """The stacked initial states and held-out batches of the run's seeds (each seed's
    built by the same jitted function, so a seed's state does not depend on the others)."""
    init, data = jax.jit(exp.init), jax.jit(exp.eval_batch)
    seeds = seed_list(exp.config)
    return (_stack([init(jnp.asarray(s, jnp.int32)) for s in seeds]),
            _stack([data(jnp.asarray(s, jnp.int32)) for s in seeds]))
