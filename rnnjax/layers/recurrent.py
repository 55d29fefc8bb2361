"""Sequence-level layers built from cells: unidirectional, bidirectional, stacks.

A cell is per step; a layer is per sequence.  A :class:`Layer` is a pair of pure
functions like a cell::

    layer = rnnjax.layers.stack([rnnjax.layers.bidirectional(lstm(64))] * 2, dropout=0.1)
    params = layer.init(key, features)
    ys, carries = layer.apply(params, xs, lengths=lengths, key=dropout_key)

Dropout is active only when ``apply`` is given a ``key``.  Every layer honours
``lengths`` exactly as :func:`rnnjax.run` does.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.cells.linear import lru
from rnnjax.core import initializers
from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_choice, check_rate
from rnnjax.core.ops import dropout as _dropout
from rnnjax.core.ops import layer_norm
from rnnjax.engine.sequence import run

__all__ = ["Layer", "bidirectional", "lru_block", "stack", "unidirectional"]


class Layer(NamedTuple):
    """``init(key, input_size) -> params``;
    ``apply(params, xs, *, carry=None, lengths=None, key=None, **run_options)
    -> (ys, final_carry)``; ``output_size``: features of ``ys``."""

    init: Callable
    apply: Callable
    output_size: int


def _check_keys(layer: str, what: str, value, expected: Sequence[str]) -> None:
    """Refuse ``value`` (the params or carry of ``layer``) unless it is a dict with
    exactly the keys ``expected``: the error names the layer, the keys expected and the
    keys given (instead of a ``KeyError`` from deep inside ``apply``)."""
    expected = sorted(expected)
    if not isinstance(value, Mapping):
        raise TypeError(f"{layer} {what} must be a dict with the keys {expected}, "
                        f"got {type(value).__name__}")
    given = sorted(map(str, value))
    if given != expected:
        missing = sorted(set(expected) - set(given))
        extra = sorted(set(given) - set(expected))
        detail = "; ".join(x for x in (f"missing {missing}" if missing else "",
                                         f"unexpected {extra}" if extra else "") if x)
        raise ValueError(f"{layer} {what} must have the keys {expected}, got {given} "
                         f"({detail})")


def _check_list(layer: str, what: str, value, n: int) -> None:
    """Refuse ``value`` unless it is a list or tuple of ``n`` entries (one per layer)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{layer} {what} must be a list of {n} entries (one per layer), "
                        f"got {type(value).__name__}")
    if len(value) != n:
        raise ValueError(f"{layer} {what} must hold {n} entries (one per layer), "
                         f"got {len(value)}")


@functools.cache
def _masked_cell(cell: Cell) -> Cell:
    """``cell`` whose carry is ``(state, mask)``: ``h_{t-1}`` is multiplied by ``mask``
    where the step reads it (variational recurrent dropout, Gal & Ghahramani 2016: the
    same mask at every step of a sequence)."""

    def step(w, carry, x):
        state, mask = carry
        new, y = cell.step(w, state._replace(h=state.h * mask), x)
        return (new, mask), y

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        state = cell.initial_carry(batch_shape, dtype)
        return state, jnp.ones_like(state.h)

    # The masked step is no longer the cell's declared linear recurrence, nor the step its
    # hand-written backward or chunked form was written for: all are cleared.
    return cell._replace(step=step, initial_carry=initial_carry, name=cell.name, linear=None,
                         backward=None, chunk=None)


def _run_cell(cell, params, xs, carry, lengths, key, recurrent_dropout, reverse, options):
    if key is None or recurrent_dropout == 0.0:
        return run(cell, params, xs, carry=carry, lengths=lengths, reverse=reverse, **options)
    time_axis = 0 if options.get("time_major") else xs.ndim - 2
    batch_shape = tuple(s for i, s in enumerate(xs.shape[:-1]) if i != time_axis)
    state = carry if carry is not None else cell.initial_carry(batch_shape, xs.dtype)
    mask = _dropout(key, jnp.ones_like(state.h), recurrent_dropout)
    ys, (final, _) = run(_masked_cell(cell), params, xs, carry=(state, mask),
                         lengths=lengths, reverse=reverse, **options)
    return ys, final


def unidirectional(cell: Cell, recurrent_dropout: float = 0.0, reverse: bool = False) -> Layer:
    """One cell run forward (or backward with ``reverse``) over the sequence."""
    check_rate("recurrent_dropout", recurrent_dropout)

    def apply(params, xs, *, carry=None, lengths=None, key=None, **options):
        return _run_cell(cell, params, xs, carry, lengths, key, recurrent_dropout, reverse,
                         options)

    return Layer(cell.init, apply, cell.output_size)


def bidirectional(forward: Cell, backward: Cell | None = None, merge: str = "concat",
                  recurrent_dropout: float = 0.0) -> Layer:
    """Forward and backward cells over the same sequence, outputs merged per step.

    ``y_t = [y_fwd_t, y_bwd_t]`` (``merge="concat"``) or ``y_fwd_t + y_bwd_t``
    (``merge="sum"``).  The backward cell reads each sequence from its last valid step
    (``reverse=True`` within ``lengths``).  Params and carries are
    ``{"fwd": ..., "bwd": ...}``.  ``backward`` defaults to a second copy of
    ``forward`` with its own params.
    """
    check_choice("merge", merge, ("concat", "sum"))
    check_rate("recurrent_dropout", recurrent_dropout)
    backward = forward if backward is None else backward
    if merge == "sum" and forward.output_size != backward.output_size:
        raise ValueError(
            f"merge='sum' needs equal output sizes, got {forward.output_size} (forward) and "
            f"{backward.output_size} (backward)")

    def init(key, input_size):
        kf, kb = jax.random.split(key)
        return {"fwd": forward.init(kf, input_size), "bwd": backward.init(kb, input_size)}

    def apply(params, xs, *, carry=None, lengths=None, key=None, **options):
        _check_keys("bidirectional layer", "params", params, ("fwd", "bwd"))
        if carry is not None:
            _check_keys("bidirectional layer", "carry", carry, ("fwd", "bwd"))
        carry = carry or {"fwd": None, "bwd": None}
        kf, kb = jax.random.split(key) if key is not None else (None, None)
        yf, cf = _run_cell(forward, params["fwd"], xs, carry["fwd"], lengths, kf,
                           recurrent_dropout, False, options)
        yb, cb = _run_cell(backward, params["bwd"], xs, carry["bwd"], lengths, kb,
                           recurrent_dropout, True, options)
        ys = jnp.concatenate([yf, yb], -1) if merge == "concat" else yf + yb
        return ys, {"fwd": cf, "bwd": cb}

    size = forward.output_size + backward.output_size if merge == "concat" \
        else forward.output_size
    return Layer(init, apply, size)


def stack(layers: Sequence[Cell | Layer], dropout: float = 0.0) -> Layer:
    """Layers applied in turn, with dropout on the outputs between layers (not after the
    last), as PyTorch's ``nn.LSTM(num_layers=..., dropout=...)``.  A :class:`Cell` in
    ``layers`` stands for ``unidirectional(cell)``.  Params and carries are lists, one
    entry per layer.
    """
    check_rate("dropout", dropout)
    layers = [unidirectional(l) if isinstance(l, Cell) else l for l in layers]
    if not layers:
        raise ValueError("layers must hold at least one Cell or Layer, got none")

    def init(key, input_size):
        params = []
        for layer, k in zip(layers, jax.random.split(key, len(layers))):
            params.append(layer.init(k, input_size))
            input_size = layer.output_size
        return params

    def apply(params, xs, *, carry=None, lengths=None, key=None, **options):
        _check_list("stack", "params", params, len(layers))
        if carry is not None:
            _check_list("stack", "carry", carry, len(layers))
        carry = carry if carry is not None else [None] * len(layers)
        keys = jax.random.split(key, 2 * len(layers)) if key is not None else \
            [None] * (2 * len(layers))
        finals = []
        for i, (layer, p, c) in enumerate(zip(layers, params, carry)):
            if i > 0 and dropout > 0.0 and key is not None:
                xs = _dropout(keys[2 * i], xs, dropout)
            xs, final = layer.apply(p, xs, carry=c, lengths=lengths, key=keys[2 * i + 1],
                                    **options)
            finals.append(final)
        return xs, finals

    return Layer(init, apply, layers[-1].output_size)


def lru_block(hidden_size: int, model_size: int, r_min: float = 0.0, r_max: float = 1.0,
              max_phase: float = 2 * math.pi, mlp: str = "glu",
              dropout: float = 0.0) -> Layer:
    r"""The LRU block of Orvieto et al. 2023 (Fig. 1) as a :class:`rnnjax.layers.Layer`::

        u = LayerNorm(x)                          (scale, bias learned)
        v = LRU(u)                                (hidden_size N, model_size M)
        z = GLU(gelu(v)) = (W_1 g + c_1) * sigmoid(W_2 g + c_2),  g = gelu(v)   (mlp="glu")
          or  W_2 gelu(W_1 v + c_1) + c_2,  W_1 (2M, M)                          (mlp="mlp")
        y = x + dropout(z)

    Inputs and outputs have ``model_size`` features.  ``apply`` takes the options of
    :func:`rnnjax.run` (``lengths``, ``reverse``, ``scan``, ...); padded outputs are zero.
    Dropout is active only when ``apply`` is given a ``key``.
    """
    check_choice("mlp", mlp, ("glu", "mlp"))
    check_rate("dropout", dropout)
    cell = lru(hidden_size, r_min, r_max, max_phase, model_size=model_size)
    M = model_size
    width = M if mlp == "glu" else 2 * M

    def init(key, input_size):
        k_lru, k1, k2 = jax.random.split(key, 3)
        params = {"norm": {"scale": jnp.ones((M,)), "bias": jnp.zeros((M,))},
                  "lru": cell.init(k_lru, input_size)}
        u = initializers.uniform(1.0 / math.sqrt(M))
        params["W_1"], params["c_1"] = u(k1, (width, M)), jnp.zeros((width,))
        params["W_2"], params["c_2"] = u(k2, (M, width)), jnp.zeros((M,))
        return params

    def apply(params, xs, *, carry=None, lengths=None, key=None, **options):
        _check_keys("lru_block layer", "params", params,
                    ("norm", "lru", "W_1", "c_1", "W_2", "c_2"))
        _check_keys("lru_block layer", "params['norm']", params["norm"], ("scale", "bias"))
        live = None
        if lengths is not None:
            time_axis = 0 if options.get("time_major") else xs.ndim - 2
            t = jnp.arange(xs.shape[time_axis])
            L = jnp.asarray(lengths)
            live = t[:, None] < L.reshape(1, -1) if time_axis == 0 else \
                t < L[..., None]
            live = live.reshape(xs.shape[:-1])[..., None]
            # padding zeroed before the LayerNorm and the residual (as run does before a
            # step): NaN or inf past a length reaches no output and no gradient
            xs = jnp.where(live, xs, jnp.zeros_like(xs))
        u = layer_norm(xs, params["norm"]["scale"], params["norm"]["bias"])
        v, final = run(cell, params["lru"], u, carry=carry, lengths=lengths, **options)
        g = jax.nn.gelu(v)
        if mlp == "glu":
            z = (g @ params["W_1"].T + params["c_1"]) * \
                jax.nn.sigmoid(g @ params["W_2"].T + params["c_2"])
        else:
            z = jax.nn.gelu(v @ params["W_1"].T + params["c_1"]) @ params["W_2"].T \
                + params["c_2"]
        if key is not None and dropout > 0.0:
            z = _dropout(key, z, dropout)
        ys = xs + z
        if live is not None:
            ys = jnp.where(live, ys, jnp.zeros_like(ys))
        return ys, final

    return Layer(init, apply, M)
