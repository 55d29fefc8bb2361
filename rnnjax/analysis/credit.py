r"""Credit assignment to a source step for a loss restricted to target steps.

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
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.analysis._common import (
    check_loss_inputs,
    check_xs,
    perturbation_setup,
    perturbed_scan,
    real_dtype,
    real_step,
    setup_single,
)
from rnnjax.analysis.gradients import scaled_norm
from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_cell

# -------------------------------------------------------------- credit assignment

def carry_fields(tree) -> list:
    """``[(name, subtree)]`` of a carry-shaped tree: the field names of the carry's
    NamedTuple (``h`` for :class:`rnnjax.HiddenState`, ``h, c`` for
    :class:`rnnjax.LSTMState`); a carry that is not a NamedTuple is one field ``z``."""
    if hasattr(tree, "_fields"):
        return list(zip(tree._fields, tree))
    return [("z", tree)]

__all__ = ["carry_fields", "credit_arrays", "credit_assignment", "credit_metrics",
           "credit_profile", "credit_ratio", "credit_record", "CreditProfile",
           "jacobian_norm", "log_jacobian_norm"]


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
    xs = check_loss_inputs(cell, params, xs, loss_fn)
    unbatched, xs_tm, weights, carry, like, zeros, readout = perturbation_setup(
        cell, params, xs, carry, readout)
    T, B = xs_tm.shape[:2]

    def ys_of(er, ei):
        ys = jnp.swapaxes(perturbed_scan(cell, weights, carry, xs_tm, er, ei, readout), 0, 1)
        return ys[0] if unbatched else ys

    def loss(ys):
        out = loss_fn(ys)
        if jnp.ndim(out) != 0:
            raise ValueError(f"loss_fn must return a scalar, got shape {jnp.shape(out)}")
        return jnp.real(out)

    ys, pull = jax.vjp(ys_of, zeros, zeros)
    gy = jax.grad(loss)(ys)
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(gy)))
    scale = jnp.where(m > 0, m, 1).astype(real_dtype(gy.dtype))
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
    weights, z0, like = setup_single(cell, params, xs, carry)
    if r == s:  # dz_s/dz_s = I
        return jnp.zeros((), z0.dtype)
    f = real_step(cell, weights, like)
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
    xs = check_xs(cell, params, xs)
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
    xs = check_xs(cell, params, xs)
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
