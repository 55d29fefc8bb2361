"""Argument checks shared by the public functions: each error names the argument,
what was expected and what came.  Every public function checks its inputs with these
before any work is done (no error message is written twice)."""

from __future__ import annotations

import math
import numbers
import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.cell import Cell
from rnnjax.core.memory import available_memory, check_memory


def check_cell(cell, name: str = "cell"):
    """Raise ``TypeError`` unless ``cell`` is an :class:`rnnjax.Cell`."""
    if not isinstance(cell, Cell):
        raise TypeError(f"{name} must be an rnnjax.Cell, got {type(cell).__name__}")


def check_step(cell, input_size: int, name: str = "cell") -> None:
    """The Cell protocol on shapes alone (``jax.eval_shape``, nothing computed): ``init``
    gives params for ``input_size`` features, ``step`` maps the initial carry to a carry
    of the same structure and shapes and an output of ``(output_size,)``."""
    check_cell(cell, name)
    try:
        params = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(0))
        carry = jax.eval_shape(lambda: cell.initial_carry((), jnp.float32))
        new, y = jax.eval_shape(lambda p, c: cell.step(cell.prepare(p), c,
                                                       jnp.zeros((input_size,))), params, carry)
    except Exception as e:
        raise ValueError(f"{name} does not follow the Cell protocol: "
                         f"init/prepare/step on {input_size} features raised "
                         f"{type(e).__name__}: {e}") from None
    if jax.tree.structure(new) != jax.tree.structure(carry) or any(
            a.shape != b.shape for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(carry))):
        raise ValueError(f"{name}: step must return a carry like its initial "
                         f"carry {carry}, got {new}")
    if tuple(y.shape) != (cell.output_size,):
        raise ValueError(f"{name}: step's output has shape {tuple(y.shape)}, "
                         f"but output_size is {cell.output_size}")


def check_choice(name, value, valid):
    """Raise ``ValueError`` unless ``value`` is one of ``valid``; the message lists them."""
    if value not in valid:
        raise ValueError(f"{name} must be one of {sorted(valid)}, got {value!r}")


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_nonneg_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _is_number(value):
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, numbers.Real)


def check_positive_float(name, value):
    """A finite number > 0 (NaN and inf are refused: a learning rate of inf trains to
    NaN without a word)."""
    if not _is_number(value) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive number (finite), got {value!r}")


def check_nonneg_float(name, value):
    if not _is_number(value) or not value >= 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a non-negative number (finite), got {value!r}")


def check_optional_positive(name, value):
    """``None`` or a positive finite number (e.g. a clipping threshold that may be off)."""
    if value is not None and (not _is_number(value) or not value > 0
                              or not math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number (finite) or None, got {value!r}")


def check_rate(name, value):
    if not (0.0 <= float(value) < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_fraction(name, value):
    """A number strictly between 0 and 1 (a held-out or test fraction)."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")


def check_file(name, path):
    """Raise ``FileNotFoundError`` unless ``path`` is an existing file."""
    if not os.path.isfile(os.fspath(path)):
        raise FileNotFoundError(f"{name} must be an existing file, got {os.fspath(path)!r}")


__all__ = ["available_memory", "check_cell", "check_memory", "check_choice", "check_file",
           "check_fraction",
           "check_nonneg_float", "check_nonneg_int", "check_optional_positive",
           "check_positive_float", "check_positive_int", "check_rate"]
