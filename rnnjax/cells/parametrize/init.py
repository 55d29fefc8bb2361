"""Initialisers of the parametrisations (the table of :mod:`rnnjax.cells.parametrize`)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.core.checks import check_positive_int

__all__ = [
    "block_angles", "cayley_haar", "cayley_init", "haar_orthogonal", "haar_skew",
    "haar_unitary", "haar_unitary_skew", "henaff", "householder_henaff",
    "householder_identity", "householder_random",
]


# --------------------------------------------------------------------------- initialisers
def block_angles(key, n: int, low: float = -math.pi, high: float = math.pi,
                 dtype=jnp.float32):
    """The ``n // 2`` rotation angles drawn by :func:`henaff` (``U[low, high]``)."""
    return jax.random.uniform(key, (n // 2,), dtype, low, high)


def _blocks_from_values(s, n, dtype):
    """``A`` with ``A[2k, 2k+1] = s_k`` (so ``skew(A)`` has blocks ``[[0, s], [-s, 0]]``)."""
    idx = 2 * jnp.arange(s.shape[0])
    return jnp.zeros((n, n), dtype).at[idx, idx + 1].set(s.astype(dtype))


def henaff(key, n: int, dtype=jnp.float32):
    """Henaff et al. (2016) init for the exponential maps: ``expm(skew(A))`` is
    block-diagonal with ``2 x 2`` rotations by ``theta_k ~ U[-pi, pi]``
    (``theta =`` :func:`block_angles` ``(key, n)``; odd ``n`` leaves a trailing 1)."""
    check_positive_int("n", n)
    return _blocks_from_values(block_angles(key, n, dtype=dtype), n, dtype)


def cayley_init(key, n: int, dtype=jnp.float32):
    """scoRNN's Cayley init: skew blocks ``s_k = sqrt((1 - cos t_k) / (1 + cos t_k))`` with
    ``t_k ~ U[0, pi/2]`` (= :func:`block_angles` ``(key, n, 0, pi/2)``), so the Cayley
    transform is block-diagonal with rotations by ``-t_k`` (eigen-angles ``-+t_k``)."""
    check_positive_int("n", n)
    t = block_angles(key, n, 0.0, math.pi / 2, dtype)
    return _blocks_from_values(jnp.tan(t / 2), n, dtype)


def haar_orthogonal(key, n: int, dtype=jnp.float32, det: float | None = None):
    """Haar-random ``(n, n)`` orthogonal (QR of a Gaussian, signs corrected); with
    ``det = +-1`` the first column is flipped when needed to give that determinant."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype))
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    if det is not None:
        flip = jnp.sign(jnp.linalg.det(q)) != det
        q = q.at[:, 0].multiply(jnp.where(flip, -1.0, 1.0).astype(dtype))
    return q


def haar_unitary(key, n: int, dtype=jnp.float32):
    """Haar-random ``(n, n)`` unitary (QR of a complex Gaussian, phases corrected)."""
    k1, k2 = jax.random.split(key)
    z = jax.lax.complex(jax.random.normal(k1, (n, n), dtype),
                        jax.random.normal(k2, (n, n), dtype)) / math.sqrt(2)
    q, r = jnp.linalg.qr(z)
    dg = jnp.diagonal(r)
    return q * (dg / jnp.abs(dg))[None, :]


def haar_skew(key, n: int, dtype=jnp.float32):
    r"""``A`` with ``expm(skew(A))`` the Haar ``SO(n)`` matrix ``Q`` drawn from ``key``.

    The real logarithm is read from ``eigh(Q + Q^T)``: each (generically distinct)
    eigenvalue ``2 cos theta_k`` has a 2-dimensional eigenspace, the plane ``(u, v)``
    that ``Q`` rotates by ``theta_k = atan2(v^T Q u, u^T Q u)``; then
    ``log Q = sum_k theta_k (v u^T - u v^T)``.  Traceable; the result matches ``Q`` to
    the eigen-solver's accuracy, and ``expm(skew(A))`` is orthogonal exactly whatever it is.
    """
    check_positive_int("n", n)
    q = haar_orthogonal(key, n, dtype, det=1.0)
    _, vec = jnp.linalg.eigh(q + q.T)  # ascending; the lone +1 of odd n comes last
    m = n // 2
    u, v = vec[:, 0:2 * m:2], vec[:, 1:2 * m:2]
    theta = jnp.arctan2(jnp.sum(v * (q @ u), 0), jnp.sum(u * (q @ u), 0))
    log = (v * theta) @ u.T - (u * theta) @ v.T
    return jnp.triu(log, 1).astype(dtype)


def haar_unitary_skew(key, n: int, dtype=jnp.float32):
    r"""``A`` with ``expm(skew_hermitian(A))`` the Haar unitary drawn from ``key``.

    ``U = P diag(e^{i theta}) P^H`` with ``P`` the eigenvectors of the Hermitian
    ``(U + U^H) / 2`` (eigenvalues ``cos theta_k``, generically distinct) and
    ``theta_k = angle(p_k^H U p_k)``; ``K = P diag(i theta) P^H`` is then encoded in ``A``.
    """
    check_positive_int("n", n)
    u = haar_unitary(key, n, dtype)
    _, p = jnp.linalg.eigh((u + u.conj().T) / 2)
    theta = jnp.angle(jnp.sum(p.conj() * (u @ p), 0))
    k = (p * (1j * theta)) @ p.conj().T
    re, im = k.real, k.imag
    return (jnp.triu(re, 1) + jnp.tril(im, -1) + jnp.diag(jnp.diagonal(im))).astype(dtype)


def cayley_haar(key, n: int, d, dtype=jnp.float32):
    """``A`` with ``cayley(A, d)`` the Haar orthogonal drawn from ``key`` (determinant
    ``prod(d)``): ``S = (I - Q D)(I + Q D)^{-1}``."""
    check_positive_int("n", n)
    q = haar_orthogonal(key, n, dtype, det=jnp.prod(d))
    qd = q * d[None, :].astype(dtype)
    eye = jnp.eye(n, dtype=dtype)
    s = jnp.linalg.solve((eye + qd).T, (eye - qd).T).T
    return jnp.triu(s, 1).astype(dtype)


def householder_random(key, m: int, n: int, dtype=jnp.float32):
    """``m`` Gaussian reflection vectors ``(m, n)`` (for ``m = n`` a random orthogonal)."""
    return jax.random.normal(key, (m, n), dtype)


def householder_identity(m: int, n: int, dtype=jnp.float32):
    """Reflection vectors with ``H_1 ... H_m = I``: equal consecutive pairs
    ``u_{2k} = u_{2k+1} = e_k`` (``m`` must be even)."""
    if m % 2:
        raise ValueError(f"m must be even for the identity Householder init, got {m}")
    idx = jnp.arange(m // 2) % n
    return jnp.repeat(jax.nn.one_hot(idx, n, dtype=dtype), 2, axis=0)


def householder_henaff(key, n: int, dtype=jnp.float32):
    """Henaff init as ``n`` reflections (``n`` even): in plane ``(e_2k, e_2k+1)`` the
    reflections across lines at angles ``0`` and ``-theta_k / 2`` compose to a rotation
    by ``theta_k`` (:func:`block_angles` ``(key, n)``).  Returns ``(n, n)`` vectors."""
    if n % 2:
        raise ValueError(f"n must be even for the Henaff Householder init, got {n}")
    theta = block_angles(key, n, dtype=dtype)
    k = jnp.arange(n // 2)
    # reflection across the line at angle a has normal (-sin a, cos a)
    u = jnp.zeros((n, n), dtype)
    a1 = jnp.zeros_like(theta)
    a2 = -theta / 2
    u = u.at[2 * k, 2 * k].set(-jnp.sin(a1)).at[2 * k, 2 * k + 1].set(jnp.cos(a1))
    u = u.at[2 * k + 1, 2 * k].set(-jnp.sin(a2)).at[2 * k + 1, 2 * k + 1].set(jnp.cos(a2))
    return u
