"""Cell factories: each returns a :class:`rnnjax.Cell`."""

from rnnjax.cells.elman import elman, irnn
from rnnjax.cells.gated import gru, lstm

__all__ = ["elman", "irnn", "gru", "lstm"]
