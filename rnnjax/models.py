r"""A sequence model: one recurrent cell followed by a linear readout.

    h_t = cell(h_{t-1}, x_t),        o_t = W_o h_t + b_o

with ``o_t`` read at every step (``readout="all"``: copy, char LM) or at the last step
only (``readout="last"``: adding, pixel MNIST).  For complex-valued (unitary) cells the
cell's real output is used as is: each cell decides what it emits (e.g. ``[Re h, Im h]``).
Params: ``{"cell": cell params, "readout": {"W": (C, H_out), "b": (C,)}}``;
``W`` is drawn ``N(0, 1/H_out)`` and ``b = 0``.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.cell import Cell
from rnnjax.checks import check_choice, check_positive_int
from rnnjax.sequence import run


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
      project: ``(params, y) -> logits``, the readout ``W_o y + b_o`` of the cell's
        outputs ``y (..., H_out)`` (``apply`` is ``project`` of the scanned outputs).
    """

    init: Callable
    apply: Callable
    scan_prefix: Callable
    step_logits: Callable
    cell: Cell
    project: Callable = None


def cell_with_readout(cell: Cell, input_size: int, output_size: int,
                      readout: str = "all", grad: str = "auto") -> Model:
    """Build the :class:`Model` of ``cell`` reading ``input_size`` features and emitting
    ``output_size`` outputs at every step (``"all"``) or the last step (``"last"``);
    ``grad`` as for :func:`rnnjax.run`."""
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

    def apply(params, xs):
        ys, _ = run(cell, params["cell"], xs, grad=grad)
        if readout == "last":
            ys = ys[..., -1, :]
        return project(params, ys)

    scan_prefix, step_logits = decoder(cell, project)
    return Model(init=init, apply=apply, scan_prefix=scan_prefix, step_logits=step_logits,
                 cell=cell, project=project)


__all__ = ["Decoding", "Model", "cell_with_readout", "decoder"]
