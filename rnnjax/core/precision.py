r"""Mixed precision for any cell: computation in ``dtype``, parameters in ``param_dtype``.

Every factory in :mod:`rnnjax.cells` takes ``dtype`` and ``param_dtype`` (keyword
arguments added by :func:`precision_options`); both ``None`` (the default) leave the cell
exactly as written.  Otherwise the cell is wrapped by :func:`mixed_precision`::

    params   = cell.init(key, F)                  cast to param_dtype
    weights  = cast(prepare(params), dtype)       the parametrisation in param_dtype
    y_t      = cast(step(weights, h_{t-1}, cast(x_t, dtype)), dtype)

The policy, and why:

- ``prepare`` runs on the parameters in ``param_dtype`` (float32 by default), so the maps
  of the orthogonal and unitary cells (``expm``, Cayley, Householder products, the
  unitary factors) are computed in float32 even under bfloat16; only their result is
  rounded to ``dtype``.  A bfloat16 orthogonal matrix is orthogonal only to about
  ``2^-8`` (``||W^T W - I||`` of order 1e-2 at H = 64), so over T steps norms can drift by
  ``(1 +- 1e-2)^T``: use float32 for the long copy tasks.
- The step of a nonlinear cell runs wholly in ``dtype``, its carry included (as cuDNN and
  PyTorch's autocast run an LSTM in half precision): matmuls, gates and the LSTM's memory
  cell.
- Cells that declare a linear recurrence ``h_t = a_t h_{t-1} + b_t``
  (:class:`rnnjax.core.cell.Linear`: LRU, S4D/S5, RG-LRU, minGRU/minLSTM, the gated linear
  cell) run in float32 (``carry_dtype``), reading their inputs rounded to ``dtype``:
  their ``|a_t|`` sits near 1 over thousands of steps, where a state rounded to 8 bits
  at every step would random-walk away, and their gates lose the bits that matter in
  ``sqrt(1 - a^2)`` near ``a = 1`` (measured: RG-LRU gradients 11% off in bfloat16 at
  T = 12 when the gates ran in bfloat16; recurrentgemma bounds that square root's
  derivative for the same reason).  Sequential or associative, the recurrence is float32.
- Complex weights and carries (uRNN, EUNN, fcuRNN, the LRU) stay complex64: there is no
  half-precision complex type.
- Outputs ``y_t`` are ``dtype``.  Parameters, and hence gradients and optimiser states,
  stay ``param_dtype``.  A cell whose computation and parameter dtypes differ has no
  hand-written backward (``backward=None``; those are transcribed for one dtype), so
  ``grad="auto"`` uses autodiff for it.
"""

from __future__ import annotations

import functools
import inspect

import jax
import jax.numpy as jnp

from rnnjax.core.cell import Cell, Chunk, Linear

__all__ = ["HALF", "carry_dtype", "cast_floating", "mixed_precision", "precision_options"]

HALF = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
_FLOATS = HALF + (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))


def _check_dtype(name, value):
    try:
        dt = jnp.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt not in _FLOATS:  # (numpy's float64 == None is True)
        raise ValueError(f"{name} must be one of bfloat16, float16, float32, float64, "
                         f"got {value!r}")
    return dt


def cast_floating(tree, dtype):
    """``tree`` with its real floating leaves (arrays, NumPy arrays, tracers, Python
    floats) as ``dtype`` arrays; integer, boolean, complex and key leaves unchanged.
    The one helper for "cast the float leaves of a tree" across rnnjax."""
    def cast(a):
        a_dtype = getattr(a, "dtype", None)
        if a_dtype is None and isinstance(a, float):
            return jnp.asarray(a, dtype)
        if a_dtype is not None and jnp.issubdtype(a_dtype, jnp.floating):
            return jnp.asarray(a, dtype)
        return a
    return jax.tree.map(cast, tree)


def carry_dtype(cell: Cell, dtype) -> jnp.dtype:
    """The dtype ``cell``'s carry and weights are kept in when it computes in ``dtype``:
    float32 for a declared linear recurrence under a half dtype, ``dtype`` otherwise."""
    dtype = jnp.dtype(dtype)
    return jnp.dtype(jnp.float32) if dtype in HALF and cell.linear is not None else dtype


def mixed_precision(cell: Cell, dtype=jnp.float32, param_dtype=jnp.float32) -> Cell:
    """``cell`` computing in ``dtype`` with parameters in ``param_dtype`` (the policy in
    this module's docstring).  ``dtype``/``param_dtype``: bfloat16, float16, float32 or
    float64."""
    dtype = _check_dtype("dtype", dtype)
    param_dtype = _check_dtype("param_dtype", param_dtype)
    state = carry_dtype(cell, dtype)

    def init(key, input_size):
        return cast_floating(cell.init(key, input_size), param_dtype)

    def prepare(params):
        return cast_floating(cell.prepare(params), state)

    def initial_carry(batch_shape=(), _dtype=None):
        return cast_floating(cell.initial_carry(batch_shape, state), state)

    def step(weights, carry, x):
        carry, y = cell.step(weights, cast_floating(carry, state),
                             cast_floating(cast_floating(x, dtype), state))
        return cast_floating(carry, state), cast_floating(y, dtype)

    linear = None
    if cell.linear is not None:
        lin = cell.linear
        linear = Linear(
            kind=lin.kind,
            coeffs=lambda w, x: cast_floating(
                lin.coeffs(w, cast_floating(cast_floating(x, dtype), state)), state),
            readout=lambda w, h, x: cast_floating(
                lin.readout(w, h, cast_floating(cast_floating(x, dtype), state)), dtype))
    chunk = None
    if cell.chunk is not None:
        run = cell.chunk.run

        def chunk_run(w, carry, carry0, xs, starts, live):
            carry, ys = run(w, cast_floating(carry, state), cast_floating(carry0, state),
                            cast_floating(cast_floating(xs, dtype), state), starts, live)
            return cast_floating(carry, state), cast_floating(ys, dtype)

        chunk = Chunk(run=chunk_run)
    same = dtype == param_dtype == state
    return cell._replace(init=init, prepare=prepare, initial_carry=initial_carry, step=step,
                         linear=linear, backward=cell.backward if same else None,
                         chunk=chunk)


def precision_options(factory):
    """Give a cell factory the keyword arguments ``dtype`` and ``param_dtype``: both None
    (default) return the factory's cell unchanged; otherwise :func:`mixed_precision`
    wraps it (``dtype`` None means ``param_dtype``, ``param_dtype`` None float32)."""

    @functools.wraps(factory)
    def make(*args, dtype=None, param_dtype=None, **kwargs):
        cell = factory(*args, **kwargs)
        if dtype is None and param_dtype is None:
            return cell
        param_dtype = jnp.float32 if param_dtype is None else param_dtype
        return mixed_precision(cell, param_dtype if dtype is None else dtype, param_dtype)

    sig = inspect.signature(factory)
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
             for n in ("dtype", "param_dtype")]
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    make.__signature__ = sig.replace(parameters=params + extra + [
        p for p in sig.parameters.values() if p.kind == p.VAR_KEYWORD])
    make.__doc__ = (factory.__doc__ or "") + (
        "\n    ``dtype``, ``param_dtype``: mixed precision (:mod:`rnnjax.core.precision`).\n")
    return make
