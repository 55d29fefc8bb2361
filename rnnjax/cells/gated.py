"""Gated cells: LSTM (optionally layer-normalised) and GRU (PyTorch/cuDNN form)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax import initializers
from rnnjax.cell import Cell, HiddenState, LSTMState, fuse_input_hidden, identity, zeros_carry
from rnnjax.checks import check_choice, check_positive_int

INITS = ("orthogonal", "uniform")


def _gate_params(key, input_size, H, blocks, init):
    """Fused ``W_xh (G*H, F)``, ``W_hh (G*H, H)`` and bias ``b (G*H,)``, per gate block."""
    check_positive_int("input_size", input_size)
    k1, k2, k3 = jax.random.split(key, 3)
    shape_x, shape_h = (blocks * H, input_size), (blocks * H, H)
    if init == "uniform":  # PyTorch: U(-1/sqrt(H), 1/sqrt(H)) everywhere
        u = initializers.uniform(1.0 / math.sqrt(H))
        return u(k1, shape_x), u(k2, shape_h), u(k3, (blocks * H,))
    w_xh = initializers.per_block(initializers.lecun_normal, blocks)(k1, shape_x)
    w_hh = initializers.per_block(initializers.orthogonal, blocks)(k2, shape_h)
    return w_xh, w_hh, jnp.zeros((blocks * H,), jnp.float32)


def _layer_norm(z, gain, bias, eps=1e-5):
    mu = jnp.mean(z, -1, keepdims=True)
    var = jnp.mean(jnp.square(z - mu), -1, keepdims=True)
    return (z - mu) * jax.lax.rsqrt(var + eps) * gain + bias


def lstm(hidden_size: int, forget_bias: float = 1.0, layer_norm: bool = False,
         init: str = "orthogonal") -> Cell:
    r"""Long short-term memory (Hochreiter & Schmidhuber 1997), gate order ``i, f, g, o``.

    Equations (as PyTorch ``nn.LSTM``)::

        z   = W_xh x_t + W_hh h_{t-1} + b                  (4H,), blocks [i, f, g, o]
        i = sigmoid(z_i)   f = sigmoid(z_f)   g = tanh(z_g)   o = sigmoid(z_o)
        c_t = f * c_{t-1} + i * g
        h_t = o * tanh(c_t),                                y_t = h_t

    With ``layer_norm=True`` (Ba, Kiros & Hinton 2016)::

        z   = LN(W_xh x_t; gx, bx) + LN(W_hh h_{t-1}; gh, bh) + b
        h_t = o * tanh(LN(c_t; gc, bc))

    where ``LN(v; g, b) = (v - mean(v)) / sqrt(var(v) + 1e-5) * g + b`` over the whole
    vector (gains start at 1, biases at 0).

    Params: ``W_xh (4H, F)``, ``W_hh (4H, H)``, ``b (4H,)`` (PyTorch's ``b_ih + b_hh``).
    Initialisation: ``"orthogonal"`` (default) gives each gate block of ``W_hh`` its own
    Haar-orthogonal matrix and each block of ``W_xh`` variance ``1/F``; ``"uniform"``
    is PyTorch's ``U(-1/sqrt(H), 1/sqrt(H))``.  Either way the forget block of ``b``
    starts at ``forget_bias`` (Jozefowicz et al. 2015) and the rest of ``b`` at 0 (for
    ``"orthogonal"``).
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, INITS)
    H = hidden_size

    def init_fn(key, input_size):
        w_xh, w_hh, b = _gate_params(key, input_size, H, 4, init)
        b = b.at[H:2 * H].set(jnp.asarray(forget_bias, b.dtype))
        p = {"W_xh": w_xh, "W_hh": w_hh, "b": b}
        if layer_norm:
            for name, n in (("x", 4 * H), ("h", 4 * H), ("c", H)):
                p[f"ln_{name}_gain"] = jnp.ones((n,), jnp.float32)
                p[f"ln_{name}_bias"] = jnp.zeros((n,), jnp.float32)
        return p

    def step(w, carry, x):
        if layer_norm:
            z = (_layer_norm(x @ w["W_xh"].T, w["ln_x_gain"], w["ln_x_bias"])
                 + _layer_norm(carry.h @ w["W_hh"].T, w["ln_h_gain"], w["ln_h_bias"]) + w["b"])
        else:
            z = jnp.concatenate([x, carry.h]) @ w["W"] + w["b"]
        i, f, g, o = jnp.split(z, 4)
        c = jax.nn.sigmoid(f) * carry.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        c_out = _layer_norm(c, w["ln_c_gain"], w["ln_c_bias"]) if layer_norm else c
        h = jax.nn.sigmoid(o) * jnp.tanh(c_out)
        return LSTMState(h, c), h

    return Cell(
        init=init_fn,
        prepare=identity if layer_norm else fuse_input_hidden,
        initial_carry=zeros_carry(LSTMState, H),
        step=step,
        input_size=lambda p: p["W_xh"].shape[-1],
        output_size=H,
        name="lstm-ln" if layer_norm else "lstm",
        recurrent_matrix=lambda p: p["W_hh"],
    )


def gru(hidden_size: int, init: str = "orthogonal") -> Cell:
    r"""Gated recurrent unit (Cho et al. 2014) in the PyTorch / cuDNN form, gates ``r, z, n``.

    Equations::

        a = W_xh x_t + b          u = W_hh h_{t-1}         (3H,), blocks [r, z, n]
        r = sigmoid(a_r + u_r)    z = sigmoid(a_z + u_z)
        n = tanh(a_n + r * (u_n + b_hn))
        h_t = (1 - z) * n + z * h_{t-1},                    y_t = h_t

    The reset gate multiplies ``W_hn h + b_hn`` (cuDNN form), not ``h`` itself.
    Params: ``W_xh (3H, F)``, ``W_hh (3H, H)``, ``b (3H,)`` (PyTorch's ``b_ih`` plus
    ``b_hh`` on the r and z blocks) and ``b_hn (H,)``.  Initialisation as
    :func:`lstm` (``b_hn = 0`` for ``"orthogonal"``).
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, INITS)
    H = hidden_size

    def init_fn(key, input_size):
        k1, k2 = jax.random.split(key)
        w_xh, w_hh, b = _gate_params(k1, input_size, H, 3, init)
        if init == "uniform":
            b_hn = initializers.uniform(1.0 / math.sqrt(H))(k2, (H,))
        else:
            b_hn = jnp.zeros((H,), jnp.float32)
        return {"W_xh": w_xh, "W_hh": w_hh, "b": b, "b_hn": b_hn}

    def step(w, carry, x):
        a, u = x @ w["W_xh"].T + w["b"], carry.h @ w["W_hh"].T
        a_r, a_z, a_n = jnp.split(a, 3)
        u_r, u_z, u_n = jnp.split(u, 3)
        r = jax.nn.sigmoid(a_r + u_r)
        z = jax.nn.sigmoid(a_z + u_z)
        n = jnp.tanh(a_n + r * (u_n + w["b_hn"]))
        h = (1.0 - z) * n + z * carry.h
        return HiddenState(h), h

    return Cell(
        init=init_fn,
        prepare=identity,
        initial_carry=zeros_carry(HiddenState, H),
        step=step,
        input_size=lambda p: p["W_xh"].shape[-1],
        output_size=H,
        name="gru",
        recurrent_matrix=lambda p: p["W_hh"],
    )
