"""The maps onto the orthogonal and unitary groups: skew and skew-Hermitian parts, the
matrix exponential (expRNN, with retrivialisation), the scaled Cayley transform (scoRNN)
and Householder reflections."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from rnnjax.core.checks import check_positive_int

__all__ = [
    "cayley", "complex_dtype", "expm_orthogonal", "expm_unitary", "householder_apply",
    "householder_dense", "householder_reflect", "householder_unit", "retrivialize",
    "scaling_diagonal", "skew", "skew_hermitian",
]


def complex_dtype(dtype):
    """The complex dtype matching a real one (float32 -> complex64, float64 -> complex128)."""
    return jnp.result_type(dtype, jnp.complex64)


def _check_square(name, a):
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {a.shape}")


# --------------------------------------------------------------------------- skew maps
def skew(a):
    """``S = triu(A, 1) - triu(A, 1)^T``: the skew-symmetric matrix held by ``A (n, n)``."""
    u = jnp.triu(a, 1)
    return u - u.T


def skew_hermitian(a):
    """Skew-Hermitian ``K`` from all ``n^2`` real entries of ``A (n, n)``.

    ``K = (U - U^T) + i (L + L^T + diag(A))`` with ``U = triu(A, 1)``,
    ``L = tril(A, -1)``; ``K^H = -K``.  The real-skew part alone equals :func:`skew`,
    so every real generator (e.g. :func:`henaff`) is a valid unitary generator too.
    """
    low = jnp.tril(a, -1)
    imag = low + low.T + jnp.diag(jnp.diagonal(a))
    return jax.lax.complex(skew(a), imag)


def expm_orthogonal(a, base=None):
    r"""expRNN map: ``W = B expm(A - A^T)`` (Lezcano-Casado & Martinez-Rubio 2019).

    ``A (n, n)`` real (strict upper triangle used, see :func:`skew`); ``base`` the
    optional ``(n, n)`` orthogonal base ``B`` of the dynamic trivialization (treated as
    a constant: its gradient is stopped).  The gradient of ``expm`` is JAX's, which
    equals the block-matrix adjoint: for ``L = <G, expm(S)>``,
    ``dL/dS = [expm([[S^T, G], [0, S^T]])]_{12}``.
    """
    _check_square("A", a)
    w = expm(skew(a))
    if base is not None:
        w = jax.lax.stop_gradient(base) @ w
    return w


def expm_unitary(a):
    """Full-capacity unitary map ``W = expm(K)``, ``K`` = :func:`skew_hermitian` ``(A)``.

    ``n^2`` real parameters, the dimension of ``U(n)`` (Wisdom, Powers, Hershey,
    Le Roux & Atlas 2016, "Full-capacity unitary recurrent neural networks"; they
    move on the manifold with a Cayley retraction, here the exponential map of the
    Lie algebra is used instead, as expRNN does for ``SO(n)``).  Returns complex ``W``.
    """
    _check_square("A", a)
    return expm(skew_hermitian(a))


def retrivialize(params, key: str = "skew", base_key: str = "base", project: bool = True):
    r"""Dynamic trivialization (Lezcano-Casado 2019, Sec. 5): fold ``A`` into the base.

    For every dict in ``params`` holding both ``key`` and ``base_key``:
    ``B <- B expm(A - A^T)``, ``A <- 0``.  The represented matrix ``B expm(A - A^T)``
    is unchanged, and the next optimizer steps move on the group around the new base.
    Call it from the training loop every ``K`` steps (``K = inf`` gives the static
    trivialization; the runner does it with ``Config.retrivialize_every``).  With
    ``project`` the new base is re-projected onto the orthogonal group (``U V^T`` of its
    SVD, the nearest orthogonal matrix), so rounding errors of the repeated products do
    not accumulate in float32.  The params stay a plain pytree of the same structure, so
    the optimizer state stays valid (as in the reference code, it is not reset).

    Raises ``ValueError`` when no dict of ``params`` holds both keys (the params of a
    cell without the dynamic trivialization: folding would silently do nothing).
    """
    if not _holds_pair(params, key, base_key):
        raise ValueError(
            f"params hold no dict with both {key!r} and {base_key!r}: retrivialize needs "
            "the params of a cell built with the dynamic trivialization (e.g. "
            "exprnn(..., dynamic=True)); these are not, so nothing would change")
    return _retrivialize(params, key, base_key, project)


def _holds_pair(params, key, base_key) -> bool:
    if isinstance(params, dict):
        return (key in params and base_key in params) or any(
            _holds_pair(v, key, base_key) for v in params.values())
    if isinstance(params, (list, tuple)):
        return any(_holds_pair(v, key, base_key) for v in params)
    return False


def _retrivialize(params, key, base_key, project):
    if isinstance(params, dict):
        out = {k: _retrivialize(v, key, base_key, project) for k, v in params.items()}
        if key in params and base_key in params and not isinstance(params[key], dict):
            a, b = params[key], params[base_key]
            nb = b @ expm(skew(a))
            if project:
                u, _, vt = jnp.linalg.svd(nb)
                nb = u @ vt
            out[base_key] = nb.astype(b.dtype)
            out[key] = jnp.zeros_like(a)
        return out
    if isinstance(params, (list, tuple)) and not hasattr(params, "_fields"):
        return type(params)(_retrivialize(v, key, base_key, project) for v in params)
    return params


# --------------------------------------------------------------------------- Cayley
def scaling_diagonal(n: int, rho: int, dtype=jnp.float32):
    """scoRNN's ``D``: diagonal of ``n`` entries ``+-1``, the first ``rho`` equal to -1."""
    check_positive_int("n", n)
    if isinstance(rho, bool) or not isinstance(rho, int) or not 0 <= rho <= n:
        raise ValueError(f"rho must be an integer in [0, {n}], got {rho!r}")
    return jnp.where(jnp.arange(n) < rho, -1.0, 1.0).astype(dtype)


def cayley(a, d):
    r"""scoRNN map: ``W = (I + S)^{-1} (I - S) D`` with ``S = A - A^T`` (Helfrich et al. 2018).

    ``A (n, n)`` real (strict upper triangle used), ``d (n,)`` the diagonal of ``D``
    (entries ``+-1``, see :func:`scaling_diagonal`).  For ``L(W)`` with ``G = dL/dW`` the
    gradient with respect to the skew matrix is the paper's closed form
    ``V^T - V``, ``V = (I + S)^{-T} G (D + W^T)``; JAX's derivative of the solve gives
    exactly that (tested).
    """
    _check_square("A", a)
    s = skew(a)
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    return jnp.linalg.solve(eye + s, eye - s) * d[None, :]


# --------------------------------------------------------------------------- Householder
def householder_unit(u):
    """The unit reflection vectors ``q_k = u_k / ||u_k||`` of ``u (m, n)``."""
    if u.ndim != 2:
        raise ValueError(f"u must be (m, n) reflection vectors, got shape {u.shape}")
    return u / jnp.linalg.norm(u, axis=1, keepdims=True)


def householder_reflect(q, h):
    r"""``W h = H_1 ... H_m h`` with unit vectors ``q (m, n)``, ``H_k = I - 2 q_k q_k^T``.

    ``h (..., n)``; ``H_m`` acts first.  ``m <= 8`` reflections are unrolled (``m``
    rank-one updates per step, the cheap case), more run in a ``lax.scan``.
    """
    def reflect(h, qk):
        return h - 2.0 * (h @ qk)[..., None] * qk

    if q.shape[0] <= 8:
        for k in range(q.shape[0] - 1, -1, -1):
            h = reflect(h, q[k])
        return h
    h, _ = jax.lax.scan(lambda h, qk: (reflect(h, qk), None), h, q, reverse=True)
    return h


def householder_apply(u, h):
    r"""``W h`` with ``W = H_1 H_2 ... H_m``, ``H_k = I - 2 u_k u_k^T / ||u_k||^2``.

    oRNN (Mhammedi, Hellicar, Rahman & Bailey 2017).  ``u (m, n)``, ``h (..., n)``; cost
    ``O(n m)`` without forming ``W`` (``H_m`` is applied first):
    :func:`householder_reflect` of :func:`householder_unit` ``(u)``.
    """
    return householder_reflect(householder_unit(u), h)


def householder_dense(u):
    """The dense ``(n, n)`` matrix ``H_1 ... H_m`` of :func:`householder_apply`."""
    n = u.shape[1]
    return jax.vmap(lambda col: householder_apply(u, col), in_axes=1, out_axes=1)(
        jnp.eye(n, dtype=u.dtype))
