"""Cells with a linear recurrence: the LRU and a gated (input-dependent) diagonal cell.

Both declare their recurrence ``h_t = a_t * h_{t-1} + b_t`` (:class:`rnnjax.Linear`,
``kind="diagonal"``) so :func:`rnnjax.run` can use the associative scan
(:mod:`rnnjax.engine.associative`); their ``step`` runs the same equation in the sequential
engine.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.cells.parametrize import complex_dtype
from rnnjax.core import initializers
from rnnjax.core.cell import Cell, HiddenState, Linear, identity
from rnnjax.core.checks import check_positive_int

__all__ = ["complex_carry", "diagonal_step", "gated_linear", "lru", "lru_lambda"]


def diagonal_step(coeffs, readout):
    """The ``step`` of a diagonal linear cell from its declared recurrence:
    ``h_t = a_t * h_{t-1} + b_t`` (``(a_t, b_t) = coeffs(w, x_t)``, kept in the carry's
    dtype), ``y_t = readout(w, h_t, x_t)``."""

    def step(w, carry, x):
        a, b = coeffs(w, x)
        h = (a * carry.h + b).astype(carry.h.dtype)
        return HiddenState(h), readout(w, h, x)

    return step


def complex_carry(n: int):
    """``initial_carry`` of a complex diagonal state of ``n`` entries (complex128 for a
    float64 dtype, complex64 otherwise)."""

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return HiddenState(jnp.zeros(tuple(batch_shape) + (n,), complex_dtype(dtype)))

    return initial_carry


def lru_lambda(params):
    """``lambda = exp(-exp(nu_log) + i exp(theta_log))``, the LRU's diagonal ``(N,)``."""
    return jnp.exp(-jnp.exp(params["nu_log"]) + 1j * jnp.exp(params["theta_log"]))


def lru(hidden_size: int, r_min: float = 0.0, r_max: float = 1.0,
        max_phase: float = 2 * math.pi, *, model_size: int | None = None) -> Cell:
    r"""Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting Recurrent Neural
    Networks for Long Sequences", ICML; the appendix's JAX code).

    Equations (one example, ``x_t`` real ``(M,)``, ``h_t`` complex ``(N,)``)::

        lambda = exp(-exp(nu_log) + i exp(theta_log))             (N,)  |lambda| < 1
        gamma  = exp(gamma_log)  (initially sqrt(1 - |lambda|^2))  (N,)
        h_t = lambda * h_{t-1} + gamma * ((B_re + i B_im) x_t)
        y_t = Re((C_re + i C_im) h_t) + D * x_t                    (M,)

    with ``N = hidden_size`` and ``M = model_size`` (default ``N``): the input and the
    output both have ``M`` features (``D`` is the paper's diagonal skip connection).

    Initialisation ("ring"): ``|lambda| = sqrt(u (r_max^2 - r_min^2) + r_min^2)`` and
    ``arg(lambda) = max_phase * u'`` with ``u, u' ~ U(0, 1)``, so ``|lambda|`` lies in
    ``[r_min, r_max]`` and the phase in ``[0, max_phase]``; ``nu_log = log(-log|lambda|)``,
    ``theta_log = log(phase)``; ``B_re, B_im ~ N(0, 1/(2M))``, ``C_re, C_im ~ N(0, 1/N)``,
    ``D ~ N(0, 1)``.  Params are real float32 arrays; the carry ``HiddenState(h)`` is
    complex (``complex64``, or ``complex128`` for float64 inputs).

    ``recurrent_matrix(params)`` is ``diag(lambda)`` (complex): its spectrum is
    ``|lambda|`` for the gradient-flow analyses.  The recurrence is declared
    ``Linear(kind="diagonal")``, so :func:`rnnjax.run` may use the associative scan.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.lru(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    if model_size is not None:
        check_positive_int("model_size", model_size)
    if not 0.0 <= float(r_min) < float(r_max) <= 1.0:
        raise ValueError(f"r_min and r_max must satisfy 0 <= r_min < r_max <= 1, "
                         f"got r_min={r_min!r}, r_max={r_max!r}")
    if not float(max_phase) > 0.0:
        raise ValueError(f"max_phase must be positive, got {max_phase!r}")
    N = hidden_size
    M = N if model_size is None else model_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        if input_size != M:
            raise ValueError(
                f"input_size must equal the LRU's model_size {M} (y = Re(C h) + D x), "
                f"got {input_size}; pass model_size={input_size} or project the inputs")
        k = jax.random.split(key, 7)
        u1 = jax.random.uniform(k[0], (N,))
        u2 = jax.random.uniform(k[1], (N,))
        nu_log = jnp.log(-0.5 * jnp.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2))
        theta_log = jnp.log(max_phase * u2)
        modulus = jnp.exp(-jnp.exp(nu_log))
        gamma_log = jnp.log(jnp.sqrt(1.0 - modulus ** 2))
        normal = jax.random.normal
        return {
            "nu_log": nu_log, "theta_log": theta_log, "gamma_log": gamma_log,
            "B_re": normal(k[2], (N, M)) / math.sqrt(2 * M),
            "B_im": normal(k[3], (N, M)) / math.sqrt(2 * M),
            "C_re": normal(k[4], (M, N)) / math.sqrt(N),
            "C_im": normal(k[5], (M, N)) / math.sqrt(N),
            "D": normal(k[6], (M,)),
        }

    def prepare(p):
        lam = lru_lambda(p)
        B = (p["B_re"] + 1j * p["B_im"]) * jnp.exp(p["gamma_log"])[:, None]
        return {"lambda": lam, "B": B, "C": p["C_re"] + 1j * p["C_im"], "D": p["D"]}

    def coeffs(w, x):
        return w["lambda"], w["B"] @ x.astype(w["B"].dtype)

    def readout(w, h, x):
        return (w["C"] @ h).real.astype(x.dtype) + w["D"] * x

    return Cell(
        init=init, prepare=prepare, initial_carry=complex_carry(N),
        step=diagonal_step(coeffs, readout),
        input_size=lambda p: p["B_re"].shape[-1], output_size=M, name="lru",
        recurrent_matrix=lambda p: jnp.diag(lru_lambda(p)),
        linear=Linear(kind="diagonal", coeffs=coeffs, readout=readout),
    )


def gated_linear(hidden_size: int) -> Cell:
    r"""Minimal gated linear recurrence: a diagonal recurrence whose ``a_t`` depends on
    the input (minGRU of Feng et al. 2024, "Were RNNs All We Needed?", with
    ``a_t = 1 - z_t``; the real-valued core of HGRN, Qin et al. 2023, without its lower
    bound on the forget gate).

    Equations (one example)::

        a_t = sigmoid(W_a x_t + b_a)                    (H,)  forget gate in (0, 1)
        h_t = a_t * h_{t-1} + (1 - a_t) * (W_x x_t + b_x)
        y_t = h_t

    Params ``W_a, W_x (H, F)``, ``b_a, b_x (H,)``, all ``U(-1/sqrt(F), 1/sqrt(F))``
    (PyTorch's ``nn.Linear``).  The recurrence is linear in ``h`` with an input-dependent
    diagonal ``A_t``: declared ``Linear(kind="diagonal")`` for the associative scan.
    ``recurrent_matrix(params)`` is ``diag(sigmoid(b_a))``, the recurrence at ``x = 0``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.gated_linear(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    H = hidden_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        u = initializers.uniform(1.0 / math.sqrt(input_size))
        k = jax.random.split(key, 4)
        return {"W_a": u(k[0], (H, input_size)), "b_a": u(k[1], (H,)),
                "W_x": u(k[2], (H, input_size)), "b_x": u(k[3], (H,))}

    def coeffs(w, x):
        a = jax.nn.sigmoid(w["W_a"] @ x + w["b_a"])
        return a, (1.0 - a) * (w["W_x"] @ x + w["b_x"])

    def step(w, carry, x):
        a, b = coeffs(w, x)
        h = a * carry.h + b
        return HiddenState(h), h

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return HiddenState(jnp.zeros(tuple(batch_shape) + (H,), dtype))

    return Cell(
        init=init, prepare=identity, initial_carry=initial_carry, step=step,
        input_size=lambda p: p["W_a"].shape[-1], output_size=H, name="gated_linear",
        recurrent_matrix=lambda p: jnp.diag(jax.nn.sigmoid(p["b_a"])),
        linear=Linear(kind="diagonal", coeffs=coeffs, readout=lambda w, h, x: h),
    )
