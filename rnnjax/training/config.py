"""What defines a run of the training runner: :class:`Config` (saved as
``config.json`` beside the run; its fields and their option metadata are in
:mod:`rnnjax.training.fields`, re-exported here), its checks (:func:`validate`, run
before anything is built) and the agreement checks of a resumed run
(:func:`check_resume`, :func:`check_resume_options`).

Whether a cell trains with the orthogonal learning rate ``lr_orth`` and reports
``orth_error`` (also reported when a constraint option is on) is decided by its params
(:func:`has_orthogonal_params`, from
:func:`rnnjax.optim.label_params`), never by its name.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp

from rnnjax import cells as cells_lib
from rnnjax import optim
from rnnjax import tasks as tasks_lib
from rnnjax.core.checks import (
    check_choice,
    check_memory,
    check_nonneg_float,
    check_nonneg_int,
    check_optional_positive,
    check_positive_float,
    check_positive_int,
)
from rnnjax.engine import bptt, table
from rnnjax.layers import baselines
from rnnjax.layers.residual import ACTIVATIONS, NORMS
from rnnjax.optim import constraints
from rnnjax.training.fields import (
    AGREE,
    CHANGE,
    CLIP_MODES,
    CONSTRAINTS,
    DEEP,
    DEEP_FIELDS,
    DTYPES,
    OPTIMIZERS,
    READOUTS,
    RESUME_FIELDS,
    Config,
    flag,
    option_fields,
    parse_cell_option,
)


def make_cell(config: Config):
    """The recurrent cell of ``config`` (``config.cell`` must not be a baseline)."""
    options = dict(config.cell_options)
    if config.dtype != "float32":
        options["dtype"] = config.dtype
    return cells_lib.make(config.cell, config.hidden, **options)


def validate(config: Config):
    """Check ``config`` before anything is built; raise ``ValueError`` naming the field.
    Returns the task it made (:func:`make_task`), which :func:`rnnjax.build` goes on
    with: a run is validated once.

    The fields are checked first (:func:`check_fields`), then the task is made (a
    missing data file is named), then the memory estimate (:func:`estimate_bytes`,
    which reads the sequence length from the task) is checked against the free
    memory."""
    check_fields(config)
    task = make_task(config)
    check_memory("this run", estimate_bytes(config, task),
                 "lower --hidden, --T, --batch, --eval-batch or --seeds")
    return task


def make_task(config: Config):
    """The task of ``config`` (:func:`rnnjax.tasks.make`)."""
    return tasks_lib.make(config.task, T=config.T, data=config.data, variant=config.variant,
                          permutation_seed=config.permutation_seed,
                          permutation=config.permutation)


def check_fields(config: Config) -> None:
    """The checks of :func:`validate` that need no task: each field alone and the
    fields together."""
    if not isinstance(config, Config):
        raise TypeError(f"config must be an rnnjax.Config, got {type(config).__name__}")
    if tasks_lib.is_plugin(config.task):
        tasks_lib.load_factory(config.task)  # "module:factory": a task of one's own
    else:
        check_choice("task", config.task, tasks_lib.TASKS)
    cells_lib.check_name(config.cell, also=baselines.MODELS)  # or "module:factory"
    for name in ("T", "hidden", "batch", "seeds", "log_every", "eval_batch", "keep"):
        check_positive_int(name, getattr(config, name))
    for name in ("steps", "checkpoint_every", "seed", "max_nonfinite"):
        check_nonneg_int(name, getattr(config, name))
    check_positive_float("lr", config.lr)
    check_optional_positive("lr_orth", config.lr_orth)
    check_choice("optimizer", config.optimizer, OPTIMIZERS)
    check_choice("clip_mode", config.clip_mode, CLIP_MODES)
    check_optional_positive("clip", config.clip)
    if config.clip is None and config.clip_mode != "global_norm":
        raise ValueError(f"clip_mode={config.clip_mode!r} needs clip (the threshold); "
                         f"without it nothing is clipped: give clip or leave clip_mode")
    if config.devices is not None:
        check_positive_int("devices", config.devices)
    if config.epochs is not None:
        check_positive_int("epochs", config.epochs)
    check_choice("grad", config.grad, bptt.GRADS)
    check_choice("dtype", config.dtype, DTYPES)
    if config.dtype != "float32" and config.cell in baselines.MODELS:
        raise ValueError(f"dtype={config.dtype!r} applies to the recurrent cells, not to the "
                         f"baseline {config.cell!r}; use dtype='float32'")
    k = config.retrivialize_every
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 0):
        raise ValueError(f"retrivialize_every must be None or a non-negative integer, got {k!r}")
    if config.grad == "manual":
        if config.cell in baselines.MODELS:
            raise ValueError(f"grad='manual' needs a recurrent cell with a hand-written "
                             f"BPTT, got the baseline {config.cell!r}")
        bptt.check_manual(make_cell(config))  # raises for a cell without cell.backward
    _validate_model(config)
    _validate_deep(config)
    _validate_constraints(config)
    if config.task == "adding" and config.T < 2:
        raise ValueError(f"T must be >= 2 for the adding problem, got {config.T}")


def penalties(config: Config) -> constraints.Penalties:
    """The soft constraints of ``config`` (:func:`rnnjax.optim.constraints.penalty`)."""
    return constraints.Penalties(
        orth=config.orth_penalty, nnrnn_alpha=config.nnrnn_alpha,
        nnrnn_decay=config.nnrnn_decay,
        floss_weight=config.floss_weight if config.floss_every else 0.0,
        floss_k=config.floss_k, floss_batch=config.floss_batch)


def _validate_model(config: Config) -> None:
    """``bidirectional`` and ``readout`` need a recurrent cell and a sampled-batch task
    (not the stateful char LM, whose carry passes from window to window); the penalties,
    flossing and the Riemannian step act on a single cell's params."""
    if not isinstance(config.bidirectional, bool):
        raise ValueError(f"bidirectional must be True or False, got "
                         f"{config.bidirectional!r}")
    if config.readout is not None:
        check_choice("readout", config.readout, READOUTS)
    if not (config.bidirectional or config.readout is not None):
        return
    on = ", ".join(n for n in ("bidirectional", "readout") if getattr(config, n)
                   not in (False, None))
    if config.cell in baselines.MODELS:
        raise ValueError(f"{on} need a recurrent cell, got the baseline {config.cell!r}")
    if config.task == "charlm":
        raise ValueError(f"{on} apply to the sampled-batch tasks; the 'charlm' task is "
                         f"stateful (its carry passes from window to window)")
    if config.has_constraint():
        raise ValueError(f"{on} build a layer model, and the penalties, flossing and "
                         f"riemannian options act on a single cell; turn one or the "
                         f"other off")


def _validate_deep(config: Config) -> None:
    """The options of a deep model (:data:`DEEP_FIELDS`, ``scan``), each alone, then
    what a residual stack cannot be combined with: a baseline, ``bidirectional`` or
    ``readout`` (layer models of their own), the constraint options (which act on one
    cell's recurrent matrix), and for the stateful char LM (which runs the stack step
    by step as one cell) ``dropout`` and ``grad='manual'``."""
    check_choice("scan", config.scan, table.scan_choices())
    check_positive_int("depth", config.depth)
    if config.d_model is not None:
        check_positive_int("d_model", config.d_model)
    if config.mlp is not None:
        check_positive_float("mlp", config.mlp)
    check_choice("mlp_activation", config.mlp_activation, ACTIVATIONS)
    check_choice("norm", config.norm, NORMS)
    d = config.dropout
    if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 <= d < 1.0:
        raise ValueError(f"dropout must be a rate in [0, 1), got {d!r}")
    stateful = config.task == "charlm"
    if config.scan != "auto" and (config.cell in baselines.MODELS or stateful):
        raise ValueError(f"scan={config.scan!r} chooses the engine of a recurrent cell on "
                         f"a sampled-batch task; got cell {config.cell!r} on task "
                         f"{config.task!r}: leave scan='auto'")
    if not config.is_deep():
        return
    on = ", ".join(f"{flag(k)} {getattr(config, k)}" for k in DEEP_FIELDS
                   if getattr(config, k) != Config.__dataclass_fields__[k].default)
    if config.cell in baselines.MODELS:
        raise ValueError(f"{on} build residual blocks around a recurrent cell, got the "
                         f"baseline {config.cell!r}")
    if config.bidirectional or config.readout is not None:
        raise ValueError(f"{on} build a residual stack, which cannot be combined with "
                         f"--bidirectional or --readout: turn one or the other off")
    if config.has_constraint():
        raise ValueError(f"{on} build a residual stack, and the penalties, flossing and "
                         f"riemannian options act on a single cell: turn one or the "
                         f"other off")
    if stateful and config.dropout:
        raise ValueError(f"--dropout {config.dropout}: the 'charlm' task is stateful and "
                         f"runs the residual stack step by step, without dropout: leave "
                         f"--dropout out")
    if stateful and config.grad == "manual":
        raise ValueError(f"grad='manual' with {on}: the 'charlm' task runs the residual "
                         f"stack step by step as one cell, which has no hand-written "
                         f"BPTT: use --grad auto or autodiff")


def _validate_constraints(config: Config) -> None:
    for name in ("orth_penalty", "nnrnn_alpha", "nnrnn_decay"):
        check_nonneg_float(name, getattr(config, name))
    check_nonneg_int("floss_every", config.floss_every)
    check_positive_float("floss_weight", config.floss_weight)
    for name in ("floss_k", "floss_batch"):
        check_positive_int(name, getattr(config, name))
    if config.riemannian is not None:
        check_choice("riemannian", config.riemannian, optim.RETRACTIONS)
    if not config.has_constraint():
        return
    on = [n for n in ("orth_penalty", "nnrnn_alpha", "nnrnn_decay", "floss_every",
                      "riemannian") if getattr(config, n)]
    if config.cell in baselines.MODELS:
        raise ValueError(f"{', '.join(on)} need a recurrent cell, got the baseline "
                         f"{config.cell!r}")
    if config.floss_every:
        if config.floss_k > config.hidden:
            raise ValueError(f"floss_k must be <= hidden ({config.hidden}), got "
                             f"{config.floss_k}")
        if config.floss_batch > config.batch:
            raise ValueError(f"floss_batch must be <= batch ({config.batch}), got "
                             f"{config.floss_batch}")
    cell = make_cell(config)
    if config.orth_penalty and cell.recurrent_matrix is None:
        raise ValueError(f"orth_penalty needs a cell exposing its recurrent matrix; the "
                         f"{config.cell!r} cell has none")
    if not (config.nnrnn_alpha or config.nnrnn_decay or config.riemannian):
        return
    try:
        params = cell.init(jax.random.key(0), 1)  # one small init: the shapes and W_hh
    except ValueError:  # a cell whose input size is tied to its width (LRU)
        params = cell.init(jax.random.key(0), config.hidden)
    if (config.nnrnn_alpha or config.nnrnn_decay) and not (
            isinstance(params, dict) and {"alphas", "upper"} <= set(params)):
        raise ValueError(f"nnrnn_alpha/nnrnn_decay need the nnrnn cell (params 'alphas' "
                         f"and 'upper'), got the {config.cell!r} cell")
    if config.riemannian:
        W = params.get("W_hh") if isinstance(params, dict) else None
        if W is None or W.ndim != 2 or W.shape[0] != W.shape[1]:
            got = "no W_hh" if W is None else f"W_hh of shape {tuple(W.shape)}"
            raise ValueError(f"riemannian needs a cell with a square recurrent matrix "
                             f"param 'W_hh' (e.g. elman), got the {config.cell!r} cell "
                             f"with {got}")
        err = float(jnp.max(jnp.abs(W.T @ W - jnp.eye(W.shape[0], dtype=W.dtype))))
        if err > 1e-4:
            raise ValueError(f"riemannian keeps W_hh on O({W.shape[0]}), so it must start "
                             f"orthogonal; the {config.cell!r} cell's initial W_hh has "
                             f"max|W^T W - I| = {err:.2g} (pass the cell option "
                             f"init=orthogonal)")


# Named configurations of published protocols (``rnnjax train --preset NAME``); every
# field not set here keeps its Config default.
PRESETS = {
    # MNIST-1D's GRU baseline (Greydanus 2020, arXiv:2011.14439; its README's "GRU 91%"):
    # greydanus/mnist1d notebooks/models.py GRUBase (torch.nn.GRU, bidirectional, hidden
    # 6, h0 = 0, all 40 outputs of both directions flattened into one nn.Linear(480, 10);
    # PyTorch's default init, U(-1/sqrt(H), 1/sqrt(H))) and notebooks/train.py
    # get_model_args/train_model (Adam lr 1e-2, no weight decay, no clipping, batch 100,
    # total_steps 8000, trained on all 4,000 training examples, cross-entropy, accuracy
    # on the whole 1,000-example test split).  8,000 steps = 200 epochs of 40 batches.
    "mnist1d-gru": Config(task="mnist1d_full", cell="gru", hidden=6, bidirectional=True,
                          readout="flatten", batch=100, epochs=200, lr=1e-2,
                          optimizer="adam", clip=None, eval_batch=1000,
                          cell_options=(("init", "uniform"),)),
}


def preset(name: str) -> Config:
    """The :class:`Config` of the preset ``name``, a key of :data:`PRESETS` (a
    ``ValueError`` naming ``preset`` and the choices otherwise):

    ``"mnist1d-gru"``: the GRU baseline of MNIST-1D (Greydanus 2020, "Scaling down deep
    learning", arXiv:2011.14439; "GRU 91%" in the mnist1d README) as its reference code
    trains it: greydanus/mnist1d ``notebooks/models.py`` ``GRUBase`` (a bidirectional
    ``torch.nn.GRU`` of hidden size 6 from ``h0 = 0``, its 40 outputs of both directions
    flattened into one ``nn.Linear(480, 10)``, PyTorch's default init) and
    ``notebooks/train.py`` (``get_model_args``: Adam lr 1e-2, weight decay 0, batch 100,
    ``total_steps`` 8000; ``train_model``: all 4,000 training examples, cross-entropy,
    accuracy over the whole 1,000-example test split).  Task ``mnist1d_full``, 200
    epochs of 40 batches = 8,000 steps.  Deviations kept: each epoch visits the
    examples in a new order (the reference cycles one fixed order), 8,000 updates (its
    loop makes 8,001), and rnnjax's GRU sums PyTorch's ``b_ih + b_hh`` on the r and z
    gates into one bias (5,110 params instead of 5,134; the same functions).
    """
    check_choice("preset", name, PRESETS)
    return PRESETS[name]


def estimate_bytes(config: Config, task=None) -> float:
    """A lower estimate of the memory of a run (float32), from the shapes of
    ``cell.init`` under ``jax.eval_shape`` (nothing is allocated): params, gradient and
    two optimiser moments per seed, plus the activations kept for the backward pass
    (about 8 numbers per unit, step and example) of the larger of the training and the
    held-out batch (evaluation takes gradients too), and the held-out batch itself,
    kept on the device for the whole run.  The sequence length is the task's
    (``Task.time``: ``T + 20`` for the copy task, 784 for pixel MNIST), not ``T``;
    ``task`` is made from ``config`` when not given."""
    if task is None:
        task = make_task(config)
    time = task.time
    n_params = 4 * config.hidden * (config.hidden + 1)  # a gated cell's order of size
    if config.cell not in baselines.MODELS:
        cell = make_cell(config)
        try:  # one input feature: the recurrent part dominates
            shapes = jax.eval_shape(lambda k: cell.init(k, 1), jax.random.key(0))
            n_params = sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))
        except ValueError:  # a cell whose input size is tied to its width (LRU)
            pass
    if config.is_deep():  # every block keeps its activations (and its stream)
        width = config.hidden + (config.d_model or config.hidden) * (2 + (config.mlp or 0))
        n_params *= config.depth
    else:
        width = config.hidden
    activations = 8.0 * max(config.batch, config.eval_batch) * time * width * config.depth
    held_out = float(config.eval_batch) * time * task.input_size
    return 4.0 * config.seeds * (4.0 * n_params + activations + held_out)


def has_orthogonal_params(params) -> bool:
    """Whether any leaf of ``params`` is labelled ``"orthogonal"`` by
    :func:`rnnjax.optim.label_params` (the unconstrained coordinates of an
    orthogonal/unitary parametrisation)."""
    return "orthogonal" in jax.tree.leaves(optim.label_params(params))


def orthogonal_cells(hidden: int = 4) -> list:
    """Names in ``rnnjax.cells.REGISTRY`` whose cells have orthogonal params and a
    recurrent matrix (registry order).  Each cell is built and initialised at ``hidden``
    units under ``jax.eval_shape``: no array is made, so this is safe before
    ``jax.distributed.initialize``."""
    out = []
    for name, factory in cells_lib.REGISTRY.items():
        has_matrix = []

        def params(factory=factory, has_matrix=has_matrix):
            cell = factory(hidden)
            has_matrix.append(cell.recurrent_matrix is not None)
            return cell.init(jax.random.key(0), hidden)

        shapes = jax.eval_shape(params)
        if has_matrix[0] and has_orthogonal_params(shapes):
            out.append(name)
    return out


def check_resume(config: Config, out: str, has_checkpoint: bool) -> None:
    """Raise ``ValueError`` unless ``out`` holds a checkpoint and its ``config.json``
    agrees with ``config`` on :data:`RESUME_FIELDS` (naming the fields that differ)."""
    if not has_checkpoint:
        raise ValueError(f"resume: no checkpoint in {os.path.join(out, 'checkpoints')!r}")
    if not os.path.exists(os.path.join(out, "config.json")):
        raise ValueError(f"resume: {os.path.join(out, 'config.json')!r} is missing, so the "
                         "hyper-parameters of the run cannot be checked; restore it (or "
                         "start a new run with another --out)")
    saved = Config.load(out)
    if saved.data_sha256 is not None and saved.data_sha256 != config.data_sha256:
        raise ValueError(f"resume: the run in {out!r} was trained on other data (data "
                         f"{saved.data!r}, sha256 {saved.data_sha256[:16]}...); this call "
                         f"has data {config.data!r}, sha256 "
                         f"{str(config.data_sha256)[:16]}...: give the run's own data file "
                         f"or start a new run with another --out")
    diff = [k for k in RESUME_FIELDS if getattr(saved, k) != getattr(config, k)]
    if diff:
        raise ValueError("resume: the run in " + repr(out) + " was made with " + ", ".join(
            f"{k}={getattr(saved, k)!r}" for k in diff) + "; this call has " + ", ".join(
            f"{k}={getattr(config, k)!r}" for k in diff))


def _word(v) -> str:
    """A value as it is written on the command line."""
    if isinstance(v, tuple):  # cell_options: (("init", "henaff"),)
        return " ".join(f"{k}={w}" for k, w in v) or "(none)"
    return str(v)


def check_resume_options(saved: Config, given: dict, out: str, what: str = "run",
                         agree=RESUME_FIELDS,
                         new: str = "start a new run with another --out") -> None:
    """Refuse, before anything is touched, options ``given`` (``{field: value}``, each
    one the command line gave, default value or not) that a resumed ``saved`` run
    cannot honour: a field that defines the run (``resume="agree"`` in its metadata,
    :data:`RESUME_FIELDS`) with another value than the run's, or ``steps``/``log_every``
    for a run that trains by epochs (which fix both).  One ``ValueError`` line names
    each option, the run's value and the given one.  Options that may change
    (``resume="change"``) pass; ``agree`` replaces :data:`RESUME_FIELDS`; ``new`` is
    the other way out the message names."""
    diff = [k for k, v in given.items() if k in agree and v != getattr(saved, k)]
    if diff:
        raise ValueError(
            f"resume: the {what} in {out!r} has "
            + ", ".join(f"{k}={getattr(saved, k)!r}" for k in diff) + "; this call gives "
            + ", ".join(f"{flag(k)} {_word(given[k])}" for k in diff)
            + f": an option that defines the {what} cannot change on resume (leave it "
              f"out, or {new})")
    epochs = given.get("epochs", saved.epochs)
    for k in ("steps", "log_every"):
        if k in given and epochs is not None and given[k] != getattr(saved, k):
            raise ValueError(f"resume: the {what} in {out!r} trains by epochs ({epochs}), "
                             f"which fix {k}={getattr(saved, k)}; this call gives "
                             f"{flag(k)} {given[k]}: give {flag('epochs')} instead")


__all__ = ["AGREE", "CHANGE", "CLIP_MODES", "CONSTRAINTS", "Config", "DEEP", "DEEP_FIELDS",
           "DTYPES", "OPTIMIZERS",
           "PRESETS", "READOUTS", "RESUME_FIELDS", "check_fields", "check_resume",
           "check_resume_options", "estimate_bytes", "flag", "has_orthogonal_params",
           "make_cell", "make_task", "option_fields", "orthogonal_cells",
           "parse_cell_option", "penalties", "preset", "validate"]
