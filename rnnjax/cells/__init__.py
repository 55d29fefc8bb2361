"""Cell factories: each returns a :class:`rnnjax.Cell`.

``REGISTRY`` maps the names used by the command line and the experiment runner to the
factories; :func:`make` builds a cell by name with a clear error for unknown names.
"""

from rnnjax.cells.elman import elman, irnn
from rnnjax.cells.gated import gru, lstm
from rnnjax.cells.linear import gated_linear, lru
from rnnjax.cells.orthogonal import exprnn, householder, scornn
from rnnjax.cells.unitary import eunn, fcurnn, urnn
from rnnjax.checks import check_choice

REGISTRY = {
    "elman": elman,
    "irnn": irnn,
    "lstm": lstm,
    "gru": gru,
    "lru": lru,
    "gated_linear": gated_linear,
    "exprnn": exprnn,
    "scornn": scornn,
    "householder": householder,
    "urnn": urnn,
    "eunn": eunn,
    "fcurnn": fcurnn,
}


def make(name: str, hidden_size: int, **kwargs):
    """Build the cell called ``name`` (a key of ``REGISTRY``) with ``hidden_size``."""
    check_choice("cell", name, REGISTRY)
    return REGISTRY[name](hidden_size, **kwargs)


__all__ = ["REGISTRY", "elman", "eunn", "exprnn", "fcurnn", "gated_linear", "gru",
           "householder", "irnn", "lru", "lstm", "make", "scornn", "urnn"]
