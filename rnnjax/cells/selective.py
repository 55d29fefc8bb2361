"""Selective state-space recurrence of Mamba (S6; Gu & Dao 2023).

The S6 recurrence is a diagonal linear recurrence in its ``(D, N)`` state with an
input-dependent transition, declared :class:`rnnjax.Linear` (``kind="diagonal"``) on the
flattened state so :func:`rnnjax.run` can use the associative scan.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax import initializers
from rnnjax.cell import Cell, HiddenState, Linear, identity, zeros_carry
from rnnjax.cells.linear import diagonal_step
from rnnjax.checks import check_positive_float, check_positive_int

__all__ = ["inverse_softplus", "mamba", "mamba_dt_bias", "selective_coeffs"]


def inverse_softplus(y):
    """``x`` with ``softplus(x) = y`` (``y > 0``): ``y + log(-expm1(-y))``, Mamba's form."""
    return y + jnp.log(-jnp.expm1(-y))


def mamba_dt_bias(key, shape, dt_min=1e-3, dt_max=1e-1, dt_init_floor=1e-4):
    """Mamba's ``dt_proj.bias``: ``inverse_softplus(dt)`` with ``log dt ~ U(log dt_min,
    log dt_max)`` clamped below at ``dt_init_floor`` (``modules/mamba_simple.py``), so
    ``softplus(bias)`` starts in ``[dt_min, dt_max]``."""
    u = jax.random.uniform(key, shape)
    dt = jnp.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    return inverse_softplus(jnp.maximum(dt, dt_init_floor))


def selective_coeffs(w, u, dt_rank: int, state_size: int, negative_eigenvalues=False):
    """One step's S6 coefficients from the channel input ``u (D,)``.

    Returns ``(a (D, N), b (D, N), C (N,))``: ``a = exp(Delta A)`` (or ``2 a - 1``),
    ``b = (Delta * u) B^T``, and the readout vector ``C``."""
    x_dbl = w["W_x"] @ u  # (R + 2N,)
    dt, B, C = jnp.split(x_dbl, [dt_rank, dt_rank + state_size])
    delta = jax.nn.softplus(w["W_dt"] @ dt + w["dt_bias"])  # (D,)
    A = -jnp.exp(w["A_log"])  # (D, N)
    a = jnp.exp(delta[:, None] * A)
    if negative_eigenvalues:
        a = 2.0 * a - 1.0
    b = (delta * u)[:, None] * B[None, :]
    return a, b, C


def mamba(hidden_size: int, state_size: int = 16, dt_rank: int | str = "auto", *,
          dt_min: float = 1e-3, dt_max: float = 1e-1, dt_init: str = "random",
          dt_scale: float = 1.0, dt_init_floor: float = 1e-4,
          negative_eigenvalues: bool = False) -> Cell:
    r"""The S6 selective state-space recurrence of Mamba-1 (Gu & Dao 2023, "Mamba:
    Linear-Time Sequence Modeling with Selective State Spaces").

    Follows state-spaces/mamba ``mamba_ssm/ops/selective_scan_interface.py``
    (``selective_scan_ref`` with ``delta_softplus=True``, variable ``B`` and ``C``,
    ``z=None``) fed as in the slow path of ``modules/mamba_simple.py`` (``x_proj``,
    ``dt_proj``).  Equations (one example, ``D = hidden_size`` channels, ``N =
    state_size``, ``R = dt_rank``, ``u_t (D,)`` the channel input)::

        [dt_t, B_t, C_t] = W_x u_t                   (R,), (N,), (N,)   x_proj, no bias
        Delta_t = softplus(W_dt dt_t + dt_bias)      (D,)               dt_proj
        A = -exp(A_log)                              (D, N)
        h_t = exp(Delta_t A) * h_{t-1} + (Delta_t * u_t) B_t^T      (D, N), elementwise
        y_t = h_t C_t + D_skip * u_t                 (D,)

    i.e. zero-order hold for ``A`` and the simplified (Euler) ``Delta B u`` for the input,
    as the reference.  ``negative_eigenvalues=True`` replaces the transition by
    ``2 exp(Delta_t A) - 1``, in ``(-1, 1)`` instead of ``(0, 1)`` (Grazzi et al. 2025,
    "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues").

    Initialisation (``mamba_simple.py``): ``A_log[d, n] = log(n + 1)`` (S4D-real: ``A =
    -(1, ..., N)`` in every channel); ``D_skip = 1``; ``W_x (R + 2N, D)`` as PyTorch's
    ``nn.Linear`` (``U(-1/sqrt(D), 1/sqrt(D))``); ``W_dt (D, R)`` ``U(-s, s)`` with ``s =
    dt_scale / sqrt(R)`` (``dt_init="random"``) or ``s`` everywhere (``"constant"``);
    ``dt_bias`` by :func:`mamba_dt_bias` (``softplus(dt_bias)`` log-uniform in
    ``[dt_min, dt_max]``, floored at ``dt_init_floor``).  ``dt_rank="auto"`` is
    ``ceil(D / 16)``.

    Deviations: this is the recurrence, not the Mamba block (no in-projection, causal
    convolution, ``SiLU(z)`` gate or out-projection; compose them around the cell).  When
    the input has ``F != D`` features it is first encoded, ``u_t = E x_t`` (``E (D, F)``
    ``N(0, 1/F)``, no bias, as :mod:`rnnjax.cells.ssm`); ``u_t = x_t`` when ``F == D``.
    The carry ``HiddenState(h)`` holds the state flattened, ``h (D * N,)``, row-major
    over ``(D, N)`` (the associative engine's masks expect a vector state).

    The recurrence is declared ``Linear(kind="diagonal")`` (``a_t = exp(Delta_t A)``,
    ``b_t = (Delta_t u_t) B_t^T``, both flattened), so ``rnnjax.run(...,
    scan="associative")`` runs it in parallel.  ``recurrent_matrix(params)`` is the
    ``(D N, D N)`` diagonal transition at ``u = 0`` (``Delta = softplus(dt_bias)``).

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.mamba(8, state_size=4)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> ys, carry = rnnjax.run(cell, params, jnp.ones((2, 5, 3)))
        >>> ys.shape, carry.h.shape
        ((2, 5, 8), (2, 32))
    """
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("state_size", state_size)
    if dt_rank == "auto":
        dt_rank = math.ceil(hidden_size / 16)
    check_positive_int("dt_rank", dt_rank)
    if not 0.0 < float(dt_min) < float(dt_max):
        raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min < dt_max, "
                         f"got dt_min={dt_min!r}, dt_max={dt_max!r}")
    check_positive_float("dt_scale", dt_scale)
    check_positive_float("dt_init_floor", dt_init_floor)
    if dt_init not in ("random", "constant"):
        raise ValueError(f"dt_init must be one of ['constant', 'random'], got {dt_init!r}")
    D, N, R = hidden_size, state_size, dt_rank
    neg = bool(negative_eigenvalues)

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 4)
        s = dt_scale * R ** -0.5
        W_dt = (jnp.full((D, R), s) if dt_init == "constant"
                else jax.random.uniform(k[1], (D, R), minval=-s, maxval=s))
        p = {"W_x": initializers.uniform(1.0 / math.sqrt(D))(k[0], (R + 2 * N, D)),
             "W_dt": W_dt,
             "dt_bias": mamba_dt_bias(k[2], (D,), dt_min, dt_max, dt_init_floor),
             "A_log": jnp.log(jnp.tile(jnp.arange(1.0, N + 1.0), (D, 1))),
             "D": jnp.ones((D,))}
        if input_size != D:
            p["E"] = initializers.lecun_normal(k[3], (D, input_size))
        return p

    def encode(w, x):
        return w["E"] @ x if "E" in w else x

    def coeffs(w, x):
        a, b, _ = selective_coeffs(w, encode(w, x), R, N, neg)
        return a.reshape(D * N), b.reshape(D * N)

    def readout(w, h, x):
        u = encode(w, x)
        C = jnp.split(w["W_x"] @ u, [R, R + N])[2]
        return h.reshape(D, N) @ C.astype(h.dtype) + w["D"] * u

    def recurrent(p):
        a = jnp.exp(jax.nn.softplus(p["dt_bias"])[:, None] * -jnp.exp(p["A_log"]))
        return jnp.diag((2.0 * a - 1.0 if neg else a).reshape(D * N))

    return Cell(
        init=init, prepare=identity, initial_carry=zeros_carry(HiddenState, D * N),
        step=diagonal_step(coeffs, readout),
        input_size=lambda p: p["E"].shape[-1] if "E" in p else D, output_size=D,
        name="mamba", recurrent_matrix=recurrent,
        linear=Linear(kind="diagonal", coeffs=coeffs, readout=readout),
    )
