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

How every backward is organised (it stores as little as it can: on CPU, writing a
fresh residual buffer costs about as much as the arithmetic that fills it):

1. forward ``lax.scan``: ``[x_t, h_{t-1}] @ [W_xh W_hh]^T`` in one matmul per step (the
   GRU keeps two, its ``n`` gate needs ``W_hn h`` apart); it stores only the carries
   ``h_t`` (and ``c_t``), which are the outputs anyway;
2. reverse sweep in chunks of ``K = CHUNK`` steps (the last ``T % K`` steps first): per
   chunk, the gate values are recomputed from the stored states in ONE matmul over its
   ``K*B`` rows; a reverse ``lax.scan`` propagates ``g`` (and the memory gradient for the
   LSTM) one step at a time through the cell's Jacobian written out, emitting the
   pre-activation deltas ``delta_t = dL/dz_t``; then one matmul per parameter over the
   chunk's rows accumulates::

       dW_xh += sum_t delta_t x_t^T      dW_hh += sum_t delta_t h_{t-1}^T
       db    += sum_t delta_t            dx_t   = W_xh^T delta_t

   (accumulating these per step would cost a rank-B update each; over all ``T`` at
   once, a ``(T, B, G*H)`` buffer of deltas).

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
from the name, and no field is added to :class:`rnnjax.Cell`.  The backward works on
``params`` themselves (those cells' ``prepare`` only stacks ``W_xh`` and ``W_hh``, which
the forward here does too), so it returns the gradient with respect to ``params``.
The layer-normalised LSTM (``"lstm-ln"``) has no hand-written backward yet.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from rnnjax.cell import Cell, HiddenState, LSTMState, fuse_input_hidden

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


def _fused(params):
    """``[W_xh W_hh]^T (F+H, G*H)`` (:func:`rnnjax.cell.fuse_input_hidden`)."""
    return fuse_input_hidden(params)["W"]


def _xh_grads(d, xs, hprev):
    """``dW_xh = sum_t d_t x_t^T``, ``dW_hh = sum_t d_t h_{t-1}^T`` over a chunk
    ``(K, B, .)``: one matmul ``d^T [x, h_{t-1}]`` over its ``K*B`` rows."""
    F = xs.shape[-1]
    xh = jnp.concatenate([xs, hprev], -1)
    dW = d.reshape(-1, d.shape[-1]).T @ xh.reshape(-1, xh.shape[-1])
    return dW[:, :F], dW[:, F:]


# --------------------------------------------------------------------------- Elman

def _elman_step(params, act):
    f, _ = _ACT[act]
    W, b = _fused(params), params["b"]
    return lambda state, x: (f(jnp.concatenate([x, state[0]], -1) @ W + b),)


def _elman_recompute(params):
    return lambda xs, prev, cur: cur  # (h_t,): f'(z_t) is written in terms of h_t


def _elman_body(params, act, g, inp):
    r"""One step of Elman BPTT.  Forward ``z_t = W_xh x_t + W_hh h_{t-1} + b``,
    ``h_t = f(z_t)``::

        dh_t    = g_t + dy_t
        delta_t = dh_t * f'(z_t)      f' = 1 - h_t^2 (tanh), [h_t > 0] (relu), 1 (identity)
        g_{t-1} = W_hh^T delta_t
    """
    _, fprime = _ACT[act]
    (gh,) = g
    h_t, dy_t, live_t, cut_t = inp
    delta = (gh + dy_t) * fprime(h_t)
    if live_t is not None:
        delta = jnp.where(live_t[:, None], delta, 0.0)
    return (_cut(cut_t, _keep(live_t, delta @ params["W_hh"], gh)),), delta


def _elman_grads(params, d, xs, prev):
    dW_xh, dW_hh = _xh_grads(d, xs, prev[0])
    return {"W_xh": dW_xh, "W_hh": dW_hh, "b": d.sum((0, 1))}, d @ params["W_xh"]


# --------------------------------------------------------------------------- LSTM

def _lstm_gates(z):
    zi, zf, zg, zo = jnp.split(z, 4, axis=-1)
    return jax.nn.sigmoid(zi), jax.nn.sigmoid(zf), jnp.tanh(zg), jax.nn.sigmoid(zo)


def _lstm_step(params, act):
    W, b = _fused(params), params["b"]

    def step(state, x):
        h, c = state
        i, f, g, o = _lstm_gates(jnp.concatenate([x, h], -1) @ W + b)
        c_new = f * c + i * g
        return o * jnp.tanh(c_new), c_new

    return step


def _lstm_recompute(params):
    """The gates of a chunk from its inputs and stored states: one matmul over ``K*B`` rows."""
    W, b = _fused(params), params["b"]

    def recompute(xs, prev, cur):
        i, f, g, o = _lstm_gates(jnp.concatenate([xs, prev[0]], -1) @ W + b)
        return prev[1], i, f, g, o, jnp.tanh(cur[1])

    return recompute


def _lstm_body(params, act, carry, inp):
    r"""One step of LSTM BPTT.  With ``g_t, gc_t`` the gradients of ``h_t, c_t`` from the
    future::

        dh_t  = g_t + dy_t
        do    = dh_t * tanh(c_t)
        dc_t  = gc_t + dh_t * o * (1 - tanh(c_t)^2)
        di = dc_t * g    df = dc_t * c_{t-1}    dg = dc_t * i
        delta_t = [di * i(1-i), df * f(1-f), dg * (1-g^2), do * o(1-o)]    (4H,)
        g_{t-1}  = W_hh^T delta_t          gc_{t-1} = dc_t * f
    """
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
    gh_prev = _cut(cut_t, _keep(live_t, delta @ params["W_hh"], gh))
    gc_prev = _cut(cut_t, _keep(live_t, dc * f_t, gc))
    return (gh_prev, gc_prev), delta


_lstm_grads = _elman_grads  # same parameter layout: dW = delta^T [x, h_{t-1}], db = sum delta


# --------------------------------------------------------------------------- GRU

def _gru_gates(params):
    """``(x, h_{t-1}) -> (r, z, n, m = u_n + b_hn)`` for one step or a whole chunk."""
    W_xhT, W_hhT, b, b_hn = params["W_xh"].T, params["W_hh"].T, params["b"], params["b_hn"]

    def gates(x, h):
        a_r, a_z, a_n = jnp.split(x @ W_xhT + b, 3, axis=-1)
        u_r, u_z, u_n = jnp.split(h @ W_hhT, 3, axis=-1)
        r = jax.nn.sigmoid(a_r + u_r)
        m = u_n + b_hn
        return r, jax.nn.sigmoid(a_z + u_z), jnp.tanh(a_n + r * m), m

    return gates


def _gru_step(params, act):
    gates = _gru_gates(params)

    def step(state, x):
        (h,) = state
        _, z, n, _ = gates(x, h)
        return ((1.0 - z) * n + z * h,)

    return step


def _gru_recompute(params):
    """The gates of a chunk: one matmul each for ``a`` and ``u`` over its ``K*B`` rows."""
    gates = _gru_gates(params)
    return lambda xs, prev, cur: (prev[0],) + gates(xs, prev[0])


def _gru_body(params, act, g, inp):
    r"""One step of GRU BPTT.  With ``m = u_n + b_hn`` (``u = W_hh h_{t-1}``)::

        dh_t = g_t + dy_t
        dn = dh_t * (1 - z)        dz = dh_t * (h_{t-1} - n)
        dn~ = dn * (1 - n^2)       dr = dn~ * m
        delta_a = [dr * r(1-r), dz * z(1-z), dn~]        gradient of a = W_xh x_t + b
        delta_u = [dr * r(1-r), dz * z(1-z), dn~ * r]    gradient of u = W_hh h_{t-1}
        g_{t-1} = W_hh^T delta_u + dh_t * z
        dW_xh = sum delta_a x^T   db = sum delta_a   dW_hh = sum delta_u h_{t-1}^T
        db_hn = sum (dn~ * r)
    """
    (gh,) = g
    h_p, r_t, z_t, n_t, m_t, dy_t, live_t, cut_t = inp
    dh = gh + dy_t
    dnt = dh * (1.0 - z_t) * (1.0 - n_t * n_t)
    dar = dnt * m_t * r_t * (1.0 - r_t)
    daz = dh * (h_p - n_t) * z_t * (1.0 - z_t)
    # delta_a differs from delta_u only in the n block (dn~ instead of dn~ * r)
    delta_a = jnp.concatenate([dar, daz, dnt], axis=-1)
    delta_u = jnp.concatenate([dar, daz, dnt * r_t], axis=-1)
    if live_t is not None:
        delta_a = jnp.where(live_t[:, None], delta_a, 0.0)
        delta_u = jnp.where(live_t[:, None], delta_u, 0.0)
    g_prev = _cut(cut_t, _keep(live_t, delta_u @ params["W_hh"] + dh * z_t, gh))
    return (g_prev,), (delta_a, delta_u)


def _gru_grads(params, d, xs, prev):
    d_a, d_u = d
    H = prev[0].shape[-1]
    flat = lambda a: a.reshape(-1, a.shape[-1])  # noqa: E731
    grads = {"W_xh": flat(d_a).T @ flat(xs), "W_hh": flat(d_u).T @ flat(prev[0]),
             "b": d_a.sum((0, 1)), "b_hn": d_u[..., 2 * H:].sum((0, 1))}
    return grads, d_a @ params["W_xh"]


class _Family(NamedTuple):
    step: Any       # (params, act) -> (state tuple, x_t) -> new state tuple
    recompute: Any  # params -> (xs, prev, cur) -> the body's per-step residuals, a chunk
    body: Any       # (params, act, g, inp) -> (g_{t-1}, delta_t): one backward step
    grads: Any      # (params, deltas, xs, prev) -> (param grads of the chunk, dxs)


_FAMILIES = {
    "elman": _Family(_elman_step, _elman_recompute, _elman_body, _elman_grads),
    "lstm": _Family(_lstm_step, _lstm_recompute, _lstm_body, _lstm_grads),
    "gru": _Family(_gru_step, _gru_recompute, _gru_body, _gru_grads),
}

# steps per chunk of the backward pass (see the module docstring)
CHUNK = 16


# --------------------------------------------------------------------------- drivers

def _flip(a, lengths):
    from rnnjax.sequence import flip_sequences
    return flip_sequences(a, lengths)


def _forward(kind, params, carry, xs, lengths, reverse, unroll):
    """Time-major forward: ``xs (T, B, F)``; returns ``(ys, final, saved)`` where
    ``saved = (xs, initial carry, states)`` and ``states`` stacks every carry ``(T, B, H)``
    (frozen past each length)."""
    family, act = KINDS[kind]
    if reverse:
        xs = _flip(xs, lengths)
    T = xs.shape[0]
    live = None if lengths is None else jnp.arange(T)[:, None] < lengths[None, :]
    step = _FAMILIES[family].step(params, act)

    def body(state, inp):
        x_t, live_t = inp
        new = tuple(_keep(live_t, n, o) for n, o in zip(step(state, x_t), state))
        return new, new

    final, states = lax.scan(body, tuple(carry), (xs, live), unroll=unroll)
    ys = states[0] if live is None else jnp.where(live[..., None], states[0], 0.0)
    if reverse:
        ys = _flip(ys, lengths)
    return ys, type(carry)(*final), (xs, tuple(carry), states)


def _backward(kind, params, saved, lengths, reverse, truncate, unroll, dys, dfinal,
              chunk=CHUNK, with_deltas=False):
    """Time-major backward; returns ``(d_params, d_xs, d_carry, deltas)`` (``deltas``
    stacked over time only if ``with_deltas``, else None)."""
    family, act = KINDS[kind]
    fam = _FAMILIES[family]
    xs, carry0, states = saved
    T = xs.shape[0]
    t = jnp.arange(T)
    live = None if lengths is None else t[:, None] < lengths[None, :]
    cut = None if truncate is None else (t % truncate == 0) & (t > 0)
    if reverse:
        dys = _flip(dys, lengths)
    body = partial(fam.body, params, act)
    recompute = fam.recompute(params)  # weights stacked once, outside the chunk loop

    def one_chunk(acc, inp):
        g, grads = acc
        xs_c, cur, before, dys_c, live_c, cut_c = inp
        prev = tuple(jnp.concatenate([b[None], s[:-1]]) for b, s in zip(before, cur))
        res = recompute(xs_c, prev, cur)
        g, deltas = lax.scan(body, g, res + (dys_c, live_c, cut_c), reverse=True,
                             unroll=min(unroll, xs_c.shape[0]))
        d_grads, dxs = fam.grads(params, deltas, xs_c, prev)
        return (g, jax.tree.map(jnp.add, grads, d_grads)), (dxs, deltas if with_deltas else None)

    K = min(chunk, T)
    n, r = divmod(T, K)
    seqs = (xs, states, dys, live, cut)
    acc = (tuple(dfinal), jax.tree.map(jnp.zeros_like, params))
    outs = []
    if r:  # the last T % K steps first, as one shorter chunk
        tail = jax.tree.map(lambda a: a[n * K:], seqs)
        before = tuple(s[n * K - 1] for s in states) if n else carry0
        acc, out = one_chunk(acc, tail[:2] + (before,) + tail[2:])
        outs.append(out)
    if n:
        head = jax.tree.map(lambda a: a[:n * K].reshape((n, K) + a.shape[1:]), seqs)
        before = tuple(jnp.concatenate([c[None], s[K - 1:(n - 1) * K:K]])
                       for c, s in zip(carry0, states))
        acc, out = lax.scan(one_chunk, acc, head[:2] + (before,) + head[2:], reverse=True)
        outs.insert(0, jax.tree.map(lambda a: a.reshape((n * K,) + a.shape[2:]), out))
    (g0, grads) = acc
    dxs, deltas = (jax.tree.map(lambda *a: jnp.concatenate(a), *outs) if len(outs) > 1
                   else outs[0])
    if reverse:
        dxs = _flip(dxs, lengths)
    return grads, dxs, type(dfinal)(*g0), deltas


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


@partial(jax.jit, static_argnames=("kind", "reverse", "truncate", "chunk"))
def _bptt_flat(kind, params, carry, xs, lengths, dys, dfinal, *, reverse, truncate, chunk):
    ys, final, saved = _forward(kind, params, carry, xs, lengths, reverse, 1)
    grads, dxs, dcarry, _ = _backward(kind, params, saved, lengths, reverse, truncate, 1,
                                      dys, dfinal, chunk)
    return ys, final, grads, dxs, dcarry


def bptt(cell: Cell, params, xs, dys=None, dcarry=None, *, carry=None, lengths=None,
         truncate: int | None = None, reverse: bool = False, chunk: int = CHUNK) -> BPTT:
    """Run ``cell`` forward over ``xs`` and backpropagate by hand.

    Args:
      cell: an Elman (any activation), LSTM or GRU cell (see :data:`KINDS`).
      params: its params.
      xs: ``(*batch, T, F)`` as for :func:`rnnjax.run`.
      dys: ``dL/dy_t`` of shape ``(*batch, T, H)``; zeros when None.
      dcarry: ``dL/d(final carry)`` with the structure of the carry; zeros when None.
      carry, lengths, truncate, reverse: as for :func:`rnnjax.run`.
      chunk: steps per chunk of the backward sweep (its gates are recomputed and its
        weight gradients accumulated in one matmul each); the result does not depend on it.

    Returns:
      :class:`BPTT` ``(ys, final_carry, d_params, d_xs, d_carry)``: the gradients of
      ``L = sum(dys * ys) + sum(dcarry * final_carry)`` (any loss, by the chain rule)
      with respect to the params, every input ``x_t`` and the initial carry.
    """
    from rnnjax.sequence import _check_inputs

    _check_inputs(cell, params, xs, carry, lengths, False, truncate, 1)
    kind = kind_of(cell)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
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
        truncate=truncate, chunk=chunk)
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

        kind = "elman" if act == "tanh" else f"elman-{act}"
        ys, final, saved = _forward(kind, params, HiddenState(h0), xs[:, None], None, False, 1)
        hs = saved[2][0]
        hprev = jnp.concatenate([h0[None], hs[:-1]])
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
        grads, dxs, dh0, deltas = _backward(kind, params, saved, None, False, None, 1, dys,
                                            HiddenState(dh_T[None]), with_deltas=True)
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
