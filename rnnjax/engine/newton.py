r"""Nonlinear recurrences evaluated in parallel over time by Newton's method.

The trajectory ``z_1 .. z_T`` of a cell (its carry flattened into one real vector
``z``, see :func:`carry_to_vector`) is the root of the ``T n`` equations

.. math::  r_t(z) = z_t - g_t(z_{t-1}) = 0, \qquad t = 1..T,\; z_0 \text{ given},

where ``g_t(z) = step(z, x_t)`` while ``t < length`` and ``g_t(z) = z`` afterwards (the
engine's frozen carry).  Newton's method linearises every ``g_t`` at the current
iterate ``z^{(i)}`` and solves the linear recurrence

.. math::  z^{(i+1)}_t = A_t z^{(i+1)}_{t-1} + g_t(z^{(i)}_{t-1}) - A_t z^{(i)}_{t-1},

which :func:`rnnjax.engine.associative.linear_scan` solves in ``O(log T)`` depth:

* ``method="deer"`` -- DEER (Lim, Zhu, Selfridge & Kasim 2024, "Parallelizing
  non-linear sequential models over the sequence length"): ``A_t = J_t = dg_t/dz`` dense,
  ``O(n^3)`` per combine of the scan.  After ``k`` iterations the first ``k`` states are
  exact, so it converges in at most ``T`` iterations; quadratically near the solution.
* ``method="quasi"`` -- quasi-DEER (Gonzalez, Warrington, Smith & Linderman 2024,
  "Towards scalable and stable parallelization of nonlinear RNNs"): ``A_t = diag(J_t)``,
  ``O(n)`` per combine; also at most ``T`` iterations, linear convergence.
* ``method="elk"`` -- quasi-ELK (same paper): the Levenberg-Marquardt step with the
  diagonal Jacobians ``a_t = diag(J_t)``, ``b_t = g_t(z^{(i)}_{t-1}) - a_t z^{(i)}_{t-1}``,

  .. math::  z^{(i+1)} = \arg\min_z \sum_t \|z_t - a_t z_{t-1} - b_t\|^2
             + \lambda \sum_t \|z_t - z^{(i)}_t\|^2,

  which is the posterior (smoothed) mean of the linear-Gaussian model
  ``z_t = a_t z_{t-1} + b_t + w_t``, ``w_t ~ N(0, I)``, observing the current iterate
  ``z^{(i)}_t`` with noise variance ``1/lambda`` (``lambda = damping = 1/sigma^2``):
  :func:`elk_smoother`, a Kalman filter then a Rauch-Tung-Striebel backward pass.  Per
  coordinate the filter variance follows the Riccati map
  ``P_t = (a_t^2 P_{t-1} + 1) / (lambda (a_t^2 P_{t-1} + 1) + 1)``, a Moebius map, so it is
  one associative scan of normalised 2x2 matrices; the filtered mean is a diagonal linear
  recurrence forwards and the smoothed mean
  ``s_t = m_t + G_t (s_{t+1} - a_{t+1} m_t - b_{t+1})``,
  ``G_t = P_t a_{t+1} / (a_{t+1}^2 P_t + 1)``, one backwards, both associative scans.
  ``damping -> 0`` is quasi-DEER; the true trajectory is a fixed point.  ``lambda``
  follows a schedule, ``lambda_i = damping * damping_decay^i`` (defaults 0.01 and 0.1):
  the first steps, taken where the linearisation is worst, are damped; then ``lambda``
  vanishes and the step becomes quasi-DEER's, which makes the first ``k`` states exact
  after ``k`` more iterations, so ELK converges where quasi-DEER does, within
  ``T + 14`` iterations (:func:`default_max_iters`; a fixed ``lambda > 0`` never makes
  a state exact and stopped short of the tolerance at ``max_iters = T``).
* ``method="elk_filtered"`` -- the Kalman-*filtered* means :func:`elk_filter` instead
  of the smoothed ones, as lindermanlab/elk's code (``elk/algs/elk.py``) returns; they
  equal the LM step at the last step only.  Same fixed point.

Iteration ``i`` is one Newton (or quasi/LM) solve.  The loop stops when the residual
``max_t |z_t - g_t(z_{t-1})|`` is at most ``tol`` (so a warm start that already solves the
system costs 0 iterations) or after ``max_iters``; iterates are clipped to ``+-1e8`` and
NaN is replaced by 0, as the DEER reference code does.

Gradients (:func:`scan_newton` is differentiable in params, carry and ``xs``) use the
implicit function theorem at the solution, not the iterations: with ``J_t`` the dense
step Jacobians at the solution, the adjoint ``mu_t = dL/dz_t + J_{t+1}^T mu_{t+1}`` is one
dense linear recurrence backwards in time (an associative scan), and the parameter,
input and initial-carry gradients are one VJP of the vmapped step with ``mu``.  The
backward is exact for every ``method`` (quasi-DEER and ELK only approximate the forward
Jacobians).
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_choice
from rnnjax.engine.associative import linear_scan
from rnnjax.engine.inputs import flip_sequences, segment_starts

__all__ = ["METHODS", "ON_FAIL", "NewtonDidNotConverge", "NewtonOptions", "NewtonWarning",
           "carry_to_vector", "check_newton_options", "default_max_iters", "elk_filter",
           "elk_smoother", "report_failures", "scan_newton", "time_major_init", "vector_to_carry"]

METHODS = ("deer", "quasi", "elk", "elk_filtered")
CLIP = 1e8  # iterates are clipped to +-CLIP (DEER reference: clip_ytnext)


class NewtonOptions(NamedTuple):
    """Options of :func:`scan_newton`.

    Attributes:
      method: ``"deer"`` (dense Jacobians; small hidden sizes), ``"quasi"`` (their
        diagonal), ``"elk"`` (diagonal Levenberg-Marquardt steps: the Kalman smoother)
        or ``"elk_filtered"`` (the Kalman filter's means, as lindermanlab/elk's code).
      max_iters: cap on the Newton iterations; None means ``T`` (DEER's and quasi-DEER's
        bound) and, for ELK, ``T + k`` with ``k`` the iterations its damping schedule
        takes to fall below ``1e-16`` (:func:`default_max_iters`).
      tol: stop when ``max |z_t - g_t(z_{t-1})| <= tol``; None means ``1e-10`` for
        float64 and ``1e-5`` for float32 states.
      init: initial guess: ``"zeros"``, or a warm start such as a previous solution,
        either a carry pytree with leaves ``(T, B, ...)`` (the carry after every step,
        in the time order of ``xs``; ``HiddenState(ys)`` for cells whose output is their
        state) or an array ``(T, B, n)`` of flattened states (:func:`carry_to_vector`).
      damping: ELK's ``lambda = 1/sigma^2 > 0`` at the first iteration (larger: smaller,
        safer steps).
      damping_decay: ELK's ``lambda`` is multiplied by it after every iteration
        (``lambda_i = damping * damping_decay^i``, ``0 < damping_decay <= 1``; 1 keeps
        the reference code's fixed ``lambda``).  The default 0.1 damps the first,
        worst-informed steps and then lets ``lambda`` vanish, so ELK ends as
        quasi-DEER and inherits its at-most-``T``-iterations bound.
      return_iterations: :func:`rnnjax.run` returns ``(ys, final_carry, iterations)``
        with ``iterations`` of the batch shape (:func:`scan_newton` always does).
      on_fail: what :func:`rnnjax.run` does when an example's residual is still above
        ``tol`` after ``max_iters`` iterations (or not finite): ``"warn"`` (default: a
        :class:`NewtonWarning` naming how many examples and the largest residual),
        ``"raise"`` (:class:`NewtonDidNotConverge`; under an outer ``jax.jit`` JAX
        raises it from a host callback, wrapped in its runtime error), ``"sequential"``
        (those examples are recomputed by the sequential scan, so the result is always
        the sequential one up to rounding), or ``"ignore"``.
    """

    method: str = "deer"
    max_iters: int | None = None
    tol: float | None = None
    init: Any = "zeros"
    damping: float = 0.01
    return_iterations: bool = False
    on_fail: str = "warn"
    damping_decay: float = 0.1


ON_FAIL = ("warn", "raise", "sequential", "ignore")


class NewtonWarning(UserWarning):
    """Newton's method stopped at ``max_iters`` with a residual above ``tol``."""


class NewtonDidNotConverge(RuntimeError):
    """Raised for ``NewtonOptions(on_fail="raise")`` when an example did not converge."""


def check_newton_options(options) -> NewtonOptions:
    """Return ``options`` (None -> defaults) after checking every field."""
    if options is None:
        return NewtonOptions()
    if not isinstance(options, NewtonOptions):
        raise TypeError(f"newton options must be an rnnjax.engine.newton.NewtonOptions, got "
                        f"{type(options).__name__}")
    check_choice("NewtonOptions.method", options.method, METHODS)
    m = options.max_iters
    if m is not None and (isinstance(m, bool) or not isinstance(m, int) or m < 1):
        raise ValueError(f"NewtonOptions.max_iters must be None or an integer >= 1 (0 would "
                         f"return the initial guess), got {m!r}")
    if options.tol is not None and not (isinstance(options.tol, (int, float))
                                        and 0 < options.tol < math.inf):
        raise ValueError(f"NewtonOptions.tol must be None or a finite positive number, "
                         f"got {options.tol!r}")
    check_choice("NewtonOptions.on_fail", options.on_fail, ON_FAIL)
    if not (isinstance(options.damping, (int, float)) and options.damping > 0):
        raise ValueError(f"NewtonOptions.damping must be a positive number, "
                         f"got {options.damping!r}")
    d = options.damping_decay
    if isinstance(d, bool) or not (isinstance(d, (int, float)) and 0 < d <= 1):
        raise ValueError(f"NewtonOptions.damping_decay must be a number in (0, 1], "
                         f"got {d!r}")
    if not isinstance(options.return_iterations, bool):
        raise TypeError(f"NewtonOptions.return_iterations must be a bool, "
                        f"got {options.return_iterations!r}")
    if isinstance(options.init, str) and options.init != "zeros":
        raise ValueError(f"NewtonOptions.init must be 'zeros', a carry pytree or an array, "
                         f"got {options.init!r}")
    return options


def default_max_iters(options: NewtonOptions, T: int) -> int:
    """``max_iters`` when ``options.max_iters`` is None: ``T`` for DEER and quasi-DEER
    (after ``k`` iterations the first ``k`` states are exact), ``T + k`` for ELK, where
    ``k`` is the first iteration whose damping ``damping * damping_decay^k`` is below
    ``1e-16`` (from there an ELK step is a quasi-DEER step in float64), and ``10 T`` for
    a fixed damping (``damping_decay = 1``: no finite bound)."""
    if options.method in ("deer", "quasi"):
        return T
    lam, decay = float(options.damping), float(options.damping_decay)
    if lam <= 1e-16:
        return T
    if decay == 1.0:
        return 10 * T
    # rounded first: log(1e-14) / log(0.1) is 14.000000000000002 in floats
    return T + math.ceil(round(math.log(1e-16 / lam) / math.log(decay), 9))


# --------------------------------------------------------------- real view of a carry

def carry_to_vector(tree):
    """Flatten one example's carry pytree into a real vector (complex leaves as re, im)."""
    parts = []
    for a in jax.tree.leaves(tree):
        a = jnp.ravel(a)
        parts += [a.real, a.imag] if jnp.iscomplexobj(a) else [a]
    return jnp.concatenate(parts)


def vector_to_carry(z, like):
    """Inverse of :func:`carry_to_vector` for carries structured like ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    out, i = [], 0
    for s in leaves:
        n = math.prod(s.shape)
        if jnp.issubdtype(s.dtype, jnp.complexfloating):
            out.append((z[i:i + n] + 1j * z[i + n:i + 2 * n]).reshape(s.shape).astype(s.dtype))
            i += 2 * n
        else:
            out.append(z[i:i + n].reshape(s.shape).astype(s.dtype))
            i += n
    return jax.tree.unflatten(treedef, out)


# ------------------------------------------------------------------- the solvers

def _shift(z0, Z):
    """``(z_0, .., z_{T-1})`` from ``z0 (n,)`` and ``Z = (z_1, .., z_T) (T, n)``."""
    return jnp.concatenate([z0[None], Z[:-1]], axis=0)


AXES = (None, 0, 0, 0, 0, None)  # g(w, z_{t-1}, x_t, live_t, start_t, z_0) over time


def _jacobians(g, w, Zprev, xs, live, starts, z0, diagonal):
    J = jax.vmap(jax.jacfwd(g, argnums=1), AXES)(w, Zprev, xs, live, starts, z0)
    return jnp.diagonal(J, axis1=-2, axis2=-1) if diagonal else J


def _mobius_combine(left, right):
    """Compose Moebius maps ``right o left`` (2x2 matrices), rescaled to max entry 1."""
    m = jnp.einsum("...ij,...jk->...ik", right, left)
    return m / jnp.max(jnp.abs(m), axis=(-2, -1), keepdims=True)


def _elk_filtered(a, b, z0, Y, lam):
    """``(m, P, a', b')``: filtered means and variances, and the coefficients with the
    known ``z_0`` folded into the first step (``a'_1 = 0``, ``b'_1 = a_1 z_0 + b_1``)."""
    b = b.at[0].set(a[0] * z0 + b[0])
    a = a.at[0].set(0.0)  # z_1 ~ N(g_1(z_0), 1): the initial state is fixed
    a2 = a * a
    one = jnp.ones_like(a2)
    M = jnp.stack([jnp.stack([a2, one], -1), jnp.stack([lam * a2, (lam + 1) * one], -1)], -2)
    Pi = jax.lax.associative_scan(_mobius_combine, M, axis=0)
    P = Pi[..., 0, 1] / Pi[..., 1, 1]  # P_t from P_0 = 0
    Pm = a2 * jnp.concatenate([jnp.zeros_like(P[:1]), P[:-1]]) + 1.0  # predicted variance
    K = lam * Pm / (lam * Pm + 1.0)
    return linear_scan("diagonal", (1.0 - K) * a, (1.0 - K) * b + K * Y), P, a, b


def _elk_args(a, b, z0, Y, damping):
    a, b, z0, Y = (jnp.asarray(v) for v in (a, b, z0, Y))
    if a.ndim != 2 or b.shape != a.shape or Y.shape != a.shape:
        raise ValueError(f"a, b and Y must all be (T, n), got {a.shape}, {b.shape}, {Y.shape}")
    if z0.shape != a.shape[1:]:
        raise ValueError(f"z0 must be (n,) = {a.shape[1:]}, got {z0.shape}")
    if not (isinstance(damping, (int, float)) and damping > 0):
        raise ValueError(f"damping must be a positive number, got {damping!r}")
    return a, b, z0, Y, float(damping)


def elk_filter(a, b, z0, Y, damping):
    r"""Kalman-filtered means ``E[z_t | Y_1..Y_t]`` of the per-coordinate model
    ``z_t = a_t z_{t-1} + b_t + N(0, 1)``, ``Y_t = z_t + N(0, 1/damping)``, ``z_0``
    known; ``a, b, Y: (T, n)``, ``z0: (n,)``.  (lindermanlab/elk ``elk/algs/elk.py``
    returns these.)  Parallel in time: two associative scans."""
    return _filter_jit(*_elk_args(a, b, z0, Y, damping))


def elk_smoother(a, b, z0, Y, damping):
    r"""The Levenberg-Marquardt step of ELK (Gonzalez et al. 2024): the minimiser of

    .. math::  \sum_{t=1}^T (z_t - a_t z_{t-1} - b_t)^2 + \lambda \sum_{t=1}^T (z_t - Y_t)^2

    per coordinate (``lambda = damping``, ``z_0`` known; ``a, b, Y: (T, n)``), i.e. the
    smoothed means ``E[z_t | Y_1..Y_T]`` of the model of :func:`elk_filter`: the
    filter's means ``m_t`` and variances ``P_t``, then the Rauch-Tung-Striebel pass
    backwards,

    .. math::  s_T = m_T, \qquad s_t = m_t + G_t (s_{t+1} - a_{t+1} m_t - b_{t+1}),
               \qquad G_t = \frac{P_t a_{t+1}}{a_{t+1}^2 P_t + 1},

    an affine recurrence in reversed time solved by the associative scan."""
    return _smoother_jit(*_elk_args(a, b, z0, Y, damping))


_filter_jit = jax.jit(lambda a, b, z0, Y, lam: _elk_filtered(a, b, z0, Y, lam)[0])
_smoother_jit = jax.jit(lambda a, b, z0, Y, lam: _rts(*_elk_filtered(a, b, z0, Y, lam)))


def _rts(m, P, a, b):
    """Rauch-Tung-Striebel means from the filter's ``(m, P)`` and coefficients."""
    if m.shape[0] < 2:
        return m
    an, bn, Pt, mt = a[1:], b[1:], P[:-1], m[:-1]
    G = Pt * an / (an * an * Pt + 1.0)
    c = mt - G * (an * mt + bn)
    s = linear_scan("diagonal", jnp.flip(G, 0), jnp.flip(c, 0), m[-1])  # s_{T-1} .. s_1
    return jnp.concatenate([jnp.flip(s, 0), m[-1:]], axis=0)


def _iterate(g, opts, w, z0, xs, live, starts, guess):
    """Newton iterations for one example: ``(Z (T, n), iterations)``."""
    method, max_iters, tol, lam0, decay = opts

    def G(Z):
        return jax.vmap(g, AXES)(w, _shift(z0, Z), xs, live, starts, z0)

    def cond(s):
        Z, GZ, it, _ = s
        return (it < max_iters) & ~(jnp.max(jnp.abs(Z - GZ)) <= tol)  # NaN keeps going

    def body(s):
        Z, GZ, it, lam = s
        Zprev = _shift(z0, Z)
        J = _jacobians(g, w, Zprev, xs, live, starts, z0, diagonal=method != "deer")
        if method == "deer":
            new = linear_scan("dense", J, GZ - jnp.einsum("tij,tj->ti", J, Zprev), z0)
        elif method == "quasi":
            new = linear_scan("diagonal", J, GZ - J * Zprev, z0)
        else:
            m, P, a, b = _elk_filtered(J, GZ - J * Zprev, z0, Z, lam)
            new = m if method == "elk_filtered" else _rts(m, P, a, b)
        new = jnp.clip(jnp.nan_to_num(new, nan=0.0), -CLIP, CLIP)
        return new, G(new), it + 1, lam * decay

    Z, GZ, it, _ = jax.lax.while_loop(
        cond, body, (guess, G(guess), jnp.zeros((), jnp.int32), jnp.asarray(lam0, z0.dtype)))
    return Z, it, jnp.max(jnp.abs(Z - GZ))


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _solve(g, opts, w, z0, xs, live, starts, guess):
    return _iterate(g, opts, w, z0, xs, live, starts, guess)


def _solve_fwd(g, opts, w, z0, xs, live, starts, guess):
    Z, it, residual = _iterate(g, opts, w, z0, xs, live, starts, guess)
    return (Z, it, residual), (w, z0, xs, live, starts, Z)


def _solve_bwd(g, opts, res, cot):
    """Implicit-function-theorem VJP: one adjoint linear recurrence, backwards in time."""
    w, z0, xs, live, starts, Z = res
    gZ = cot[0]
    Zprev = _shift(z0, Z)
    J = _jacobians(g, w, Zprev, xs, live, starts, z0, diagonal=False)  # (T, n, n)
    # mu_t = gZ_t + J_{t+1}^T mu_{t+1}; in reversed time s = T-1-t: A_s = J_{T-s}^T
    A = jnp.concatenate([jnp.zeros_like(J[:1]), jnp.flip(J[1:], 0)]).swapaxes(-1, -2)
    mu = jnp.flip(linear_scan("dense", A, jnp.flip(gZ, 0)), 0)
    _, vjp = jax.vjp(lambda w, zp, x, z0: jax.vmap(g, AXES)(w, zp, x, live, starts, z0),
                     w, Zprev, xs, z0)
    gw, gzp, gx, gz0 = vjp(mu)  # z_0 enters at t = 1 and at every reset
    return gw, gzp[0] + gz0, gx, None, None, None


_solve.defvjp(_solve_fwd, _solve_bwd)


# ------------------------------------------------------------------- the engine

def _guess(init, carry_like, T, B, n, dtype, lengths, reverse):
    if isinstance(init, str):
        return jnp.zeros((T, B, n), dtype)
    if isinstance(init, (jax.Array, np.ndarray)):
        guess = jnp.asarray(init, dtype)
        if guess.shape != (T, B, n):
            raise ValueError(f"NewtonOptions.init as an array must have shape {(T, B, n)} "
                             f"(time, batch, state size), got {guess.shape}")
    else:
        exp = jax.tree.structure(carry_like)
        if jax.tree.structure(init) != exp:
            raise ValueError(f"NewtonOptions.init must be 'zeros', an array or a carry "
                             f"pytree {exp}, got {jax.tree.structure(init)}")
        guess = jax.vmap(jax.vmap(carry_to_vector))(init).astype(dtype)
        if guess.shape != (T, B, n):
            raise ValueError(f"NewtonOptions.init leaves must be (T, B, ...) = {(T, B)} "
                             f"plus the carry's shape, got flattened {guess.shape}")
    return flip_sequences(guess, lengths) if reverse else guess


def scan_newton(cell: Cell, params, carry, xs, lengths=None, *, reverse: bool = False,
                resets=None, options: NewtonOptions | None = None,
                with_failures: bool = False):
    """Run ``cell`` over time-major inputs by Newton's method (DEER / quasi-DEER / ELK).

    Same contract as :func:`rnnjax.engine.sequential.scan_cell` except that it takes ``params``
    (``cell.prepare`` is applied here): ``carry`` leaves ``(B, ...)``, ``xs (T, B, F)``,
    ``lengths (B,)`` or None (the carry freezes and outputs are zero past a length),
    ``reverse`` runs each sequence backwards within its length, ``resets (T, B)`` bool or
    None sets the carry back to ``carry`` before the steps that start a segment
    (:func:`rnnjax.engine.inputs.segment_starts`; the step Jacobian there is 0, so the Newton
    system splits into independent segments).  The carry (any NamedTuple,
    e.g. ``LSTMState(h, c)``) is flattened into one real state vector of size ``n``.

    Returns ``(ys (T, B, O), final_carry, iterations (B,) int32)``: the trajectory
    solves the sequential recurrence up to ``options.tol`` (residual, max-norm), and
    ``iterations[b] <= options.max_iters`` is the number of Newton solves example ``b``
    took (it equals ``max_iters`` when it did not converge).  ``with_failures`` adds a
    fourth output, ``failed (B,)`` bool: the residual is above ``tol`` (or not finite)
    at the end.
    """
    opts = check_newton_options(options)
    T, B = xs.shape[0], xs.shape[1]
    weights = cell.prepare(params)
    step_b = jax.vmap(cell.step, in_axes=(None, 0, 0))
    x_like = jax.ShapeDtypeStruct(xs.shape[1:], xs.dtype)
    like_b = jax.eval_shape(lambda c, x: step_b(weights, c, x)[0], carry, x_like)
    like = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), like_b)
    carry = jax.tree.map(lambda a, s: jnp.asarray(a).astype(s.dtype), carry, like_b)
    if T == 0:
        ys = jax.eval_shape(lambda c, x: step_b(weights, c, x)[1], carry, x_like)
        out = (jnp.zeros((0,) + ys.shape, ys.dtype), carry, jnp.zeros((B,), jnp.int32))
        return out + (jnp.zeros((B,), bool),) if with_failures else out
    z0 = jax.vmap(carry_to_vector)(carry)  # (B, n)
    n, dtype = z0.shape[-1], z0.dtype
    tol = opts.tol if opts.tol is not None else (1e-10 if dtype == jnp.float64 else 1e-5)
    max_iters = default_max_iters(opts, T) if opts.max_iters is None else opts.max_iters
    guess = _guess(opts.init, like_b, T, B, n, dtype, lengths, reverse)
    if reverse:
        xs = flip_sequences(xs, lengths)
    live = jnp.ones((T, B), bool) if lengths is None else \
        jnp.arange(T)[:, None] < lengths[None, :]

    starts = jnp.zeros((T, B), bool) if resets is None else \
        segment_starts(resets, lengths, reverse)

    def g(w, z, x, alive, start, z0):  # one example: z_{t-1} -> z_t
        new, _ = cell.step(w, vector_to_carry(jnp.where(start, z0, z), like), x)
        return jnp.where(alive, carry_to_vector(new), z)  # frozen past the length

    solve = partial(_solve, g, (opts.method, max_iters, float(tol), float(opts.damping),
                                float(opts.damping_decay)))
    Z, iters, residual = jax.vmap(solve, in_axes=(None, 0, 1, 1, 1, 1), out_axes=(1, 0, 0))(
        weights, z0, xs, live, starts, guess)
    Zprev = jnp.concatenate([z0[None], Z[:-1]], axis=0)  # (T, B, n)
    Zprev = jnp.where(starts[..., None], z0[None], Zprev)  # the carry the step reads

    def out(z, x):
        return cell.step(weights, vector_to_carry(z, like), x)[1]

    ys = jax.vmap(jax.vmap(out))(Zprev, xs)
    ys = jnp.where(live[..., None], ys, jnp.zeros_like(ys))
    if reverse:
        ys = flip_sequences(ys, lengths)
    final = jax.vmap(lambda z: vector_to_carry(z, like))(Z[-1])
    if with_failures:
        return ys, final, iters, ~(residual <= tol)
    return ys, final, iters


def _report(options, failed, iters):
    failed = np.asarray(failed)
    if not failed.any():
        return
    n, total = int(failed.sum()), failed.size
    text = (f"scan='newton' ({options.method}) did not converge for {n} of {total} "
            f"sequences: the residual stayed above tol after {int(np.max(iters))} iterations "
            f"(raise max_iters, use method='deer', or on_fail='sequential')")
    if options.on_fail == "raise":
        raise NewtonDidNotConverge(text)
    warnings.warn(text, NewtonWarning, stacklevel=4)


def report_failures(failed, iters, options: NewtonOptions) -> None:
    """Warn or raise, as ``options.on_fail`` says, if any example did not converge:
    at once for concrete values, through a host callback under a trace."""
    if options.on_fail not in ("warn", "raise"):
        return
    if isinstance(failed, jax.core.Tracer):
        jax.debug.callback(partial(_report, options), failed, iters)
    else:
        _report(options, failed, iters)


# ------------------------------------------------------- rnnjax.run(scan="newton")

def time_major_init(init, time_major, batch_shape):
    """A warm start laid out like ``rnnjax.run``'s ``ys`` -- leaves ``(*batch, T, ...)``,
    or ``(T, *batch, ...)`` when ``time_major`` -- as :func:`scan_newton` takes it,
    ``(T, B, ...)`` with the batch axes flattened."""
    nb = len(batch_shape)

    def one(a):
        a = jnp.asarray(a) if time_major else jnp.moveaxis(jnp.asarray(a), nb, 0)
        return a.reshape((a.shape[0], math.prod(batch_shape)) + a.shape[1 + nb:])

    return jax.tree.map(one, init)
