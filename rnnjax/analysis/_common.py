"""What the gradient-flow measurements share: input checks, the real view of a carry
(a complex leaf ``a + i b`` as the real vector ``(a, b)``), and the zero-perturbation
backward pass that gives ``dL/dz_t`` for every step ``t``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.checks import check_cell
from rnnjax.engine.newton import carry_to_vector as _to_real
from rnnjax.engine.newton import vector_to_carry as _from_real

# ----------------------------------------------------------------------------- checks

def check_xs(cell, params, xs, *, batched_ok=True):
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

def real_dtype(dtype):
    return jnp.finfo(dtype).dtype  # complex128 -> float64, float32 -> float32


def carry_like(cell, weights, carry, x):
    """Shapes/dtypes of the carry *after* one step (a unitary cell may turn a real zero
    carry into a complex one), for one example."""
    return jax.eval_shape(lambda c: cell.step(weights, c, x)[0], carry)


def real_step(cell, weights, like):
    """``(z_{t-1}, x_t) -> z_t``: the cell's step on the real view of its carry."""

    def f(z, x):
        new, _ = cell.step(weights, _from_real(z, like), x)
        return _to_real(new)

    return f


def setup_single(cell, params, xs, carry):
    """weights, the real initial state z_0 and the carry structure, for one example."""
    weights = cell.prepare(params)
    if carry is None:
        carry = cell.initial_carry((), xs.dtype)
    like = carry_like(cell, weights, carry, xs[0])
    # promote the initial carry to the dtypes the step produces (real 0 -> complex 0)
    carry = jax.tree.map(lambda a, s: jnp.asarray(a).astype(s.dtype), carry, like)
    return weights, _to_real(carry), like


# ------------------------------------------------------------------ hidden grad norms

def perturbed_scan(cell, weights, carry, xs_tm, eps_re, eps_im, readout):
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


def resolve_readout(cell, weights, carry, x, readout):
    """Check that ``readout(new carry)`` reproduces the step's output (one example)."""
    if readout == "step":
        return None
    fn = carry_readout if readout in ("auto", "carry_or_step") else readout
    if not callable(fn):
        raise ValueError(f"readout must be 'auto', 'carry_or_step', 'step' or a callable "
                         f"carry -> y, got {readout!r}")
    c = jax.tree.map(lambda a: a[0], carry)
    # A carry of several fields without an ``h`` (a deep stack's ``h_1, c_1, ...``) has
    # nothing carry_readout can read, whether the values are concrete or not.
    readable = fn is not carry_readout or hasattr(c, "h") or not isinstance(c, tuple)
    if readable and any(isinstance(a, jax.core.Tracer)
                        for a in jax.tree.leaves((weights, c, x))):
        return fn  # under jit: values are abstract; the check runs on eager calls only
    ok = False
    if readable:
        new, y = cell.step(weights, c, x[0])
        try:
            ok = bool(np.allclose(np.asarray(fn(new)), np.asarray(y), rtol=1e-5,
                                  atol=1e-6))
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


def check_loss_inputs(cell, params, xs, loss_fn):
    """Check ``cell``, ``loss_fn`` (callable ``ys -> scalar``) and ``xs``; return ``xs``."""
    check_cell(cell)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be a callable ys -> scalar, got "
                        f"{type(loss_fn).__name__}")
    return check_xs(cell, params, xs)


def perturbation_setup(cell, params, xs, carry, readout):
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
    zeros = jax.tree.map(lambda s: jnp.zeros((T,) + s.shape, real_dtype(s.dtype)), like)
    return unbatched, xs_tm, weights, carry, like, zeros, resolve_readout(
        cell, weights, carry, xs_tm[0], readout)


