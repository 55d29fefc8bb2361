r"""The recurrent matrix and the driven dynamics: eigenvalues and singular values of
``W`` (:func:`recurrent_spectrum`), its distance from the orthogonal group
(:func:`orthogonality_error`), and Lyapunov exponents of the driven cell by the QR
method (:func:`lyapunov_spectrum`)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.analysis._common import check_xs, real_step, setup_single
from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_cell

# ------------------------------------------------------------- the recurrent matrix

def _blocks(W):
    """Split a fused ``(G*H, H)`` recurrent matrix into ``(G, H, H)`` gate blocks."""
    W = jnp.asarray(W)
    if W.ndim != 2 or W.shape[0] % W.shape[1]:
        raise ValueError(
            f"the recurrent matrix must be (H, H) or (G*H, H), got shape {W.shape}")
    G, H = W.shape[0] // W.shape[1], W.shape[1]
    return W.reshape(G, H, H)

__all__ = ["lyapunov_spectrum", "orthogonality_error", "recurrent_spectrum"]


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
    xs = check_xs(cell, params, xs, batched_ok=False)
    T = xs.shape[0]
    weights, z0, like = setup_single(cell, params, xs, carry)
    n = z0.shape[0]
    k = n if k is None else k
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, {n}] (the state size), got {k!r}")
    if isinstance(burn_in, bool) or not isinstance(burn_in, int) or not 0 <= burn_in < T:
        raise ValueError(f"burn_in must be an integer in [0, {T}), got {burn_in!r}")
    f = real_step(cell, weights, like)
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
