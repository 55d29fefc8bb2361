r"""A sequence model: one recurrent cell followed by a linear readout.

    h_t = cell(h_{t-1}, x_t),        o_t = W_o h_t + b_o

with ``o_t`` read at every step (``readout="all"``: copy, char LM) or at the last step
only (``readout="last"``: adding, pixel MNIST).  For complex-valued (unitary) cells the
cell's real output is used as is: each cell decides what it emits (e.g. ``[Re h, Im h]``).
Params: ``{"cell": cell params, "readout": {"W": (C, H_out), "b": (C,)}}``;
``W`` is drawn ``N(0, 1/H_out)`` and ``b = 0``.

:func:`layer_with_readout` is the same for a sequence layer (:mod:`rnnjax.layers`:
bidirectional, stacks), with one more readout, ``"flatten"``: a linear map of all the
outputs of a sequence (the MNIST-1D GRU baseline's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_choice, check_positive_int
from rnnjax.engine.sequence import run
from rnnjax.layers.recurrent import Layer


class Decoding(NamedTuple):
    """The carry of step-by-step generation: the cell's ``weights``
    (``cell.prepare(params)``, computed once per sequence) and its ``carry``."""

    weights: Any
    carry: Any


def decoder(cell: Cell, project: Callable):
    """``(scan_prefix, step_logits)`` of ``cell`` followed by ``project(params, y)``
    (see :class:`Model`)."""

    def scan_prefix(params, xs):
        w = cell.prepare(params["cell"])
        carry, ys = jax.lax.scan(lambda c, x: cell.step(w, c, x),
                                 cell.initial_carry((), xs.dtype), xs)
        return Decoding(w, carry), project(params, ys[-1])

    def step_logits(params, state: Decoding, x):
        carry, y = cell.step(state.weights, state.carry, x)
        return Decoding(state.weights, carry), project(params, y)

    return scan_prefix, step_logits


class Model(NamedTuple):
    """Pure functions of a cell + readout model.

    Attributes:
      init: ``key -> params``.
      apply: ``(params, xs (batch, time, input_size)) -> outputs`` of shape
        ``(batch, time, C)`` or ``(batch, C)``.
      scan_prefix: ``(params, xs (time, input_size)) -> (carry, logits (C,))`` for one
        example: the state and output after reading a prefix (used for generation).
        The carry is a :class:`Decoding`: the cell's carry and its weights, prepared
        here once per sequence.
      step_logits: ``(params, carry, x (input_size,)) -> (carry, logits (C,))``: one
        more step from a :class:`Decoding`; it never calls ``cell.prepare`` again.
      cell: the :class:`rnnjax.Cell`.
      readout: ``(params, y) -> logits``, the readout ``W_o y + b_o`` of the cell's
        outputs ``y (..., H_out)`` (``apply`` is ``readout`` of the scanned outputs).
    """

    init: Callable
    apply: Callable
    scan_prefix: Callable
    step_logits: Callable
    cell: Cell
    readout: Callable = None


def cell_with_readout(cell: Cell, input_size: int, output_size: int,
                      readout: str = "all", grad: str = "auto", scan: str = "auto",
                      layer: Layer | None = None) -> Model:
    """Build the :class:`Model` of ``cell`` reading ``input_size`` features and emitting
    ``output_size`` outputs at every step (``"all"``) or the last step (``"last"``);
    ``grad`` and ``scan`` as for :func:`rnnjax.run`.  ``layer``: the sequence function
    ``apply`` runs instead of ``rnnjax.run(cell, ...)``, with ``cell``'s params and
    outputs (a deep stack's block-by-block view, :func:`rnnjax.layers.residual_stack`);
    ``apply(params, xs, key=None)`` then passes ``key`` (dropout) to it."""
    check_positive_int("input_size", input_size)
    check_positive_int("output_size", output_size)
    check_choice("readout", readout, ("all", "last"))
    H = cell.output_size

    def init(key):
        kc, kr = jax.random.split(key)
        W = jax.random.normal(kr, (output_size, H), jnp.float32) / jnp.sqrt(H)
        return {"cell": cell.init(kc, input_size),
                "readout": {"W": W, "b": jnp.zeros((output_size,), jnp.float32)}}

    def project(p, y):
        return y @ p["readout"]["W"].T + p["readout"]["b"]

    def apply(params, xs, key=None):
        if layer is None:
            ys, _ = run(cell, params["cell"], xs, grad=grad, scan=scan)
        else:
            ys, _ = layer.apply(params["cell"], xs, key=key, grad=grad, scan=scan)
        if readout == "last":
            ys = ys[..., -1, :]
        return project(params, ys)

    scan_prefix, step_logits = decoder(cell, project)
    return Model(init=init, apply=apply, scan_prefix=scan_prefix, step_logits=step_logits,
                 cell=cell, readout=project)


READOUTS = ("all", "last", "flatten")


def layer_with_readout(layer: Layer, input_size: int, output_size: int,
                       readout: str = "all", time: int | None = None,
                       grad: str = "auto") -> Model:
    r"""Build the :class:`Model` of a sequence layer (:mod:`rnnjax.layers`, e.g.
    ``bidirectional(gru(6))``) followed by a linear readout of its outputs ``y_t``
    (``F = layer.output_size`` features each): at every step (``"all"``), at the last
    step (``"last"``), or one output per sequence from all ``time`` steps flattened
    (``"flatten"``)::

        o = W vec(y_1, ..., y_T) + b,      W (C, T F),  vec in time-major order

    the readout of the GRU baseline of MNIST-1D (greydanus/mnist1d
    ``notebooks/models.py``, ``GRUBase``: ``output.reshape(batch, -1)`` then
    ``nn.Linear(2 * hidden * time_steps, output_size)``; for a bidirectional layer each
    ``y_t = [y_fwd_t, y_bwd_t]``).  The ``"flatten"`` readout is initialised as that
    ``torch.nn.Linear``: ``W, b ~ U(-1/sqrt(T F), 1/sqrt(T F))``; ``"all"`` and
    ``"last"`` as :func:`cell_with_readout` (``W ~ N(0, 1/F)``, ``b = 0``).  Params:
    ``{"rnn": layer params, "readout": {"W", "b"}}``.  ``grad`` as for
    :func:`rnnjax.run`.  Not recurrent step by step (a bidirectional layer reads the
    whole sequence): ``scan_prefix``, ``step_logits`` and ``cell`` are None.
    """
    check_positive_int("input_size", input_size)
    check_positive_int("output_size", output_size)
    check_choice("readout", readout, READOUTS)
    if readout == "flatten":
        check_positive_int("time", time)
    F = layer.output_size
    fan_in = F * time if readout == "flatten" else F

    def init(key):
        kc, kw, kb = jax.random.split(key, 3)
        if readout == "flatten":
            bound = 1.0 / math.sqrt(fan_in)
            W = jax.random.uniform(kw, (output_size, fan_in), jnp.float32, -bound, bound)
            b = jax.random.uniform(kb, (output_size,), jnp.float32, -bound, bound)
        else:
            W = jax.random.normal(kw, (output_size, F), jnp.float32) / jnp.sqrt(F)
            b = jnp.zeros((output_size,), jnp.float32)
        return {"rnn": layer.init(kc, input_size), "readout": {"W": W, "b": b}}

    def apply(params, xs):
        ys, _ = layer.apply(params["rnn"], xs, grad=grad)
        if readout == "last":
            ys = ys[..., -1, :]
        elif readout == "flatten":
            if ys.shape[-2] != time:
                raise ValueError(f"the flatten readout was built for time={time} steps, "
                                 f"got sequences of {ys.shape[-2]} steps")
            ys = ys.reshape(ys.shape[:-2] + (time * F,))
        return ys @ params["readout"]["W"].T + params["readout"]["b"]

    return Model(init=init, apply=apply, scan_prefix=None, step_logits=None, cell=None)


__all__ = ["Decoding", "Model", "READOUTS", "cell_with_readout", "decoder",
           "layer_with_readout"]
