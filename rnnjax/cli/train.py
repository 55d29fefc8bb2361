"""``rnnjax train``: train one cell on one task (see :mod:`rnnjax.training.runner`).

Example::

    rnnjax train --preset mnist1d-gru --num-seeds 6 --out runs/mnist1d-gru-paper
    rnnjax train --task copy --cell exprnn --T 1000 --hidden 190 --batch 128 \\
        --steps 4000 --lr 2e-4 --lr-orth 2e-5 --seed 0 --checkpoint-every 500 \\
        --keep 3 --out runs/NAME [--resume]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback

import jax

from rnnjax.cli.options import (
    DeprecatedAlias,
    add_config_options,
    add_deprecated_alias,
    command_words,
    config_values,
    given_options,
)
from rnnjax.training import config as train_config
from rnnjax.training.checkpointing import Preempted
from rnnjax.training.config import PRESETS, check_resume_options, flag, parse_cell_option
from rnnjax.training.distributed import (
    DEFAULT_HEARTBEAT,
    DEFAULT_TIMEOUT,
    exit_lost_peer,
    initialize,
    is_main,
    peer_lost,
)
from rnnjax.training.runner import Config, NonFiniteError, train

# One line per preset for --help (the protocol each follows: rnnjax.training.config.PRESETS).
_PRESET_HELP = {"mnist1d-gru": "MNIST-1D's GRU baseline (Greydanus 2020, greydanus/mnist1d "
                               "notebooks/models.py GRUBase, train.py): bidirectional GRU "
                               "6, readout over all 40 outputs, the 4,000 training "
                               "examples, Adam 1e-2, batch 100, 8,000 steps"}

# ``--cell-opt KEY=VALUE`` -> ``(KEY, value)`` (kept under its old name).
cell_option = parse_cell_option

# Config field -> dest of its option in `rnnjax train`, where it differs from the flag's.
_DESTS = {"seeds": "num_seeds"}


def add_run_arguments(p, *, task=True, cell=True, defaults=None) -> dict:
    """Every :class:`Config` option of ``rnnjax train``, generated from the fields'
    metadata (:func:`rnnjax.cli.options.add_config_options`; defaults from ``defaults``,
    a Config, or Config's own), and ``--no-progress``.  Returns ``{field: dest}``."""
    d = Config() if defaults is None else defaults
    names = [f.name for f in train_config.option_fields()
             if (task or f.name != "task") and (cell or f.name != "cell")]
    dests = add_config_options(p, names, defaults=d, dests=_DESTS, command="train")
    add_deprecated_alias(p, "--seeds", "--num-seeds", type=int)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return dests


def config_from_args(a) -> Config:
    """The :class:`Config` of ``rnnjax train``'s parsed arguments ``a`` (no checkpoint
    without ``--out``)."""
    values = config_values(a, a.config_dests)
    if not values.get("out"):
        values["checkpoint_every"] = 0
    return Config(**values)


def given_fields(a) -> set:
    """The :class:`Config` fields whose option the command line gives (default value or
    not: :func:`rnnjax.cli.options.given_options`)."""
    given = given_options(a.train_parser, command_words(a, "train"))
    return {name for name, dest in a.config_dests.items() if dest in given}


def _preset_fields(name: str) -> dict:
    """The fields that the preset ``name`` sets (those differing from Config's defaults)."""
    base, default = train_config.preset(name), Config()
    return {f.name: getattr(base, f.name) for f in dataclasses.fields(Config)
            if getattr(base, f.name) != getattr(default, f.name)}


def preset_config(a) -> Config:
    """``--preset NAME``: the fields that :data:`rnnjax.training.config.PRESETS` ``[NAME]``
    sets (those differing from :class:`Config`'s defaults) take the preset's values,
    unless their option is on the command line (:func:`given_fields`; an option given
    at its default value counts); every other field is the command line's, as without
    a preset.  An unknown ``NAME`` raises ``ValueError`` naming ``preset`` and the
    choices; ``--steps`` with a preset that trains by epochs is refused (the epochs
    would replace it)."""
    base = train_config.preset(a.preset)
    given = given_fields(a)
    config = config_from_args(a)
    if base.epochs is not None and "steps" in given and "epochs" not in given:
        raise ValueError(f"--steps: the preset {a.preset!r} trains by epochs ("
                         f"{base.epochs} passes over the training split), which replace "
                         f"--steps; give --epochs instead")
    keep = {k: v for k, v in _preset_fields(a.preset).items() if k not in given}
    return dataclasses.replace(config, **keep)


def resumed_config(a) -> Config:
    """``--resume``: the run's saved ``config.json``, with the options given on the
    command line (:func:`given_fields`, default value or not; with ``--preset``, the
    fields the preset sets and no option gives count as given) applied: one that may
    change on resume (``steps``, ``log_every``, ``checkpoint_every``, ``keep``,
    ``epochs``, ``max_nonfinite``, ``devices``, ``grad``, ``data``, ``tensorboard``:
    ``resume="change"`` in their metadata) takes the new value, which the runner saves
    in ``config.json``; one that defines the run with another value than the run's is
    refused (:func:`rnnjax.training.config.check_resume_options`: one line naming the
    option, the run's value and the given one) before anything is touched.  So
    ``rnnjax train --out DIR --resume`` needs nothing else."""
    saved = Config.load(a.out)
    config = preset_config(a) if a.preset is not None else config_from_args(a)
    given = given_fields(a)
    values = {k: getattr(config, k) for k in given}
    if a.preset is not None:
        values.update({k: v for k, v in _preset_fields(a.preset).items()
                       if k not in given and k in a.config_dests})
    values.pop("out", None)
    check_resume_options(saved, values, a.out)
    return dataclasses.replace(saved, **values, out=a.out)


def _check_clip_mode(a, config: Config) -> None:
    if config.clip is None and "clip_mode" in given_fields(a):
        raise ValueError(f"{flag('clip_mode')} {config.clip_mode} needs {flag('clip')} "
                         f"(the threshold): without it nothing is clipped")


def run(a) -> int:
    if a.distributed:  # before any other JAX call
        initialize(a.coordinator, a.num_processes, a.process_id,
                   timeout=a.coordinator_timeout, heartbeat_timeout=a.heartbeat_timeout)
    if a.resume and a.out and os.path.exists(os.path.join(a.out, "config.json")):
        config = resumed_config(a)
    else:
        config = preset_config(a) if a.preset is not None else config_from_args(a)
    _check_clip_mode(a, config)
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
    dests = add_run_arguments(p)
    p.add_argument("--preset", default=None, metavar="NAME",
                   help="a named published protocol whose settings replace the defaults "
                        "(options given here override them): "
                        + "; ".join(f"{k}: {_PRESET_HELP[k]}" for k in sorted(PRESETS)))
    p.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --out, with the options "
                        "saved in its config.json; an option given here that may change "
                        "(--steps, --log-every, --checkpoint-every, --keep, ...) replaces "
                        "the saved value, one that defines the run (task, cell, sizes, "
                        "seed, optimiser, lr, ...) must equal it")
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
    p.set_defaults(func=run, train_parser=p, config_dests=dests)


__all__ = ["DeprecatedAlias", "add_deprecated_alias", "add_run_arguments", "cell_option",
           "config_from_args", "given_fields", "given_options", "preset_config",
           "register", "resumed_config", "run"]
