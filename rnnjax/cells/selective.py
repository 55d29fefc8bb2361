"""Selective state-space recurrences of Mamba (S6; Gu & Dao 2023) and Mamba-2 (SSD; Dao &
Gu 2024), and the Mamba block.

The S6 recurrence (:func:`mamba`) is a diagonal linear recurrence in its ``(D, N)``
state with an input-dependent transition, declared :class:`rnnjax.Linear`
(``kind="diagonal"``) on the flattened state so :func:`rnnjax.run` can use the
associative scan.  The block (:func:`mamba_block`) wraps it in the in-projection, the
causal depthwise convolution (its last inputs in the carry), the SiLU gate and the
out-projection.  :func:`mamba2` is the SSD recurrence (a scalar decay per head), also
declared diagonal.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.cells.linear import diagonal_step
from rnnjax.core import initializers
from rnnjax.core.cell import Cell, Chunk, HiddenState, Linear, identity, zeros_carry
from rnnjax.core.checks import check_positive_float, check_positive_int
from rnnjax.engine.chunk_forms import decay_chunk

__all__ = ["MambaBlockState", "inverse_softplus", "mamba", "mamba2", "mamba_block",
           "mamba_dt_bias", "selective_coeffs"]


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


def _check_dt(dt_min, dt_max, dt_scale, dt_init_floor, dt_init):
    if not 0.0 < float(dt_min) < float(dt_max):
        raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min < dt_max, "
                         f"got dt_min={dt_min!r}, dt_max={dt_max!r}")
    check_positive_float("dt_scale", dt_scale)
    check_positive_float("dt_init_floor", dt_init_floor)
    if dt_init not in ("random", "constant"):
        raise ValueError(f"dt_init must be one of ['constant', 'random'], got {dt_init!r}")


def _s6_params(key, D, N, R, dt_min, dt_max, dt_init, dt_scale, dt_init_floor):
    """``W_x, W_dt, dt_bias, A_log, D`` of ``mamba_simple.py`` for ``D`` channels."""
    k = jax.random.split(key, 3)
    s = dt_scale * R ** -0.5
    W_dt = (jnp.full((D, R), s) if dt_init == "constant"
            else jax.random.uniform(k[1], (D, R), minval=-s, maxval=s))
    return {"W_x": initializers.uniform(1.0 / math.sqrt(D))(k[0], (R + 2 * N, D)),
            "W_dt": W_dt,
            "dt_bias": mamba_dt_bias(k[2], (D,), dt_min, dt_max, dt_init_floor),
            "A_log": jnp.log(jnp.tile(jnp.arange(1.0, N + 1.0), (D, 1))),
            "D": jnp.ones((D,))}


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
    ``ceil(D / 16)`` here; the reference takes ``ceil(d_model / 16)`` of its block's
    ``d_model = D / expand`` (:func:`mamba_block` does): pass ``dt_rank`` to match a
    block.

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
    _check_dt(dt_min, dt_max, dt_scale, dt_init_floor, dt_init)
    D, N, R = hidden_size, state_size, dt_rank
    neg = bool(negative_eigenvalues)

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 2)
        p = _s6_params(k[0], D, N, R, dt_min, dt_max, dt_init, dt_scale, dt_init_floor)
        if input_size != D:
            p["E"] = initializers.lecun_normal(k[1], (D, input_size))
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


class MambaBlockState(NamedTuple):
    """Carry of :func:`mamba_block`: the S6 state ``h (ED, N)`` and the convolution's
    last ``K - 1`` inputs ``conv (K - 1, ED)``, oldest first (mambapy's ``cache``), each
    flattened row-major to a vector (the carry convention, leaves ``batch +
    (features,)``, that every engine and analysis reads)."""

    h: jax.Array
    conv: jax.Array


def mamba_block(hidden_size: int, state_size: int = 16, expand: int = 2,
                conv_size: int = 4, dt_rank: int | str = "auto", *, dt_min: float = 1e-3,
                dt_max: float = 1e-1, dt_init: str = "random", dt_scale: float = 1.0,
                dt_init_floor: float = 1e-4, negative_eigenvalues: bool = False) -> Cell:
    r"""The Mamba block (Gu & Dao 2023) as a per-step cell: in-projection, causal
    depthwise convolution, SiLU, the S6 recurrence of :func:`mamba`, the ``SiLU(z)`` gate
    and the out-projection.

    Follows alxndrTL/mamba.py ``mambapy/mamba.py`` (``MambaBlock.step`` and
    ``ssm_step``, equal to its ``forward``) and state-spaces/mamba
    ``modules/mamba_simple.py`` (the slow path of ``forward``).  Equations (one example,
    ``D = hidden_size`` (d_model), ``ED = expand * D``, ``K = conv_size``)::

        [u_t, z_t] = W_in x_t                                  (ED,), (ED,)  no bias
        c_t = sum_{j<K} w_conv[:, j] * u_{t-K+1+j} + b_conv     causal, depthwise
        s_t = SiLU(c_t)
        h_t, y_t = S6(s_t)           (the equations of :func:`mamba`, state (ED, N))
        out_t = W_out (y_t * SiLU(z_t))                        (D,)  no bias

    The carry :class:`MambaBlockState` holds ``h`` and the last ``K - 1`` in-projected
    inputs ``u`` (zeros at the start: the convolution's zero padding).

    Initialisation (``mamba_simple.py`` / mambapy): ``W_in (2 ED, F)``, ``W_out (D, ED)``
    ``nn.Linear`` (``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``); ``w_conv (ED, K)``, ``b_conv
    (ED,)`` ``nn.Conv1d`` (``U(-1/sqrt(K), 1/sqrt(K))``); the S6 params as
    :func:`mamba` with ``dt_rank="auto" = ceil(D / 16)``.  Deviations: the residual
    connection and the RMSNorm around the block (``ResidualBlock``), and the model-level
    rescaling of ``W_out`` by ``1/sqrt(n_layer)``, belong to the model, not the cell.
    The input may have any number ``F`` of features (``W_in`` maps them).  No
    associative-scan declaration: the convolution's window in the carry is a shift,
    not a diagonal recurrence (run the S6 cell itself for the parallel scan).

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.mamba_block(4, state_size=3)
        >>> params = cell.init(jax.random.key(0), 4)
        >>> ys, carry = rnnjax.run(cell, params, jnp.ones((2, 5, 4)))
        >>> ys.shape, carry.h.shape, carry.conv.shape
        ((2, 5, 4), (2, 24), (2, 24))
    """
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("state_size", state_size)
    check_positive_int("expand", expand)
    check_positive_int("conv_size", conv_size)
    if dt_rank == "auto":
        dt_rank = math.ceil(hidden_size / 16)
    check_positive_int("dt_rank", dt_rank)
    _check_dt(dt_min, dt_max, dt_scale, dt_init_floor, dt_init)
    Dm, N, R, K = hidden_size, state_size, dt_rank, conv_size
    ED = expand * Dm
    neg = bool(negative_eigenvalues)

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 5)
        u = initializers.uniform
        return {"W_in": u(1.0 / math.sqrt(input_size))(k[0], (2 * ED, input_size)),
                "conv_w": u(1.0 / math.sqrt(K))(k[1], (ED, K)),
                "conv_b": u(1.0 / math.sqrt(K))(k[2], (ED,)),
                **_s6_params(k[3], ED, N, R, dt_min, dt_max, dt_init, dt_scale,
                             dt_init_floor),
                "W_out": u(1.0 / math.sqrt(ED))(k[4], (Dm, ED))}

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        shape = tuple(batch_shape)
        return MambaBlockState(jnp.zeros(shape + (ED * N,), dtype),
                               jnp.zeros(shape + ((K - 1) * ED,), dtype))

    def step(w, carry, x):
        u, z = jnp.split(w["W_in"] @ x, 2)
        window = jnp.concatenate([carry.conv.reshape(K - 1, ED), u[None]], axis=0)  # (K, ED)
        s = jax.nn.silu(jnp.einsum("kd,dk->d", window, w["conv_w"]) + w["conv_b"])
        a, b, C = selective_coeffs(w, s, R, N, neg)
        h = (a * carry.h.reshape(ED, N) + b).astype(carry.h.dtype)
        y = h @ C + w["D"] * s
        out = w["W_out"] @ (y * jax.nn.silu(z))
        return MambaBlockState(h.reshape(-1), window[1:].reshape(-1).astype(
            carry.conv.dtype)), out

    return Cell(init=init, prepare=identity, initial_carry=initial_carry, step=step,
                input_size=lambda p: p["W_in"].shape[-1], output_size=Dm,
                name="mamba_block")


def mamba2(hidden_size: int, state_size: int = 16, num_heads: int = 1, *,
           A_init_range: tuple = (1.0, 16.0), dt_min: float = 1e-3, dt_max: float = 1e-1,
           dt_init_floor: float = 1e-4) -> Cell:
    r"""The SSD recurrence of Mamba-2 (Dao & Gu 2024, "Transformers are SSMs: Generalized
    Models and Efficient Algorithms Through Structured State Space Duality"): a
    selective SSM whose transition is a scalar times the identity per head.

    Follows state-spaces/mamba ``mamba_ssm/modules/ssd_minimal.py``
    (``ssd_minimal_discrete(X * dt, A * dt, B, C)``, the chunked algorithm, whose
    recurrence this is) with the parameters of ``modules/mamba2.py``.  Equations (one
    example, ``D = hidden_size = NH * P`` channels, ``N = state_size``, one group)::

        u_t = x_t reshaped (NH, P)
        B_t, C_t = W_B u_t, W_C u_t                          (N,) each
        dt_t = softplus(W_dt u_t + dt_bias)                  (NH,)
        A = -exp(A_log)                                      (NH,)  scalar per head
        h_t = exp(dt_t A) h_{t-1} + (dt_t u_t) B_t^T         (NH, P, N)
        y_t = h_t C_t + D_skip * u_t                         (NH, P) -> (D,)

    Initialisation (``mamba2.py``): ``A = U(A_init_range)`` (default ``[1, 16]``),
    ``A_log = log A``; ``dt_bias`` as Mamba's (:func:`mamba_dt_bias`); ``D_skip = 1``
    per head; ``W_B, W_C (N, D)``, ``W_dt (NH, D)`` PyTorch ``nn.Linear`` (``U(-1/sqrt
    D, 1/sqrt D)``).

    Deviations: in the Mamba-2 block ``B, C, dt`` come from the block's in-projection
    (and ``x, B, C`` pass a causal convolution), with the gate, the norm and the
    out-projection around the SSD; here the cell computes ``B, C, dt`` from its own
    input ``u`` (encoded ``u = E x``, ``E (D, F)`` ``N(0, 1/F)``, when ``F != D``).
    The state is carried flattened, ``HiddenState(h (NH * P * N,))``, and declared
    ``Linear(kind="diagonal")`` (the scalar decay repeated over ``(P, N)``), so the
    associative scan applies; its chunk form (:class:`rnnjax.Chunk`,
    ``scan="chunked"``) is the chunked SSD algorithm
    (:func:`rnnjax.engine.chunk_forms.decay_chunk` with a scalar decay), equal to it
    (tests).

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.mamba2(8, state_size=4, num_heads=2)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> ys, carry = rnnjax.run(cell, params, jnp.ones((2, 5, 3)))
        >>> ys.shape, carry.h.shape
        ((2, 5, 8), (2, 32))
    """
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("state_size", state_size)
    check_positive_int("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size must be a multiple of num_heads {num_heads}, "
                         f"got {hidden_size}")
    lo, hi = (float(a) for a in A_init_range)
    if not 0.0 < lo < hi:
        raise ValueError(f"A_init_range must satisfy 0 < low < high, got {A_init_range!r}")
    _check_dt(dt_min, dt_max, 1.0, dt_init_floor, "random")
    D, N, NH = hidden_size, state_size, num_heads
    P = D // NH

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 6)
        u = initializers.uniform(1.0 / math.sqrt(D))
        p = {"W_B": u(k[0], (N, D)), "W_C": u(k[1], (N, D)), "W_dt": u(k[2], (NH, D)),
             "dt_bias": mamba_dt_bias(k[3], (NH,), dt_min, dt_max, dt_init_floor),
             "A_log": jnp.log(jax.random.uniform(k[4], (NH,), minval=lo, maxval=hi)),
             "D": jnp.ones((NH,))}
        if input_size != D:
            p["E"] = initializers.lecun_normal(k[5], (D, input_size))
        return p

    def encode(w, x):
        return w["E"] @ x if "E" in w else x

    def coeffs(w, x):
        u = encode(w, x)
        dt = jax.nn.softplus(w["W_dt"] @ u + w["dt_bias"])  # (NH,)
        a = jnp.exp(dt * -jnp.exp(w["A_log"]))
        b = (dt[:, None] * u.reshape(NH, P))[:, :, None] * (w["W_B"] @ u)[None, None, :]
        return jnp.broadcast_to(a[:, None, None], (NH, P, N)).reshape(-1), b.reshape(-1)

    def readout(w, h, x):
        u = encode(w, x)
        C = (w["W_C"] @ u).astype(h.dtype)
        y = h.reshape(NH, P, N) @ C + w["D"][:, None] * u.reshape(NH, P)
        return y.reshape(D)

    def chunk_run(w, carry, carry0, xs, starts, live):
        """SSD (``ssd_minimal_discrete``) per head: query ``C_t``, key ``B_t``, value
        ``dt_t u_t``, log decay ``dt_t A``; the state ``h (P, N)`` is ``S^T``."""
        u = jax.vmap(lambda x: encode(w, x))(xs)  # (c, D)
        dt = jax.nn.softplus(u @ w["W_dt"].T + w["dt_bias"])  # (c, NH)
        g = dt * -jnp.exp(w["A_log"])
        Bm, Cm = u @ w["W_B"].T, u @ w["W_C"].T  # (c, N)
        val = dt[:, :, None] * u.reshape(-1, NH, P)  # (c, NH, P)
        state = lambda c: jnp.swapaxes(c.h.reshape(NH, P, N), 1, 2)  # noqa: E731
        o, S = jax.vmap(decay_chunk, in_axes=(None, None, 1, 1, 0, 0, None, None))(
            Cm, Bm, val, g[:, :, None], state(carry), state(carry0), starts, live)
        y = jnp.swapaxes(o, 0, 1) + w["D"][:, None] * u.reshape(-1, NH, P)
        return HiddenState(jnp.swapaxes(S, 1, 2).reshape(-1)), y.reshape(-1, D)

    def recurrent(p):
        a = jnp.exp(jax.nn.softplus(p["dt_bias"]) * -jnp.exp(p["A_log"]))
        return jnp.diag(jnp.broadcast_to(a[:, None], (NH, P * N)).reshape(-1))

    return Cell(
        init=init, prepare=identity, initial_carry=zeros_carry(HiddenState, NH * P * N),
        step=diagonal_step(coeffs, readout),
        input_size=lambda p: p["E"].shape[-1] if "E" in p else D, output_size=D,
        name="mamba2", recurrent_matrix=recurrent,
        linear=Linear(kind="diagonal", coeffs=coeffs, readout=readout),
        chunk=Chunk(chunk_run),
    )
