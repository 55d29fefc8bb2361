r"""Riemannian optimisation on the orthogonal group, the unitary group and the Stiefel
manifold, as an optax transformation.

Orthogonal recurrence is the constrained problem ``min L(W) s.t. W^H W = I``.  The
parametrisations of :mod:`rnnjax.parametrize` (expRNN, scoRNN, ...) remove the
constraint; :func:`riemannian` keeps ``W`` itself as the parameter and moves it *along*
the manifold.  For a leaf ``W`` with Euclidean gradient ``G`` one update is::

    grad = G - W G^H W                       (Riemannian gradient, canonical metric;
                                              tangent: W^H grad + grad^H W = 0)
    u    = inner(grad)                       (any optax transformation: sgd, rmsprop,
                                              adam, schedules; its moments see grads)
    xi   = u - W sym(W^H u)                  (vector transport by projection: the
                                              inner's direction back onto T_W)
    W'   = R_W(xi)                           (retraction)

and the update handed to ``optax.apply_updates`` is ``W' - W``.  Retractions
(``R_W(xi) = W + xi + O(|xi|^2)``, each maps back onto the manifold exactly):

* ``"cayley"``: ``W' = (I - A/2)^{-1} (I + A/2) W`` with
  ``A = P xi W^H - W xi^H P``, ``P = I - W W^H / 2`` (Wen & Yin 2013; Li, Fuxin &
  Todorovic 2020, "Efficient Riemannian optimization on the Stiefel manifold via the
  Cayley transform"), followed by one Newton-Schulz step ``W' (3I - W'^H W') / 2``:
  the Cayley map keeps ``||W^H W - I||`` where it was, so without it rounding errors
  would accumulate (float32: ~2e-5 after 1000 steps); with it they do not.  With ``inner =
  optax.sgd(lr)`` one step is exactly the
  full-capacity uRNN update of Wisdom, Powers, Hershey, Le Roux & Atlas (2016, eq. 9):
  ``W' = (I + lr/2 A)^{-1} (I - lr/2 A) W``, ``A = G W^H - W G^H``.
* ``"qr"``: ``W' = qf(W + xi)``, the Q factor with a positive diagonal of R.
* ``"polar"``: ``W' = U V^H`` from the SVD ``W + xi = U S V^H`` (the closest point).

Manifolds and how a leaf stores its matrix (leading axes are a batch of matrices):

* ``"orthogonal"``: a real ``(..., n, n)`` leaf, ``W^T W = I``.
* ``"stiefel"``: a real ``(..., n, p)`` leaf with ``n >= p``, orthonormal columns.
* ``"unitary"``: ``W = X[..., 0, :, :] + i X[..., 1, :, :]`` from a real
  ``(..., 2, n, n)`` leaf ``X`` (params are real arrays, the project convention).  The
  gradient of the real pair is ``G = dL/dRe W + i dL/dIm W``, what JAX returns for the
  two real halves, so the formulas above apply with ``^H`` the conjugate transpose.

Every leaf the transformation sees is treated as a point of ``manifold``: restrict it to
some parameters with ``optax.multi_transform`` (e.g. the labels of
:func:`rnnjax.optim.label_params` with ``orthogonal_keys={"W_hh"}``), and chain it
after clipping like any optax transformation::

    tx = optax.multi_transform(
        {"orthogonal": riemannian(optax.rmsprop(1e-4)), "other": optax.rmsprop(1e-3),
         "frozen": optax.set_to_zero()},
        lambda p: rnnjax.optim.label_params(p, orthogonal_keys={"W_hh"}))
    tx = optax.chain(optax.clip_by_global_norm(1.0), tx)

Moments: the inner transformation keeps its moments (momentum, RMSprop / Adam second
moments) of the Riemannian gradients, and its output is transported to the current
tangent space by projection (Absil, Mahony & Sepulchre 2008, sec. 8.1.3).  Li et al.
instead project the stored momentum at every step and keep one scalar second moment;
for plain SGD the two coincide.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from rnnjax.core.checks import check_choice

MANIFOLDS = ("orthogonal", "unitary", "stiefel")
RETRACTIONS = ("cayley", "qr", "polar")

__all__ = ["MANIFOLDS", "RETRACTIONS", "RiemannianState", "from_leaf", "project",
           "retract", "riemannian", "riemannian_gradient", "to_leaf"]


class RiemannianState(NamedTuple):
    """State of :func:`riemannian`: the inner transformation's state."""

    inner: optax.OptState


def _h(a):
    """Conjugate transpose of the last two axes."""
    return jnp.conj(jnp.swapaxes(a, -1, -2))


def _sym(a):
    return 0.5 * (a + _h(a))


def _check_leaf(manifold, x):
    shape = tuple(jnp.shape(x))
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"params on the {manifold} manifold must be real floating-point "
                        f"arrays, got dtype {jnp.result_type(x)}")
    if manifold == "unitary":
        ok = len(shape) >= 3 and shape[-3] == 2 and shape[-1] == shape[-2]
        want = "(..., 2, n, n) (real and imaginary parts)"
    elif manifold == "orthogonal":
        ok = len(shape) >= 2 and shape[-1] == shape[-2]
        want = "(..., n, n)"
    else:
        ok = len(shape) >= 2 and shape[-2] >= shape[-1]
        want = "(..., n, p) with n >= p"
    if not ok:
        raise ValueError(f"a param on the {manifold} manifold must have shape {want}, "
                         f"got shape {shape}")


def from_leaf(manifold: str, x):
    """The matrix stored in a leaf: ``x`` itself, or ``x[..., 0] + i x[..., 1]`` for
    ``"unitary"``."""
    if manifold == "unitary":
        return jax.lax.complex(x[..., 0, :, :], x[..., 1, :, :])
    return x


def to_leaf(manifold: str, w):
    """Inverse of :func:`from_leaf`."""
    if manifold == "unitary":
        return jnp.stack([w.real, w.imag], axis=-3)
    return w


def riemannian_gradient(w, g):
    """``G - W G^H W``: the Riemannian gradient of the canonical metric at ``W``
    (Wen & Yin 2013; for square ``W`` it is twice the Euclidean projection)."""
    return g - w @ _h(g) @ w


def project(w, u):
    """Projection onto the tangent space at ``W`` (Euclidean metric):
    ``u - W sym(W^H u)``; ``W^H xi + xi^H W = 0`` for the result."""
    return u - w @ _sym(_h(w) @ u)


def retract(w, xi, retraction: str = "cayley"):
    """``R_W(xi)``: the point reached from ``W`` along the tangent vector ``xi`` (see the
    module doc for the three retractions)."""
    check_choice("retraction", retraction, RETRACTIONS)
    if retraction == "cayley":
        n = w.shape[-2]
        eye = jnp.eye(n, dtype=w.dtype)
        p = eye - 0.5 * w @ _h(w)
        a = p @ xi @ _h(w) - w @ _h(xi) @ p
        y = jnp.linalg.solve(eye - 0.5 * a, (eye + 0.5 * a) @ w)
        # one Newton-Schulz step: a no-op on the manifold (to rounding), it halves the
        # digits of any drift instead of carrying it along as the Cayley map does
        k = y.shape[-1]
        return y @ (1.5 * jnp.eye(k, dtype=y.dtype) - 0.5 * _h(y) @ y)
    y = w + xi
    if retraction == "qr":
        q, r = jnp.linalg.qr(y)
        d = jnp.diagonal(r, axis1=-2, axis2=-1)
        phase = jnp.where(jnp.abs(d) > 0, d / jnp.where(jnp.abs(d) > 0, jnp.abs(d), 1), 1)
        return q * phase[..., None, :]
    u, _, vh = jnp.linalg.svd(y, full_matrices=False)
    return u @ vh


def riemannian(inner: optax.GradientTransformation | None = None,
               manifold: str = "orthogonal", retraction: str = "cayley"
               ) -> optax.GradientTransformation:
    r"""Riemannian version of ``inner`` on ``manifold`` with ``retraction``.

    Args:
      inner: the optax transformation producing the step from the Riemannian gradient
        (it includes the learning rate, e.g. ``optax.sgd(1e-3)``,
        ``optax.rmsprop(1e-4)``, ``optax.adam(schedule)``); default ``optax.sgd(1e-3)``.
      manifold: ``"orthogonal"``, ``"unitary"`` (real pairs ``(..., 2, n, n)``) or
        ``"stiefel"``; every leaf is a point of it (checked at ``init``).
      retraction: ``"cayley"``, ``"qr"`` or ``"polar"``.

    Returns:
      ``optax.GradientTransformation`` whose ``update(grads, state, params)`` (params
      required) returns ``W' - W`` per leaf, so ``optax.apply_updates`` lands on ``W'``.
    """
    inner = optax.sgd(1e-3) if inner is None else inner
    if not isinstance(inner, optax.GradientTransformation):
        raise TypeError(f"inner must be an optax.GradientTransformation, got "
                        f"{type(inner).__name__}")
    check_choice("manifold", manifold, MANIFOLDS)
    check_choice("retraction", retraction, RETRACTIONS)

    def init_fn(params):
        for leaf in jax.tree.leaves(params):
            _check_leaf(manifold, leaf)
        return RiemannianState(inner=inner.init(params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("riemannian(...).update needs params (the current points)")

        def rgrad(g, x):
            w = from_leaf(manifold, x)
            return to_leaf(manifold, riemannian_gradient(w, from_leaf(manifold, g)))

        rg = jax.tree.map(rgrad, updates, params)
        steps, inner_state = inner.update(rg, state.inner, params)

        def move(u, x):
            w = from_leaf(manifold, x)
            xi = project(w, from_leaf(manifold, u).astype(w.dtype))
            return (to_leaf(manifold, retract(w, xi, retraction)) - x).astype(x.dtype)

        return jax.tree.map(move, steps, params), RiemannianState(inner=inner_state)

    return optax.GradientTransformation(init_fn, update_fn)
