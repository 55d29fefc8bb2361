"""The associative-scan engine: linear recurrences in O(log T) parallel depth.

A cell that declares a linear recurrence (:class:`rnnjax.Linear`)

    h_t = A_t h_{t-1} + b_t,        y_t = readout(h_t, x_t)

can be run with ``jax.lax.associative_scan`` on the pairs ``e_t = (A_t, b_t)`` and the
operator (Blelloch 1990; Martin & Cundy 2018; Smith et al. 2023, S5; Orvieto et al.
2023, LRU)

    (a_i, b_i) o (a_j, b_j) = (a_j a_i,  a_j b_i + b_j),

whose prefix ``e_1 o ... o e_t`` holds ``h_t`` (when ``h_0 = 0``) in its second slot.
``A_t`` is a vector acting elementwise (``kind="diagonal"``) or an ``(H, H)`` matrix
(``kind="dense"``, ``O(H^3)`` per combine).

The engine follows :func:`rnnjax.engine.sequential.scan_cell` exactly:

* ``lengths``: past a sequence's length, ``A_t = 1`` (or ``I``) and ``b_t = 0``, so the
  prefix freezes at ``h_L`` and the last element is the final carry; outputs there
  are zero.
* ``reverse``: each sequence is flipped within its length
  (:func:`rnnjax.engine.inputs.flip_sequences`) before and after, as the sequential path does.
* an initial carry ``h_0`` is folded into the first element: ``b_1 <- A_1 h_0 + b_1``.

A linear cell's carry is ``HiddenState(h)``; ``h`` may be complex (the LRU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnjax.core.cell import HiddenState
from rnnjax.engine.inputs import flip_sequences, segment_starts

__all__ = ["associative_scan_cell", "choose_scan", "combine_dense", "combine_diagonal",
           "linear_scan"]

def _apply(kind, a, h):
    """``a h``: elementwise (``"diagonal"``) or ``a @ h`` over leading axes (``"dense"``)."""
    return a * h if kind == "diagonal" else jnp.einsum("...ij,...j->...i", a, h)

def combine_diagonal(left, right):
    """``(a_i, b_i) o (a_j, b_j) = (a_j * a_i, a_j * b_i + b_j)``, elementwise ``a``."""
    a_i, b_i = left
    a_j, b_j = right
    return a_j * a_i, a_j * b_i + b_j

def combine_dense(left, right):
    """``(A_i, b_i) o (A_j, b_j) = (A_j @ A_i, A_j @ b_i + b_j)`` over leading axes."""
    a_i, b_i = left
    a_j, b_j = right
    return (jnp.einsum("...ij,...jk->...ik", a_j, a_i),
            jnp.einsum("...ij,...j->...i", a_j, b_i) + b_j)

def linear_scan(kind: str, a, b, h0=None, axis: int = 0):
    """All states ``h_t = A_t h_{t-1} + b_t`` of a linear recurrence, in parallel.

    Args:
      kind: ``"diagonal"`` (``a`` has the shape of ``b``) or ``"dense"`` (``a`` has
        ``b``'s shape plus a trailing axis: ``(..., H, H)`` against ``(..., H)``).
      a, b: coefficients stacked along ``axis`` (time).
      h0: initial state with ``b``'s shape minus the time axis, or None for zeros.

    Returns:
      ``h`` with the shape of ``b``: ``h[t]`` is the state after step ``t``.
    """
    if h0 is not None:
        a0 = jnp.take(a, 0, axis=axis)
        b0 = jnp.take(b, 0, axis=axis)
        first = _apply(kind, a0, h0) + b0
        idx = [slice(None)] * b.ndim
        idx[axis] = 0
        b = b.at[tuple(idx)].set(first.astype(b.dtype))
    fn = combine_diagonal if kind == "diagonal" else combine_dense
    _, h = jax.lax.associative_scan(fn, (a, b), axis=axis)
    return h

def associative_scan_cell(cell, weights, carry, xs, lengths=None, *, reverse=False,
                          remat=False, resets=None):
    """Run a linear ``cell`` over time-major, batch-flattened inputs by associative scan.

    Same contract as :func:`rnnjax.engine.sequential.scan_cell`: ``carry`` is ``HiddenState``
    with ``h (B, H)``, ``xs (T, B, F)``, ``lengths (B,)`` or None; returns
    ``(ys (T, B, O), final_carry)``.  A reset (``resets (T, B)``, see
    :func:`rnnjax.engine.inputs.segment_starts`) before step ``t`` makes its coefficient zero:
    ``h_t = a_t h_0 + b_t`` becomes ``(0, a_t h_0 + b_t)``.  ``remat`` recomputes the whole scan in
    the
    backward pass (``jax.checkpoint``) instead of storing its ``O(T log T)`` partial
    products.
    """
    lin = cell.linear
    if lin is None:
        raise ValueError(f"the {cell.name} cell declares no linear recurrence")
    if not isinstance(carry, HiddenState):
        raise ValueError(
            f"the associative scan needs a HiddenState carry, got {type(carry).__name__} "
            f"from the {cell.name} cell")

    def scan(weights, h0, xs, lengths, resets):
        T = xs.shape[0]
        starts = None if resets is None else segment_starts(resets, lengths, reverse)
        if reverse:
            xs = flip_sequences(xs, lengths)
        per_step = jax.vmap(jax.vmap(lin.coeffs, (None, 0)), (None, 0))
        a, b = per_step(weights, xs)  # (T, B, H[, H]), (T, B, H)
        dtype = jnp.result_type(a.dtype, b.dtype, h0.dtype)
        a, b = a.astype(dtype), b.astype(dtype)
        if lengths is not None:
            live = jnp.arange(T)[:, None] < lengths[None, :]  # (T, B)
            one = jnp.ones((), dtype) if lin.kind == "diagonal" else \
                jnp.eye(a.shape[-1], dtype=dtype)
            a = jnp.where(live.reshape(live.shape + (1,) * (a.ndim - 2)), a, one)
            b = jnp.where(live[..., None], b, jnp.zeros_like(b))
        if starts is not None:  # h_t = a_t h_0 + b_t: a zero coefficient, b_t shifted
            b = jnp.where(starts[..., None], _apply(lin.kind, a, h0.astype(dtype)) + b, b)
            a = jnp.where(starts.reshape(starts.shape + (1,) * (a.ndim - 2)), 0, a)
        h = linear_scan(lin.kind, a, b, h0.astype(dtype), axis=0)
        ys = jax.vmap(jax.vmap(lin.readout, (None, 0, 0)), (None, 0, 0))(weights, h, xs)
        if lengths is not None:
            ys = jnp.where(live[..., None], ys, jnp.zeros_like(ys))
        if reverse:
            ys = flip_sequences(ys, lengths)
        final = h[-1] if T > 0 else h0
        return ys, final.astype(h0.dtype)

    if remat:
        scan = jax.checkpoint(scan)
    ys, final = scan(weights, carry.h, xs, lengths, resets)
    return ys, HiddenState(final)

def choose_scan(cell, scan: str, T: int, *, truncate=None, unroll: int = 1) -> str:
    """Resolve ``scan`` to ``"sequential"`` or ``"associative"`` (checked before tracing).

    ``"auto"`` picks the associative scan when the cell declares a *diagonal* linear
    recurrence, its initial carry is a ``HiddenState``, neither ``truncate`` nor
    ``unroll > 1`` asks for the sequential loop, and the default backend is an
    accelerator (not ``"cpu"``).  Dense recurrences (``O(H^3)`` per combine against
    ``O(H^2)`` per sequential step) stay sequential.  Measured with
    ``benchmarks/scan.py`` (benchmarks/README.md) on a 2-core CPU: the associative LRU
    forward pass was 2-3x slower than the sequential one at every T from 256 to 65536;
    forward + backward it was ~3x faster at T = 256, ~1.7x at 512 and slower from
    1024 on, and its gradient took 3-5x longer to compile (13-25 s against 3-8 s), so
    on CPU "auto" stays sequential.  The accelerator branch follows the S5 and LRU
    papers' GPU results; no GPU was available to measure it here.
    The options ``"associative"`` refuses and its check of the cell are entries of
    the engine table (:mod:`rnnjax.engine.table`).
    """
    if scan == "sequential":
        return scan
    lin = cell.linear
    if scan == "associative":
        return scan
    # auto
    if lin is None or lin.kind != "diagonal" or truncate is not None or unroll != 1:
        return "sequential"
    if jax.default_backend() == "cpu":
        return "sequential"
    carry = jax.eval_shape(lambda: cell.initial_carry((), jnp.float32))
    return "associative" if isinstance(carry, HiddenState) else "sequential"
