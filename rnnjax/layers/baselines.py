r"""Non-recurrent baselines for the long-sequence tasks (copy, adding): a WaveNet-style
stack of dilated causal convolutions and a single causal self-attention layer.

Both are pure-function models with the interface of the training runner's cell +
readout model (``rnnjax.layers.readout.Model``): ``init(key) -> params`` and
``apply(params, xs (*batch, T, input_size)) -> outputs`` of shape
``(*batch, T, output_size)`` (``readout="all"``) or ``(*batch, output_size)``
(``readout="last"``, the output at the last step).  ``scan_prefix``, ``step_logits``
and ``cell`` are ``None``: they are not recurrent.  Both are causal: output ``t``
depends on inputs ``0 .. t`` only (tested: no gradient from the future).

Dilated causal convolution stack (van den Oord et al. 2016, WaveNet)::

    conv_d(x)_t = sum_{i=0}^{k-1} W_i x_{t - i d}        (x_s = 0 for s < 0)
    z^0   = W_in x_t                                       (C channels)
    per layer l with dilation d_l:
      f, g  = split(conv_{d_l}(z^{l-1}) + b)               (2C -> C, C)
      u     = tanh(f) * sigmoid(g)                         gated activation
      z^l   = z^{l-1} + W_res u,    s = s + W_skip u       residual and skip paths
    y_t   = W_out relu(s_t) + b_out

The receptive field is ``1 + (k - 1) * sum(d_l)``; the default dilations ``1, 2, 4,
..., 2^(L-1)`` give ``2^L`` with ``k = 2``.

Causal self-attention layer (Vaswani et al. 2017), one pre-norm block::

    e_t = W_in x_t + PE(t)                                 sinusoidal positions, D = d_model
    q, k, v = W_q LN(e), W_k LN(e), W_v LN(e)              per head, D / heads each
    a_{tj} = softmax_{j <= t}(q_t . k_j / sqrt(D / heads))  causal mask
    h_t = e_t + W_o concat_heads(sum_j a_{tj} v_j)
    o_t = h_t + W_2 relu(W_1 LN(h_t) + b_1) + b_2          position-wise MLP (4D)
    y_t = W_y LN(o_t) + b_y

``LN`` is layer normalisation without gain or bias.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.core.checks import check_choice, check_positive_int


class SequenceModel(NamedTuple):
    """Same fields as the runner's ``rnnjax.layers.readout.Model`` (non-recurrent: the last three
    are None)."""

    init: Callable
    apply: Callable
    scan_prefix: Callable | None = None
    step_logits: Callable | None = None
    cell: object | None = None
    name: str = "baseline"


def _normal(key, shape, fan_in):
    return jax.random.normal(key, shape, jnp.float32) / math.sqrt(fan_in)


def _readout(ys, readout):
    return ys[..., -1, :] if readout == "last" else ys


def causal_conv(x, w, dilation):
    """``y_t = sum_i w[i] x_{t - i*dilation}`` with zeros before the start.

    ``x (*batch, T, C_in)``, ``w (k, C_out, C_in)`` -> ``(*batch, T, C_out)``.
    """
    k, T = w.shape[0], x.shape[-2]
    pad = [(0, 0)] * x.ndim
    pad[-2] = ((k - 1) * dilation, 0)
    xp = jnp.pad(x, pad)
    out = 0.0
    for i in range(k):
        start = (k - 1 - i) * dilation  # xp[start + t] = x[t - i * dilation]
        out = out + jax.lax.slice_in_dim(xp, start, start + T, axis=-2) @ w[i].T
    return out


def dilated_conv(input_size: int, output_size: int, channels: int = 32, layers: int = 8,
                 kernel_size: int = 2, dilations: Sequence[int] | None = None,
                 readout: str = "all") -> SequenceModel:
    """WaveNet-style stack of gated, dilated causal convolutions (see the module doc)."""
    for name, v in (("input_size", input_size), ("output_size", output_size),
                    ("channels", channels), ("layers", layers), ("kernel_size", kernel_size)):
        check_positive_int(name, v)
    check_choice("readout", readout, ("all", "last"))
    dilations = tuple(2 ** i for i in range(layers)) if dilations is None else tuple(dilations)
    for d in dilations:
        check_positive_int("dilations entries", d)
    C, k = channels, kernel_size

    def init(key):
        keys = jax.random.split(key, 2 + 3 * len(dilations))
        p = {"in": {"W": _normal(keys[0], (C, input_size), input_size),
                    "b": jnp.zeros((C,), jnp.float32)},
             "out": {"W": _normal(keys[1], (output_size, C), C),
                     "b": jnp.zeros((output_size,), jnp.float32)},
             "layers": []}
        for l in range(len(dilations)):
            k1, k2, k3 = keys[2 + 3 * l: 5 + 3 * l]
            p["layers"].append({"conv": _normal(k1, (k, 2 * C, C), k * C),
                                "b": jnp.zeros((2 * C,), jnp.float32),
                                "res": _normal(k2, (C, C), C), "skip": _normal(k3, (C, C), C)})
        return p

    def apply(params, xs):
        z = xs @ params["in"]["W"].T + params["in"]["b"]
        skip = jnp.zeros_like(z)
        for lp, d in zip(params["layers"], dilations):
            f, g = jnp.split(causal_conv(z, lp["conv"], d) + lp["b"], 2, axis=-1)
            u = jnp.tanh(f) * jax.nn.sigmoid(g)
            z = z + u @ lp["res"].T
            skip = skip + u @ lp["skip"].T
        ys = jax.nn.relu(skip) @ params["out"]["W"].T + params["out"]["b"]
        return _readout(ys, readout)

    return SequenceModel(init=init, apply=apply, name="wavenet")


def receptive_field(kernel_size: int, dilations: Sequence[int]) -> int:
    """``1 + (k - 1) * sum(dilations)``: how many inputs an output can see."""
    return 1 + (kernel_size - 1) * sum(dilations)


def sinusoidal_positions(T: int, D: int):
    """``PE(t)_{2i} = sin(t / 10000^{2i/D})``, ``PE(t)_{2i+1} = cos(...)``; ``(T, D)``."""
    pos = jnp.arange(T, dtype=jnp.float32)[:, None]
    freq = jnp.exp(-math.log(10000.0) * jnp.arange(0, D, 2, dtype=jnp.float32) / D)
    pe = jnp.zeros((T, D), jnp.float32)
    pe = pe.at[:, 0::2].set(jnp.sin(pos * freq))
    return pe.at[:, 1::2].set(jnp.cos(pos * freq[: D // 2]))


def _ln(x, eps=1e-5):
    mu = jnp.mean(x, -1, keepdims=True)
    return (x - mu) * jax.lax.rsqrt(jnp.var(x, -1, keepdims=True) + eps)


def causal_attention(input_size: int, output_size: int, d_model: int = 64, heads: int = 1,
                     readout: str = "all") -> SequenceModel:
    """One causal self-attention block with an MLP (see the module doc)."""
    for name, v in (("input_size", input_size), ("output_size", output_size),
                    ("d_model", d_model), ("heads", heads)):
        check_positive_int(name, v)
    check_choice("readout", readout, ("all", "last"))
    if d_model % heads or d_model % 2:
        raise ValueError(f"d_model must be even and divisible by heads={heads}, "
                         f"got {d_model}")
    D, nh = d_model, heads
    dh = D // nh

    def init(key):
        ks = jax.random.split(key, 8)
        z = lambda n: jnp.zeros((n,), jnp.float32)  # noqa: E731
        return {"in": {"W": _normal(ks[0], (D, input_size), input_size), "b": z(D)},
                "q": _normal(ks[1], (D, D), D), "k": _normal(ks[2], (D, D), D),
                "v": _normal(ks[3], (D, D), D), "o": _normal(ks[4], (D, D), D),
                "mlp1": {"W": _normal(ks[5], (4 * D, D), D), "b": z(4 * D)},
                "mlp2": {"W": _normal(ks[6], (D, 4 * D), 4 * D), "b": z(D)},
                "out": {"W": _normal(ks[7], (output_size, D), D), "b": z(output_size)}}

    def apply(params, xs):
        T = xs.shape[-2]
        e = xs @ params["in"]["W"].T + params["in"]["b"] + sinusoidal_positions(T, D)
        n = _ln(e)
        split = lambda a: a.reshape(a.shape[:-1] + (nh, dh))  # noqa: E731
        q, k, v = (split(n @ params[w].T) for w in ("q", "k", "v"))  # (*b, T, nh, dh)
        s = jnp.einsum("...tnd,...snd->...nts", q, k) / math.sqrt(dh)
        causal = jnp.tril(jnp.ones((T, T), bool))
        a = jax.nn.softmax(jnp.where(causal, s, -jnp.inf), axis=-1)
        att = jnp.einsum("...nts,...snd->...tnd", a, v).reshape(e.shape)
        h = e + att @ params["o"].T
        m = jax.nn.relu(_ln(h) @ params["mlp1"]["W"].T + params["mlp1"]["b"])
        o = h + m @ params["mlp2"]["W"].T + params["mlp2"]["b"]
        ys = _ln(o) @ params["out"]["W"].T + params["out"]["b"]
        return _readout(ys, readout)

    return SequenceModel(init=init, apply=apply, name="attention")


MODELS = {"wavenet": dilated_conv, "attention": causal_attention}


def make(name: str, input_size: int, output_size: int, readout: str = "all",
         hidden: int = 64, **kwargs) -> SequenceModel:
    """Build the baseline called ``name`` (a key of :data:`MODELS`) as the runner builds
    its cell + readout model; ``hidden`` is the channel count (wavenet) or ``d_model``
    (attention)."""
    check_choice("model", name, MODELS)
    width = "channels" if name == "wavenet" else "d_model"
    return MODELS[name](input_size, output_size, readout=readout, **{width: hidden}, **kwargs)


__all__ = ["MODELS", "SequenceModel", "causal_attention", "causal_conv", "dilated_conv",
           "make", "receptive_field", "sinusoidal_positions"]
