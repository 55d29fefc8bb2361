"""Cell factories: each returns a :class:`rnnjax.Cell`.

``REGISTRY`` maps the names used by the command line and the experiment runner to the
factories; :func:`make` builds a cell by name with a clear error for unknown names.
"""

from rnnjax.cells import delta as _delta
from rnnjax.cells import elman as _elman
from rnnjax.cells import gated as _gated
from rnnjax.cells import linear as _linear
from rnnjax.cells import linear_attention as _linear_attention
from rnnjax.cells import minimal as _minimal
from rnnjax.cells import nonnormal as _nonnormal
from rnnjax.cells import orthogonal as _orthogonal
from rnnjax.cells import oscillator as _oscillator
from rnnjax.cells import selective as _selective
from rnnjax.cells import ssm as _ssm
from rnnjax.cells import unitary as _unitary
from rnnjax.cells import xlstm as _xlstm
from rnnjax.checks import check_choice
from rnnjax.precision import precision_options

# every factory takes dtype= and param_dtype= (mixed precision, rnnjax.precision)
elman, irnn = precision_options(_elman.elman), precision_options(_elman.irnn)
lstm, gru = precision_options(_gated.lstm), precision_options(_gated.gru)
lru, gated_linear = precision_options(_linear.lru), precision_options(_linear.gated_linear)
indrnn, mgu = precision_options(_minimal.indrnn), precision_options(_minimal.mgu)
mingru, minlstm = precision_options(_minimal.mingru), precision_options(_minimal.minlstm)
antisymmetric = precision_options(_oscillator.antisymmetric)
cornn, lipschitz = precision_options(_oscillator.cornn), precision_options(_oscillator.lipschitz)
unicornn = precision_options(_oscillator.unicornn)
nnrnn, spectral = precision_options(_nonnormal.nnrnn), precision_options(_nonnormal.spectral)
exprnn, scornn = precision_options(_orthogonal.exprnn), precision_options(_orthogonal.scornn)
householder = precision_options(_orthogonal.householder)
rglru, s4d, s5 = (precision_options(f) for f in (_ssm.rglru, _ssm.s4d, _ssm.s5))
mamba, mamba2, mamba_block = (precision_options(f) for f in (
    _selective.mamba, _selective.mamba2, _selective.mamba_block))
mlstm, slstm = precision_options(_xlstm.mlstm), precision_options(_xlstm.slstm)
deltanet = precision_options(_delta.deltanet)
gla = precision_options(_linear_attention.gla)
retention = precision_options(_linear_attention.retention)
eunn, fcurnn, urnn = (precision_options(f) for f in (_unitary.eunn, _unitary.fcurnn,
                                                     _unitary.urnn))

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
    "mamba": mamba,
    "mamba_block": mamba_block,
    "mamba2": mamba2,
    "mlstm": mlstm,
    "slstm": slstm,
    "deltanet": deltanet,
    "gla": gla,
    "retention": retention,
}


def make(name: str, hidden_size: int, **kwargs):
    """Build the cell called ``name`` (a key of ``REGISTRY``) with ``hidden_size``."""
    check_choice("cell", name, REGISTRY)
    return REGISTRY[name](hidden_size, **kwargs)


__all__ = ["REGISTRY", "antisymmetric", "cornn", "deltanet", "elman", "eunn", "exprnn",
           "fcurnn", "gated_linear", "gla", "gru", "householder", "indrnn", "irnn",
           "lipschitz", "lru", "lstm", "make", "mamba", "mamba2", "mamba_block", "mgu",
           "mingru", "minlstm", "mlstm", "nnrnn", "retention", "rglru", "s4d", "s5",
           "scornn", "slstm", "spectral", "unicornn", "urnn"]
