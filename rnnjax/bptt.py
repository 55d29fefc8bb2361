r"""Hand-written backpropagation through time (BPTT) for the Elman, LSTM and GRU cells.

Each cell's backward pass is written out from its equations (the notation of the cell
docstrings in :mod:`rnnjax.cells`), checked against ``jax.grad`` in the tests, and
offered for training as a ``jax.custom_vjp`` (``rnnjax.run(..., grad="manual")``).

Shapes (one sequence of a batch of ``B``; arrays here are time-major ``(T, B, ...)``):
``x_t (F,)``, ``h_t (H,)``, ``W_xh (G*H, F)``, ``W_hh (G*H, H)``, ``b (G*H,)`` with
``G = 1`` (Elman), ``4`` (LSTM) or ``3`` (GRU).  Upstream cotangents: ``dy_t = dL/dy_t``
for every ``t`` and ``dL/d(final carry)``.  ``g_t`` is the gradient arriving at the
carry *after* step ``t`` from the future (``g_{T-1}`` = dL/d(final carry)), and
``dh_t = g_t + dy_t`` the total gradient of ``h_t``.

How every backward is organised:

1. forward ``lax.scan``: the input half ``W_xh x_t + b`` of every pre-activation is one
   matmul over all ``T*B`` rows before the scan; the scan does only ``W_hh h_{t-1}`` and
   stores what the backward needs (``h_{t-1}`` and the gate values);
2. reverse ``lax.scan``: propagates ``g`` (and the memory gradient for the LSTM) one step
   at a time with the cell's Jacobian written out, and emits the pre-activation deltas
   ``delta_t = dL/dz_t``;
3. after the scan, ONE matmul per parameter over all ``T*B`` rows::

       dW_xh = sum_t delta_t x_t^T      dW_hh = sum_t delta_t h_{t-1}^T
       db    = sum_t delta_t            dx_t  = W_xh^T delta_t

   (accumulating these inside the reverse scan would cost a rank-B update per step).

Engine semantics are honoured exactly (see :func:`rnnjax.sequence.scan_cell`):

* ``lengths``: past ``t >= L`` the carry is frozen and ``y_t = 0``, so there the step
  contributes nothing (``delta_t = 0``) and the carry gradient passes through unchanged:
  ``g_{t-1} = g_t``.
* ``truncate = k``: the gradient through the carry is cut before steps ``k, 2k, ...``
  (``t > 0, t % k == 0``): ``g_{t-1} = 0`` there (including the pass-through of frozen
  steps, as in the engine).  Parameter gradients keep every step's local term.
* ``reverse``: sequences are flipped within their lengths before and after, as the
  engine does; a flip is its own transpose, so ``dy`` is flipped in and ``dx`` out.

Which backward belongs to a cell is looked up by ``cell.name`` in :data:`KINDS`
(``"elman"``, ``"elman-relu"``, ``"elman-identity"``, ``"lstm"``, ``"gru"``): these are
the names the factories of :mod:`rnnjax.cells` give, the Elman activation is recovered
from the name, and no field is added to :class:`rnnjax.Cell`.  Those cells' ``prepare``
is the identity, so the gradient with respect to ``params`` is that of the weights.
The layer-normalised LSTM (``"lstm-ln"``) has no hand-written backward yet.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from rnnjax.cell import Cell, HiddenState, LSTMState

# cell.name -> (family, elman activation)
KINDS = {
    "elman": ("elman", "tanh"),
    "elman-relu": ("elman", "relu"),
    "elman-identity": ("elman", "identity"),
    "lstm": ("lstm", None),
    "gru": ("gru", None),
}

# activation -> (f, f' written in terms of h = f(z))
_ACT = {
    "tanh": (jnp.tanh, lambda h: 1.0 - h * h),
    "relu": (jax.nn.relu, lambda h: (h > 0).astype(h.dtype)),
    "identity": (lambda z: z, lambda h: jnp.ones_like(h)),
}


class BPTT(NamedTuple):
    """Result of :func:`bptt`: the forward outputs and every gradient.

    ``ys``/``final_carry`` as :func:`rnnjax.run` returns them; ``d_params`` has the
    structure of ``params``, ``d_xs`` the shape of ``xs``, ``d_carry`` that of the
    initial carry.
    """

    ys: Any
    final_carry: Any
    d_params: Any
    d_xs: Any
    d_carry: Any


def kind_of(cell: Cell) -> str:
    """The key of :data:`KINDS` for ``cell``; ``ValueError`` if it has no manual BPTT."""
    if not isinstance(cell, Cell):
        raise TypeError(f"cell must be an rnnjax.Cell, got {type(cell).__name__}")
    if cell.name == "lstm-ln":
        raise ValueError(
            "grad='manual' (hand-written BPTT) is not supported for the layer-normalised "
            "LSTM (cell 'lstm-ln'); use grad='auto'")
    if cell.name not in KINDS:
        raise ValueError(
            f"hand-written BPTT exists for the cells named {sorted(KINDS)}, got the "
            f"{cell.name!r} cell; use grad='auto'")
    return cell.name


# --------------------------------------------------------------------------- helpers

def _keep(live_t, new, old):
    """``new`` where the step is live (``live_t (B,)``), else ``old``."""
    return new if live_t is None else jnp.where(live_t[:, None], new, old)


def _cut(cut_t, g):
    return g if cut_t is None else jnp.where(cut_t, jnp.zeros_like(g), g)


def _param_grads(deltas, xs, hprev):
    """``sum_t delta_t x_t^T``, ``sum_t delta_t h_{t-1}^T``, ``sum_t delta_t``: one matmul each."""
    T, B = deltas.shape[:2]
    d = deltas.reshape(T * B, -1)
    return (d.T @ xs.reshape(T * B, -1), d.T @ hprev.reshape(T * B, -1), d.sum(0))


# --------------------------------------------------------------------------- Elman

def _elman_forward(params, carry, xs, live, act, unroll):
    f, _ = _ACT[act]
    W_hh = params["W_hh"]
    a = xs @ params["W_xh"].T + params["b"]  # (T, B, H): W_xh x_t + b, all t at once

    def body(h, inp):
        a_t, live_t = inp
        h_new = f(a_t + h @ W_hh.T)
        return _keep(live_t, h_new, h), (h, h_new)

    h_T, (hprev, hs) = lax.scan(body, carry.h, (a, live), unroll=unroll)
    ys = hs if live is None else jnp.where(live[..., None], hs, 0.0)
    return ys, HiddenState(h_T), (hprev, hs)


def _elman_backward(params, xs, res, live, cut, dys, dfinal, act, unroll):
    r"""Elman BPTT.  Forward ``z_t = W_xh x_t + W_hh h_{t-1} + b``, ``h_t = f(z_t)``::

        dh_t    = g_t + dy_t
        delta_t = dh_t * f'(z_t)      f' = 1 - h_t^2 (tanh), [h_t > 0] (relu), 1 (identity)
        g_{t-1} = W_hh^T delta_t
    """
    _, fprime = _ACT[act]
    W_hh = params["W_hh"]
    hprev, hs = res

    def body(g, inp):
        h_t, dy_t, live_t, cut_t = inp
        delta = (g + dy_t) * fprime(h_t)
        if live_t is not None:
            delta = jnp.where(live_t[:, None], delta, 0.0)
        g_prev = _cut(cut_t, _keep(live_t, delta @ W_hh, g))
        return g_prev, delta

    g0, deltas = lax.scan(body, dfinal.h, (hs, dys, live, cut), reverse=True, unroll=unroll)
    dW_xh, dW_hh, db = _param_grads(deltas, xs, hprev)
    grads = {"W_xh": dW_xh, "W_hh": dW_hh, "b": db}
    return grads, deltas @ params["W_xh"], HiddenState(g0), deltas


# --------------------------------------------------------------------------- LSTM

def _lstm_forward(params, carry, xs, live, act, unroll):
    W_hh = params["W_hh"]
    a = xs @ params["W_xh"].T + params["b"]  # (T, B, 4H)

    def body(state, inp):
        a_t, live_t = inp
        h, c = state
        z = a_t + h @ W_hh.T
        zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
        i, f, g, o = jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)
        c_new = f * c + i * g
        tc = jnp.tanh(c_new)
        h_new = o * tc
        new = LSTMState(_keep(live_t, h_new, h), _keep(live_t, c_new, c))
        return new, (h, c, i, f, g, o, tc, h_new)

    final, (hprev, cprev, i, f, g, o, tc, hs) = lax.scan(body, carry, (a, live), unroll=unroll)
    ys = hs if live is None else jnp.where(live[..., None], hs, 0.0)
    return ys, LSTMState(*final), (hprev, cprev, i, f, g, o, tc)


def _lstm_backward(params, xs, res, live, cut, dys, dfinal, act, unroll):
    r"""LSTM BPTT.  With ``g_t, gc_t`` the gradients of ``h_t, c_t`` from the future::

        dh_t  = g_t + dy_t
        do    = dh_t * tanh(c_t)
        dc_t  = gc_t + dh_t * o * (1 - tanh(c_t)^2)
        di = dc_t * g    df = dc_t * c_{t-1}    dg = dc_t * i
        delta_t = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]    (4H,)
        g_{t-1}  = W_hh^T delta_t          gc_{t-1} = dc_t * f
    """
    W_hh = params["W_hh"]
    hprev, cprev, i, f, g, o, tc = res

    def body(carry, inp):
        gh, gc = carry
        c_prev, i_t, f_t, g_t, o_t, tc_t, dy_t, live_t, cut_t = inp
        dh = gh + dy_t
        do = dh * tc_t
        dc = gc + dh * o_t * (1.0 - tc_t * tc_t)
        delta = jnp.concatenate([
            dc * g_t * i_t * (1.0 - i_t),
            dc * c_prev * f_t * (1.0 - f_t),
            dc * i_t * (1.0 - g_t * g_t),
            do * o_t * (1.0 - o_t),
        ], axis=-1)
        if live_t is not None:
            delta = jnp.where(live_t[:, None], delta, 0.0)
        gh_prev = _cut(cut_t, _keep(live_t, delta @ W_hh, gh))
        gc_prev = _cut(cut_t, _keep(live_t, dc * f_t, gc))
        return (gh_prev, gc_prev), delta

    (gh0, gc0), deltas = lax.scan(
        body, (dfinal.h, dfinal.c), (cprev, i, f, g, o, tc, dys, live, cut),
        reverse=True, unroll=unroll)
    dW_xh, dW_hh, db = _param_grads(deltas, xs, hprev)
    grads = {"W_xh": dW_xh, "W_hh": dW_hh, "b": db}
    return grads, deltas @ params["W_xh"], LSTMState(gh0, gc0), deltas


# --------------------------------------------------------------------------- GRU

def _gru_forward(params, carry, xs, live, act, unroll):
    W_hh, b_hn = params["W_hh"], params["b_hn"]
    a = xs @ params["W_xh"].T + params["b"]  # (T, B, 3H)

    def body(h, inp):
        a_t, live_t = inp
        a_r, a_z, a_n = jnp.split(a_t, 3, axis=-1)
        u_r, u_z, u_n = jnp.split(h @ W_hh.T, 3, axis=-1)
        r = jax.nn.sigmoid(a_r + u_r)
        z = jax.nn.sigmoid(a_z + u_z)
        m = u_n + b_hn
        n = jnp.tanh(a_n + r * m)
        h_new = (1.0 - z) * n + z * h
        return _keep(live_t, h_new, h), (h, r, z, n, m, h_new)

    h_T, (hprev, r, z, n, m, hs) = lax.scan(body, carry.h, (a, live), unroll=unroll)
    ys = hs if live is None else jnp.where(live[..., None], hs, 0.0)
    return ys, HiddenState(h_T), (hprev, r, z, n, m)


def _gru_backward(params, xs, res, live, cut, dys, dfinal, act, unroll):
    r"""GRU BPTT.  With ``m = u_n + b_hn`` (``u = W_hh h_{t-1}``)::

        dh_t = g_t + dy_t
        dn = dh_t * (1 - z)        dz = dh_t * (h_{t-1} - n)
        dn~ = dn * (1 - n^2)       dr = dn~ * m
        delta_a = [dr * r(1-r), dz * z(1-z), dn~]        gradient of a = W_xh x_t + b
        delta_u = [dr * r(1-r), dz * z(1-z), dn~ * r]    gradient of u = W_hh h_{t-1}
        g_{t-1} = W_hh^T delta_u + dh_t * z
        dW_xh = sum delta_a x^T   db = sum delta_a   dW_hh = sum delta_u h_{t-1}^T
        db_hn = sum (dn~ * r)
    """
    W_hh = params["W_hh"]
    hprev, r, z, n, m = res
    H = hprev.shape[-1]

    def body(g, inp):
        h_p, r_t, z_t, n_t, m_t, dy_t, live_t, cut_t = inp
        dh = g + dy_t
        dnt = dh * (1.0 - z_t) * (1.0 - n_t * n_t)
        dar = dnt * m_t * r_t * (1.0 - r_t)
        daz = dh * (h_p - n_t) * z_t * (1.0 - z_t)
        if live_t is not None:
            dnt = jnp.where(live_t[:, None], dnt, 0.0)
        delta_u = jnp.concatenate([dar, daz, dnt * r_t], axis=-1)
        if live_t is not None:
            delta_u = jnp.where(live_t[:, None], delta_u, 0.0)
        g_prev = _cut(cut_t, _keep(live_t, delta_u @ W_hh + dh * z_t, g))
        return g_prev, (delta_u, dnt)

    g0, (d_u, d_nt) = lax.scan(body, dfinal.h, (hprev, r, z, n, m, dys, live, cut),
                               reverse=True, unroll=unroll)
    # delta_a differs from delta_u only in the n block (dn~ instead of dn~ * r)
    d_a = jnp.concatenate([d_u[..., :2 * H], d_nt], axis=-1)
    T, B = d_a.shape[:2]
    du = d_u.reshape(T * B, -1)
    da = d_a.reshape(T * B, -1)
    grads = {"W_xh": da.T @ xs.reshape(T * B, -1), "W_hh": du.T @ hprev.reshape(T * B, -1),
             "b": da.sum(0), "b_hn": du[:, 2 * H:].sum(0)}
    return grads, d_a @ params["W_xh"], HiddenState(g0), d_a


_FAMILIES = {
    "elman": (_elman_forward, _elman_backward),
    "lstm": (_lstm_forward, _lstm_backward),
    "gru": (_gru_forward, _gru_backward),
}


# --------------------------------------------------------------------------- drivers

def _flip(a, lengths):
    from rnnjax.sequence import flip_sequences
    return flip_sequences(a, lengths)


def _forward(kind, params, carry, xs, lengths, reverse, unroll):
    """Time-major forward: ``xs (T, B, F)``; returns ``(ys, final, saved)``."""
    family, act = KINDS[kind]
    if reverse:
        xs = _flip(xs, lengths)
    T = xs.shape[0]
    live = None if lengths is None else jnp.arange(T)[:, None] < lengths[None, :]
    ys, final, res = _FAMILIES[family][0](params, carry, xs, live, act, unroll)
    if reverse:
        ys = _flip(ys, lengths)
    return ys, final, (xs, res)


def _backward(kind, params, saved, lengths, reverse, truncate, unroll, dys, dfinal):
    """Time-major backward; returns ``(d_params, d_xs, d_carry, deltas)``."""
    family, act = KINDS[kind]
    xs, res = saved
    T = xs.shape[0]
    live = None if lengths is None else jnp.arange(T)[:, None] < lengths[None, :]
    cut = None
    if truncate is not None:
        t = jnp.arange(T)
        cut = (t % truncate == 0) & (t > 0)
    if reverse:
        dys = _flip(dys, lengths)
    grads, dxs, dcarry, deltas = _FAMILIES[family][1](
        params, xs, res, live, cut, dys, dfinal, act, unroll)
    if reverse:
        dxs = _flip(dxs, lengths)
    return grads, dxs, dcarry, deltas


def _like(tree, ref):
    return jax.tree.map(lambda a, r: a.astype(jnp.result_type(r)), tree, ref)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _manual_scan(kind, reverse, truncate, unroll, params, carry, xs, lengths):
    ys, final, _ = _forward(kind, params, carry, xs, lengths, reverse, unroll)
    return ys, final


def _manual_scan_fwd(kind, reverse, truncate, unroll, params, carry, xs, lengths):
    ys, final, saved = _forward(kind, params, carry, xs, lengths, reverse, unroll)
    return (ys, final), (params, carry, saved, lengths)


def _manual_scan_bwd(kind, reverse, truncate, unroll, res, cotangents):
    params, carry, saved, lengths = res
    dys, dfinal = cotangents
    grads, dxs, dcarry, _ = _backward(kind, params, saved, lengths, reverse, truncate,
                                      unroll, dys, dfinal)
    xs_ref = saved[0]
    return (_like(grads, params), _like(dcarry, carry), dxs.astype(xs_ref.dtype), None)


_manual_scan.defvjp(_manual_scan_fwd, _manual_scan_bwd)


def scan_manual(cell, params, carry, xs, lengths=None, *, reverse=False, truncate=None,
                unroll=1):
    """Drop-in for :func:`rnnjax.sequence.scan_cell` whose gradient is the hand-written
    BPTT (a ``jax.custom_vjp``).  Time-major ``xs (T, B, F)``; carry leaves ``(B, H)``.
    Used by ``rnnjax.run(..., grad="manual")``."""
    kind = kind_of(cell)
    dtype = jnp.result_type(xs, *jax.tree.leaves(params))
    params = jax.tree.map(lambda a: a.astype(dtype), params) if any(
        a.dtype != dtype for a in jax.tree.leaves(params)) else params
    return _manual_scan(kind, bool(reverse), truncate, unroll, params, carry, xs, lengths)


@partial(jax.jit, static_argnames=("kind", "reverse", "truncate"))
def _bptt_flat(kind, params, carry, xs, lengths, dys, dfinal, *, reverse, truncate):
    ys, final, saved = _forward(kind, params, carry, xs, lengths, reverse, 1)
    grads, dxs, dcarry, _ = _backward(kind, params, saved, lengths, reverse, truncate, 1,
                                      dys, dfinal)
    return ys, final, grads, dxs, dcarry


def bptt(cell: Cell, params, xs, dys=None, dcarry=None, *, carry=None, lengths=None,
         truncate: int | None = None, reverse: bool = False) -> BPTT:
    """Run ``cell`` forward over ``xs`` and backpropagate by hand.

    Args:
      cell: an Elman (any activation), LSTM or GRU cell (see :data:`KINDS`).
      params: its params.
      xs: ``(*batch, T, F)`` as for :func:`rnnjax.run`.
      dys: ``dL/dy_t`` of shape ``(*batch, T, H)``; zeros when None.
      dcarry: ``dL/d(final carry)`` with the structure of the carry; zeros when None.
      carry, lengths, truncate, reverse: as for :func:`rnnjax.run`.

    Returns:
      :class:`BPTT` ``(ys, final_carry, d_params, d_xs, d_carry)``: the gradients of
      ``L = sum(dys * ys) + sum(dcarry * final_carry)`` (any loss, by the chain rule)
      with respect to the params, every input ``x_t`` and the initial carry.
    """
    from rnnjax.sequence import _check_inputs

    _check_inputs(cell, params, xs, carry, lengths, False, truncate, 1)
    kind = kind_of(cell)
    xs = jnp.asarray(xs)
    batch_shape, (T, F) = xs.shape[:-2], xs.shape[-2:]
    B = math.prod(batch_shape)
    H = cell.output_size
    flat = lambda a: a.reshape((B,) + a.shape[len(batch_shape):])  # noqa: E731
    unflat = lambda a: a.reshape(batch_shape + a.shape[1:])  # noqa: E731
    xs_t = jnp.moveaxis(xs, -2, 0).reshape(T, B, F)
    carry = (cell.initial_carry((B,), xs.dtype) if carry is None
             else jax.tree.map(flat, carry))
    if dys is None:
        dys_t = jnp.zeros((T, B, H), xs.dtype)
    else:
        dys = jnp.asarray(dys)
        if dys.shape != batch_shape + (T, H):
            raise ValueError(f"dys must have the shape of ys {batch_shape + (T, H)}, "
                             f"got {dys.shape}")
        dys_t = jnp.moveaxis(dys, -2, 0).reshape(T, B, H)
    if dcarry is None:
        dcarry = jax.tree.map(jnp.zeros_like, carry)
    else:
        if jax.tree.structure(dcarry) != jax.tree.structure(carry):
            raise ValueError(f"dcarry must have the structure of the carry "
                             f"{jax.tree.structure(carry)}, got {jax.tree.structure(dcarry)}")
        dcarry = jax.tree.map(lambda a: flat(jnp.asarray(a)), dcarry)
    if lengths is not None:
        lengths = jnp.asarray(lengths).reshape(B)
    ys, final, grads, dxs, dcarry0 = _bptt_flat(
        kind, params, carry, xs_t, lengths, dys_t, dcarry, reverse=bool(reverse),
        truncate=truncate)
    ys = jnp.moveaxis(ys.reshape((T,) + batch_shape + (H,)), 0, -2)
    dxs = jnp.moveaxis(dxs.reshape((T,) + batch_shape + (F,)), 0, -2)
    return BPTT(ys, jax.tree.map(unflat, final), grads, dxs, jax.tree.map(unflat, dcarry0))


def elman_bptt(params, xs, dys=None, dcarry=None, *, activation="tanh", **kwargs) -> BPTT:
    """:func:`bptt` for the Elman cell ``h_t = f(W_xh x_t + W_hh h_{t-1} + b)``."""
    from rnnjax.cells import elman
    return bptt(elman(params["W_hh"].shape[-1], activation), params, xs, dys, dcarry, **kwargs)


def lstm_bptt(params, xs, dys=None, dcarry=None, **kwargs) -> BPTT:
    """:func:`bptt` for the (plain) LSTM cell, gate order ``i, f, g, o``."""
    from rnnjax.cells import lstm
    return bptt(lstm(params["W_hh"].shape[-1]), params, xs, dys, dcarry, **kwargs)


def gru_bptt(params, xs, dys=None, dcarry=None, **kwargs) -> BPTT:
    """:func:`bptt` for the GRU cell (cuDNN form, gates ``r, z, n``)."""
    from rnnjax.cells import gru
    return bptt(gru(params["W_hh"].shape[-1]), params, xs, dys, dcarry, **kwargs)


# --------------------------------------------------------------------------- teaching

def explain(spec: dict) -> dict:
    r"""Forward and backward of a one-sequence Elman classifier, step by step.

    ``spec`` (see ``rnnjax/data/sentiment_example.json``): ``inputs`` (a list of
    vectors) or ``tokens`` with ``embeddings`` (token -> vector); ``W_xh (H, F)``,
    ``W_hh (H, H)``, ``b_h (H,)``, ``W_ho (O, H)``, ``b_o (O,)``; optional ``h0``
    (zeros), ``activation`` (``"tanh"``), ``label`` and ``loss``:

    * ``"bce"``: ``y = sigmoid(W_ho h_T + b_o)``, ``L = -sum(l log y + (1-l) log(1-y))``,
      so ``dL/d(logit) = y - l``;
    * ``"mse"``: ``y = W_ho h_T + b_o``, ``L = 1/2 ||y - l||^2``, ``dL/d(logit) = y - l``.

    Forward ``z_t = W_xh x_t + W_hh h_{t-1} + b_h``, ``h_t = f(z_t)``.  Backward (the
    hand-written BPTT of :func:`bptt`, run on ``dL/dh_T = W_ho^T (y - l)``)::

        delta_t = dh_t * f'(z_t),   dh_{t-1} = W_hh^T delta_t
        dW_xh += delta_t x_t^T,     dW_hh += delta_t h_{t-1}^T,    db_h += delta_t

    Returns a dict of plain lists (float64): ``steps`` (per step: ``t`` from 1,
    ``token``, ``x``, ``z``, ``h``, ``dh``, ``delta``, ``dW_xh``, ``dW_hh``, ``db_h``
    contributions), ``logit``, ``y``, ``loss``, ``dL_dlogit``, the totals ``grads``
    (``W_xh``, ``W_hh``, ``b_h``, ``W_ho``, ``b_o``, ``h0``).
    """
    import numpy as np

    if not isinstance(spec, dict):
        raise TypeError(f"spec must be a dict (parsed JSON), got {type(spec).__name__}")
    for key in ("W_xh", "W_hh", "b_h", "W_ho", "b_o", "label"):
        if key not in spec:
            raise ValueError(f"spec must have the key {key!r}; it has {sorted(spec)}")
    if "inputs" in spec:
        tokens = [str(t + 1) for t in range(len(spec["inputs"]))]
        inputs = spec["inputs"]
    elif "tokens" in spec and "embeddings" in spec:
        tokens = list(spec["tokens"])
        missing = [t for t in tokens if t not in spec["embeddings"]]
        if missing:
            raise ValueError(f"spec tokens {missing} have no entry in embeddings "
                             f"(which has {sorted(spec['embeddings'])})")
        inputs = [spec["embeddings"][t] for t in tokens]
    else:
        raise ValueError("spec must have 'inputs' (a list of vectors) or 'tokens' with "
                         f"'embeddings'; it has {sorted(spec)}")
    act = spec.get("activation", "tanh")
    loss_kind = spec.get("loss", "bce")
    if act not in _ACT:
        raise ValueError(f"spec activation must be one of {sorted(_ACT)}, got {act!r}")
    if loss_kind not in ("bce", "mse"):
        raise ValueError(f"spec loss must be one of ['bce', 'mse'], got {loss_kind!r}")

    with jax.enable_x64(True):
        f64 = lambda a: jnp.asarray(np.asarray(a, np.float64))  # noqa: E731
        xs = f64(inputs)
        T, F = xs.shape
        params = {"W_xh": f64(spec["W_xh"]), "W_hh": f64(spec["W_hh"]), "b": f64(spec["b_h"])}
        H = params["W_hh"].shape[0]
        shapes = {"W_xh": (H, F), "W_hh": (H, H), "b": (H,)}
        for k, s in shapes.items():
            if params[k].shape != s:
                name = "b_h" if k == "b" else k
                raise ValueError(f"spec {name} must have shape {s} (H={H}, F={F}), "
                                 f"got {params[k].shape}")
        W_ho, b_o = f64(spec["W_ho"]).reshape(-1, H), f64(spec["b_o"]).reshape(-1)
        label = f64(spec["label"]).reshape(-1)
        h0 = f64(spec.get("h0", np.zeros(H))).reshape(1, H)

        ys, final, (hprev, hs) = _elman_forward(params, HiddenState(h0), xs[:, None],
                                                None, act, 1)
        h_T = final.h[0]
        logit = W_ho @ h_T + b_o
        if loss_kind == "bce":
            y = jax.nn.sigmoid(logit)
            loss = -jnp.sum(label * jnp.log(y) + (1 - label) * jnp.log1p(-y))
        else:
            y = logit
            loss = 0.5 * jnp.sum((y - label) ** 2)
        dlogit = y - label
        dh_T = W_ho.T @ dlogit
        dys = jnp.zeros((T, 1, H))
        grads, dxs, dh0, deltas = _elman_backward(
            params, xs[:, None], (hprev, hs), None, None, dys,
            HiddenState(dh_T[None]), act, 1)
        hp, d, hh = hprev[:, 0], deltas[:, 0], hs[:, 0]
        z = xs @ params["W_xh"].T + hp @ params["W_hh"].T + params["b"]
        # dh_t (total gradient of h_t): dh_T at the last step, W_hh^T delta_{t+1} before
        dh = jnp.concatenate([d[1:] @ params["W_hh"], dh_T[None]], 0)
        L = lambda a: np.asarray(a).tolist()  # noqa: E731
        steps = [{"t": t + 1, "token": tokens[t], "x": L(xs[t]), "z": L(z[t]), "h": L(hh[t]),
                  "dh": L(dh[t]), "delta": L(d[t]), "dW_xh": L(jnp.outer(d[t], xs[t])),
                  "dW_hh": L(jnp.outer(d[t], hp[t])), "db_h": L(d[t])} for t in range(T)]
        return {
            "activation": act, "loss_kind": loss_kind, "steps": steps,
            "logit": L(logit), "y": L(y), "label": L(label), "loss": float(loss),
            "dL_dlogit": L(dlogit),
            "grads": {"W_xh": L(grads["W_xh"]), "W_hh": L(grads["W_hh"]),
                      "b_h": L(grads["b"]), "W_ho": L(jnp.outer(dlogit, h_T)),
                      "b_o": L(dlogit), "h0": L(dh0.h[0]), "inputs": L(dxs[:, 0])},
        }


def example_spec(name: str = "sentiment_example") -> dict:
    """A spec shipped in ``rnnjax/data`` (``sentiment_example``: the worked example)."""
    import json
    from importlib import resources

    return json.loads(resources.files("rnnjax").joinpath("data", f"{name}.json").read_text())
