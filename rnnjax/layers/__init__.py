"""Sequence layers: a :class:`Layer` runs a cell over a whole sequence
(uni- and bidirectional, stacks, the LRU block); readouts, baselines and the Flax NNX
modules (:mod:`rnnjax.layers.nnx`, imported on demand) live beside them."""

from rnnjax.layers.recurrent import (
    Layer,
    bidirectional,
    lru_block,
    stack,
    unidirectional,
)

__all__ = [
    "bidirectional",
    "Layer",
    "lru_block",
    "stack",
    "unidirectional",
]
