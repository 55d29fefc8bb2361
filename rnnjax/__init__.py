"""rnnjax: recurrent networks in JAX.

Pure-function cells (:mod:`rnnjax.cells`) scanned over time by one engine
(:func:`rnnjax.run`), sequence layers (:mod:`rnnjax.layers`) and weight interop with
PyTorch and Flax (:mod:`rnnjax.interop`).
"""

from rnnjax import analysis, bptt, cells, initializers, interop, layers, optim, parametrize
from rnnjax.cell import Backward, Cell, HiddenState, Linear, LSTMState, recurrent_matrix
from rnnjax.layers import Layer, bidirectional, lru_block, stack, unidirectional
from rnnjax.interop import (from_flax_gru, from_flax_lstm, from_torch, from_torch_module,
                            to_torch)
from rnnjax.sequence import flip_sequences, run

__version__ = "0.1.0"

__all__ = [
    "Backward",
    "Cell",
    "HiddenState",
    "LSTMState",
    "Layer",
    "Linear",
    "analysis",
    "bidirectional",
    "bptt",
    "cells",
    "flip_sequences",
    "from_flax_gru",
    "from_flax_lstm",
    "from_torch",
    "from_torch_module",
    "initializers",
    "interop",
    "layers",
    "lru_block",
    "optim",
    "parametrize",
    "recurrent_matrix",
    "run",
    "stack",
    "to_torch",
    "unidirectional",
]
