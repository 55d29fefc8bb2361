r"""Deep residual models: ``depth`` pre-norm residual blocks around any cell, as in the
blocks of Mamba, xLSTM and Griffin/RecurrentGemma.

With ``D = d_model`` the width of the residual stream, ``u_t`` the inputs
``(features,)`` and ``x^l_t`` the stream after block ``l``::

    x^0_t = E u_t                                   E (D, F): the input embedding
    a^l_t = x^{l-1}_t + drop(P_l mixer_l(norm(x^{l-1}))_t)
    x^l_t = a^l_t + drop(mlp_l(norm(a^l_t)))         (with an MLP; else x^l_t = a^l_t)
    y_t   = norm(x^N_t)                             the outputs (with a norm)

``mixer_l`` is the cell run over the sequence (its own carry, ``h^l_t = step(h^l_{t-1},
.)``); ``P_l (D, H_out)`` is an output projection, present only when the cell's
``output_size`` ``H_out`` differs from ``D`` (e.g. a cell of ``hidden_size != D``, or a
unitary cell emitting ``[Re h, Im h]``); each block has its own norms.  For the one-hot
inputs of the token tasks (copy, char LM) ``E u_t = E[:, token]`` is the token
embedding; for real features it is a linear encoder.

Without ``d_model`` (None) there is no embedding: the first block reads the inputs
``u_t`` themselves and is not residual (its widths differ; no norm before it, as the
first layer of a stacked LSTM), ``x^1_t = mixer_1(u)_t`` [``+`` its MLP], and the stream
has the width ``D = H_out`` of the cell's outputs.  So ``depth=1`` with no MLP and no
norm *is* the cell: :func:`residual_stack` then returns the cell itself, and the model of
:func:`residual_with_readout` is :func:`rnnjax.layers.readout.cell_with_readout`'s.

The gated MLP is RecurrentGemma's ``MLPBlock`` (google-deepmind/recurrentgemma
``recurrentgemma/jax/modules.py``; the block order is its ``ResidualBlock``: temporal
pre-norm, temporal block, residual, channel pre-norm, MLP, residual), ``E = round(m D)``
for the expansion ``m``::

    mlp(x) = W_down (act(W_up[0] x + b_up[0]) * (W_up[1] x + b_up[1])) + b_down

``act = gelu`` (tanh form, flax's ``nn.gelu``): GeGLU, RecurrentGemma's; ``silu``:
SwiGLU.  Norms: ``"rms"``, RecurrentGemma's ``RMSNorm``, ``x rsqrt(mean(x^2) + 1e-6)
(1 + s)``; ``"layer"``, ``(x - mean) rsqrt(var + 1e-5) g + b``; ``"none"``.

Initialisation (RecurrentGemma's): ``W_up ~ N(0, 1/D)``, ``b_up = b_down = 0``, ``W_down
~ N(0, s/E)`` and ``P ~ N(0, s/H_out)`` with ``s = 2 / depth`` (its
``final_w_init_variance_scale``), RMS scale ``s = 0``, LayerNorm ``g = 1, b = 0``;
``E ~ N(0, 1)`` (its embedding table ``N(0, 1/D)`` times its ``sqrt(D)`` scale).  The
mixers are initialised by their cells.  Dropout (rate ``dropout``, inverted, a fresh
mask per step and example) acts on each branch before its residual sum, only in the
sequence view given a key.

Two views compute the same function (the tests check it in float64):

* :attr:`ResidualStack.layer`, block by block over the whole sequence (each mixer
  through :func:`rnnjax.run`, so every engine and ``grad`` applies to it): what
  training runs;
* :attr:`ResidualStack.cell`, the whole stack as one :class:`rnnjax.Cell`, step by step,
  whose carry holds every block's carry (fields ``<field>_<l>``, e.g. ``h_1, c_1, h_2,
  c_2`` for LSTM mixers): what stateful tasks, decoding and the analyses (credit,
  gradient flow) read.  It has no dropout, no hand-written backward and no linear
  declaration (norms and MLPs sit between the recurrences).

Mixed precision: each mixer follows its cell's policy (:mod:`rnnjax.core.precision`);
the stream, norms, MLPs, embedding and projections compute in the dtype of their
params (float32).
"""

from __future__ import annotations

import collections
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_cell, check_choice, check_positive_int, check_rate
from rnnjax.core.ops import dropout as _dropout
from rnnjax.core.ops import layer_norm
from rnnjax.engine.sequence import run
from rnnjax.layers.readout import Model, cell_with_readout
from rnnjax.layers.recurrent import Layer

NORMS = ("none", "rms", "layer")
ACTIVATIONS = {"gelu": functools.partial(jax.nn.gelu, approximate=True),
               "silu": jax.nn.silu}
RMS_EPS, LAYER_EPS = 1e-6, 1e-5


class ResidualStack(NamedTuple):
    """The two views of one stack (same params): ``cell`` step by step, ``layer``
    block by block over the sequence (see the module docstring)."""

    cell: Cell
    layer: Layer


def norm_init(kind: str, width: int):
    """Params of the norm ``kind``: ``{"scale": 0}`` (rms), ``{"gain": 1, "bias": 0}``
    (layer), None (none)."""
    if kind == "rms":
        return {"scale": jnp.zeros((width,), jnp.float32)}
    if kind == "layer":
        return {"gain": jnp.ones((width,), jnp.float32),
                "bias": jnp.zeros((width,), jnp.float32)}
    return None


def apply_norm(p, x):
    """The norm of params ``p`` over the last axis of ``x`` (identity for None)."""
    if p is None:
        return x
    if "scale" in p:
        var = jnp.mean(jnp.square(x), -1, keepdims=True)
        return x * jax.lax.rsqrt(var + RMS_EPS) * (1.0 + p["scale"])
    return layer_norm(x, p["gain"], p["bias"], LAYER_EPS)


def gated_mlp_init(key, width: int, expanded: int, scale: float = 1.0) -> dict:
    """RecurrentGemma's ``MLPBlock`` params: ``W_up (2, E, D) ~ N(0, 1/D)``, ``W_down
    (D, E) ~ N(0, scale/E)``, zero biases."""
    k_up, k_down = jax.random.split(key)
    return {"W_up": jax.random.normal(k_up, (2, expanded, width), jnp.float32) / width ** 0.5,
            "b_up": jnp.zeros((2, expanded), jnp.float32),
            "W_down": jax.random.normal(k_down, (width, expanded), jnp.float32)
            * (scale / expanded) ** 0.5,
            "b_down": jnp.zeros((width,), jnp.float32)}


def gated_mlp(p, x, activation: str = "gelu"):
    """``W_down (act(W_up[0] x + b_up[0]) * (W_up[1] x + b_up[1])) + b_down`` over the
    last axis of ``x``."""
    up = jnp.einsum("...d,ced->c...e", x, p["W_up"]) + p["b_up"].reshape(
        (2,) + (1,) * (x.ndim - 1) + (-1,))
    return (ACTIVATIONS[activation](up[0]) * up[1]) @ p["W_down"].T + p["b_down"]


@functools.cache
def _state_type(names: tuple):
    return collections.namedtuple("ResidualState", names)


def _check_options(cell, depth, d_model, mlp, norm, dropout, activation):
    check_cell(cell)
    check_positive_int("depth", depth)
    if d_model is not None:
        check_positive_int("d_model", d_model)
    if mlp is not None and (isinstance(mlp, bool) or not isinstance(mlp, (int, float))
                            or not mlp > 0):
        raise ValueError(f"mlp must be None or a positive expansion factor, got {mlp!r}")
    check_choice("norm", norm, NORMS)
    check_rate("dropout", dropout)
    check_choice("activation", activation, ACTIVATIONS)


def residual_stack(cell: Cell, depth: int = 1, *, d_model: int | None = None,
             mlp: float | None = None, norm: str = "none", dropout: float = 0.0,
             activation: str = "gelu") -> ResidualStack | Cell:
    r"""``depth`` pre-norm residual blocks of ``cell`` (the module docstring's
    equations): a :class:`ResidualStack` of the step-by-step ``cell`` and the
    block-by-block ``layer``.  ``d_model``: width of the residual stream (an input
    embedding ``E (d_model, F)``; None: the cell's ``output_size``, no embedding, the
    first block not residual); ``mlp``: expansion of a gated MLP after each mixer
    (None: none); ``norm``: ``"rms"``, ``"layer"`` or ``"none"``; ``dropout``: rate on
    each branch (layer view with a key); ``activation``: ``"gelu"`` (GeGLU) or
    ``"silu"`` (SwiGLU).  A cell whose ``output_size`` differs from ``d_model`` gets the
    output projection ``P``.  With ``depth=1``, no ``d_model``, MLP, norm or dropout
    there is nothing to add and ``cell`` itself is returned (for any other stack a
    :class:`ResidualStack`)::

        >>> stack = rnnjax.layers.residual_stack(rnnjax.cells.lstm(6), 2, d_model=4, mlp=2.0,
        ...                                      norm="rms")
        >>> params = stack.cell.init(jax.random.key(0), 3)
        >>> ys, carry = stack.layer.apply(params, jnp.ones((2, 5, 3)))
        >>> ys.shape, carry._fields
        ((2, 5, 4), ('h_1', 'c_1', 'h_2', 'c_2'))
    """
    _check_options(cell, depth, d_model, mlp, norm, dropout, activation)
    if depth == 1 and d_model is None and mlp is None and norm == "none" and not dropout:
        return cell
    H = cell.output_size
    D = H if d_model is None else d_model
    embed = d_model is not None
    expanded = None if mlp is None else max(1, int(round(mlp * D)))
    scale = 2.0 / depth
    like = jax.eval_shape(lambda: cell.initial_carry((), jnp.float32))
    block_type = type(like) if hasattr(like, "_fields") else None
    base = like._fields if block_type is not None else ("z",)
    names = tuple(f"{f}_{i + 1}" for i in range(depth) for f in base)
    State = _state_type(names)
    stem = not embed  # the first block reads the inputs, not the stream

    def split(carry):
        vals = list(carry)
        n = len(base)
        parts = [vals[i * n:(i + 1) * n] for i in range(depth)]
        return [block_type(*p) if block_type is not None else p[0] for p in parts]

    def join(parts):
        return State(*[v for p in parts for v in (p if block_type is not None else (p,))])

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        keys = jax.random.split(key, depth + 1)
        params = {}
        if embed:
            params["embed"] = jax.random.normal(keys[0], (D, input_size), jnp.float32)
        blocks = []
        for i in range(depth):
            k_mix, k_proj, k_mlp = jax.random.split(keys[i + 1], 3)
            first = stem and i == 0
            b = {"mixer": cell.init(k_mix, input_size if first else D)}
            if H != D:
                b["proj"] = jax.random.normal(k_proj, (D, H), jnp.float32) * (scale / H) ** 0.5
            if not first and norm != "none":
                b["norm"] = norm_init(norm, D)
            if expanded is not None:
                if norm != "none":
                    b["mlp_norm"] = norm_init(norm, D)
                b["mlp"] = gated_mlp_init(k_mlp, D, expanded, scale)
            blocks.append(b)
        params["blocks"] = blocks
        if norm != "none":
            params["norm"] = norm_init(norm, D)
        return params

    def prepare(params):
        return {**params, "blocks": [{**b, "mixer": cell.prepare(b["mixer"])}
                                     for b in params["blocks"]]}

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return join([cell.initial_carry(batch_shape, dtype) for _ in range(depth)])

    def mix(i, b, x, ys, k):
        """The stream after block ``i`` from its input ``x`` and the mixer's ``ys``."""
        if "proj" in b:
            ys = ys @ b["proj"].T
        if k is not None:
            k, k2 = jax.random.split(k)
            ys = _dropout(k, ys, dropout)
        x = ys if (stem and i == 0) else x + ys
        if expanded is not None:
            m = gated_mlp(b["mlp"], apply_norm(b.get("mlp_norm"), x), activation)
            x = x + (m if k is None else _dropout(k2, m, dropout))
        return x

    def step(w, carry, u):
        x = w["embed"] @ u if embed else u
        parts, new = split(carry), []
        for i, b in enumerate(w["blocks"]):
            c, ys = cell.step(b["mixer"], parts[i], apply_norm(b.get("norm"), x))
            new.append(c)
            x = mix(i, b, x, ys, None)
        return join(new), apply_norm(w.get("norm"), x)

    def input_size(params):
        if embed:
            return params["embed"].shape[-1]
        return cell.input_size(params["blocks"][0]["mixer"])

    project = None
    if cell.project is not None:
        def project(params):
            return {**params, "blocks": [{**b, "mixer": cell.project(b["mixer"])}
                                         for b in params["blocks"]]}

    stack = Cell(init=init, prepare=prepare, initial_carry=initial_carry, step=step,
                 input_size=input_size, output_size=D, name=f"residual({cell.name})",
                 project=project)

    def apply(params, xs, *, carry=None, lengths=None, key=None, **run_options):
        """``xs (*batch, time, F) -> (ys (*batch, time, D), final carry)``: block by
        block, each mixer through ``rnnjax.run(cell, ..., lengths=lengths,
        **run_options)``; outputs past a sequence's length are zero."""
        time_major = run_options.get("time_major", False)
        x = xs @ params["embed"].T if embed else xs
        parts = split(carry) if carry is not None else [None] * depth
        keys = (jax.random.split(key, depth) if key is not None and dropout
                else [None] * depth)
        finals = []
        for i, b in enumerate(params["blocks"]):
            ys, c = run(cell, b["mixer"], apply_norm(b.get("norm"), x), carry=parts[i],
                        lengths=lengths, **run_options)
            finals.append(c)
            x = mix(i, b, x, ys, keys[i])
        y = apply_norm(params.get("norm"), x)
        if lengths is not None:
            T = y.shape[0] if time_major else y.shape[-2]
            live = jnp.arange(T) < jnp.asarray(lengths)[..., None]  # (*batch, T)
            if time_major:
                live = jnp.moveaxis(live, -1, 0)
            y = jnp.where(live[..., None], y, jnp.zeros_like(y))
        return y, join(finals)

    return ResidualStack(stack, Layer(init=init, apply=apply, output_size=D))


def residual_with_readout(cell: Cell, input_size: int, output_size: int,
                          readout: str = "all", *, depth: int = 1,
                          d_model: int | None = None, mlp: float | None = None,
                          norm: str = "none", dropout: float = 0.0,
                          activation: str = "gelu", grad: str = "auto",
                          scan: str = "auto") -> Model:
    """The :class:`rnnjax.layers.readout.Model` of :func:`residual_stack` (``depth`` blocks of
    ``cell``) followed by the linear readout ``W_o y_t + b_o`` of
    :func:`~rnnjax.layers.readout.cell_with_readout` (``N(0, 1/D)``, ``b_o = 0``).
    Params ``{"cell": stack params, "readout": {"W", "b"}}``; ``apply(params, xs,
    key=None)`` runs the block-by-block layer (dropout with ``key``; ``grad`` and
    ``scan`` for every mixer), ``Model.cell`` is the step-by-step stack (decoding,
    stateful tasks, the analyses).  ``depth=1`` with nothing added is
    ``cell_with_readout(cell, ...)`` itself."""
    stack = residual_stack(cell, depth, d_model=d_model, mlp=mlp, norm=norm, dropout=dropout,
                     activation=activation)
    if isinstance(stack, Cell):
        return cell_with_readout(cell, input_size, output_size, readout, grad=grad,
                                 scan=scan)
    return cell_with_readout(stack.cell, input_size, output_size, readout, grad=grad,
                             scan=scan, layer=stack.layer)


__all__ = ["ACTIVATIONS", "NORMS", "ResidualStack", "apply_norm", "gated_mlp",
           "gated_mlp_init", "norm_init", "residual_stack", "residual_with_readout"]
