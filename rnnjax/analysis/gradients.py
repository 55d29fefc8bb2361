r"""Gradient-flow measurements for any :class:`rnnjax.Cell`.

Why orthogonal and unitary recurrences exist: backpropagating through ``T - s`` steps
multiplies the gradient by the product of step Jacobians

.. math::  \frac{\partial h_t}{\partial h_s} = \prod_{k=s+1}^{t} J_k,
           \qquad J_k = \frac{\partial h_k}{\partial h_{k-1}}
           \;(= \mathrm{diag}(f'(a_k))\, W \text{ for an Elman cell}),

whose norm vanishes or explodes geometrically unless ``W`` is (close to) orthogonal
(Bengio, Simard & Frasconi 1994; Pascanu, Mikolov & Bengio 2013; Arjovsky, Shah &
Bengio 2016).  This package measures it exactly, with autodiff:

* :func:`hidden_grad_norms` -- ``||dL/dh_t||`` for every ``t`` in one backward pass;
* :func:`jacobian_product_svals` -- singular values of ``dh_t/dh_s`` by JVP/VJP subspace
  iteration (or densely, for checks);
* :func:`recurrent_spectrum`, :func:`orthogonality_error` -- the recurrent matrix;
* :func:`lyapunov_spectrum` -- Lyapunov exponents of the driven cell (QR method);
* :func:`grad_norms_by_layer` -- a hook for the training runner's metrics;
* :func:`credit_profile`, :func:`credit_ratio`, :func:`jacobian_norm`,
  :func:`credit_assignment` -- credit assignment to a source step for a loss restricted
  to target steps (below).

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

from rnnjax.analysis._common import (
    check_loss_inputs,
    check_xs,
    perturbation_setup,
    perturbed_scan,
    real_step,
    setup_single,
)
from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_cell

__all__ = ["grad_norms_by_layer", "hidden_grad_norms", "jacobian_product_svals", "scaled_norm",
           "state_trajectory"]


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
    xs = check_loss_inputs(cell, params, xs, loss_fn)
    if per_example and xs.ndim == 2:
        raise ValueError("per_example=True needs xs of shape (batch, time, features), "
                         f"got shape {xs.shape}")
    unbatched, xs_tm, weights, carry, like, zeros, readout = perturbation_setup(
        cell, params, xs, carry, readout)
    T, B = xs_tm.shape[:2]

    def loss_of_eps(er, ei):
        ys = perturbed_scan(cell, weights, carry, xs_tm, er, ei, readout)
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
    xs = check_xs(cell, params, xs, batched_ok=False)
    weights, z0, like = setup_single(cell, params, xs, carry)
    f = real_step(cell, weights, like)
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
    xs = check_xs(cell, params, xs, batched_ok=False)
    s, t = _check_span(span, xs.shape[0])
    if method not in ("iterative", "dense"):
        raise ValueError(f"method must be one of ['dense', 'iterative'], got {method!r}")
    weights, z0, like = setup_single(cell, params, xs, carry)
    n = z0.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, {n}] (the state size), got {k!r}")
    f = real_step(cell, weights, like)
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
