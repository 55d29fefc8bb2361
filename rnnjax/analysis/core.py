r"""Gradient-flow measurements for any :class:`rnnjax.Cell`.

Why orthogonal and unitary recurrences exist: backpropagating through ``T - s`` steps
multiplies the gradient by the product of step Jacobians

.. math::  \frac{\partial h_t}{\partial h_s} = \prod_{k=s+1}^{t} J_k,
           \qquad J_k = \frac{\partial h_k}{\partial h_{k-1}}
           \;(= \mathrm{diag}(f'(a_k))\, W \text{ for an Elman cell}),

whose norm vanishes or explodes geometrically unless ``W`` is (close to) orthogonal
(Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013; Arjovsky, Shah &
Bengio 2016).  This module measures it exactly, with autodiff:

* :func:`hidden_grad_norms` -- ``||dL/dh_t||`` for every ``t`` in one backward pass;
* :func:`jacobian_product_svals` -- singular values of ``dh_t/dh_s`` by JVP/VJP subspace
  iteration (or densely, for checks);
* :func:`recurrent_spectrum`, :func:`orthogonality_error` -- the recurrent matrix;
* :func:`lyapunov_spectrum` -- Lyapunov exponents of the driven cell (QR method);
* :func:`grad_norms_by_layer` -- a hook for the training runner's metrics;
* :func:`credit_profile`, :func:`credit_ratio`, :func:`jacobian_norm`,
  :func:`credit_assignment` -- credit assignment to a source step for a loss restricted
  to target steps (below).

Credit assignment.  Steps are indexed from 0 here: ``z_t`` is the whole carry after
reading ``x_t`` (``t = 0..L-1``), ``z^f_t`` its field ``f`` (``h``, ``c``, ...; the
field names of the carry's NamedTuple), and ``L_target`` a loss that reads the outputs
of the target steps only (for the copy task the mean cross-entropy of the 10 recall
steps).  For a source step ``s`` and a reference step ``r`` with ``s <= r`` and every
target after ``r``,

.. math::  \frac{\partial L}{\partial z_s}
           = \Big(\frac{\partial z_r}{\partial z_s}\Big)^{\!\top}
             \frac{\partial L}{\partial z_r},
           \qquad
           \rho^f(s, r) = \frac{\|\partial L / \partial z^f_s\|}
                               {\|\partial L / \partial z^f_r\|},

the measured credit ratio (the norms over the batch), and
``||dz_r/dz_s||_2`` (one example at a time, then the mean) bounds how much of the
gradient at ``r`` can reach ``s``: ``||dL/dz_s|| <= ||dz_r/dz_s||_2 ||dL/dz_r||`` per
example.

Conventions.  ``h_0`` is the initial carry and ``h_t`` (``t = 1..T``) the carry after
step ``t``.  "State" means the whole carry (for the LSTM both ``h`` and ``c``).  A
complex carry leaf ``h = a + i b`` is treated as the real vector ``(a, b)``: gradients
of a real loss are ``(dL/da, dL/db)``, so ``||dL/dh||^2 = ||dL/da||^2 + ||dL/db||^2``,
and Jacobians are the real ``2H x 2H`` Jacobians (a unitary ``U`` gives an orthogonal
one).  This avoids JAX's conjugation convention for complex gradients.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_cell
from rnnjax.engine.newton import carry_to_vector as _to_real
from rnnjax.engine.newton import vector_to_carry as _from_real
from rnnjax.io.paramfile import load_params_npz, save_params_npz

__all__ = [
    "CreditProfile",
    "carry_fields",
    "carry_readout",
    "credit_arrays",
    "credit_assignment",
    "credit_metrics",
    "credit_profile",
    "credit_ratio",
    "credit_record",
    "grad_norms_by_layer",
    "hidden_grad_norms",
    "jacobian_norm",
    "jacobian_product_svals",
    "log_jacobian_norm",
    "load_params_npz",
    "lyapunov_spectrum",
    "orthogonality_error",
    "recurrent_spectrum",
    "save_params_npz",
    "scaled_norm",
    "state_trajectory",
]


# ----------------------------------------------------------------------------- checks

def _check_xs(cell, params, xs, *, batched_ok=True):
    """Return xs as an array after checking rank, dtype and features."""
    shape = tuple(np.shape(xs))
    dtype = np.asarray(xs).dtype if not hasattr(xs, "dtype") else np.dtype(xs.dtype)
    lo = 2
    hi = 3 if batched_ok else 2
    if not lo <= len(shape) <= hi:
        want = "(time, features) or (batch, time, features)" if batched_ok else "(time, features)"
        raise ValueError(f"xs must have shape {want}, got shape {shape}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(f"xs must be a floating-point array, got dtype {dtype}")
    if shape[-2] < 1:
        raise ValueError(f"xs must have at least one time step, got shape {shape}")
    expected = cell.input_size(params)
    if shape[-1] != expected:
        raise ValueError(
            f"xs has {shape[-1]} features but the {cell.name} cell was built for {expected}")
    return jnp.asarray(xs)


# --------------------------------------------------------------- real view of a carry

def _real_dtype(dtype):
    return jnp.finfo(dtype).dtype  # complex128 -> float64, float32 -> float32


def _carry_like(cell, weights, carry, x):
    """Shapes/dtypes of the carry *after* one step (a unitary cell may turn a real zero
    carry into a complex one), for one example."""
    return jax.eval_shape(lambda c: cell.step(weights, c, x)[0], carry)


def _real_step(cell, weights, like):
    """``(z_{t-1}, x_t) -> z_t``: the cell's step on the real view of its carry."""

    def f(z, x):
        new, _ = cell.step(weights, _from_real(z, like), x)
        return _to_real(new)

    return f


def _setup_single(cell, params, xs, carry):
    """weights, the real initial state z_0 and the carry structure, for one example."""
    weights = cell.prepare(params)
    if carry is None:
        carry = cell.initial_carry((), xs.dtype)
    like = _carry_like(cell, weights, carry, xs[0])
    # promote the initial carry to the dtypes the step produces (real 0 -> complex 0)
    carry = jax.tree.map(lambda a, s: jnp.asarray(a).astype(s.dtype), carry, like)
    return weights, _to_real(carry), like


# ------------------------------------------------------------------ hidden grad norms

def _perturbed_scan(cell, weights, carry, xs_tm, eps_re, eps_im, readout):
    """Scan with ``h_t <- step(h_{t-1}, x_t) + eps_t`` (time-major, batch ``B``).

    ``eps_re``/``eps_im`` have the carry's structure with leaves ``(T, B, ...)``; the
    imaginary part is added only to complex leaves.  Outputs are ``readout(h_t)`` of
    the perturbed carry, or the step's own outputs when ``readout`` is None.
    Returns ``ys (T, B, O)``.
    """
    step = jax.vmap(cell.step, in_axes=(None, 0, 0))

    def add(n, er, ei):
        if jnp.iscomplexobj(n):
            return n + (er + 1j * ei).astype(n.dtype)
        return n + er.astype(n.dtype)

    def body(c, inp):
        x, er, ei = inp
        new, y = step(weights, c, x)
        new = jax.tree.map(add, new, er, ei)
        if readout is not None:
            y = jax.vmap(readout)(new)
        return new, y

    _, ys = jax.lax.scan(body, carry, (xs_tm, eps_re, eps_im))
    return ys


def carry_readout(carry):
    """The output every built-in cell emits from its new carry: ``h`` when real,
    ``[Re h, Im h]`` when complex (unitary cells)."""
    h = carry.h if hasattr(carry, "h") else carry
    if jnp.iscomplexobj(h):
        return jnp.concatenate([h.real, h.imag], -1)
    return h


def _resolve_readout(cell, weights, carry, x, readout):
    """Check that ``readout(new carry)`` reproduces the step's output (one example)."""
    if readout == "step":
        return None
    fn = carry_readout if readout in ("auto", "carry_or_step") else readout
    if not callable(fn):
        raise ValueError(f"readout must be 'auto', 'carry_or_step', 'step' or a callable "
                         f"carry -> y, got {readout!r}")
    c = jax.tree.map(lambda a: a[0], carry)
    if any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves((weights, c, x))):
        return fn  # under jit: values are abstract; the check runs on eager calls only
    new, y = cell.step(weights, c, x[0])
    try:
        ok = bool(np.allclose(np.asarray(fn(new)), np.asarray(y), rtol=1e-5, atol=1e-6))
    except (ValueError, TypeError, AttributeError):
        ok = False
    if not ok and readout == "carry_or_step":
        return None
    if not ok:
        raise ValueError(
            f"readout: the outputs of the {cell.name} cell are not readout(new carry) "
            f"({'h or [Re h, Im h]' if readout == 'auto' else 'the given callable'}); pass "
            "readout=callable(carry) -> y, or readout='step' to keep the step's outputs "
            "(then dL/dh_t omits the direct path through y_t)")
    return fn


def _check_loss_inputs(cell, params, xs, loss_fn):
    """Check ``cell``, ``loss_fn`` (callable ``ys -> scalar``) and ``xs``; return ``xs``."""
    check_cell(cell)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable ys -> scalar, got "
                        f"{type(loss_fn).__name__}")
    return _check_xs(cell, params, xs)


def _perturbation_setup(cell, params, xs, carry, readout):
    """What a backward pass through zero carry perturbations needs:
    ``(unbatched, xs_tm (T, B, F), weights, carry (B, ...) in the step's dtypes, like
    (its shapes and dtypes), zeros (T, B, ...) real, readout)``."""
    unbatched = xs.ndim == 2
    xb = xs[None] if unbatched else xs
    B, T = xb.shape[0], xb.shape[1]
    xs_tm = jnp.swapaxes(xb, 0, 1)
    weights = cell.prepare(params)
    if carry is None:
        carry = cell.initial_carry((B,), xs.dtype)
    elif unbatched:
        carry = jax.tree.map(lambda a: jnp.asarray(a)[None], carry)
    like = jax.eval_shape(
        lambda c: jax.vmap(cell.step, in_axes=(None, 0, 0))(weights, c, xs_tm[0])[0], carry)
    carry = jax.tree.map(lambda a, s: jnp.asarray(a).astype(s.dtype), carry, like)
    zeros = jax.tree.map(lambda s: jnp.zeros((T,) + s.shape, _real_dtype(s.dtype)), like)
    return unbatched, xs_tm, weights, carry, like, zeros, _resolve_readout(
        cell, weights, carry, xs_tm[0], readout)


def scaled_norm(g, axes=(-1,)):
    r"""``||g||_2`` over ``axes`` computed as ``m sqrt(sum (g/m)^2)``, ``m = max |g|``
    (as LAPACK's ``nrm2``): it neither underflows nor overflows while the norm itself
    is representable.  ``sqrt(sum g^2)`` would return 0 once ``|g| < ~1e-154`` in
    float64 (``1e-19`` in float32), where ``g^2`` underflows."""
    m = jnp.max(jnp.abs(g), axis=axes, keepdims=True)
    safe = jnp.where(m > 0, m, 1)
    r = jnp.sqrt(jnp.sum(jnp.square(g / safe), axis=axes))
    return jnp.squeeze(m, axes) * r


def hidden_grad_norms(cell: Cell, params, xs, loss_fn, *, carry=None,
                      per_example: bool = False, readout="auto"):
    r"""``||dL/dh_t||`` for ``t = 1..T``, for every carry field, in one backward pass.

    A zero perturbation ``eps_t`` is added to the carry after each step,
    ``h_t = step(h_{t-1}, x_t) + eps_t``, the outputs are read from the perturbed
    carry, ``y_t = readout(h_t)``, and ``dL/dh_t = dL/deps_t`` at ``eps = 0``: one
    reverse-mode pass gives all ``T`` gradients (no dense Jacobian is formed).  So
    ``dL/dh_t`` counts both paths, through ``y_t`` and through ``h_{t+1}, ...``; for
    ``L = v . y_T`` of a linear cell ``h_t = W h_{t-1} + U x_t`` it is
    ``(W^T)^{T-t} v``.

    Args:
      cell, params: the cell and its params.
      xs: ``(time, features)`` or ``(batch, time, features)``.
      loss_fn: ``ys -> scalar``, where ``ys`` is what ``rnnjax.run(cell, params, xs)``
        returns as outputs (same layout as ``xs``).
      carry: optional initial carry (leaves ``(batch, ...)`` or unbatched).
      per_example: if True, norms per batch row (``(batch, T)`` leaves) instead of the
        norm of the whole ``(batch, ...)`` gradient at each ``t`` (``(T,)`` leaves).
      readout: how outputs depend on the carry.  ``"auto"``: :func:`carry_readout`
        (``y_t = h_t``, or ``[Re h_t, Im h_t]`` for complex ``h``), which most built-in
        cells satisfy (not those with a readout such as ``lru``, ``s4d``, ``s5``); it is
        checked against one real step and a ``ValueError`` is raised if it does not
        reproduce the cell's output (checked on eager calls; under an outer ``jax.jit``
        the check is skipped).  ``"carry_or_step"``: the same, falling back to
        ``"step"`` where it does not.  A callable ``carry -> y`` (one example) for
        other cells.  ``"step"``: keep the step's outputs, so ``dL/dh_t`` is the
        gradient through future steps only.

    Returns:
      a pytree with the carry's structure (``HiddenState(h=...)``,
      ``LSTMState(h=..., c=...)``) whose leaves are the norms, shape ``(T,)`` (or
      ``(batch, T)``).  Complex leaves: ``sqrt(||dL/dRe h||^2 + ||dL/dIm h||^2)``.
      Norms are scaled (:func:`scaled_norm`), so they are exact down to the smallest
      normal float (about 1e-308 in float64) rather than zero below 1e-154.
      For the LSTM, ``.h`` is the gradient with respect to ``h_t`` holding ``c_t`` fixed
      and ``.c`` with respect to ``c_t`` holding ``h_t`` fixed (partial derivatives of
      ``L`` as a function of the state after step ``t``).
    """
    xs = _check_loss_inputs(cell, params, xs, loss_fn)
    if per_example and xs.ndim == 2:
        raise ValueError("per_example=True needs xs of shape (batch, time, features), "
                         f"got shape {xs.shape}")
    unbatched, xs_tm, weights, carry, like, zeros, readout = _perturbation_setup(
        cell, params, xs, carry, readout)
    T, B = xs_tm.shape[:2]

    def loss_of_eps(er, ei):
        ys = _perturbed_scan(cell, weights, carry, xs_tm, er, ei, readout)
        ys = jnp.swapaxes(ys, 0, 1)
        out = loss_fn(ys[0] if unbatched else ys)
        if jnp.ndim(out) != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {jnp.shape(out)}")
        return jnp.real(out)

    g_re, g_im = jax.jit(jax.grad(loss_of_eps, argnums=(0, 1)))(zeros, zeros)

    def norms(gr, gi, s):
        g = gr.reshape(T, B, -1)
        if jnp.issubdtype(s.dtype, jnp.complexfloating):
            g = jnp.concatenate([g, gi.reshape(T, B, -1)], -1)
        if per_example:
            return scaled_norm(g, axes=(-1,)).T
        return scaled_norm(g, axes=(-2, -1))

    return jax.tree.map(norms, g_re, g_im, like)


# ---------------------------------------------------------------- Jacobian products

def state_trajectory(cell: Cell, params, xs, *, carry=None):
    """Real-view states ``z_0..z_T`` of one example, shape ``(T + 1, n)``.

    ``n`` is the size of the whole carry (``2H`` for an LSTM or a complex ``h``).
    """
    check_cell(cell)
    xs = _check_xs(cell, params, xs, batched_ok=False)
    weights, z0, like = _setup_single(cell, params, xs, carry)
    f = _real_step(cell, weights, like)
    _, zs = jax.lax.scan(lambda z, x: (f(z, x), f(z, x)), z0, xs)
    return jnp.concatenate([z0[None], zs])


def _check_span(span, T):
    try:
        s, t = (int(v) for v in span)
    except (TypeError, ValueError):
        raise TypeError(f"span must be a pair (s, t) of integers, got {span!r}") from None
    if not 0 <= s <= t <= T:
        raise ValueError(f"span must satisfy 0 <= s <= t <= T = {T}, got {span!r}")
    return s, t


def jacobian_product_svals(cell: Cell, params, xs, span, *, k: int = 1,
                           n_iter: int = 100, method: str = "iterative", carry=None,
                           key=None):
    r"""Top-``k`` singular values of ``dh_t/dh_s = J_t J_{t-1} ... J_{s+1}``.

    Along the trajectory of one example ``xs (T, F)``, with ``span = (s, t)``, ``0 <= s
    <= t <= T`` (``h_0`` the initial carry).  ``h`` is the whole carry in its real view
    (``(h, c)`` for an LSTM, ``(Re h, Im h)`` for complex cells).

    ``method="iterative"`` (default) runs block power (subspace) iteration on
    ``P^T P`` with ``P v`` a forward-mode JVP and ``P^T u`` a reverse-mode VJP through
    steps ``s+1..t``, then a Rayleigh-Ritz step (SVD of ``P V``); memory is that of
    one backward pass over the span, no Jacobian is formed.  ``method="dense"`` forms
    ``P`` with ``jax.jacfwd`` and returns its exact singular values (small problems).

    Returns ``(k,)`` singular values, largest first; the spectral norm is element 0.
    """
    check_cell(cell)
    xs = _check_xs(cell, params, xs, batched_ok=False)
    s, t = _check_span(span, xs.shape[0])
    if method not in ("iterative", "dense"):
        raise ValueError(f"method must be one of ['dense', 'iterative'], got {method!r}")
    weights, z0, like = _setup_single(cell, params, xs, carry)
    n = z0.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, {n}] (the state size), got {k!r}")
    f = _real_step(cell, weights, like)
    z_s = jax.lax.scan(lambda z, x: (f(z, x), None), z0, xs[:s])[0]
    seg = xs[s:t]

    def prod(z):  # z_s -> z_t
        return jax.lax.scan(lambda c, x: (f(c, x), None), z, seg)[0]

    if method == "dense":
        P = jax.jacfwd(prod)(z_s)
        return jnp.linalg.svd(P, compute_uv=False)[:k]
    return _subspace_svals(prod, z_s, n, k, n_iter,
                           jax.random.key(0) if key is None else key)


@partial(jax.jit, static_argnums=(0, 2, 3, 4))
def _subspace_svals(prod, z_s, n, k, n_iter, key):
    _, vjp = jax.vjp(prod, z_s)
    jv = jax.vmap(lambda v: jax.jvp(prod, (z_s,), (v,))[1], in_axes=1, out_axes=1)
    jtu = jax.vmap(lambda u: vjp(u)[0], in_axes=1, out_axes=1)
    V = jnp.linalg.qr(jax.random.normal(key, (n, k), z_s.dtype))[0]

    def it(_, V):
        return jnp.linalg.qr(jtu(jv(V)))[0]

    V = jax.lax.fori_loop(0, n_iter, it, V)
    return jnp.linalg.svd(jv(V), compute_uv=False)


# ------------------------------------------------------------- the recurrent matrix

def _blocks(W):
    """Split a fused ``(G*H, H)`` recurrent matrix into ``(G, H, H)`` gate blocks."""
    W = jnp.asarray(W)
    if W.ndim != 2 or W.shape[0] % W.shape[1]:
        raise ValueError(
            f"the recurrent matrix must be (H, H) or (G*H, H), got shape {W.shape}")
    G, H = W.shape[0] // W.shape[1], W.shape[1]
    return W.reshape(G, H, H)


def recurrent_spectrum(cell: Cell, params):
    """Singular values and eigenvalues of the cell's recurrent matrix.

    For a square ``W (H, H)``: ``{"singular_values": (H,), "eigenvalues": (H,)}``
    (descending singular values; eigenvalues sorted by decreasing modulus, complex).
    For gated cells the fused ``(G*H, H)`` matrix is split into its ``G`` gate blocks and
    each entry gains a leading ``(G,)`` axis.  Adds ``"orthogonality_error"``.
    """
    check_cell(cell)
    if cell.recurrent_matrix is None:
        raise ValueError(f"the {cell.name} cell exposes no recurrent matrix")
    B = np.asarray(_blocks(cell.recurrent_matrix(params)))
    sv = np.linalg.svd(B, compute_uv=False)
    ev = np.linalg.eigvals(B)
    order = np.argsort(-np.abs(ev), axis=-1, kind="stable")
    ev = np.take_along_axis(ev, order, -1)
    squeeze = (lambda a: a[0]) if B.shape[0] == 1 else (lambda a: a)
    return {"singular_values": squeeze(sv), "eigenvalues": squeeze(ev),
            "orthogonality_error": orthogonality_error(cell, params)}


def orthogonality_error(cell: Cell, params) -> float:
    """``||W^H W - I||_F`` of the recurrent matrix (the largest over gate blocks).

    Zero for orthogonal/unitary ``W`` (``W^H`` is the conjugate transpose).  For fused
    gated matrices ``(G*H, H)`` each ``(H, H)`` block is measured and the maximum is
    returned.  Usable as a training metric (pure; traceable under ``jit``).
    """
    check_cell(cell)
    if cell.recurrent_matrix is None:
        raise ValueError(f"the {cell.name} cell exposes no recurrent matrix")
    B = _blocks(cell.recurrent_matrix(params))
    I = jnp.eye(B.shape[-1], dtype=B.dtype)
    E = jnp.einsum("gki,gkj->gij", B.conj(), B) - I
    return jnp.max(jnp.sqrt(jnp.sum(jnp.abs(E) ** 2, axis=(-2, -1))))


# -------------------------------------------------------------- Lyapunov exponents

def lyapunov_spectrum(cell: Cell, params, xs, *, k: int | None = None, burn_in: int = 0,
                      carry=None, key=None):
    r"""Top-``k`` Lyapunov exponents (per step, natural log) of the cell driven by ``xs``.

    The QR (Benettin / Shimada-Nagashima) method: with ``Q_0`` an orthonormal
    ``(n, k)`` basis, at each step ``J_t Q_{t-1} = Q_t R_t`` (``J_t`` applied by a
    vmapped JVP), and ``lambda_i = (1/(T - burn_in)) sum_t log|R_t[i, i]|`` over the
    steps after ``burn_in`` (the first ``burn_in`` steps only align ``Q``).  For a
    linear recurrence ``h_t = W h_{t-1} + U x_t`` with normal ``W`` the exponents
    converge to ``log|eig(W)|`` (sorted descending); for orthogonal ``W`` all are 0.

    Args:
      xs: one input sequence ``(T, F)``.
      k: number of exponents (default: the whole state size ``n``).
      burn_in: steps excluded from the average, ``0 <= burn_in < T``.

    Returns ``(k,)`` exponents, in the order of the QR basis (normally descending).
    """
    check_cell(cell)
    xs = _check_xs(cell, params, xs, batched_ok=False)
    T = xs.shape[0]
    weights, z0, like = _setup_single(cell, params, xs, carry)
    n = z0.shape[0]
    k = n if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, {n}] (the state size), got {k!r}")
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < T:
        raise ValueError(f"burn_in must be an integer in [0, {T}), got {burn_in!r}")
    f = _real_step(cell, weights, like)
    key = jax.random.key(0) if key is None else key
    Q0 = jnp.linalg.qr(jax.random.normal(key, (n, k), z0.dtype))[0]
    return _lyapunov(f, z0, Q0, xs, burn_in)


@partial(jax.jit, static_argnums=(0, 4))
def _lyapunov(f, z0, Q0, xs, burn_in):
    T = xs.shape[0]

    def body(c, inp):
        z, Q, acc = c
        t, x = inp
        z_new, JQ = jax.vmap(lambda q: jax.jvp(lambda zz: f(zz, x), (z,), (q,)), in_axes=1,
                             out_axes=(None, 1))(Q)
        Q, R = jnp.linalg.qr(JQ)
        d = jnp.diagonal(R)
        Q = Q * jnp.where(d < 0, -1.0, 1.0).astype(Q.dtype)  # keep the basis continuous
        acc = acc + jnp.where(t >= burn_in, jnp.log(jnp.abs(d)), 0.0)
        return (z_new, Q, acc), None

    acc0 = jnp.zeros(Q0.shape[1], z0.dtype)
    (_, _, acc), _ = jax.lax.scan(body, (z0, Q0, acc0), (jnp.arange(T), xs))
    return acc / (T - burn_in)


# ------------------------------------------------------------ training-runner hooks

def grad_norms_by_layer(grads, depth: int | None = 1):
    """Global L2 norm of ``grads`` grouped by the first ``depth`` keys of each leaf path.

    ``depth=None`` gives one entry per leaf.  Keys are ``jax.tree_util.keystr`` paths
    (``"['cell']['W_hh']"``); ``"global"`` holds the norm of the whole tree.  Pure and
    traceable: call it inside a jitted metrics step (values are scalar arrays).
    """
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                              or depth < 1):
        raise ValueError(f"depth must be None or a positive integer, got {depth!r}")
    leaves = jax.tree_util.tree_flatten_with_path(grads)[0]
    if not leaves:
        raise ValueError("grads has no array leaves")
    groups: dict[str, list] = {}
    for path, g in leaves:
        name = jax.tree_util.keystr(tuple(path if depth is None else path[:depth]))
        groups.setdefault(name, []).append(jnp.sum(jnp.abs(g) ** 2))
    out = {name: jnp.sqrt(sum(sq)) for name, sq in groups.items()}
    out["global"] = jnp.sqrt(sum(jnp.sum(jnp.abs(g) ** 2) for _, g in leaves))
    return out


# -------------------------------------------------------------- credit assignment

def carry_fields(tree) -> list:
    """``[(name, subtree)]`` of a carry-shaped tree: the field names of the carry's
    NamedTuple (``h`` for :class:`rnnjax.HiddenState`, ``h, c`` for
    :class:`rnnjax.LSTMState`); a carry that is not a NamedTuple is one field ``z``."""
    if hasattr(tree, "_fields"):
        return list(zip(tree._fields, tree))
    return [("z", tree)]


def _check_steps(source, reference, L):
    """``(s, r)`` after checking ``0 <= s <= r < L`` (0-based steps of the carry)."""
    for name, v in (("source", source), ("reference", reference)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{name} must be an integer step index, got {v!r}")
    s, r = int(source), int(reference)
    if not 0 <= s <= r < L:
        raise ValueError(f"source and reference must satisfy 0 <= source <= reference < "
                         f"{L} (the sequence length), got source={s}, reference={r}")
    return s, r


def _underflow_flags(maxabs, thr):
    """``maxabs_t < thr`` at a step some later step of which is ``>= thr``: a gradient
    that flows back from later targets and fell below the dtype's normal range (an
    exact 0 with no later gradient, e.g. ``dL/dc`` at the last step, is not flagged)."""
    normal = (maxabs >= thr).astype(jnp.int32)
    later = jnp.concatenate([jnp.flip(jnp.cumsum(jnp.flip(normal)))[1:],
                             jnp.zeros((1,), jnp.int32)])
    return (maxabs < thr) & (later > 0)


def _underflow_threshold(dtype):
    """``tiny / eps`` of ``dtype`` (1.6e-31 in float32, 1.0e-292 in float64): below it
    the entries within relative ``eps`` of the largest can be subnormal (or flushed to
    zero), so the norm no longer has the dtype's precision."""
    fi = jnp.finfo(dtype)
    return float(fi.tiny) / float(fi.eps)


def _credit_core(cell, params, xs, loss_fn, carry, readout):
    r"""``(norms, maxabs, scale)``: per field ``f`` the ``(L,)`` arrays
    ``||g^f_t|| / scale`` and ``max |g^f_t| / scale`` of ``g^f_t = dL/dz^f_t`` (norm over
    the batch and the field's entries, complex parts as real pairs), from one backward
    pass: the zero perturbations of :func:`hidden_grad_norms` and a cotangent
    ``dL/dy`` divided by ``scale = max |dL/dy|`` before it enters the scan, so the
    backward pass runs at the top of the dtype's range."""
    xs = _check_loss_inputs(cell, params, xs, loss_fn)
    unbatched, xs_tm, weights, carry, like, zeros, readout = _perturbation_setup(
        cell, params, xs, carry, readout)
    T, B = xs_tm.shape[:2]

    def ys_of(er, ei):
        ys = jnp.swapaxes(_perturbed_scan(cell, weights, carry, xs_tm, er, ei, readout), 0, 1)
        return ys[0] if unbatched else ys

    def loss(ys):
        out = loss_fn(ys)
        if jnp.ndim(out) != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {jnp.shape(out)}")
        return jnp.real(out)

    ys, pull = jax.vjp(ys_of, zeros, zeros)
    gy = jax.grad(loss)(ys)
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(gy)))
    scale = jnp.where(m > 0, m, 1).astype(_real_dtype(gy.dtype))
    g_re, g_im = pull(gy / scale.astype(gy.dtype))
    norms, maxabs = {}, {}
    for (name, gr), (_, gi), (_, lk) in zip(carry_fields(g_re), carry_fields(g_im),
                                            carry_fields(like)):
        parts = []
        for a, b, s in zip(jax.tree.leaves(gr), jax.tree.leaves(gi), jax.tree.leaves(lk)):
            parts.append(a.reshape(T, -1))
            if jnp.issubdtype(s.dtype, jnp.complexfloating):
                parts.append(b.reshape(T, -1))
        g = jnp.concatenate(parts, -1)
        norms[name] = scaled_norm(g, axes=(-1,))
        maxabs[name] = jnp.max(jnp.abs(g), axis=-1)
    return norms, maxabs, scale


def _credit_flags(maxabs):
    """Per-field and whole-carry underflow flags (:func:`_underflow_flags`)."""
    some = next(iter(maxabs.values()))
    thr = _underflow_threshold(some.dtype)
    flags = {f: _underflow_flags(m, thr) for f, m in maxabs.items()}
    whole = _underflow_flags(jnp.max(jnp.stack(list(maxabs.values())), axis=0), thr)
    return flags, whole


def credit_arrays(cell: Cell, params, xs, loss_fn, *, carry=None, readout="auto") -> dict:
    r""":func:`credit_profile`'s measurement as arrays, traceable under ``jit``/``vmap``:
    ``{"norms": {field: (L,)}, "scale": m, "underflow": {field: (L,) bool},
    "carry_underflow": (L,) bool}`` with ``||dL/dz^f_t|| = m * norms[f][t]`` (multiply
    in float64: the product itself may be below the dtype's range)."""
    norms, maxabs, scale = _credit_core(cell, params, xs, loss_fn, carry, readout)
    flags, whole = _credit_flags(maxabs)
    return {"norms": norms, "scale": scale, "underflow": flags, "carry_underflow": whole}


class CreditProfile(NamedTuple):
    r"""What :func:`credit_profile` returns.

    Attributes:
      norms: ``{field: (L,) float64}``, ``||dL/dz^f_t||`` for ``t = 0..L-1`` (``z_t`` the
        carry after reading ``x_t``), ``nan`` where the gradient underflowed.
      underflow: ``{field: (L,) bool}``, where the largest entry of ``dL/dz^f_t`` fell
        below ``tiny / eps`` of the dtype (float32: 1.6e-31 relative to the largest
        output gradient) while a later step's did not.
      carry_underflow: ``(L,) bool``, the same for the whole carry (every field).
    """

    norms: dict
    underflow: dict
    carry_underflow: np.ndarray

    @classmethod
    def from_arrays(cls, arrays: dict) -> CreditProfile:
        """From :func:`credit_arrays` (of one measurement): float64 norms, nan where
        underflowed."""
        sc = np.float64(np.asarray(arrays["scale"]))
        norms, uf = {}, {}
        for f, n in arrays["norms"].items():
            u = np.asarray(arrays["underflow"][f], bool)
            norms[f] = np.where(u, np.nan, np.asarray(n, np.float64) * sc)
            uf[f] = u
        return cls(norms, uf, np.asarray(arrays["carry_underflow"], bool))


def credit_profile(cell: Cell, params, xs, loss_fn, *, carry=None,
                   readout="auto") -> CreditProfile:
    r"""``||dL/dz^f_t||`` for every step ``t = 0..L-1`` and carry field ``f``, in one
    backward pass, with underflow reported as underflow.

    ``L = loss_fn(ys)`` should read only the outputs of its target steps (e.g. the
    recall steps of the copy task), so that ``dL/dz_t`` before the first target is
    the credit that flows back from the targets alone:
    ``dL/dz_s = (dz_r/dz_s)^T dL/dz_r`` for ``s <= r < `` the first target.

    Computed as :func:`hidden_grad_norms` (zero perturbations ``eps_t`` added to the
    carry after each step, ``dL/dz_t = dL/deps_t``), except that the cotangent
    ``dL/dy`` entering the backward pass is divided by ``m = max |dL/dy|`` and the norms
    multiplied by ``m`` afterwards in float64, so a gradient is representable down to
    ``tiny`` of the dtype relative to the largest output gradient.  Where the largest
    entry of ``dL/dz^f_t / m`` is below ``tiny / eps`` (1.6e-31 in float32, 1e-292 in
    float64) although a later step's is not, the gradient has underflowed: the norm
    is ``nan`` and ``underflow[f][t]`` is True (an exact zero with no later gradient,
    e.g. ``dL/dc`` at the last step, is a true 0).

    Args:
      cell, params, xs, carry: as :func:`hidden_grad_norms` (``xs (L, F)`` or
        ``(B, L, F)``).
      loss_fn: ``ys -> scalar``, ``ys`` the cell's outputs (layout of ``xs``).
      readout: as :func:`hidden_grad_norms` (``"step"``: the step's own outputs; then
        ``dL/dz_t`` omits the direct path through ``y_t``, which a loss without a target
        at ``t`` does not have).

    Returns a :class:`CreditProfile`.
    """
    arrays = jax.jit(lambda p, x, c: credit_arrays(cell, p, x, loss_fn, carry=c,
                                                   readout=readout))(params, xs, carry)
    return CreditProfile.from_arrays(arrays)


def credit_ratio(profile: CreditProfile, source: int, reference: int) -> dict:
    r"""``{field: rho^f}`` with ``rho^f = ||dL/dz^f_s|| / ||dL/dz^f_r||`` from a
    :func:`credit_profile` (``s = source``, ``r = reference``, 0-based steps).

    ``None`` (underflow) where ``dL/dz^f_s`` underflowed or the whole carry's gradient
    underflowed at any step of ``s..r`` (the credit passed through a state it could not
    represent), or where ``||dL/dz^f_r|| = 0`` (nothing to compare with).
    """
    if not isinstance(profile, CreditProfile):
        raise ValueError(f"profile must be a CreditProfile (credit_profile's result), got "
                         f"{type(profile).__name__}")
    L = len(profile.carry_underflow)
    s, r = _check_steps(source, reference, L)
    out = {}
    for f, n in profile.norms.items():
        bad = (profile.underflow[f][s] or profile.carry_underflow[s:r + 1].any()
               or not n[r] > 0)
        out[f] = None if bad else float(n[s] / n[r])
    return out


def _log_sigma_single(cell, params, xs, carry, s, r, n_iter, key):
    """``log ||dz_r/dz_s||_2`` for one example (power iteration, per-step rescaling)."""
    weights, z0, like = _setup_single(cell, params, xs, carry)
    if r == s:  # dz_s/dz_s = I
        return jnp.zeros((), z0.dtype)
    f = _real_step(cell, weights, like)
    # the state z_{t-1} that step t reads (t = 0..r); the product is steps s+1..r
    _, zin = jax.lax.scan(lambda z, x: (f(z, x), z), z0, xs[:r + 1])
    zin, seg = zin[s + 1:], xs[s + 1:r + 1]

    def unit(w, lg):
        n = scaled_norm(w)
        return w / jnp.where(n > 0, n, 1), lg + jnp.log(n)

    def push(v):  # (P v / ||P v||, log ||P v||), ||v|| = 1
        def body(c, inp):
            z, x = inp
            w = jax.jvp(lambda zz: f(zz, x), (z,), (c[0],))[1]
            return unit(w, c[1]), None
        return jax.lax.scan(body, (v, jnp.zeros((), v.dtype)), (zin, seg))[0]

    def pull(u):  # P^T u / ||P^T u||
        def body(c, inp):
            z, x = inp
            w = jax.vjp(lambda zz: f(zz, x), z)[1](c[0])[0]
            return unit(w, c[1]), None
        return jax.lax.scan(body, (u, jnp.zeros((), u.dtype)), (zin, seg), reverse=True)[0]

    def it(_, c):  # v <- P^T P v (normalised), keeping log ||P v|| of the v pushed
        u, lg = push(c[0])
        return pull(u)[0], lg

    v = jax.random.normal(key, z0.shape, z0.dtype)
    v = v / scaled_norm(v)
    return jax.lax.fori_loop(0, n_iter, it, (v, jnp.zeros((), v.dtype)))[1]


def log_jacobian_norm(cell: Cell, params, xs, source: int, reference: int, *,
                      n_iter: int = 20, carry=None, key=None, per_example: bool = False):
    r"""``log`` of the mean over examples of ``||dz_r/dz_s||_2`` (``s = source``,
    ``r = reference``, 0-based: ``z_t`` the whole carry after reading ``x_t``, in its
    real view), traceable under ``jit``.

    ``P = dz_r/dz_s = J_r J_{r-1} ... J_{s+1}`` along each example's trajectory.  Power
    iteration on ``P^T P`` from a random unit ``v`` (``key``): ``n_iter`` times
    ``u = P v``, ``v <- P^T u / ||P^T u||``, with ``P v`` by forward-mode JVPs and
    ``P^T u`` by reverse-mode VJPs step by step; the result is ``log ||P v||`` of the
    last ``v`` pushed (after ``n_iter - 1`` applications of ``P^T P``).  The vector is
    rescaled to unit norm after every step and the logs of the scales summed, so the
    result neither
    underflows nor overflows in any dtype (``||P|| = 1e-60`` in float32 is
    ``log = -138.2``).  ``||P v|| <= ||P||_2`` for every unit ``v`` and the iteration
    converges to it at the rate ``(sigma_2 / sigma_1)^(2 n_iter)``; ``s = r`` gives 0.

    Args:
      xs: ``(L, F)`` or ``(B, L, F)``; carry: optional initial carry (batched like xs).
      per_example: if True, the ``(B,)`` logs of every example; else
        ``log((1/B) sum_b ||P_b||_2)`` (computed as a log-sum-exp).
    """
    check_cell(cell)
    xs = _check_xs(cell, params, xs)
    if isinstance(n_iter, bool) or not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    unbatched = xs.ndim == 2
    xb = xs[None] if unbatched else xs
    s, r = _check_steps(source, reference, xb.shape[1])
    key = jax.random.key(0) if key is None else key
    keys = jax.random.split(key, xb.shape[0])
    if carry is not None and unbatched:
        carry = jax.tree.map(lambda a: jnp.asarray(a)[None], carry)
    one = partial(_log_sigma_single, cell, params, s=s, r=r, n_iter=n_iter)
    if carry is None:
        lg = jax.vmap(lambda x, k: one(x, None, key=k))(xb, keys)
    else:
        lg = jax.vmap(lambda x, c, k: one(x, c, key=k))(xb, carry, keys)
    if per_example:
        return lg[0] if unbatched else lg
    return jax.scipy.special.logsumexp(lg) - jnp.log(jnp.asarray(xb.shape[0], lg.dtype))


def jacobian_norm(cell: Cell, params, xs, source: int, reference: int, *,
                  n_iter: int = 20, carry=None, key=None, per_example: bool = False):
    r"""``||dz_r/dz_s||_2``, the mean over examples (or ``(B,)`` float64 per example):
    ``exp`` of :func:`log_jacobian_norm` taken in float64 (0 only below ~1e-308)."""
    lg = jax.jit(lambda p, x, c, k: log_jacobian_norm(
        cell, p, x, source, reference, n_iter=n_iter, carry=c, key=k,
        per_example=per_example))(params, xs, carry, jax.random.key(0) if key is None else key)
    out = np.exp(np.asarray(lg, np.float64))
    return out if per_example else float(out)


def credit_metrics(cell: Cell, params, xs, loss_fn, source: int, reference: int, *,
                   jacobian_examples: int | None = None, n_iter: int = 20, carry=None,
                   readout="auto", key=None, profile: bool = False) -> dict:
    r"""The credit measurements as arrays, traceable under ``jit``/``vmap`` (the
    training runner's metrics): ``{"ratio": {field: rho^f}, "log_jacobian_norm": ...}``
    (and ``"profile"``: :func:`credit_arrays`, when ``profile``).

    ``rho^f = ||dL/dz^f_s|| / ||dL/dz^f_r||`` as :func:`credit_ratio` (``nan`` where
    that returns None: underflow), from the one backward pass of
    :func:`credit_arrays`; ``log_jacobian_norm`` is :func:`log_jacobian_norm` over the
    first ``jacobian_examples`` examples of ``xs`` (all when None).
    """
    xs = _check_xs(cell, params, xs)
    L = xs.shape[-2]
    s, r = _check_steps(source, reference, L)
    arrays = credit_arrays(cell, params, xs, loss_fn, carry=carry, readout=readout)
    norms, flags = arrays["norms"], arrays["underflow"]
    through = jnp.any(arrays["carry_underflow"][s:r + 1])
    ratio = {f: jnp.where(flags[f][s] | through | ~(n[r] > 0), jnp.nan,
                          n[s] / jnp.where(n[r] > 0, n[r], 1)) for f, n in norms.items()}
    xj = xs if xs.ndim == 2 or jacobian_examples is None else xs[:jacobian_examples]
    cj = carry if carry is None or xs.ndim == 2 or jacobian_examples is None else \
        jax.tree.map(lambda a: a[:jacobian_examples], carry)
    lj = log_jacobian_norm(cell, params, xj, s, r, n_iter=n_iter, carry=cj, key=key)
    out = {"ratio": ratio, "log_jacobian_norm": lj}
    if profile:
        out["profile"] = arrays
    return out


def credit_assignment(cell: Cell, params, xs, loss_fn, source: int, reference: int, *,
                      jacobian_examples: int | None = None, n_iter: int = 20, carry=None,
                      readout="auto", key=None) -> dict:
    r"""``{"ratio": {field: float or None}, "jacobian_norm": float}``: the measured credit
    ratio ``||dL/dz^f_s|| / ||dL/dz^f_r||`` per carry field (None: underflow, see
    :func:`credit_ratio`) and the mean over examples of ``||dz_r/dz_s||_2``
    (:func:`jacobian_norm`, over the first ``jacobian_examples`` examples), computed
    by :func:`credit_metrics` (the runner's metrics are the same numbers)."""
    m = jax.jit(lambda p, x, c, k: credit_metrics(
        cell, p, x, loss_fn, source, reference, jacobian_examples=jacobian_examples,
        n_iter=n_iter, carry=c, readout=readout, key=k))(
            params, xs, carry, jax.random.key(0) if key is None else key)
    return credit_record(m)


def credit_record(metrics) -> dict:
    """:func:`credit_metrics`'s arrays as plain numbers: ``{"ratio": {field: float or
    None}, "jacobian_norm": float}`` (``nan`` ratios become None, the Jacobian norm is
    ``exp`` of its log in float64)."""
    ratio = {f: (None if np.isnan(float(v)) else float(v))
             for f, v in metrics["ratio"].items()}
    return {"ratio": ratio,
            "jacobian_norm": float(np.exp(np.float64(np.asarray(metrics["log_jacobian_norm"]))))}
