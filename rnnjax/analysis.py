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
* :func:`grad_norms_by_layer` -- a hook for the training runner's metrics.

Conventions.  ``h_0`` is the initial carry and ``h_t`` (``t = 1..T``) the carry after
step ``t``.  "State" means the whole carry (for the LSTM both ``h`` and ``c``).  A
complex carry leaf ``h = a + i b`` is treated as the real vector ``(a, b)``: gradients
of a real loss are ``(dL/da, dL/db)``, so ``||dL/dh||^2 = ||dL/da||^2 + ||dL/db||^2``,
and Jacobians are the real ``2H x 2H`` Jacobians (a unitary ``U`` gives an orthogonal
one).  This avoids JAX's conjugation convention for complex gradients.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cell import Cell
from rnnjax.checks import check_cell
from rnnjax.paramfile import load_params_npz, save_params_npz
from rnnjax.newton import carry_to_vector as _to_real
from rnnjax.newton import vector_to_carry as _from_real

__all__ = [
    "carry_readout",
    "grad_norms_by_layer",
    "hidden_grad_norms",
    "jacobian_product_svals",
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
    check_cell(cell)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable ys -> scalar, got {type(loss_fn).__name__}")
    xs = _check_xs(cell, params, xs)
    unbatched = xs.ndim == 2
    if per_example and unbatched:
        raise ValueError("per_example=True needs xs of shape (batch, time, features), "
                         f"got shape {xs.shape}")
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
    readout = _resolve_readout(cell, weights, carry, xs_tm[0], readout)

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
