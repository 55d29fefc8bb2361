"""What defines a run of the training runner: :class:`Config` (saved as
``config.json`` beside the run), its checks (:func:`validate`, run before anything is
built) and the agreement check of a resumed run (:func:`check_resume`).

Whether a cell trains with the orthogonal learning rate ``lr_orth`` and reports
``orth_error`` (also reported when a constraint option is on) is decided by its params
(:func:`has_orthogonal_params`, from
:func:`rnnjax.optim.label_params`), never by its name.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field

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
from rnnjax.engine import bptt
from rnnjax.io.outputs import atomic_open
from rnnjax.layers import baselines
from rnnjax.optim import constraints

OPTIMIZERS = optim.OPTIMIZERS
CLIP_MODES = ("global_norm", "element")
DTYPES = ("float32", "bfloat16", "float16")  # the cell's computation dtype


@dataclass(frozen=True)
class Config:
    """Everything that defines a run (saved as ``config.json``).

    ``T`` is the copy delay, the adding-problem length or the char-LM window (ignored by
    pixel MNIST, whose length is 784).  ``lr_orth=None`` trains every parameter with
    ``lr``.  ``clip=None`` disables clipping.  ``checkpoint_every=0`` saves no checkpoint;
    otherwise one is also saved at the last step.  ``cell_options`` are extra keyword
    arguments of the cell factory as ``(("init", "henaff"),)`` pairs.  ``grad`` is
    :func:`rnnjax.run`'s: ``"auto"`` the faster of autodiff and the cell's hand-written
    BPTT on this backend (:func:`rnnjax.engine.bptt.choose_grad`), or either one by name.

    Data-set tasks (``digits``, ``pdigits``, ``mnist1d``, ``mnist1d_full``, ``smnist``,
    ``pmnist``) train for ``epochs`` passes over their training split when it is set,
    the stateful
    ``charlm`` over its training text (``steps`` and ``log_every`` are then ``epochs *
    E`` and one epoch, ``E = floor(N_train / batch)`` batches or the number of windows,
    filled in by
    :func:`rnnjax.build`); generated tasks train for ``steps``.  ``permutation``
    is the fixed pixel order of a permuted task, filled in from ``permutation_seed`` and
    saved so that a run is reproduced from its ``config.json`` alone.
    ``dtype`` is the cell's computation dtype (``"bfloat16"``/``"float16"``: mixed
    precision with float32 parameters, :mod:`rnnjax.core.precision`; float16 trains with
    dynamic loss scaling, :func:`rnnjax.optim.dynamic_loss_scale`).
    ``tensorboard=True`` also writes
    TensorBoard event files to ``out/tensorboard`` (optional ``tensorboardX``).
    ``data_sha256`` is the fingerprint of the task's data (``Task.fingerprint``, e.g.
    the SHA-256 of the char-LM text), filled in by :func:`rnnjax.build` and
    checked by :func:`check_resume`.

    Orthogonality by constraint (:mod:`rnnjax.optim.constraints`, :mod:`rnnjax.optim.riemannian`),
    for any recurrent cell: ``orth_penalty`` adds ``lam ||W^H W - I||_F^2`` to the loss;
    ``nnrnn_alpha``/``nnrnn_decay`` the nnRNN penalties (nnrnn cell); ``floss_every=N``
    adds ``floss_weight sum_{i<=floss_k} lambda_i^2`` (gradient flossing, on
    ``floss_batch`` training sequences) at steps 1, N+1, 2N+1, ...; ``riemannian``
    (``"cayley"``/``"qr"``/``"polar"``) moves the cell's square ``W_hh`` on ``O(H)``
    with the run's optimiser at ``lr_orth`` (the cell must start orthogonal, e.g.
    ``cell_options=(("init", "orthogonal"),)``).

    The model (:func:`rnnjax.training.make_model`): ``bidirectional=True`` runs the cell
    both ways over the sequence (:func:`rnnjax.layers.bidirectional`, outputs
    concatenated); ``readout`` is the task's (``None``: every step or the last one) or
    ``"flatten"``, one linear map of all the outputs of a sequence
    (:func:`rnnjax.layers.readout.layer_with_readout`; sequence classification).  Named
    configurations of published protocols are in :data:`PRESETS`.
    """

    task: str = "copy"
    cell: str = "lstm"
    T: int = 100
    hidden: int = 64
    batch: int = 64
    steps: int = 1000
    lr: float = 1e-3
    lr_orth: float | None = None
    optimizer: str = "rmsprop"
    clip: float | None = None
    clip_mode: str = "global_norm"
    seed: int = 0
    seeds: int = 1
    log_every: int = 50
    eval_batch: int = 256
    checkpoint_every: int = 0
    keep: int = 3
    out: str | None = None
    data: str | None = None
    variant: str = "arjovsky"
    permutation_seed: int = 0
    cell_options: tuple = field(default_factory=tuple)
    devices: int | None = None
    max_nonfinite: int = 10
    grad: str = "auto"
    # Dynamic trivialization: fold the skew params into the base every K steps (None:
    # K=100, expRNN's dtriv default, for cells with a "base" param; 0: never).
    retrivialize_every: int | None = None
    epochs: int | None = None
    permutation: tuple | None = None
    tensorboard: bool = False
    dtype: str = "float32"
    data_sha256: str | None = None
    orth_penalty: float = 0.0
    nnrnn_alpha: float = 0.0
    nnrnn_decay: float = 0.0
    floss_every: int = 0
    floss_k: int = 1
    floss_weight: float = 1.0
    floss_batch: int = 1
    riemannian: str | None = None
    bidirectional: bool = False
    readout: str | None = None

    def has_constraint(self) -> bool:
        """Whether a penalty, flossing or the Riemannian optimiser is on."""
        return bool(self.orth_penalty or self.nnrnn_alpha or self.nnrnn_decay
                    or self.floss_every or self.riemannian)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["cell_options"] = [list(kv) for kv in self.cell_options]
        return d

    @classmethod
    def from_json(cls, d: dict) -> Config:
        d = dict(d)
        d["cell_options"] = tuple(tuple(kv) for kv in d.get("cell_options", ()))
        if d.get("permutation") is not None:
            d["permutation"] = tuple(int(i) for i in d["permutation"])
        return cls(**d)

    @classmethod
    def load(cls, out: str) -> Config:
        """The ``config.json`` of the run directory ``out``."""
        path = os.path.join(os.fspath(out), "config.json")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{out} is not a run directory: it has no config.json")
        try:
            with open(path, "rb") as f:
                d = json.loads(f.read().decode("utf-8"))
            if not isinstance(d, dict):
                raise ValueError(f"expected a JSON object, got {type(d).__name__}")
            return cls.from_json(paths_from_run(d, out))
        except (OSError, ValueError, TypeError) as e:
            raise ValueError(f"{path} is not a readable config.json of a run "
                             f"({type(e).__name__}: {e})") from None

    def save(self, out: str) -> None:
        """Write ``config.json`` in ``out`` atomically, its paths relative to ``out``
        (:func:`paths_to_run`)."""
        with atomic_open(os.path.join(os.fspath(out), "config.json"), "w") as f:
            json.dump(paths_to_run(self.to_json(), out), f, indent=2)


# The fields of a Config that hold a path of the file system.
PATH_FIELDS = ("out", "data")


def paths_to_run(d: dict, run_dir) -> dict:
    """``config.json``'s paths written so that the run folder is self-contained (it
    loads from any working directory, and after being moved): ``out`` is ``"."`` (the
    folder itself) and ``data`` a path relative to the run folder when it lies inside
    it, else absolute."""
    d = dict(d)
    run_abs = os.path.abspath(os.fspath(run_dir))
    d["out"] = "."
    data = d.get("data")
    if isinstance(data, str) and data:
        data_abs = os.path.abspath(data)
        inside = data_abs.startswith(run_abs.rstrip(os.sep) + os.sep)
        d["data"] = os.path.relpath(data_abs, run_abs) if inside else data_abs
    return d


def paths_from_run(d: dict, run_dir) -> dict:
    """The inverse of :func:`paths_to_run` for the run folder ``run_dir`` (as the caller
    names it, relative to the working directory or absolute): ``out`` is ``run_dir``
    and a relative ``data`` is joined to it.  A ``config.json`` written before paths
    were relative holds ``out`` as it was given (relative to the directory the run was
    started from): that directory is recovered from ``run_dir`` when ``run_dir`` ends
    with the stored ``out``, else a relative ``data`` is left as it was."""
    d = dict(d)
    stored = d.get("out")
    base = os.fspath(run_dir)
    if isinstance(stored, str) and os.path.normpath(stored) != ".":
        run_abs, tail = os.path.abspath(base), os.path.normpath(stored)
        base = None
        if not os.path.isabs(tail) and run_abs.endswith(os.sep + tail):
            base = run_abs[:-len(tail) - 1] or os.sep
    d["out"] = os.fspath(run_dir)
    data = d.get("data")
    if isinstance(data, str) and data and not os.path.isabs(data) and base is not None:
        d["data"] = os.path.normpath(os.path.join(base, data))
    return d


# Fields that must agree between a run and the checkpoint it resumes.
RESUME_FIELDS = ("task", "cell", "T", "hidden", "batch", "lr", "lr_orth", "optimizer",
                 "clip", "clip_mode", "seed", "seeds", "log_every", "eval_batch",
                 "variant", "permutation_seed", "cell_options", "dtype", "orth_penalty",
                 "nnrnn_alpha", "nnrnn_decay", "floss_every", "floss_k", "floss_weight",
                 "floss_batch", "riemannian", "bidirectional", "readout")

# Readouts a Config may ask for instead of the task's own (None).
READOUTS = ("flatten",)


def make_cell(config: Config):
    """The recurrent cell of ``config`` (``config.cell`` must not be a baseline)."""
    options = dict(config.cell_options)
    if config.dtype != "float32":
        options["dtype"] = config.dtype
    return cells_lib.make(config.cell, config.hidden, **options)


def validate(config: Config) -> None:
    """Check ``config`` before anything is built; raise ``ValueError`` naming the field."""
    if not isinstance(config, Config):
        raise TypeError(f"config must be an rnnjax.Config, got {type(config).__name__}")
    if tasks_lib.is_plugin(config.task):
        tasks_lib.load_factory(config.task)  # "module:factory": a task of one's own
    else:
        check_choice("task", config.task, tasks_lib.TASKS)
    check_choice("cell", config.cell, {**cells_lib.REGISTRY, **baselines.MODELS})
    for name in ("T", "hidden", "batch", "seeds", "log_every", "eval_batch", "keep"):
        check_positive_int(name, getattr(config, name))
    for name in ("steps", "checkpoint_every", "seed", "max_nonfinite"):
        check_nonneg_int(name, getattr(config, name))
    check_positive_float("lr", config.lr)
    check_optional_positive("lr_orth", config.lr_orth)
    check_choice("optimizer", config.optimizer, OPTIMIZERS)
    check_choice("clip_mode", config.clip_mode, CLIP_MODES)
    check_optional_positive("clip", config.clip)
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
    _validate_constraints(config)
    if config.task == "adding" and config.T < 2:
        raise ValueError(f"T must be >= 2 for the adding problem, got {config.T}")
    check_memory("this run", estimate_bytes(config),
                 "lower --hidden, --T, --batch or --seeds")


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


def estimate_bytes(config: Config) -> float:
    """A lower estimate of the memory of a run (float32), from the shapes of
    ``cell.init`` under ``jax.eval_shape`` (nothing is allocated): params, gradient and
    two optimiser moments per seed, plus the activations kept for the backward pass
    (about 8 numbers per unit, step and example)."""
    n_params = 4 * config.hidden * (config.hidden + 1)  # a gated cell's order of size
    if config.cell not in baselines.MODELS:
        cell = make_cell(config)
        try:  # one input feature: the recurrent part dominates
            shapes = jax.eval_shape(lambda k: cell.init(k, 1), jax.random.key(0))
            n_params = sum(math.prod(a.shape) for a in jax.tree.leaves(shapes))
        except ValueError:  # a cell whose input size is tied to its width (LRU)
            pass
    activations = 8.0 * config.batch * config.T * config.hidden
    return 4.0 * config.seeds * (4.0 * n_params + activations)


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


__all__ = ["CLIP_MODES", "Config", "DTYPES", "OPTIMIZERS", "PATH_FIELDS", "PRESETS",
           "READOUTS", "RESUME_FIELDS", "check_resume", "estimate_bytes", "has_orthogonal_params",
           "make_cell", "orthogonal_cells", "paths_from_run", "paths_to_run", "penalties",
           "preset", "validate"]
