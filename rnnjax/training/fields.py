"""The fields of a run: :class:`Config` (saved as ``config.json`` beside the run), each
field carrying its help text, default, command-line spelling and what a resumed run
does with it as dataclass field metadata (:func:`option_fields`, :func:`flag`), the one
source of the options of ``rnnjax train``, ``rnnjax copy`` and ``rnnjax orthogonality``
(:mod:`rnnjax.cli.options`).  The checks of a Config live in
:mod:`rnnjax.training.config`, which re-exports everything here."""

from __future__ import annotations

import builtins
import dataclasses
import json
import os
from dataclasses import dataclass, field

from rnnjax import optim
from rnnjax.engine import bptt, table
from rnnjax.io.outputs import atomic_open
from rnnjax.layers.residual import ACTIVATIONS, NORMS

OPTIMIZERS = optim.OPTIMIZERS
CLIP_MODES = ("global_norm", "element")
READOUTS = ("flatten",)  # readouts a Config may ask for instead of the task's own (None)
DTYPES = ("float32", "bfloat16", "float16")  # the cell's computation dtype

# What a resumed run does with a field (``Field.metadata["resume"]``): AGREE, the field
# defines the run and a resumed run must have the run's own value (:func:`check_resume`,
# and ``rnnjax train --resume`` refuses an option given with another value); CHANGE, it
# may change on resume (the length of the run, its logging and checkpoint cadence, where
# it writes), and the new value is saved in ``config.json``; None, not an option
# (filled in by :func:`rnnjax.build` from the task: ``permutation``, ``data_sha256``).
AGREE, CHANGE = "agree", "change"
CONSTRAINTS = "orthogonality by constraint (any recurrent cell)"  # a group of --help
DEEP = "deep residual models (rnnjax.layers.residual_stack)"  # a group of --help
# The fields of a deep model: any of them away from its default builds the residual stack.
DEEP_FIELDS = ("depth", "d_model", "mlp", "norm", "dropout")


def parse_cell_option(text: str) -> tuple:
    """``KEY=VALUE`` (``--cell-opt``) -> ``(KEY, value)``: ``value`` is an int, a float,
    ``true``/``false`` as a bool, or else the string."""
    if "=" not in text:
        raise ValueError(f"--cell-opt must be KEY=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    for conv in (int, float):
        try:
            return k, conv(v)
        except ValueError:
            pass
    if v in ("true", "false"):
        return k, v == "true"
    return k, v


def _option(default, help=None, *, flag=None, type=None, choices=None, metavar=None,
            action=None, parse=None, cli_default=None, resume=AGREE, group=None,
            command=None):
    """A :class:`Config` field that is also a command-line option: its default, its
    ``--help`` text and spelling (``flag``, default ``--name-with-dashes``), the type
    of its value (default: the default's type; a bool is an on-switch), ``choices``,
    ``metavar``, ``action="append"`` with ``parse`` turning the list of words into the
    field's value, ``cli_default`` where the command's default differs from the
    library's, what a resumed run does with it (``resume``: :data:`AGREE` or
    :data:`CHANGE`), the ``--help`` ``group`` and ``command="train"`` for an option of
    ``rnnjax train`` only (the run folder's options).  ``rnnjax.cli.options`` builds
    the options of ``rnnjax train``, ``rnnjax copy`` and ``rnnjax orthogonality``
    from this metadata."""
    if type is None and action is None and default is not None:
        type = builtins.type(default)
    meta = {"help": help, "flag": flag, "type": type, "choices": choices,
            "metavar": metavar, "action": action, "parse": parse, "resume": resume,
            "group": group, "command": command, "option": True}
    if cli_default is not None:
        meta["cli_default"] = cli_default
    if isinstance(default, (list, dict, set, tuple)):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def _derived(default):
    """A field filled in from the built task, not an option."""
    return field(default=default, metadata={"option": False, "resume": None})


def option_fields() -> list:
    """The :class:`Config` fields that are command-line options, in declaration order."""
    return [f for f in dataclasses.fields(Config) if f.metadata.get("option")]


def flag(name: str) -> str:
    """The command-line spelling of the :class:`Config` field ``name``."""
    m = {f.name: f for f in dataclasses.fields(Config)}[name].metadata
    return m.get("flag") or "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Config:
    """Everything that defines a run (saved as ``config.json``).

    ``T`` is the copy delay, the adding-problem length or the char-LM window (ignored by
    pixel MNIST, whose length is 784).  ``lr_orth=None`` trains the orthogonal/unitary
    parameters with ``lr / 10``, the rule of expRNN's and scoRNN's copy-task recipes
    (2e-4 / 2e-5, 1e-3 / 1e-4; :func:`rnnjax.optim.recipe`'s default, which the runner
    follows).  ``clip=None`` disables clipping.  ``checkpoint_every=0`` saves no checkpoint;
    otherwise one is also saved at the last step.  ``cell_options`` are extra keyword
    arguments of the cell factory as ``(("init", "henaff"),)`` pairs.  ``grad`` is
    :func:`rnnjax.run`'s: ``"auto"`` the faster of autodiff and the cell's hand-written
    BPTT on this machine (measured, :mod:`rnnjax.engine.autotune`; the rule of
    :func:`rnnjax.engine.bptt.choose_grad` with ``RNNJAX_AUTOTUNE=0``), or either one by
    name; ``grad_used``/``scan_used`` are what the runner ran (``"manual"`` or
    ``"autodiff"``, and the engine's ``scan``), filled in when it starts.

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
    (:func:`rnnjax.layers.readout.layer_with_readout`; sequence classification).
    ``scan`` is :func:`rnnjax.run`'s engine for every cell of the model.  Deep residual
    models (:func:`rnnjax.layers.residual_with_readout`): ``depth`` pre-norm blocks of
    the cell, the residual stream of width ``d_model`` from an input embedding,
    ``norm`` (``"rms"``, ``"layer"``, ``"none"``), a gated MLP of expansion ``mlp`` with
    the gate ``mlp_activation``, ``dropout`` on each branch; all at their defaults, the
    model is the cell and its readout.  Named configurations of published protocols
    are in :data:`PRESETS`.
    """

    task: str = _option(
        "copy", "copy, adding (generated: --steps), charlm (stateful, consecutive windows "
        "of the text: --steps or --epochs), or the data sets digits, pdigits, mnist1d, "
        "mnist1d_full (all 4,000 training examples, no validation split), smnist, pmnist "
        "(--epochs) (default %(default)s)")
    cell: str = _option("lstm", "a name in rnnjax.cells.REGISTRY")
    T: int = _option(100, "copy delay / adding length / char-LM window (default "
                          "%(default)s)", flag="--T")
    hidden: int = _option(64)
    batch: int = _option(64)
    steps: int = _option(1000, "training steps of a generated task (default %(default)s)",
                         resume=CHANGE)
    lr: float = _option(1e-3)
    lr_orth: float | None = _option(
        None, "learning rate of orthogonal/unitary parameters (default: --lr / 10, the "
              "rule of expRNN's and scoRNN's recipes)", type=float)
    optimizer: str = _option("rmsprop", choices=OPTIMIZERS)
    clip: float | None = _option(None, "clipping threshold (off)", type=float)
    clip_mode: str = _option("global_norm", "how --clip clips: by the global norm of the "
                                            "gradient or per element (needs --clip)",
                             choices=CLIP_MODES)
    seed: int = _option(0)
    seeds: int = _option(1, "train K seeds seed..seed+K-1 in one program (jax.vmap)",
                         flag="--num-seeds", metavar="K")
    log_every: int = _option(50, resume=CHANGE)
    eval_batch: int = _option(256)
    checkpoint_every: int = _option(
        0, "save a checkpoint every N steps and at the end when --out is given (0: "
           "never; default %(default)s)", cli_default=500, resume=CHANGE, command="train")
    keep: int = _option(3, "checkpoints kept", resume=CHANGE, command="train")
    out: str | None = _option(None, "run directory (metrics, config, checkpoints)",
                              resume=None, command="train")
    data: str | None = _option(
        None, "MNIST directory/.npz (smnist, pmnist) or UTF-8 text file (charlm; default: "
              "the shipped rnnjax/data/shakespeare.txt)", resume=CHANGE)
    variant: str = _option("arjovsky", "copy-task timing (default %(default)s)",
                           choices=("arjovsky", "exprnn"))
    permutation_seed: int = _option(0)
    cell_options: tuple = _option(
        (), "extra keyword argument of the cell factory (repeatable)", flag="--cell-opt",
        metavar="KEY=VALUE", action="append", parse=lambda texts: tuple(
            parse_cell_option(t) for t in texts))
    devices: int | None = _option(
        None, "data-parallel over the first N devices (default: all local ones)",
        type=int, resume=CHANGE)
    max_nonfinite: int = _option(
        10, "stop after N consecutive non-finite losses/gradients, whose updates are "
            "skipped (0: never stop; default %(default)s)", resume=CHANGE)
    grad: str = _option(
        "auto", "autodiff through the scan, the cell's hand-written BPTT (manual), or "
                "auto: the faster on this backend (the same gradient; default "
                "%(default)s)", choices=bptt.GRADS, resume=CHANGE)
    # Dynamic trivialization: fold the skew params into the base every K steps (None:
    # K=100, expRNN's dtriv default, for cells with a "base" param; 0: never).
    retrivialize_every: int | None = _option(
        None, "dynamic trivialization (exprnn dynamic=True): fold the skew params into "
              "the base every K steps (default 100; 0: never)", type=int, metavar="K")
    epochs: int | None = _option(
        None, "passes over the training split of a data-set task (digits, pdigits, "
              "mnist1d, smnist, pmnist) or the training text of charlm; replaces --steps "
              "and logs every epoch", type=int, resume=CHANGE)
    permutation: tuple | None = _derived(None)
    grad_used: str | None = _derived(None)
    scan_used: str | None = _derived(None)
    tensorboard: bool = _option(
        False, "also write TensorBoard event files to OUT/tensorboard (needs the optional "
               "tensorboardX: pip install rnnjax[tensorboard])", resume=CHANGE,
        command="train")
    dtype: str = _option(
        "float32", "the cell's computation dtype: bfloat16/float16 compute in half "
                   "precision with float32 parameters (float16 with dynamic loss scaling; "
                   "default %(default)s)", choices=DTYPES)
    data_sha256: str | None = _derived(None)
    orth_penalty: float = _option(
        0.0, "add LAMBDA ||W^T W - I||_F^2 of the recurrent matrix to the loss",
        metavar="LAMBDA", group=CONSTRAINTS)
    nnrnn_alpha: float = _option(
        0.0, "nnrnn cell: alpha_lam sum_k (alpha_k - 1)^2 (its paper: 1e-4)",
        group=CONSTRAINTS)
    nnrnn_decay: float = _option(
        0.0, "nnrnn cell: (decay/2) ||T||_F^2 of the upper-triangular part (its paper: "
             "1e-6)", group=CONSTRAINTS)
    floss_every: int = _option(
        0, "gradient flossing (Engelken 2023): at steps 1, N+1, 2N+1, ... add W "
           "sum_{i<=K} lambda_i^2 of the top Lyapunov exponents (0: off)", metavar="N",
        group=CONSTRAINTS)
    floss_k: int = _option(1, "Lyapunov exponents flossed (default %(default)s)",
                           metavar="K", group=CONSTRAINTS)
    floss_weight: float = _option(1.0, "weight of the flossing term (default %(default)s)",
                                  metavar="W", group=CONSTRAINTS)
    floss_batch: int = _option(
        1, "training sequences the exponents are measured on (default %(default)s)",
        metavar="B", group=CONSTRAINTS)
    riemannian: str | None = _option(
        None, "move the cell's square W_hh on O(H) with this retraction, at --lr-orth "
              "(needs an orthogonal init: --cell-opt init=orthogonal)",
        choices=("cayley", "qr", "polar"), group=CONSTRAINTS)
    bidirectional: bool = _option(
        False, "run the cell both ways over the sequence, outputs concatenated "
               "(rnnjax.layers.bidirectional)")
    readout: str | None = _option(
        None, "flatten: one linear map of all the outputs of a sequence (sequence "
              "classification; default: the task's readout)", choices=READOUTS)
    scan: str = _option(
        "auto", "how each cell runs over time: an engine of rnnjax.engine.table.ENGINES, "
                "or auto (the engine table's rule; default %(default)s)",
        choices=table.scan_choices(), resume=CHANGE)
    depth: int = _option(
        1, "pre-norm residual blocks x + mixer(norm(x)), the mixer the cell (default "
           "%(default)s: with no other option of this group, the cell alone)", metavar="N",
        group=DEEP)
    d_model: int | None = _option(
        None, "width D of the residual stream, which starts at an input embedding E x "
              "(the token embedding of a token task); a cell whose output size is not D "
              "gets an output projection (default: the cell's output size, no embedding, "
              "the first block reads the inputs)", type=int, metavar="D", group=DEEP)
    mlp: float | None = _option(
        None, "a gated MLP of expansion M after each mixer, x + mlp(norm(x)) "
              "(RecurrentGemma's MLP block; default: none)", type=float, metavar="M",
        group=DEEP)
    mlp_activation: str = _option(
        "gelu", "the MLP's gate: gelu (GeGLU, RecurrentGemma's) or silu (SwiGLU) "
                "(default %(default)s)", choices=tuple(ACTIVATIONS), group=DEEP)
    norm: str = _option(
        "none", "the pre-norm of each block and the final norm: rms (RecurrentGemma's "
                "RMSNorm), layer or none (default %(default)s)", choices=NORMS, group=DEEP)
    dropout: float = _option(
        0.0, "dropout rate on each residual branch while training (default %(default)s)",
        metavar="RATE", group=DEEP)

    def has_constraint(self) -> bool:
        """Whether a penalty, flossing or the Riemannian optimiser is on."""
        return bool(self.orth_penalty or self.nnrnn_alpha or self.nnrnn_decay
                    or self.floss_every or self.riemannian)

    def is_deep(self) -> bool:
        """Whether the model is a residual stack: an option of :data:`DEEP_FIELDS` is
        away from its default (``depth > 1``, ``d_model``, ``mlp``, a ``norm`` or
        ``dropout``)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return any(getattr(self, k) != defaults[k] for k in DEEP_FIELDS)

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


# Fields that must agree between a run and the checkpoint it resumes (those that define
# the run: resume=AGREE in their metadata); every other option may change on resume.
RESUME_FIELDS = tuple(f.name for f in dataclasses.fields(Config)
                      if f.metadata.get("resume") == AGREE)


__all__ = ["AGREE", "CHANGE", "CLIP_MODES", "CONSTRAINTS", "Config", "DEEP", "DEEP_FIELDS",
           "DTYPES", "OPTIMIZERS", "PATH_FIELDS", "READOUTS", "RESUME_FIELDS", "flag",
           "option_fields", "parse_cell_option", "paths_from_run", "paths_to_run"]
