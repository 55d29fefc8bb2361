"""Flax NNX modules around rnnjax cells and sequence layers.

Each module holds the params pytree of a pure rnnjax layer as :class:`flax.nnx.Param`
leaves and, when called, runs the very same pure function
(:func:`rnnjax.layers.unidirectional`, :func:`~rnnjax.layers.bidirectional`,
:func:`~rnnjax.layers.stack`, hence :func:`rnnjax.run`) on them, so an NNX model gives
the outputs and gradients of the pure code bit for bit::

    from flax import nnx
    rngs = nnx.Rngs(params=0, dropout=1)
    rnn = rnnjax.layers.nnx.LSTM(3, 64, rngs=rngs)                   # or RNN(cell, 3, rngs=rngs)
    ys, carry = rnn(xs, lengths=lengths)                       # xs: (batch, time, 3)
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

Conversions: ``module.to_params()`` returns the pure params pytree (the structure
``layer.init`` returns: a cell's dict for :class:`RNN`, ``{"fwd", "bwd"}`` for
:class:`Bidirectional`, a list for :class:`Stack`, the stack's dict for
:class:`Residual`, the deep residual model); ``module.from_params(params)``
loads one in place after checking its structure and shapes; every constructor takes
``params=`` to build a module around existing params.

Randomness: params are drawn from ``rngs.params()`` with the pure layer's ``init``
(so ``RNN(cell, F, rngs=nnx.Rngs(params=k))`` holds ``cell.init(key, F)`` for the key
the stream yields).  Dropout (recurrent dropout of Gal & Ghahramani 2016 inside a
layer, output dropout between the layers of a stack) is active when the module's
``deterministic`` attribute is False (``model.train()``; ``model.eval()`` turns it
off) and draws one key per call from the ``"dropout"`` stream of the module's rngs, or
from ``rngs=`` given to the call (an ``nnx.Rngs``, ``RngStream`` or a key).  A
container (:class:`Bidirectional`, :class:`Stack`) draws one key and splits it exactly
as the pure layer does; its children's own streams and flags are not consulted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from rnnjax import layers as _layers
from rnnjax.cells import REGISTRY, make
from rnnjax.cells import elman as _elman
from rnnjax.cells import gru as _gru
from rnnjax.cells import lstm as _lstm
from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_cell, check_choice, check_positive_int, check_rate
from rnnjax.core.precision import cast_floating

_RUN_OPTIONS = ("time_major", "unroll", "remat", "truncate", "grad", "scan")


def _is_var(x):
    return isinstance(x, nnx.Variable)


def _cast(tree, dtype):
    if dtype is None:
        return tree
    return jax.tree.map(jnp.asarray, cast_floating(tree, dtype))


def _check_same_tree(name, expected, got):
    """Raise ValueError unless ``got`` has the structure and leaf shapes of ``expected``."""
    exp_leaves, exp_tree = jax.tree_util.tree_flatten(expected)
    try:
        leaves = exp_tree.flatten_up_to(got)
    except (ValueError, TypeError):
        raise ValueError(f"{name} must have the structure {exp_tree}, got "
                         f"{jax.tree_util.tree_structure(got)}") from None
    for (path, e), g in zip(jax.tree_util.tree_flatten_with_path(expected)[0], leaves):
        if tuple(jnp.shape(g)) != tuple(jnp.shape(e)):
            raise ValueError(f"{name}{jax.tree_util.keystr(path)} has shape {jnp.shape(g)} "
                             f"but {jnp.shape(e)} was expected")


def _check_options(options):
    unknown = set(options) - set(_RUN_OPTIONS)
    if unknown:
        raise TypeError(f"unknown run options {sorted(unknown)}; expected some of "
                        f"{list(_RUN_OPTIONS)}")


class _SequenceModule(nnx.Module):
    """Shared machinery: a static pure :class:`rnnjax.Layer` and its params."""

    def _setup(self, rngs, dropout_rate, options):
        _check_options(options)
        self.run_options = dict(options)
        self.deterministic = False
        if dropout_rate > 0.0 and rngs is not None:
            self.rngs = rngs["dropout"].fork()
        else:
            self.rngs = nnx.data(None)
        self._dropout_rate = dropout_rate

    @property
    def output_size(self) -> int:
        return self.layer.output_size

    def _key(self, deterministic, rngs):
        deterministic = self.deterministic if deterministic is None else deterministic
        if deterministic or self._dropout_rate == 0.0:
            return None
        source = rngs if rngs is not None else self.rngs
        if source is None:
            raise ValueError(
                f"{type(self).__name__} has dropout {self._dropout_rate} and is not "
                "deterministic, but it holds no rngs and none were passed: build it with "
                "rngs=nnx.Rngs(..., dropout=...), pass rngs= to the call, or call .eval()")
        if isinstance(source, nnx.Rngs):
            return source["dropout"]()
        if isinstance(source, nnx.RngStream):
            return source()
        return source  # a key

    def __call__(self, xs, *, carry=None, lengths=None, deterministic: bool | None = None,
                 rngs=None, **options):
        """Run the layer: ``xs (*batch, time, features) -> (ys, final_carry)``.

        ``carry``, ``lengths`` and the run options (``time_major``, ``unroll``,
        ``remat``, ``truncate``, ``grad``, ``scan``; defaults from the constructor)
        mean what they mean in :func:`rnnjax.run`.
        """
        _check_options(options)
        key = self._key(deterministic, rngs)
        return self.layer.apply(self.to_params(), xs, carry=carry, lengths=lengths,
                                key=key, **{**self.run_options, **options})

    def to_params(self):  # defined by each subclass: its pure params pytree
        raise NotImplementedError(f"{type(self).__name__} must define to_params")

    def from_params(self, params):
        raise NotImplementedError(f"{type(self).__name__} must define from_params")


class RNN(_SequenceModule):
    """Any rnnjax :class:`~rnnjax.Cell` run over a sequence, as an NNX module.

    ``RNN(cell, input_size, rngs=...)`` holds ``cell.init(rngs.params(), input_size)``
    as ``nnx.Param`` leaves under ``self.params`` (same keys as the cell's dict) and
    calls ``rnnjax.layers.unidirectional(cell, recurrent_dropout, reverse).apply``.

    Args:
      cell: the cell.
      input_size: features of ``xs``; may be left out when ``params`` is given.
      rngs: ``nnx.Rngs`` with a ``params`` (or default) stream, and a ``dropout``
        stream when ``recurrent_dropout > 0``.
      params: existing params of ``cell`` to hold instead of drawing new ones.
      reverse: read each sequence from its last valid step (outputs in input order).
      recurrent_dropout: rate of the variational dropout mask on ``h_{t-1}``.
      param_dtype: cast floating params to this dtype (default: as ``init`` returns).
      **options: default run options (``time_major``, ``unroll``, ``remat``,
        ``truncate``, ``grad``, ``scan``).
    """

    def __init__(self, cell: Cell, input_size: int | None = None, *,
                 rngs: nnx.Rngs | None = None, params: Any = None, reverse: bool = False,
                 recurrent_dropout: float = 0.0, param_dtype=None, **options):
        check_cell(cell)
        check_rate("recurrent_dropout", recurrent_dropout)
        if params is None:
            if input_size is None or rngs is None:
                raise ValueError("RNN needs input_size and rngs to draw params, or params=; "
                                 f"got input_size={input_size!r}, rngs={rngs!r}")
            check_positive_int("input_size", input_size)
            params = cell.init(rngs.params(), input_size)
        elif input_size is not None and cell.input_size(params) != input_size:
            raise ValueError(f"params are for {cell.input_size(params)} input features but "
                             f"input_size={input_size}")
        self.cell = cell
        self.input_size = int(cell.input_size(params))
        self.layer = _layers.unidirectional(cell, recurrent_dropout, reverse)
        self.params = nnx.data(jax.tree.map(nnx.Param, _cast(params, param_dtype)))
        self._setup(rngs, float(recurrent_dropout), options)

    @classmethod
    def from_name(cls, name: str, input_size: int, hidden_size: int, *,
                  rngs: nnx.Rngs, cell_options: dict | None = None, **kwargs) -> RNN:
        """``RNN(rnnjax.cells.make(name, hidden_size, **cell_options), input_size, ...)``
        for any name in :data:`rnnjax.cells.REGISTRY`."""
        check_choice("name", name, REGISTRY)
        return cls(make(name, hidden_size, **(cell_options or {})), input_size, rngs=rngs,
                   **kwargs)

    def to_params(self):
        """The cell's pure params pytree (arrays, no ``nnx.Param`` wrappers)."""
        return jax.tree.map(lambda v: v.get_value(), self.params, is_leaf=_is_var)

    def from_params(self, params):
        """Load ``params`` (structure and shapes of :meth:`to_params`) in place."""
        _check_same_tree("params", self.to_params(), params)
        for var, new in zip(jax.tree.leaves(self.params, is_leaf=_is_var),
                            jax.tree.leaves(params)):
            var.set_value(jnp.asarray(new))
        return self


def _cell_module(factory, doc_name):
    class _Module(RNN):
        def __init__(self, input_size: int, hidden_size: int, *, rngs: nnx.Rngs | None = None,
                     params: Any = None, reverse: bool = False,
                     recurrent_dropout: float = 0.0, param_dtype=None, **kwargs):
            cell_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k not in _RUN_OPTIONS}
            super().__init__(factory(hidden_size, **cell_kwargs), input_size, rngs=rngs,
                             params=params, reverse=reverse,
                             recurrent_dropout=recurrent_dropout, param_dtype=param_dtype,
                             **kwargs)

    _Module.__name__ = _Module.__qualname__ = doc_name
    _Module.__doc__ = (
        f"``RNN(rnnjax.cells.{factory.__name__}(hidden_size, **cell_kwargs), input_size)``: "
        f"keyword arguments of :func:`rnnjax.cells.{factory.__name__}` (e.g. ``init``) go "
        "to the cell, the rest to :class:`RNN`.")
    return _Module


LSTM = _cell_module(_lstm, "LSTM")
GRU = _cell_module(_gru, "GRU")
Elman = _cell_module(_elman, "Elman")
# the long-memory cells (rnnjax.cells.oscillator, .minimal, .ssm)
CoRNN = _cell_module(REGISTRY["cornn"], "CoRNN")
UnICORNN = _cell_module(REGISTRY["unicornn"], "UnICORNN")
LipschitzRNN = _cell_module(REGISTRY["lipschitz"], "LipschitzRNN")
AntisymmetricRNN = _cell_module(REGISTRY["antisymmetric"], "AntisymmetricRNN")
IndRNN = _cell_module(REGISTRY["indrnn"], "IndRNN")
MGU = _cell_module(REGISTRY["mgu"], "MGU")
MinGRU = _cell_module(REGISTRY["mingru"], "MinGRU")
MinLSTM = _cell_module(REGISTRY["minlstm"], "MinLSTM")
RGLRU = _cell_module(REGISTRY["rglru"], "RGLRU")
S4D = _cell_module(REGISTRY["s4d"], "S4D")
S5 = _cell_module(REGISTRY["s5"], "S5")
# the modern recurrences (rnnjax.cells.selective, .xlstm, .delta, .linear_attention)
Mamba = _cell_module(REGISTRY["mamba"], "Mamba")
MambaBlock = _cell_module(REGISTRY["mamba_block"], "MambaBlock")
Mamba2 = _cell_module(REGISTRY["mamba2"], "Mamba2")
MLSTM = _cell_module(REGISTRY["mlstm"], "MLSTM")
SLSTM = _cell_module(REGISTRY["slstm"], "SLSTM")
DeltaNet = _cell_module(REGISTRY["deltanet"], "DeltaNet")
GLA = _cell_module(REGISTRY["gla"], "GLA")
Retention = _cell_module(REGISTRY["retention"], "Retention")


class Residual(_SequenceModule):
    """A deep residual stack (:func:`rnnjax.layers.residual_stack`: ``depth`` pre-norm
    blocks of ``cell``, the residual stream of width ``d_model``, ``norm``, a gated
    MLP of expansion ``mlp``, ``dropout`` on each branch) as an NNX module.

    Its params are the stack's pytree (``{"embed"?, "blocks": [...], "norm"?}``) as
    ``nnx.Param`` leaves under ``self.params``; a call runs the stack's block-by-block
    layer on them (``xs (*batch, time, F) -> (ys (*batch, time, D), carry)``), so it
    gives the pure function's outputs and gradients.  ``self.cell`` is the stack as one
    step-by-step :class:`rnnjax.Cell` (the same params).  Dropout as the other modules:
    on when not ``deterministic``, one key per call from the ``"dropout"`` stream.
    With ``depth=1`` and nothing added the stack is the cell: use :class:`RNN`.
    """

    def __init__(self, cell: Cell, input_size: int | None = None, *, depth: int = 2,
                 d_model: int | None = None, mlp: float | None = None,
                 norm: str = "rms", dropout: float = 0.0, activation: str = "gelu",
                 rngs: nnx.Rngs | None = None, params: Any = None, param_dtype=None,
                 **options):
        stack = _layers.residual_stack(cell, depth, d_model=d_model, mlp=mlp, norm=norm,
                                       dropout=dropout, activation=activation)
        if isinstance(stack, Cell):
            raise ValueError("Residual with depth=1 and no d_model, mlp, norm or dropout "
                             "is the cell itself: use rnnjax.layers.nnx.RNN(cell, ...)")
        if params is None:
            if input_size is None or rngs is None:
                raise ValueError("Residual needs input_size and rngs to draw params, or "
                                 f"params=; got input_size={input_size!r}, rngs={rngs!r}")
            check_positive_int("input_size", input_size)
            params = stack.cell.init(rngs.params(), input_size)
        elif input_size is not None and stack.cell.input_size(params) != input_size:
            raise ValueError(f"params are for {stack.cell.input_size(params)} input "
                             f"features but input_size={input_size}")
        self.cell = stack.cell
        self.layer = stack.layer
        self.input_size = int(stack.cell.input_size(params))
        self.params = nnx.data(jax.tree.map(nnx.Param, _cast(params, param_dtype)))
        self._setup(rngs, float(dropout), options)

    to_params = RNN.to_params
    from_params = RNN.from_params


class Bidirectional(_SequenceModule):
    """Forward and backward cells over one sequence (:func:`rnnjax.layers.bidirectional`).

    ``y_t = [y_fwd_t, y_bwd_t]`` (``merge="concat"``) or their sum.  Params are drawn
    with the pure layer's ``init`` from one ``rngs.params()`` key and held by two
    :class:`RNN` children ``self.fwd`` and ``self.bwd``; ``to_params()`` returns
    ``{"fwd": ..., "bwd": ...}``.
    """

    def __init__(self, cell: Cell, input_size: int | None = None, *,
                 rngs: nnx.Rngs | None = None, backward: Cell | None = None,
                 merge: str = "concat", recurrent_dropout: float = 0.0, params: Any = None,
                 param_dtype=None, **options):
        if not isinstance(cell, Cell) or not (backward is None or isinstance(backward, Cell)):
            raise TypeError("cell and backward must be rnnjax.Cell objects, got "
                            f"{type(cell).__name__} and {type(backward).__name__}")
        backward = cell if backward is None else backward
        self.layer = _layers.bidirectional(cell, backward, merge, recurrent_dropout)
        if params is None:
            if input_size is None or rngs is None:
                raise ValueError("Bidirectional needs input_size and rngs to draw params, or "
                                 f"params=; got input_size={input_size!r}, rngs={rngs!r}")
            check_positive_int("input_size", input_size)
            params = self.layer.init(rngs.params(), input_size)
        if not isinstance(params, dict) or set(params) != {"fwd", "bwd"}:
            raise ValueError("params of a bidirectional layer must be a dict with keys "
                             f"'fwd' and 'bwd', got {type(params).__name__}")
        self.fwd = RNN(cell, input_size, params=params["fwd"], param_dtype=param_dtype)
        self.bwd = RNN(backward, input_size, params=params["bwd"], reverse=True,
                       param_dtype=param_dtype)
        self.input_size = self.fwd.input_size
        self._setup(rngs, float(recurrent_dropout), options)

    def to_params(self):
        return {"fwd": self.fwd.to_params(), "bwd": self.bwd.to_params()}

    def from_params(self, params):
        _check_same_tree("params", self.to_params(), params)
        self.fwd.from_params(params["fwd"])
        self.bwd.from_params(params["bwd"])
        return self


class Stack(_SequenceModule):
    """Sequence modules applied in turn (:func:`rnnjax.layers.stack`), with dropout of
    rate ``dropout`` on the outputs between layers (not after the last), as PyTorch's
    ``nn.LSTM(num_layers=..., dropout=...)``.

    ``layers`` are :class:`RNN`, :class:`Bidirectional` or :class:`Stack` modules whose
    input sizes chain (``layers[i].input_size == layers[i-1].output_size``).
    ``to_params()`` is the list of their params.
    """

    def __init__(self, layers: Sequence[_SequenceModule], *, dropout: float = 0.0,
                 rngs: nnx.Rngs | None = None, **options):
        check_rate("dropout", dropout)
        layers = list(layers)
        if not layers:
            raise ValueError("layers must hold at least one rnnjax.layers.nnx module, got none")
        for i, m in enumerate(layers):
            if not isinstance(m, _SequenceModule):
                raise TypeError(f"layers[{i}] must be an rnnjax.layers.nnx module (RNN, "
                                f"Bidirectional, Stack), got {type(m).__name__}")
            if i and m.input_size != layers[i - 1].output_size:
                raise ValueError(
                    f"layers[{i}] takes {m.input_size} features but layers[{i - 1}] "
                    f"outputs {layers[i - 1].output_size}")
        self.layers = nnx.List(layers)
        self.layer = _layers.stack([m.layer for m in layers], dropout)
        self.input_size = layers[0].input_size
        # one key per call serves the stack's dropout and its layers' recurrent dropout
        self._setup(rngs, max([float(dropout)] + [m._dropout_rate for m in layers]), options)

    @classmethod
    def of(cls, cell_name: str, input_size: int, hidden_size: int, num_layers: int, *,
           rngs: nnx.Rngs, bidirectional: bool = False, dropout: float = 0.0,
           cell_options: dict | None = None, **options) -> Stack:
        """``num_layers`` cells named ``cell_name`` (optionally bidirectional) stacked,
        as ``torch.nn.LSTM(input_size, hidden_size, num_layers, dropout=...,
        bidirectional=...)``."""
        check_choice("cell_name", cell_name, REGISTRY)
        check_positive_int("num_layers", num_layers)
        cell = make(cell_name, hidden_size, **(cell_options or {}))
        mods, size = [], input_size
        for _ in range(num_layers):
            m = Bidirectional(cell, size, rngs=rngs) if bidirectional else \
                RNN(cell, size, rngs=rngs)
            mods.append(m)
            size = m.output_size
        return cls(mods, dropout=dropout, rngs=rngs, **options)

    def to_params(self):
        return [m.to_params() for m in self.layers]

    def from_params(self, params):
        _check_same_tree("params", self.to_params(), params)
        for m, p in zip(self.layers, params):
            m.from_params(p)
        return self


def to_params(module: _SequenceModule):
    """The pure params pytree of an rnnjax.layers.nnx module (``module.to_params()``)."""
    return module.to_params()


def from_params(module: _SequenceModule, params):
    """Load the pure ``params`` into ``module`` in place and return it."""
    return module.from_params(params)


__all__ = ["GRU", "LSTM", "RNN", "Bidirectional", "Elman", "Stack", "from_params",
           "to_params", "AntisymmetricRNN", "CoRNN", "IndRNN", "LipschitzRNN", "MGU",
           "MinGRU", "MinLSTM", "RGLRU", "S4D", "S5", "UnICORNN", "DeltaNet", "GLA",
           "MLSTM", "Mamba", "Mamba2", "MambaBlock", "Residual", "Retention", "SLSTM"]
