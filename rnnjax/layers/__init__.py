"""Sequence layers: a :class:`Layer` runs a cell over a whole sequence
(uni- and bidirectional, stacks, the LRU block, deep residual stacks); readouts,
baselines and the Flax NNX modules (:mod:`rnnjax.layers.nnx`, imported on demand) live
beside them."""

from rnnjax.layers.recurrent import (
    Layer,
    bidirectional,
    lru_block,
    stack,
    unidirectional,
)
from rnnjax.layers.residual import ResidualStack, residual_stack, residual_with_readout

__all__ = [
    "bidirectional",
    "Layer",
    "lru_block",
    "residual_stack",
    "residual_with_readout",
    "ResidualStack",
    "stack",
    "unidirectional",
]
