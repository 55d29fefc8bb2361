"""``rnnjax train``: train one cell on one task (see :mod:`rnnjax.training.runner`).

Example::

    rnnjax train --preset mnist1d-gru --num-seeds 6 --out runs/mnist1d-gru-paper
    rnnjax train --task copy --cell exprnn --T 1000 --hidden 190 --batch 128 \\
        --steps 4000 --lr 2e-4 --lr-orth 2e-5 --seed 0 --checkpoint-every 500 \\
        --keep 3 --out runs/NAME [--resume]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import traceback

import jax

from rnnjax.engine.bptt import GRADS
from rnnjax.training import config as train_config
from rnnjax.training.checkpointing import Preempted
from rnnjax.training.config import DTYPES, PRESETS, READOUTS
from rnnjax.training.distributed import (
    DEFAULT_HEARTBEAT,
    DEFAULT_TIMEOUT,
    exit_lost_peer,
    initialize,
    is_main,
    peer_lost,
)
from rnnjax.training.runner import CLIP_MODES, OPTIMIZERS, Config, NonFiniteError, train

# One line per preset for --help (the protocol each follows: rnnjax.training.config.PRESETS).
_PRESET_HELP = {"mnist1d-gru": "MNIST-1D's GRU baseline (Greydanus 2020, greydanus/mnist1d "
                               "notebooks/models.py GRUBase, train.py): bidirectional GRU "
                               "6, readout over all 40 outputs, the 4,000 training "
                               "examples, Adam 1e-2, batch 100, 8,000 steps"}


def cell_option(text):
    """``--cell-opt KEY=VALUE`` -> ``(KEY, value)``: ``value`` is an int, a float,
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


class DeprecatedAlias(argparse.Action):
    """An old spelling of an option (hidden from ``--help``): stores into the new
    option's ``dest`` and warns on stderr, naming the new spelling ``new``."""

    def __init__(self, option_strings, dest, new, **kwargs):
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"rnnjax: warning: {option_string} is deprecated; use {self.new}",
              file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_deprecated_alias(p, old: str, new: str, **kwargs):
    """Accept ``old`` as a deprecated spelling of the option ``new`` (same ``dest``)."""
    kwargs.setdefault("dest", new.lstrip("-").replace("-", "_"))
    return p.add_argument(old, action=DeprecatedAlias, new=new, **kwargs)


def add_run_arguments(p, *, task=True, cell=True, defaults=None):
    """The options shared by ``rnnjax train`` and ``rnnjax copy``."""
    d = Config() if defaults is None else defaults
    if task:
        p.add_argument("--task", default=d.task,
                       help="copy, adding (generated: --steps), charlm (stateful, "
                            "consecutive windows of the text: --steps or --epochs), or the "
                            "data sets digits, pdigits, mnist1d, mnist1d_full (all 4,000 "
                            "training examples, no validation split), smnist, pmnist "
                            "(--epochs) "
                            "(default %(default)s)")
    if cell:
        p.add_argument("--cell", default=d.cell, help="a name in rnnjax.cells.REGISTRY")
    p.add_argument("--T", type=int, default=d.T,
                   help="copy delay / adding length / char-LM window (default %(default)s)")
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--batch", type=int, default=d.batch)
    p.add_argument("--steps", type=int, default=d.steps,
                   help="training steps of a generated task (default %(default)s)")
    p.add_argument("--epochs", type=int, default=d.epochs,
                   help="passes over the training split of a data-set task (digits, "
                        "pdigits, mnist1d, smnist, pmnist) or the training text of "
                        "charlm; replaces --steps and logs every epoch")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--lr-orth", type=float, default=d.lr_orth,
                   help="learning rate of orthogonal/unitary parameters (default: --lr)")
    p.add_argument("--optimizer", default=d.optimizer, choices=OPTIMIZERS)
    p.add_argument("--clip", type=float, default=d.clip, help="clipping threshold (off)")
    p.add_argument("--clip-mode", default=d.clip_mode, choices=CLIP_MODES)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--num-seeds", type=int, default=d.seeds, metavar="K",
                   help="train K seeds seed..seed+K-1 in one program (jax.vmap)")
    add_deprecated_alias(p, "--seeds", "--num-seeds", type=int)
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--eval-batch", type=int, default=d.eval_batch)
    p.add_argument("--data", default=d.data,
                   help="MNIST directory/.npz (smnist, pmnist) or UTF-8 text file (charlm; "
                        "default: the shipped rnnjax/data/shakespeare.txt)")
    p.add_argument("--variant", default=d.variant, choices=("arjovsky", "exprnn"),
                   help="copy-task timing (default %(default)s)")
    p.add_argument("--permutation-seed", type=int, default=d.permutation_seed)
    p.add_argument("--cell-opt", action="append", default=[], metavar="KEY=VALUE",
                   help="extra keyword argument of the cell factory (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--devices", type=int, default=d.devices,
                   help="data-parallel over the first N devices (default: all local ones)")
    p.add_argument("--max-nonfinite", type=int, default=d.max_nonfinite,
                   help="stop after N consecutive non-finite losses/gradients, whose "
                        "updates are skipped (0: never stop; default %(default)s)")
    p.add_argument("--grad", default=d.grad, choices=GRADS,
                   help="autodiff through the scan, the cell's hand-written BPTT (manual), "
                        "or auto: the faster on this backend (the same gradient; "
                        "default %(default)s)")
    p.add_argument("--dtype", default=d.dtype, choices=DTYPES,
                   help="the cell's computation dtype: bfloat16/float16 compute in half "
                        "precision with float32 parameters (float16 with dynamic loss "
                        "scaling; default %(default)s)")
    p.add_argument("--retrivialize-every", type=int, default=None, metavar="K",
                   help="dynamic trivialization (exprnn dynamic=True): fold the skew "
                        "params into the base every K steps (default 100; 0: never)")
    p.add_argument("--bidirectional", action="store_true", default=d.bidirectional,
                   help="run the cell both ways over the sequence, outputs concatenated "
                        "(rnnjax.layers.bidirectional)")
    p.add_argument("--readout", default=d.readout, choices=READOUTS,
                   help="flatten: one linear map of all the outputs of a sequence "
                        "(sequence classification; default: the task's readout)")
    g = p.add_argument_group("orthogonality by constraint (any recurrent cell)")
    g.add_argument("--orth-penalty", type=float, default=d.orth_penalty, metavar="LAMBDA",
                   help="add LAMBDA ||W^T W - I||_F^2 of the recurrent matrix to the loss")
    g.add_argument("--floss-every", type=int, default=d.floss_every, metavar="N",
                   help="gradient flossing (Engelken 2023): at steps 1, N+1, 2N+1, ... add "
                        "W sum_{i<=K} lambda_i^2 of the top Lyapunov exponents (0: off)")
    g.add_argument("--floss-k", type=int, default=d.floss_k, metavar="K",
                   help="Lyapunov exponents flossed (default %(default)s)")
    g.add_argument("--floss-weight", type=float, default=d.floss_weight, metavar="W",
                   help="weight of the flossing term (default %(default)s)")
    g.add_argument("--floss-batch", type=int, default=d.floss_batch, metavar="B",
                   help="training sequences the exponents are measured on "
                        "(default %(default)s)")
    g.add_argument("--nnrnn-alpha", type=float, default=d.nnrnn_alpha,
                   help="nnrnn cell: alpha_lam sum_k (alpha_k - 1)^2 (its paper: 1e-4)")
    g.add_argument("--nnrnn-decay", type=float, default=d.nnrnn_decay,
                   help="nnrnn cell: (decay/2) ||T||_F^2 of the upper-triangular part "
                        "(its paper: 1e-6)")
    g.add_argument("--riemannian", default=d.riemannian, choices=("cayley", "qr", "polar"),
                   help="move the cell's square W_hh on O(H) with this retraction, at "
                        "--lr-orth (needs an orthogonal init: --cell-opt init=orthogonal)")


def config_kwargs(a) -> dict:
    return dict(T=a.T, hidden=a.hidden, batch=a.batch, steps=a.steps, lr=a.lr,
                lr_orth=a.lr_orth, optimizer=a.optimizer, clip=a.clip, clip_mode=a.clip_mode,
                seed=a.seed, seeds=a.num_seeds, log_every=a.log_every, eval_batch=a.eval_batch,
                data=a.data, variant=a.variant, permutation_seed=a.permutation_seed,
                cell_options=tuple(cell_option(o) for o in a.cell_opt),
                devices=a.devices, max_nonfinite=a.max_nonfinite, grad=a.grad,
                retrivialize_every=a.retrivialize_every, epochs=a.epochs,
                orth_penalty=a.orth_penalty, floss_every=a.floss_every, floss_k=a.floss_k,
                floss_weight=a.floss_weight, floss_batch=a.floss_batch,
                nnrnn_alpha=a.nnrnn_alpha, nnrnn_decay=a.nnrnn_decay,
                riemannian=a.riemannian, bidirectional=a.bidirectional, readout=a.readout,
                tensorboard=getattr(a, "tensorboard", False), dtype=a.dtype)


def config_from_args(a) -> Config:
    """The :class:`Config` of ``rnnjax train``'s parsed arguments ``a``."""
    return Config(task=a.task, cell=a.cell,
                  checkpoint_every=a.checkpoint_every if a.out else 0,
                  keep=a.keep, out=a.out, **config_kwargs(a))


def given_options(parser, argv) -> set:
    """The ``dest`` of every option of ``parser`` that the command line ``argv`` (the
    words after the subcommand) gives, whatever its value (also one given at its
    default): ``argv`` is parsed into a namespace whose every entry starts as a
    sentinel, so argparse fills in no default."""
    unset = object()
    ns = argparse.Namespace(**{k: unset for k in vars(parser.parse_args([]))})
    return {k for k, v in vars(parser.parse_args(argv, namespace=ns)).items()
            if v is not unset}


# Config field -> dest of its option in `rnnjax train`, where they differ.
_DESTS = {"seeds": "num_seeds", "cell_options": "cell_opt"}


def preset_config(a) -> Config:
    """``--preset NAME``: the fields that :data:`rnnjax.training.config.PRESETS` ``[NAME]``
    sets (those differing from :class:`Config`'s defaults) take the preset's values,
    unless their option is on the command line (:func:`given_options`; an option given
    at its default value counts); every other field is the command line's, as without
    a preset.  An unknown ``NAME`` raises ``ValueError`` naming ``preset`` and the
    choices; ``--steps`` with a preset that trains by epochs is refused (the epochs
    would replace it)."""
    base = train_config.preset(a.preset)
    given = given_options(a.train_parser, a.argv[a.argv.index("train") + 1:])
    config = config_from_args(a)
    if base.epochs is not None and "steps" in given and "epochs" not in given:
        raise ValueError(f"--steps: the preset {a.preset!r} trains by epochs ("
                         f"{base.epochs} passes over the training split), which replace "
                         f"--steps; give --epochs instead")
    default = Config()
    keep = {f.name: getattr(base, f.name) for f in dataclasses.fields(Config)
            if getattr(base, f.name) != getattr(default, f.name)
            and _DESTS.get(f.name, f.name) not in given}
    return dataclasses.replace(config, **keep)


def resumed_config(a) -> Config:
    """``--resume``: the run's saved ``config.json``, with only the options given on
    the command line (those differing from their defaults, e.g. a larger ``--steps``)
    replacing the saved values, so ``rnnjax train --out DIR --resume`` needs nothing
    else.  A given option that must agree with the checkpoint (``RESUME_FIELDS``) and
    does not is refused by :func:`rnnjax.training.config.check_resume`."""
    defaults = a.train_parser.parse_args([])
    defaults.out = a.out
    given, default = config_from_args(a), config_from_args(defaults)
    explicit = {f.name: getattr(given, f.name) for f in dataclasses.fields(Config)
                if getattr(given, f.name) != getattr(default, f.name)}
    return dataclasses.replace(Config.load(a.out), **{**explicit, "out": a.out})


def run(a) -> int:
    if a.distributed:  # before any other JAX call
        initialize(a.coordinator, a.num_processes, a.process_id,
                   timeout=a.coordinator_timeout, heartbeat_timeout=a.heartbeat_timeout)
    config = preset_config(a) if a.preset is not None else config_from_args(a)
    if a.resume and a.out and os.path.exists(os.path.join(a.out, "config.json")):
        config = resumed_config(a)
    try:
        result = train(config, resume=a.resume, overwrite=a.overwrite,
                       progress=not a.no_progress, print_fn=print)
    except Preempted as e:
        print(f"rnnjax train: {e}", file=sys.stderr)
        return e.exit_code  # 143 (SIGTERM) or 130 (SIGINT), as a shell reports them
    except NonFiniteError as e:
        print(f"rnnjax train: error: {e}", file=sys.stderr)
        return 3
    except Exception as e:  # noqa: BLE001 - a dead process: stop before JAX's abort
        if jax.process_count() > 1 and peer_lost(e):
            if getattr(a, "debug", False):
                traceback.print_exc()
            exit_lost_peer(e, a.out)  # one line naming the intact checkpoint; exit 75
        raise
    last = result.history[-1] if result.history else None
    if last is not None and a.out and is_main():
        ckpt = ", checkpoints/" if config.checkpoint_every else ""
        print(f"wrote {a.out}/metrics.jsonl, metrics.csv, config.json{ckpt}")
    elif not a.out and is_main():
        print("nothing saved: no --out given (pass --out DIR to keep the metrics, the "
              "config and checkpoints)")
    return 0


def register(sub):
    p = sub.add_parser("train", help="train one cell on one task",
                       description=__doc__.split("\n\n")[0])
    add_run_arguments(p)
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="a named published protocol whose settings replace the defaults "
                        "(options given here override them): "
                        + "; ".join(f"{k}: {_PRESET_HELP[k]}" for k in sorted(PRESETS)))
    p.add_argument("--checkpoint-every", type=int, default=500,
                   help="save a checkpoint every N steps and at the end when --out is "
                        "given (0: never; default %(default)s)")
    p.add_argument("--keep", type=int, default=3, help="checkpoints kept")
    p.add_argument("--out", default=None, help="run directory (metrics, config, checkpoints)")
    p.add_argument("--tensorboard", action="store_true",
                   help="also write TensorBoard event files to OUT/tensorboard (needs the "
                        "optional tensorboardX: pip install rnnjax[tensorboard])")
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --out, with the options "
                        "saved in its config.json (options given here override them)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the training run in a non-empty --out, all of it (any "
                        "other folder is refused)")
    g = p.add_argument_group("several processes (jax.distributed)")
    g.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize(); --coordinator, --num-processes "
                        "and --process-id, when left out, are detected from the cluster "
                        "environment (e.g. SLURM)")
    g.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="address of process 0's coordinator service")
    g.add_argument("--num-processes", type=int, default=None)
    g.add_argument("--process-id", type=int, default=None)
    g.add_argument("--coordinator-timeout", type=float, default=DEFAULT_TIMEOUT,
                   metavar="SECONDS",
                   help="give up (one line, exit 75) when the coordinator or another "
                        "process has not joined within SECONDS")
    g.add_argument("--heartbeat-timeout", type=int, default=DEFAULT_HEARTBEAT,
                   metavar="SECONDS",
                   help="a process silent this long counts as dead; the others stop "
                        "(a process that dies outright is noticed at the next step, "
                        "exit 75, its last checkpoint intact)")
    p.set_defaults(func=run, train_parser=p)


__all__ = ["DeprecatedAlias", "add_deprecated_alias", "add_run_arguments", "cell_option",
           "config_from_args", "config_kwargs", "given_options", "preset_config",
           "register", "resumed_config", "run"]
