"""rnnjax: recurrent networks in JAX.

Pure-function cells (:mod:`rnnjax.cells`) scanned over time by one engine
(:func:`rnnjax.run`), sequence layers (:mod:`rnnjax.layers`) and weight interop with
PyTorch and Flax (:mod:`rnnjax.interop`).
"""

# First: the rnnjax command's SIGTERM/Ctrl-C handlers for its start-up (nothing
# otherwise; rnnjax.cli.startup).
from rnnjax.cli import startup as _startup  # noqa: F401,I001  (before JAX is imported)
from rnnjax import analysis, cells, engine, interop, layers, optim, tasks
from rnnjax.cells import parametrize
from rnnjax.core import initializers
from rnnjax.core.cell import (Backward, Cell, Chunk, HiddenState, Linear, LSTMState,
                              recurrent_matrix)
from rnnjax.engine import flip_sequences, run
from rnnjax.interop import from_flax_gru, from_flax_lstm, from_torch, from_torch_module, to_torch
from rnnjax.layers import Layer, bidirectional, lru_block, stack, unidirectional

# The runner's entry points, so a script can train and recompute any number of a job's
# folder (rnnjax.training.runner(config), rnnjax.Config.load(run_dir), rnnjax.load_params(run_dir),
# rnnjax.build(config), rnnjax.initial_state(experiment)).
from rnnjax.training import Config, build, initial_state, load_params, train

__version__ = "0.1.0"

__all__ = [
    "Backward",
    "Cell",
    "Chunk",
    "Config",
    "HiddenState",
    "LSTMState",
    "Layer",
    "Linear",
    "analysis",
    "bidirectional",
    "engine",
    "build",
    "cells",
    "flip_sequences",
    "from_flax_gru",
    "from_flax_lstm",
    "from_torch",
    "from_torch_module",
    "initial_state",
    "initializers",
    "interop",
    "layers",
    "load_params",
    "lru_block",
    "optim",
    "parametrize",
    "recurrent_matrix",
    "run",
    "stack",
    "tasks",
    "to_torch",
    "train",
    "unidirectional",
]
