"""Sequence masking and the argument check shared by the engines.

The sequential engine (:mod:`rnnjax.engine.sequence`), the associative scan
(:mod:`rnnjax.engine.associative`) and the hand-written backward (:mod:`rnnjax.engine.bptt`) honour
``lengths`` and ``reverse`` alike; the helpers they share live here, below all of them:

* :func:`flip_sequences`: reverse each sequence within its own length;
* :func:`segment_starts` and :func:`reset_to`: resets inside a sequence (the carry set
  back to the initial carry before a step);
* :func:`check_run_inputs`: every argument of :func:`rnnjax.run` checked before tracing,
  each error naming the argument, what was expected and what came.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.checks import check_cell

__all__ = ["check_params", "check_run_inputs", "common_float_dtype", "flatten_batch",
           "flip_sequences", "from_scan_layout", "reset_to", "segment_starts", "shape_dtype",
           "to_scan_layout", "unflatten_batch"]


def shape_dtype(x):
    """(shape, dtype) of an array-like without moving it to the device."""
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        return tuple(x.shape), np.dtype(x.dtype)
    a = np.asarray(x)
    return a.shape, a.dtype


def check_run_inputs(cell, params, xs, carry, lengths, time_major, truncate, unroll,
                     resets=None):
    """Check every argument of :func:`run` before tracing; return (T, batch_shape)."""
    check_cell(cell)
    shape, dtype = shape_dtype(xs)
    if len(shape) < 2:
        layout = "(time, *batch, features)" if time_major else "(*batch, time, features)"
        raise ValueError(f"xs must have rank >= 2 {layout}, got shape {shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"xs must be a floating-point array, got dtype {dtype}; "
            "cast integer inputs (e.g. xs.astype(jnp.float32)) or one-hot encode them")
    features = shape[-1]
    try:
        expected = cell.input_size(params)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        expected = None  # params of another cell: named leaf by leaf below
    if expected is not None and features != expected:
        raise ValueError(
            f"xs has {features} features but the {cell.name} cell was built for {expected}")
    check_params(cell, params, features)
    if time_major:
        T, batch_shape = shape[0], shape[1:-1]
    else:
        T, batch_shape = shape[-2], shape[:-2]

    if lengths is not None:
        lshape, ldtype = shape_dtype(lengths)
        if lshape != batch_shape:
            raise ValueError(
                f"lengths must have the batch shape of xs {batch_shape}, got shape {lshape}")
        if not jnp.issubdtype(ldtype, jnp.integer):
            raise TypeError(f"lengths must be an integer array, got dtype {ldtype}")
        if not isinstance(lengths, jax.core.Tracer):
            lv = np.asarray(lengths)
            if lv.size and (lv.min() < 0 or lv.max() > T):
                raise ValueError(
                    f"lengths must lie in [0, {T}] (the time axis of xs), "
                    f"got values in [{lv.min()}, {lv.max()}]")

    if resets is not None:
        rshape, rdtype = shape_dtype(resets)
        want = (T,) + batch_shape if time_major else batch_shape + (T,)
        if rshape != want:
            layout = "(time, *batch)" if time_major else "(*batch, time)"
            raise ValueError(f"resets must have shape {layout} = {want} like xs, got {rshape}")
        if rdtype != np.bool_:
            raise TypeError(f"resets must be a boolean array, got dtype {rdtype}")

    if carry is not None:
        expected_carry = jax.eval_shape(lambda: cell.initial_carry(batch_shape, dtype))
        exp_leaves, exp_tree = jax.tree_util.tree_flatten(expected_carry)
        try:
            leaves = exp_tree.flatten_up_to(carry)
        except (ValueError, TypeError):
            raise ValueError(
                f"carry must have the structure {exp_tree} of the {cell.name} cell's "
                f"initial_carry, got {jax.tree_util.tree_structure(carry)}") from None
        for path_leaf, exp, got in zip(
                jax.tree_util.tree_flatten_with_path(expected_carry)[0], exp_leaves, leaves):
            gshape, gdtype = shape_dtype(got)
            name = "carry" + jax.tree_util.keystr(path_leaf[0])
            if gshape != exp.shape:
                raise ValueError(
                    f"{name} has shape {gshape} but {exp.shape} was expected "
                    f"(batch shape {batch_shape} of xs, then the cell's state)")
            if (jnp.issubdtype(gdtype, jnp.complexfloating)
                    and not jnp.issubdtype(exp.dtype, jnp.complexfloating)):
                # it would silently turn every output complex
                raise TypeError(
                    f"{name} has dtype {gdtype} but the {cell.name} cell's carry is real "
                    f"({exp.dtype}); pass a real carry (e.g. its .real part)")

    if truncate is not None and (isinstance(truncate, bool) or not isinstance(truncate, int)
                                 or truncate < 1):
        raise ValueError(f"truncate must be None or a positive integer, got {truncate!r}")
    if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
        raise ValueError(f"unroll must be a positive integer, got {unroll!r}")
    return T, batch_shape


@functools.lru_cache(maxsize=256)
def _init_shapes(cell, input_size):
    like = jax.eval_shape(lambda k: cell.init(k, input_size), jax.random.key(0))
    return dict(jax.tree_util.tree_flatten_with_path(like)[0])


def check_params(cell, params, input_size: int) -> None:
    """Raise unless ``params`` have the structure and leaf shapes of
    ``cell.init(key, input_size)`` (from ``jax.eval_shape``: nothing is allocated):
    ``ValueError`` naming the leaf, the expected and the actual shape (params of another
    cell or hidden size), or the missing and unexpected keys."""
    try:
        want = _init_shapes(cell, int(input_size))
    except TypeError:  # a cell with an unhashable field: not cached
        want = _init_shapes.__wrapped__(cell, int(input_size))
    try:
        got = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    except Exception:  # noqa: BLE001 - an unflattenable object
        raise TypeError(f"params must be a pytree of arrays, got {type(params).__name__}"
                        ) from None
    name = lambda k: "params" + jax.tree_util.keystr(k)  # noqa: E731
    missing = sorted(name(k) for k in set(want) - set(got))
    extra = sorted(name(k) for k in set(got) - set(want))
    if missing or extra:
        raise ValueError(
            f"params do not match the {cell.name} cell's init for {input_size} input "
            f"features: missing {missing or 'nothing'}, unexpected {extra or 'nothing'}")
    for k, w in want.items():
        gshape, _ = shape_dtype(got[k])
        if gshape != tuple(w.shape):
            raise ValueError(
                f"{name(k)} has shape {gshape} but the {cell.name} cell with {input_size} "
                f"input features expects {tuple(w.shape)} (params of another cell or "
                "hidden size?)")


def common_float_dtype(xs_dtype, params):
    """The floating dtype the scan runs in: ``xs``'s promoted with the params'
    floating leaves (so float16/bfloat16 inputs with float32 params run in float32,
    and the carry is cast to it)."""
    dts = [np.dtype(xs_dtype)] + [shape_dtype(a)[1] for a in jax.tree.leaves(params)
                                  if jnp.issubdtype(shape_dtype(a)[1], jnp.floating)]
    return jnp.result_type(*dts)


def flip_sequences(xs, lengths):
    """Reverse each sequence of ``xs (T, B, ...)`` within its own length ``(B,)``.

    Position ``t < L_b`` takes ``xs[L_b - 1 - t, b]``; padded positions stay in place,
    so applying it twice is the identity.
    """
    if lengths is None:
        return jnp.flip(xs, 0)
    T = xs.shape[0]
    t = jnp.arange(T)[:, None]
    idx = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, idx, axis=0)



def segment_starts(resets, lengths, reverse):
    """Where the carry is set back to the initial carry, in processing order.

    ``resets (T, B)`` bool, in the original time order, marks the first step of each
    segment (an episode or a document).  Read forwards a segment starts at its first
    step.  Read backwards (``reverse``) a segment ``[s, e)`` starts at its last step
    ``e - 1``, which precedes a reset at ``e``: so the starts are the resets shifted one
    step earlier, then flipped within each length like the inputs.  Resets at or past a
    sequence's length are ignored (the carry is frozen there).
    """
    T = resets.shape[0]
    live = True if lengths is None else jnp.arange(T)[:, None] < lengths[None, :]
    starts = resets & live
    if reverse:
        starts = jnp.concatenate([starts[1:], jnp.zeros_like(starts[:1])]) & live
        starts = flip_sequences(starts, lengths)
    return starts


def reset_to(start_t, carry0, carry):
    """``carry0`` where ``start_t (B,)`` is true, else ``carry`` (leaves ``(B, ...)``)."""
    if start_t is None:
        return carry
    return jax.tree.map(
        lambda c0, c: jnp.where(start_t.reshape(start_t.shape + (1,) * (c.ndim - 1)), c0, c),
        carry0, carry)


# ------------------------------------------------ the engines' layout and the caller's

def to_scan_layout(a, time_major: bool, batch_ndim: int):
    """``(*batch, T, ...)`` (or ``(T, *batch, ...)`` when ``time_major``) -> ``(T, B, ...)``
    with the ``batch_ndim`` batch axes flattened into one: the layout every engine
    scans (``xs``, ``dys``, ``resets``)."""
    a = jnp.asarray(a)
    if not time_major:
        a = jnp.moveaxis(a, batch_ndim, 0)
    return a.reshape((a.shape[0], math.prod(a.shape[1:1 + batch_ndim])) + a.shape[1 + batch_ndim:])


def from_scan_layout(a, time_major: bool, batch_shape: tuple):
    """The inverse of :func:`to_scan_layout`: ``(T, B, ...)`` -> the caller's layout."""
    a = a.reshape((a.shape[0],) + tuple(batch_shape) + a.shape[2:])
    return a if time_major else jnp.moveaxis(a, 0, len(batch_shape))


def flatten_batch(tree, batch_shape: tuple):
    """Leaves ``(*batch, ...)`` -> ``(B, ...)`` (a carry, lengths)."""
    B, n = math.prod(batch_shape), len(batch_shape)
    return jax.tree.map(lambda a: jnp.asarray(a).reshape((B,) + jnp.shape(a)[n:]), tree)


def unflatten_batch(tree, batch_shape: tuple):
    """Leaves ``(B, ...)`` -> ``(*batch, ...)``."""
    return jax.tree.map(lambda a: a.reshape(tuple(batch_shape) + a.shape[1:]), tree)
