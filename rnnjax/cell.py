"""The Cell protocol: a recurrent cell is a named tuple of pure functions.

A cell is built by a factory that closes over its hyper-parameters, in the style of
``optax.GradientTransformation``::

    cell = rnnjax.cells.lstm(hidden_size=128)
    params = cell.init(jax.random.key(0), input_size)   # params pytree
    weights = cell.prepare(params)                       # once per sequence
    carry = cell.initial_carry((), jnp.float32)          # zeros, one example
    carry, y = cell.step(weights, carry, x)              # x: (input_size,)

``step`` is written for a single example; the sequence engine (:func:`rnnjax.run`)
``vmap``s it over batch axes and ``lax.scan``s it over time. ``prepare`` runs once per
sequence, outside the scan: it is where an orthogonal cell builds ``W = expm(A - A^T)``;
for the Elman cell and the LSTM it stacks ``[W_xh W_hh]^T`` so a step is one matmul
(:func:`fuse_input_hidden`); for the GRU it is the identity.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

Array = jax.Array
PRNGKey = jax.Array
Params = Any
Weights = Any
Carry = Any


class HiddenState(NamedTuple):
    """Carry of cells whose state is one vector (Elman, GRU, orthogonal cells)."""

    h: Array


class LSTMState(NamedTuple):
    """Carry of the LSTM: hidden state ``h`` and memory cell ``c``."""

    h: Array
    c: Array


class Linear(NamedTuple):
    """A step written as a linear recurrence ``h_t = A_t h_{t-1} + b_t``.

    Cells whose recurrence is linear may declare it so the engine can run it with an
    associative scan.  ``kind`` is ``"diagonal"`` (``a`` has the shape of ``h``) or
    ``"dense"`` (``a`` is a ``(H, H)`` matrix acting as ``a @ h``).
    """

    kind: str
    coeffs: Callable[[Weights, Array], tuple[Array, Array]]  # (weights, x_t) -> (a_t, b_t)
    readout: Callable[[Weights, Array, Array], Array]  # (weights, h_t, x_t) -> y_t


class Cell(NamedTuple):
    """A recurrent cell as a tuple of pure functions.

    Attributes:
      init: ``(key, input_size) -> params``, the trainable pytree (real arrays only).
      prepare: ``params -> weights``, run once per sequence outside the time loop.
      initial_carry: ``(batch_shape, dtype) -> carry`` of zeros with leaves
        ``batch_shape + (hidden,)``.
      step: ``(weights, carry, x) -> (carry, y)`` for one example, ``x: (input_size,)``.
      input_size: ``params -> int``, the number of input features the params expect.
      output_size: features of ``y``.
      name: short name used in errors, reports and plots.
      recurrent_matrix: optional ``params -> (H, H)`` dense recurrent matrix (or the
        stacked gate blocks) for analysis.
      linear: optional :class:`Linear` declaration of a linear recurrence.
    """

    init: Callable[[PRNGKey, int], Params]
    prepare: Callable[[Params], Weights]
    initial_carry: Callable[[tuple, Any], Carry]
    step: Callable[[Weights, Carry, Array], tuple[Carry, Array]]
    input_size: Callable[[Params], int]
    output_size: int
    name: str = "cell"
    recurrent_matrix: Optional[Callable[[Params], Array]] = None
    linear: Optional[Linear] = None


def zeros_carry(state_type, hidden_size: int):
    """An ``initial_carry`` function returning ``state_type`` of zero arrays."""

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        shape = tuple(batch_shape) + (hidden_size,)
        return state_type(*(jnp.zeros(shape, dtype) for _ in state_type._fields))

    return initial_carry


def identity(params):
    """``prepare`` of cells that need no per-sequence precomputation."""
    return params


def fuse_input_hidden(params):
    """``prepare`` of the Elman cell and the LSTM: ``params`` plus
    ``W = [W_xh W_hh]^T (F+H, G*H)``, so a step computes ``W_xh x + W_hh h`` as one
    matmul ``[x, h] @ W`` (LSTM forward, batch 64, T 256, H 128, on a 2-core CPU: 67 ms
    with two matmuls, 51-58 ms with one; benchmarks/README.md)."""
    return {**params, "W": jnp.concatenate([params["W_xh"], params["W_hh"]], axis=1).T}


def recurrent_matrix(cell: Cell, params) -> Array:
    """The dense recurrent matrix of ``cell`` with ``params`` (for analysis).

    For gated cells this is the fused ``(G*H, H)`` matrix of the gate blocks; for
    diagonal recurrences the ``(H, H)`` diagonal matrix.
    """
    if cell.recurrent_matrix is None:
        raise ValueError(f"the {cell.name} cell exposes no recurrent matrix")
    return cell.recurrent_matrix(params)
