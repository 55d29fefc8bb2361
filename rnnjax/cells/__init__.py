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
from rnnjax.core.cell import Cell, shared
from rnnjax.core.checks import check_choice, check_step
from rnnjax.core.plugins import is_plugin, load_object
from rnnjax.core.precision import precision_options


def _factory(f):
    """Every factory takes dtype= and param_dtype= (mixed precision, rnnjax.core.precision)
    and returns one Cell object per argument list (rnnjax.core.cell.shared: equal cells
    share their compiled programs)."""
    return shared(precision_options(f))


elman, irnn = _factory(_elman.elman), _factory(_elman.irnn)
lstm, gru = _factory(_gated.lstm), _factory(_gated.gru)
lru, gated_linear = _factory(_linear.lru), _factory(_linear.gated_linear)
indrnn, mgu = _factory(_minimal.indrnn), _factory(_minimal.mgu)
mingru, minlstm = _factory(_minimal.mingru), _factory(_minimal.minlstm)
antisymmetric = _factory(_oscillator.antisymmetric)
cornn, lipschitz = _factory(_oscillator.cornn), _factory(_oscillator.lipschitz)
unicornn = _factory(_oscillator.unicornn)
nnrnn, spectral = _factory(_nonnormal.nnrnn), _factory(_nonnormal.spectral)
exprnn, scornn = _factory(_orthogonal.exprnn), _factory(_orthogonal.scornn)
householder = _factory(_orthogonal.householder)
rglru, s4d, s5 = (_factory(f) for f in (_ssm.rglru, _ssm.s4d, _ssm.s5))
mamba, mamba2, mamba_block = (_factory(f) for f in (
    _selective.mamba, _selective.mamba2, _selective.mamba_block))
mlstm, slstm = _factory(_xlstm.mlstm), _factory(_xlstm.slstm)
deltanet = _factory(_delta.deltanet)
gla, retention = _factory(_linear_attention.gla), _factory(_linear_attention.retention)
eunn, fcurnn, urnn = (_factory(f) for f in (_unitary.eunn, _unitary.fcurnn, _unitary.urnn))

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


_PLUGINS: dict = {}


def _plugin_factory(spec: str):
    if spec not in _PLUGINS:  # one wrapped factory per spec: its cells are shared too
        _PLUGINS[spec] = _factory(load_object(spec, "cell"))
    return _PLUGINS[spec]


def check_name(name: str, also=()) -> None:
    """Raise ``ValueError`` unless ``name`` is a key of ``REGISTRY`` (or of ``also``) or
    a ``module:factory`` spec whose module imports and has that callable."""
    if is_plugin(name):
        _plugin_factory(name)
    else:
        check_choice("cell", name, {**REGISTRY, **dict.fromkeys(also)})


def make(name: str, hidden_size: int, **kwargs):
    """Build the cell called ``name`` with ``hidden_size``: a key of ``REGISTRY``, or
    ``"module:factory"`` for a cell of one's own (``module.py`` importable or in the
    current folder, ``factory(hidden_size, **kwargs)`` returning an :class:`rnnjax.Cell`).
    A cell of one's own gets what every registered factory has (``dtype=`` and
    ``param_dtype=``, equal cells shared) and passes :func:`rnnjax.core.checks.check_step`
    before it is used."""
    check_name(name)
    if not is_plugin(name):
        return REGISTRY[name](hidden_size, **kwargs)
    cell = _plugin_factory(name)(hidden_size, **kwargs)
    if not isinstance(cell, Cell):
        raise TypeError(f"cell {name!r}: the factory must return an rnnjax.Cell, got "
                        f"{type(cell).__name__}")
    check_step(cell, hidden_size, name=f"cell {name!r}")
    return cell


__all__ = ["REGISTRY", "antisymmetric", "check_name", "cornn", "deltanet", "elman", "eunn",
           "exprnn", "fcurnn", "gated_linear", "gla", "gru", "householder", "indrnn",
           "irnn", "lipschitz", "lru", "lstm", "make", "mamba", "mamba2", "mamba_block",
           "mgu", "mingru", "minlstm", "mlstm", "nnrnn", "retention", "rglru", "s4d",
           "s5", "scornn", "slstm", "spectral", "unicornn", "urnn"]
