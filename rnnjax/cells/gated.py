"""Gated cells: LSTM (optionally layer-normalised) and GRU (PyTorch/cuDNN form)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.core import initializers
from rnnjax.core.cell import (
    Backward,
    Cell,
    HiddenState,
    LSTMState,
    chunk_outer,
    fuse_input_hidden,
    fused_grads,
    identity,
    where_live,
    zeros_carry,
)
from rnnjax.core.checks import check_choice, check_positive_int
from rnnjax.core.ops import layer_norm as _layer_norm

__all__ = ["INITS", "gate_params", "gru", "gru_backward", "lstm", "lstm_backward"]

INITS = ("orthogonal", "uniform")


def gate_params(key, input_size, H, blocks, init, biases: int = 1):
    """Fused ``W_xh (G*H, F)``, ``W_hh (G*H, H)`` and bias ``b (G*H,)``, per gate block;
    ``biases=2`` draws ``init="uniform"``'s bias as PyTorch's sum of two
    (:func:`rnnjax.initializers.torch_biases`)."""
    check_positive_int("input_size", input_size)
    k1, k2, k3 = jax.random.split(key, 3)
    shape_x, shape_h = (blocks * H, input_size), (blocks * H, H)
    if init == "uniform":  # PyTorch: U(-1/sqrt(H), 1/sqrt(H)) everywhere
        u = initializers.uniform(1.0 / math.sqrt(H))
        b = (initializers.torch_biases(k3, blocks * H, H) if biases == 2
             else u(k3, (blocks * H,)))
        return u(k1, shape_x), u(k2, shape_h), b
    w_xh = initializers.per_block(initializers.lecun_normal, blocks)(k1, shape_x)
    w_hh = initializers.per_block(initializers.orthogonal, blocks)(k2, shape_h)
    return w_xh, w_hh, jnp.zeros((blocks * H,), jnp.float32)


def _lstm_gates(z):
    zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)


def lstm_backward() -> Backward:
    r"""The (plain) LSTM's hand-written BPTT (:class:`rnnjax.core.cell.Backward`).

    The driver stores ``(h_t, c_t)`` (the forward is the cell's own ``step``); per chunk the gates
    are recomputed from
    ``[x_t, h_{t-1}] @ W + b`` in one matmul.  One reverse step, with ``g_t, gc_t`` the
    gradients of ``h_t, c_t`` from the future::

        dh_t  = g_t + dy_t
        do    = dh_t * tanh(c_t)
        dc_t  = gc_t + dh_t * o * (1 - tanh(c_t)^2)
        di = dc_t * g    df = dc_t * c_{t-1}    dg = dc_t * i
        delta_t = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]    (4H,)
        g_{t-1}  = W_hh^T delta_t          gc_{t-1} = dc_t * f

    and the weight gradients of the fused step (:func:`rnnjax.core.cell.fused_grads`).
    """

    def recompute(w):
        W, b = w["W"], w["b"]

        def gates(xs, prev, cur):
            i, f, g, o = _lstm_gates(jnp.concatenate([xs, prev[0]], -1) @ W + b)
            return prev[1], i, f, g, o, jnp.tanh(cur[1])

        return gates

    def body(w, carry, inp):
        gh, gc = carry
        c_prev, i_t, f_t, g_t, o_t, tc_t, dy_t, live_t = inp
        dh = gh + dy_t
        do = dh * tc_t
        dc = gc + dh * o_t * (1.0 - tc_t * tc_t)
        delta = jnp.concatenate([
            dc * g_t * i_t * (1.0 - i_t),
            dc * c_prev * f_t * (1.0 - f_t),
            dc * i_t * (1.0 - g_t * g_t),
            do * o_t * (1.0 - o_t),
        ], axis=-1)
        delta = where_live(live_t, delta, 0.0)
        gh_prev = where_live(live_t, delta @ w["W_hh"], gh)
        gc_prev = where_live(live_t, dc * f_t, gc)
        return (gh_prev, gc_prev), delta

    # faster than autodiff on CPU: 0.75-0.95x (benchmarks/README.md, "bptt" and "peers")
    return Backward(recompute=recompute, body=body, grads=fused_grads, faster_on=("cpu",))


def _gru_gates(w):
    """``(x, h_{t-1}) -> (r, z, n, m = u_n + b_hn)`` for one step or a whole chunk."""
    W_xhT, W_hhT, b, b_hn = w["W_xh"].T, w["W_hh"].T, w["b"], w["b_hn"]

    def gates(x, h):
        a_r, a_z, a_n = jnp.split(x @ W_xhT + b, 3, axis=-1)
        u_r, u_z, u_n = jnp.split(h @ W_hhT, 3, axis=-1)
        r = jax.nn.sigmoid(a_r + u_r)
        m = u_n + b_hn
        return r, jax.nn.sigmoid(a_z + u_z), jnp.tanh(a_n + r * m), m

    return gates


def gru_backward() -> Backward:
    r"""The GRU's hand-written BPTT (:class:`rnnjax.core.cell.Backward`).  With
    ``m = u_n + b_hn`` (``u = W_hh h_{t-1}``), one reverse step::

        dh_t = g_t + dy_t
        dn = dh_t * (1 - z)        dz = dh_t * (h_{t-1} - n)
        dn~ = dn * (1 - n^2)       dr = dn~ * m
        delta_a = [dr * r(1-r), dz * z(1-z), dn~]        gradient of a = W_xh x_t + b
        delta_u = [dr * r(1-r), dz * z(1-z), dn~ * r]    gradient of u = W_hh h_{t-1}
        g_{t-1} = W_hh^T delta_u + dh_t * z
        dW_xh = sum delta_a x^T   db = sum delta_a   dW_hh = sum delta_u h_{t-1}^T
        db_hn = sum (dn~ * r)
    """

    def recompute(w):
        gates = _gru_gates(w)
        return lambda xs, prev, cur: (prev[0],) + gates(xs, prev[0])

    def body(w, g, inp):
        (gh,) = g
        h_p, r_t, z_t, n_t, m_t, dy_t, live_t = inp
        dh = gh + dy_t
        dnt = dh * (1.0 - z_t) * (1.0 - n_t * n_t)
        dar = dnt * m_t * r_t * (1.0 - r_t)
        daz = dh * (h_p - n_t) * z_t * (1.0 - z_t)
        # delta_a differs from delta_u only in the n block (dn~ instead of dn~ * r)
        delta_a = where_live(live_t, jnp.concatenate([dar, daz, dnt], axis=-1), 0.0)
        delta_u = where_live(live_t, jnp.concatenate([dar, daz, dnt * r_t], axis=-1), 0.0)
        g_prev = where_live(live_t, delta_u @ w["W_hh"] + dh * z_t, gh)
        return (g_prev,), (delta_a, delta_u)

    def grads(w, d, xs, prev):
        d_a, d_u = d
        H = prev[0].shape[-1]
        dw = {"W_xh": chunk_outer(d_a, xs), "W_hh": chunk_outer(d_u, prev[0]),
              "b": d_a.sum((0, 1)), "b_hn": d_u[..., 2 * H:].sum((0, 1))}
        return dw, d_a @ w["W_xh"]

    return Backward(recompute=recompute, body=body, grads=grads)


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
    is PyTorch's: weights ``U(-1/sqrt(H), 1/sqrt(H))`` and ``b`` the sum of two such
    draws, ``b_ih + b_hh`` (:func:`rnnjax.initializers.torch_biases`).  Either way the
    forget block of ``b`` starts at ``forget_bias`` (Jozefowicz et al. 2015) and the
    rest of ``b`` at 0 (for ``"orthogonal"``).

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.lstm(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, INITS)
    H = hidden_size

    def init_fn(key, input_size):
        w_xh, w_hh, b = gate_params(key, input_size, H, 4, init, biases=2)
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
        i, f, g, o = _lstm_gates(z)
        c = f * carry.c + i * g
        c_out = _layer_norm(c, w["ln_c_gain"], w["ln_c_bias"]) if layer_norm else c
        h = o * jnp.tanh(c_out)
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
        backward=None if layer_norm else lstm_backward(),
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
    :func:`lstm` (``b_hn = 0`` for ``"orthogonal"``); ``"uniform"`` draws, as
    PyTorch, ``b_ih`` and ``b_hh`` each ``U(-1/sqrt(H), 1/sqrt(H))``: ``b`` is
    ``b_ih + [b_hh_r, b_hh_z, 0]`` and ``b_hn`` the n block of ``b_hh``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.gru(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, INITS)
    H = hidden_size

    def init_fn(key, input_size):
        k1, k2 = jax.random.split(key)
        w_xh, w_hh, b = gate_params(k1, input_size, H, 3, init)
        if init == "uniform":  # b = b_ih + b_hh on r, z; the n block of b_hh is b_hn
            b_hh = initializers.uniform(1.0 / math.sqrt(H))(k2, (3 * H,))
            b, b_hn = b + b_hh.at[2 * H:].set(0.0), b_hh[2 * H:]
        else:
            b_hn = jnp.zeros((H,), jnp.float32)
        return {"W_xh": w_xh, "W_hh": w_hh, "b": b, "b_hn": b_hn}

    def step(w, carry, x):
        _, z, n, _ = _gru_gates(w)(x, carry.h)
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
        backward=gru_backward(),
    )
