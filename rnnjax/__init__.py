"""rnnjax: recurrent networks in JAX.

Pure-function cells (:mod:`rnnjax.cells`) scanned over time by one engine
(:func:`rnnjax.run`), sequence layers (:mod:`rnnjax.layers`) and weight interop with
PyTorch and Flax (:mod:`rnnjax.interop`).
"""

from rnnjax import cells, initializers, layers, optim, parametrize
from rnnjax.cell import Cell, HiddenState, Linear, LSTMState, recurrent_matrix
from rnnjax.layers import Layer, bidirectional, stack, unidirectional
from rnnjax.sequence import flip_sequences, run

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "HiddenState",
    "LSTMState",
    "Layer",
    "Linear",
    "bidirectional",
    "cells",
    "flip_sequences",
    "initializers",
    "layers",
    "optim",
    "parametrize",
    "recurrent_matrix",
    "run",
    "stack",
    "unidirectional",
]
