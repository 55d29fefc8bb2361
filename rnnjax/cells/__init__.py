"""Cell factories: each returns a :class:`rnnjax.Cell`.

``REGISTRY`` maps the names used by the command line and the experiment runner to the
factories; :func:`make` builds a cell by name with a clear error for unknown names.
"""

from rnnjax.cells.elman import elman, irnn
from rnnjax.cells.gated import gru, lstm
from rnnjax.cells.linear import gated_linear, lru
from rnnjax.cells.minimal import indrnn, mgu, mingru, minlstm
from rnnjax.cells.oscillator import antisymmetric, cornn, lipschitz, unicornn
from rnnjax.cells.nonnormal import nnrnn, spectral
from rnnjax.cells.orthogonal import exprnn, householder, scornn
from rnnjax.cells.ssm import rglru, s4d, s5
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
    "cornn": cornn,
    "unicornn": unicornn,
    "lipschitz": lipschitz,
    "antisymmetric": antisymmetric,
    "indrnn": indrnn,
    "mgu": mgu,
    "mingru": mingru,
    "minlstm": minlstm,
    "rglru": rglru,
    "s4d": s4d,
    "s5": s5,
    "nnrnn": nnrnn,
    "spectral": spectral,
}


def make(name: str, hidden_size: int, **kwargs):
    """Build the cell called ``name`` (a key of ``REGISTRY``) with ``hidden_size``."""
    check_choice("cell", name, REGISTRY)
    return REGISTRY[name](hidden_size, **kwargs)


__all__ = ["REGISTRY", "antisymmetric", "cornn", "elman", "eunn", "exprnn", "fcurnn",
           "gated_linear", "gru", "householder", "indrnn", "irnn", "lipschitz", "lru",
           "lstm", "make", "mgu", "mingru", "minlstm", "nnrnn", "rglru", "s4d", "s5",
           "scornn", "spectral", "unicornn", "urnn"]
