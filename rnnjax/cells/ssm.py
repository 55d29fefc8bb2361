"""Gated linear recurrences and diagonal state-space models: RG-LRU, S4D, S5.

All three are diagonal linear recurrences ``h_t = a_t * h_{t-1} + b_t`` declared as
:class:`rnnjax.Linear` (``kind="diagonal"``), so :func:`rnnjax.run` can use the
associative scan.  The SSM layers of the papers map ``H`` features to ``H`` features;
when the input has ``F != H`` features the cell first applies a linear encoder
``u = E x`` (``E (H, F)``, ``N(0, 1/F)``, no bias; the encoder that precedes the first
layer in the papers' models), and ``u = x`` when ``F == H``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cells.linear import complex_carry, diagonal_step
from rnnjax.core import initializers
from rnnjax.core.cell import Cell, HiddenState, Linear, identity, zeros_carry
from rnnjax.core.checks import check_choice, check_memory, check_positive_int


def _encoder(key, H, F):
    check_positive_int("input_size", F)
    return {} if F == H else {"E": initializers.lecun_normal(key, (H, F))}


def _encode(w, x):
    return w["E"] @ x if "E" in w else x


def _input_size(H):
    return lambda p: p["E"].shape[-1] if "E" in p else H


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def sqrt_bound_derivative(x, max_gradient):
    """``sqrt(x)`` whose derivative is capped at ``max_gradient``: the backward pass
    evaluates ``d sqrt`` at ``max(x, 1 / (4 max_gradient^2))`` (recurrentgemma
    ``layers.sqrt_bound_derivative``).  Reverse mode only (a ``custom_vjp``)."""
    del max_gradient
    return jnp.sqrt(x)


def _sqrt_fwd(x, max_gradient):
    del max_gradient
    return jnp.sqrt(x), x


def _sqrt_bwd(max_gradient, x, g):
    x_pre = jnp.maximum(x, 1.0 / (4.0 * max_gradient ** 2))
    return jax.vjp(jnp.sqrt, x_pre)[1](g)


sqrt_bound_derivative.defvjp(_sqrt_fwd, _sqrt_bwd)


def ring_init(key, shape, min_rad=0.9, max_rad=0.999, eps=1e-8):
    """recurrentgemma ``rnn_param_init``: ``Lambda`` with ``exp(-softplus(Lambda))``
    uniform in area on the ring ``[min_rad, max_rad]``."""
    u = jax.random.uniform(key, shape)
    a_real = 0.5 * jnp.log(u * (max_rad ** 2 - min_rad ** 2) + min_rad ** 2 + eps)
    return jnp.log(jnp.exp(-a_real) - 1.0)


def rglru(hidden_size: int, c: float = 8.0, num_heads: int = 1, min_rad: float = 0.9,
          max_rad: float = 0.999, max_gradient: float = 1000.0) -> Cell:
    r"""Real-Gated Linear Recurrent Unit (De et al. 2024, "Griffin: Mixing Gated Linear
    Recurrences with Local Attention for Efficient Language Models";
    google-deepmind/recurrentgemma ``jax/layers.py`` ``RGLRU``).

    Equations (one example, ``u`` the encoded input, ``*`` elementwise)::

        r_t = sigmoid(W_a u_t + b_a)              recurrence gate  (block-diagonal W_a)
        i_t = sigmoid(W_x u_t + b_x)              input gate       (block-diagonal W_x)
        log a_t = -c * r_t * softplus(Lambda)     a_t in (0, 1)
        h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * u_t),      y_t = h_t

    ``sqrt(1 - a^2)`` is :func:`sqrt_bound_derivative` (gradient capped at
    ``max_gradient`` = 1000, as the reference).  Params: ``Lambda (H,)`` by
    :func:`ring_init` (``exp(-softplus(Lambda))`` in ``[0.9, 0.999]``), ``W_a, W_x
    (num_heads, H/num_heads, H/num_heads)`` ``N(0, 1/H)`` (flax ``variance_scaling``
    fan-in of the 3-d kernel), ``b_a, b_x = 0``.  Deviation: the reference replaces
    ``sqrt(1 - a^2)`` by 1 at a document's first token (``segment_pos == 0``, which
    includes ``t = 0``); here every step is normalised.  ``recurrent_matrix`` is
    ``diag(exp(-c softplus(Lambda)))``, the recurrence with the gate fully open.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.rglru(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("num_heads", num_heads)
    if hidden_size % num_heads:
        raise ValueError(f"hidden_size must be a multiple of num_heads {num_heads}, "
                         f"got {hidden_size}")
    if not 0.0 < float(min_rad) < float(max_rad) < 1.0:
        raise ValueError(f"min_rad and max_rad must satisfy 0 < min_rad < max_rad < 1, "
                         f"got {min_rad!r}, {max_rad!r}")
    if not float(c) > 0:
        raise ValueError(f"c must be positive, got {c!r}")
    H, heads = hidden_size, num_heads
    bw = H // heads

    def init(key, input_size):
        k = jax.random.split(key, 4)
        std = 1.0 / math.sqrt(H)
        return {"Lambda": ring_init(k[0], (H,), min_rad, max_rad),
                "W_a": std * jax.random.normal(k[1], (heads, bw, bw)),
                "b_a": jnp.zeros((H,), jnp.float32),
                "W_x": std * jax.random.normal(k[2], (heads, bw, bw)),
                "b_x": jnp.zeros((H,), jnp.float32),
                **_encoder(k[3], H, input_size)}

    def block(W, u):
        return jnp.einsum("hi,hij->hj", u.reshape(heads, bw), W).reshape(H)

    def coeffs(w, x):
        u = _encode(w, x)
        r = jax.nn.sigmoid(block(w["W_a"], u) + w["b_a"])
        i = jax.nn.sigmoid(block(w["W_x"], u) + w["b_x"])
        log_a = -c * r * jax.nn.softplus(w["Lambda"])
        mult = sqrt_bound_derivative(1.0 - jnp.exp(2.0 * log_a), max_gradient)
        return jnp.exp(log_a), mult * (i * u)

    def step(w, carry, x):
        a, b = coeffs(w, x)
        h = a * carry.h + b
        return HiddenState(h), h

    return Cell(
        init=init, prepare=identity, initial_carry=zeros_carry(HiddenState, H), step=step,
        input_size=_input_size(H), output_size=H, name="rglru",
        recurrent_matrix=lambda p: jnp.diag(jnp.exp(-c * jax.nn.softplus(p["Lambda"]))),
        linear=Linear(kind="diagonal", coeffs=coeffs, readout=lambda w, h, x: h),
    )


def hippo_legs(N: int):
    """HiPPO-LegS ``A (N, N)``, its normal part ``S = A + P P^T`` and ``B (N,)``::

        A_nk = -sqrt(2n+1) sqrt(2k+1) [n > k] - (n+1) [n = k],   P_n = sqrt(n + 1/2)
        B_n  = sqrt(2n+1)

    (S5 ``ssm_init.make_NPLR_HiPPO``; NumPy float64.)"""
    q = np.sqrt(1.0 + 2.0 * np.arange(N))
    A = -(np.tril(q[:, None] * q[None, :]) - np.diag(np.arange(N)))
    P = np.sqrt(np.arange(N) + 0.5)
    return A, A + P[:, None] * P[None, :], q.copy()


def hippo_legs_diagonal(N: int):
    """The diagonal part of the DPLR HiPPO-LegS (S5 ``make_DPLR_HiPPO``): ``S = -1/2 I +
    K`` with ``K`` skew-symmetric, so ``Lambda = -1/2 + i eig(-i K)`` (ascending
    imaginary parts, conjugate pairs), ``V`` its unitary eigenvectors and
    ``B_orig`` the HiPPO ``B``.  Returns ``(Lambda (N,), V (N, N), B_orig (N,))``."""
    _, S, B = hippo_legs(N)
    lam_im, V = np.linalg.eigh(-1j * (S - np.diag(np.diag(S))))
    lam = np.mean(np.diag(S)) + 1j * lam_im
    return lam, V, B


def _log_steps(key, shape, dt_min, dt_max):
    u = jax.random.uniform(key, shape)
    return u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)


def zoh(lam, B, step):
    """Zero-order hold: ``Lambda_bar = exp(Lambda dt)``, ``B_bar = (Lambda_bar - 1) /
    Lambda * B`` (S5 ``discretize_zoh``; ``B``'s leading axes align with ``lam``)."""
    lam_bar = jnp.exp(lam * step)
    scale = (lam_bar - 1.0) / lam
    return lam_bar, scale.reshape(scale.shape + (1,) * (B.ndim - lam.ndim)) * B


def _trunc_normal(key, shape, std):
    """LeCun-style truncated normal (jax ``variance_scaling``): ``std`` after truncation
    at two standard deviations."""
    return jax.random.truncated_normal(key, -2.0, 2.0, shape) * (std / 0.87962566103423978)


def _check_ssm(state_size, dt_min, dt_max):
    check_positive_int("state_size", state_size)
    if state_size % 2:
        raise ValueError(f"state_size must be even (conjugate pairs), got {state_size}")
    if not 0.0 < float(dt_min) < float(dt_max):
        raise ValueError(f"dt_min and dt_max must satisfy 0 < dt_min < dt_max, "
                         f"got {dt_min!r}, {dt_max!r}")
    # the factory itself diagonalises the (N, N) HiPPO-LegS matrix in NumPy (complex128
    # eigenvectors and their inverse, a few copies): refuse before allocating
    check_memory(f"the HiPPO-LegS initialisation at state_size={state_size}",
                 64.0 * float(state_size) ** 2, "use a smaller hidden_size or state_size")


def _ssm_cell(name, H, n_states, init, prepare, recurrent, drive, emit):
    """The shared Cell of S4D and S5: ``prepare`` returns the discretised
    ``lambda_bar (n_states,)`` and the weights of ``drive(w, u) = B_bar u`` and
    ``emit(w, h) = C h`` (complex)."""

    def coeffs(w, x):
        u = _encode(w, x)
        return w["lambda_bar"], drive(w, u)

    def readout(w, h, x):
        u = _encode(w, x)
        return (2.0 * emit(w, h).real).astype(x.dtype) + w["D"] * u

    return Cell(
        init=init, prepare=prepare, initial_carry=complex_carry(n_states),
        step=diagonal_step(coeffs, readout),
        input_size=_input_size(H), output_size=H, name=name,
        recurrent_matrix=lambda p: jnp.diag(recurrent(p)),
        linear=Linear(kind="diagonal", coeffs=coeffs, readout=readout),
    )


S4D_B_CLIP = 2.0  # state-spaces/s4 nplr(..., B_clip=2.0): |Im B| <= 2 for S4D-LegS


def s4d(hidden_size: int, state_size: int = 64, init: str = "legs", dt_min: float = 0.001,
        dt_max: float = 0.1) -> Cell:
    r"""S4D: ``H`` independent diagonal SISO state-space models (Gu, Gupta, Goel & Ré
    2022, "On the Parameterization and Initialization of Diagonal State Space Models",
    NeurIPS), discretised by zero-order hold.

    For each channel ``k`` (``u`` the encoded input, ``N/2`` complex states standing
    for ``N = state_size`` by conjugate symmetry)::

        Lambda_k = -exp(log_Lambda_re_k) + i Lambda_im_k            (N/2,)
        Lambda_bar_k = exp(Lambda_k dt_k),  B_bar_k = (Lambda_bar_k - 1) / Lambda_k * B_k
        h_{t,k} = Lambda_bar_k * h_{t-1,k} + B_bar_k u_{t,k}
        y_{t,k} = 2 Re(sum_n C_kn h_{t,kn}) + D_k u_{t,k}

    The real part is ``-exp`` of a parameter, as the reference's ``real_transform="exp"``
    (state-spaces/s4 ``models/s4/s4.py`` ``SSMKernelDiag``, ``models/s4/s4d.py``
    ``-torch.exp(self.log_A_real)``), so no update can make ``|Lambda_bar| >= 1``.
    Initialisation: ``init="legs"`` (S4D-LegS) takes the first ``N/2`` eigenvalues of
    the normal part of HiPPO-LegS (:func:`hippo_legs_diagonal`: real parts ``-1/2``)
    and ``B = V^* B_HiPPO`` with its imaginary part clamped to ``[-2, 2]`` (the
    reference's ``nplr(..., B_clip=2.0)``, ``models/s4/s4.py``, commit e757cef); ``init="lin"``
    (S4D-Lin) ``Lambda_n = -1/2 + i pi n``, ``B = 1``.  ``C`` complex ``N(0, 1)`` (each
    part variance 1/2), ``D ~ N(0, 1)``, ``log dt_k ~ U(log dt_min, log dt_max)``.
    Params are real (``log_Lambda_re``, ``*_re``, ``*_im``); the carry ``h`` is complex
    ``(H * N/2,)`` (channel-major).

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.s4d(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    _check_ssm(state_size, dt_min, dt_max)
    check_choice("init", init, ("legs", "lin"))
    H, N2 = hidden_size, state_size // 2
    if init == "legs":
        lam, V, B = hippo_legs_diagonal(state_size)
        lam, B0 = lam[:N2], V[:, :N2].conj().T @ B
        B0 = B0.real + 1j * np.clip(B0.imag, -S4D_B_CLIP, S4D_B_CLIP)
    else:
        lam, B0 = -0.5 + 1j * np.pi * np.arange(N2), np.ones(N2, complex)

    def init_fn(key, input_size):
        k = jax.random.split(key, 5)
        tile = lambda v: jnp.tile(jnp.asarray(v, jnp.float32), (H, 1))  # noqa: E731
        return {"log_Lambda_re": tile(np.log(-lam.real)), "Lambda_im": tile(lam.imag),
                "B_re": tile(B0.real), "B_im": tile(B0.imag),
                "C_re": jax.random.normal(k[0], (H, N2)) * math.sqrt(0.5),
                "C_im": jax.random.normal(k[1], (H, N2)) * math.sqrt(0.5),
                "D": jax.random.normal(k[2], (H,)),
                "log_dt": _log_steps(k[3], (H,), dt_min, dt_max),
                **_encoder(k[4], H, input_size)}

    def discretise(p):
        lam_c = -jnp.exp(p["log_Lambda_re"]) + 1j * p["Lambda_im"]
        return zoh(lam_c, p["B_re"] + 1j * p["B_im"], jnp.exp(p["log_dt"])[:, None])

    def prepare(p):
        lam_bar, B_bar = discretise(p)
        return {**{k: p[k] for k in ("D", "E") if k in p},
                "lambda_bar": lam_bar.reshape(-1), "B_bar": B_bar,
                "C": p["C_re"] + 1j * p["C_im"]}

    return _ssm_cell("s4d", H, H * N2, init_fn, prepare,
                     lambda p: discretise(p)[0].reshape(-1),
                     lambda w, u: (w["B_bar"] * u[:, None]).reshape(-1),
                     lambda w, h: (w["C"] * h.reshape(H, N2)).sum(-1))


def s5(hidden_size: int, state_size: int | None = None, blocks: int = 1,
       dt_min: float = 0.001, dt_max: float = 0.1) -> Cell:
    r"""S5: one diagonal MIMO state-space model (Smith, Warrington & Linderman 2023,
    "Simplified State Space Layers for Sequence Modeling", ICLR; lindermanlab/S5
    ``s5/ssm.py``, ``ssm_init.py``), zero-order hold, conjugate symmetry::

        Lambda_bar = exp(Lambda * Delta),  B_bar = (Lambda_bar - 1) / Lambda * B~  (P/2,)
        h_t = Lambda_bar * h_{t-1} + B_bar u_t          (P/2 complex states, u: (H,))
        y_t = 2 Re(C~ h_t) + D * u_t                    (H,)

    ``P = state_size`` (default: ``hidden_size`` rounded up to a multiple of
    ``2 * blocks``, since states come in conjugate pairs), split into ``blocks`` HiPPO
    blocks.
    Initialisation as the reference (``C_init="trunc_standard_normal"``): for each block
    of size ``P/J``, the first half of the DPLR HiPPO-LegS eigenvalues
    (:func:`hippo_legs_diagonal`) and eigenvectors ``V``; ``B~ = V^{-1} B`` with ``B
    (P, H)`` truncated-normal std ``1/sqrt(P)``; ``C~ = C V`` with ``C`` complex
    ``(H, P)`` whose real and imaginary parts are truncated-normal std ``1/sqrt(P)``;
    ``D ~ N(0, 1)``; ``log Delta ~ U(log dt_min, log dt_max)`` per state.  Params are
    real (``*_re``, ``*_im``); the carry is complex ``(P/2,)``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.s5(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("blocks", blocks)
    P = -(-hidden_size // (2 * blocks)) * 2 * blocks if state_size is None else state_size
    _check_ssm(P, dt_min, dt_max)
    if P % (2 * blocks):
        raise ValueError(f"state_size must be a multiple of 2 * blocks = {2 * blocks}, "
                         f"got {P}")
    H, P2 = hidden_size, P // 2
    lam_b, V_b, _ = hippo_legs_diagonal(P // blocks)
    half = P // blocks // 2
    lam = np.tile(lam_b[:half], blocks)
    V = np.kron(np.eye(blocks), V_b[:, :half])  # (P, P/2) block diagonal
    Vinv = V.conj().T

    def init_fn(key, input_size):
        k = jax.random.split(key, 6)
        std = 1.0 / math.sqrt(P)
        B = jnp.asarray(Vinv, jnp.complex64) @ _trunc_normal(k[0], (P, H), std)
        C = _trunc_normal(k[1], (H, P), std) + 1j * _trunc_normal(k[2], (H, P), std)
        C = C @ jnp.asarray(V, jnp.complex64)
        f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
        return {"Lambda_re": f32(lam.real), "Lambda_im": f32(lam.imag),
                "B_re": f32(B.real), "B_im": f32(B.imag),
                "C_re": f32(C.real), "C_im": f32(C.imag),
                "D": jax.random.normal(k[3], (H,)),
                "log_step": _log_steps(k[4], (P2,), dt_min, dt_max),
                **_encoder(k[5], H, input_size)}

    def discretise(p):
        return zoh(p["Lambda_re"] + 1j * p["Lambda_im"], p["B_re"] + 1j * p["B_im"],
                   jnp.exp(p["log_step"]))

    def prepare(p):
        lam_bar, B_bar = discretise(p)
        return {**{k: p[k] for k in ("D", "E") if k in p},
                "lambda_bar": lam_bar, "B_bar": B_bar, "C": p["C_re"] + 1j * p["C_im"]}

    return _ssm_cell("s5", H, P2, init_fn, prepare, lambda p: discretise(p)[0],
                     lambda w, u: w["B_bar"] @ u.astype(w["B_bar"].dtype),
                     lambda w, h: w["C"] @ h)


__all__ = ["S4D_B_CLIP", "hippo_legs", "hippo_legs_diagonal", "ring_init", "rglru", "s4d", "s5",
           "sqrt_bound_derivative", "zoh"]
