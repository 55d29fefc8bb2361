"""Independent and minimal gated cells: IndRNN, MGU, minGRU, minLSTM.

IndRNN (Li et al. 2018) replaces the recurrent matrix by one weight per unit; MGU
(Zhou et al. 2016) keeps a single gate; minGRU and minLSTM (Feng et al. 2024) drop the
hidden state from their gates, so their recurrence ``h_t = a_t * h_{t-1} + b_t`` is
linear and declared for the associative scan (:class:`rnnjax.Linear`).
:func:`log_space_scan` is the paper's log-space parallel scan; the ``*_log_coeffs``
functions give the log-space coefficients of the two minimal cells.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.cells.gated import INITS, gate_params
from rnnjax.core import initializers
from rnnjax.core.cell import Cell, HiddenState, Linear, identity, zeros_carry
from rnnjax.core.checks import check_choice, check_positive_int


def indrnn(hidden_size: int, timesteps: int = 100, mag: float = 2.0,
           recurrent_min: float = 0.0) -> Cell:
    r"""Independently recurrent network (Li, Li, Cook, Zhu & Gao 2018, "Independently
    Recurrent Neural Network (IndRNN): Building A Longer and Deeper RNN", CVPR;
    Sunnydreamrain/IndRNN_Theano_Lasagne).

    Equations (one example, ``*`` elementwise)::

        h_t = relu(W x_t + u * h_{t-1} + b),                      y_t = h_t
        after every optimiser step:  u <- clip(u, -MAG^(1/T), MAG^(1/T))   (cell.project)

    The bound ``|u| <= MAG^(1/T)`` (``T = timesteps``) keeps the gradient of a ReLU
    unit over ``T`` steps below ``MAG`` (paper, Sec. 3.1).  As the reference code
    (Sunnydreamrain/IndRNN_Theano_Lasagne ``adding/adding.py``: ``para.set_value(
    np.clip(para.get_value(), -U_bound, U_bound))`` between training steps), the clip is
    a projection of the parameter between updates, ``cell.project``, which
    :func:`rnnjax.training.make_update` and the runner apply after each step; the
    forward pass uses ``u`` as it is, so a ``u`` on the bound keeps its gradient and
    can move back inside.  Initialisation (the reference adding task): ``u ~
    U(recurrent_min, MAG^(1/T))`` (``recurrent_min = MAG^(-1/T)`` is the paper's choice
    for a last layer that must keep long memories), ``W ~ N(0, 0.001^2)``, ``b = 0``.
    ``recurrent_matrix`` is ``diag(u)``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.indrnn(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("timesteps", timesteps)
    if isinstance(mag, bool) or not isinstance(mag, (int, float)) or not mag > 1.0:
        raise ValueError(f"mag must be a number > 1, got {mag!r}")
    bound = float(mag) ** (1.0 / timesteps)
    if not 0.0 <= float(recurrent_min) < bound:
        raise ValueError(f"recurrent_min must be in [0, MAG^(1/T) = {bound:.6g}), "
                         f"got {recurrent_min!r}")
    H = hidden_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k1, k2 = jax.random.split(key)
        return {"W": initializers.normal(1e-3)(k1, (H, input_size)),
                "u": jax.random.uniform(k2, (H,), jnp.float32, recurrent_min, bound),
                "b": jnp.zeros((H,), jnp.float32)}

    def project(p):
        return {**p, "u": jnp.clip(p["u"], -bound, bound)}

    def step(w, carry, x):
        h = jax.nn.relu(w["W"] @ x + w["u"] * carry.h + w["b"])
        return HiddenState(h), h

    return Cell(
        init=init, prepare=identity, initial_carry=zeros_carry(HiddenState, H), step=step,
        input_size=lambda p: p["W"].shape[-1], output_size=H, name="indrnn",
        recurrent_matrix=lambda p: jnp.diag(p["u"]), project=project,
    )


def mgu(hidden_size: int, init: str = "orthogonal") -> Cell:
    r"""Minimal gated unit (Zhou, Wu, Zhang & Zhou 2016, "Minimal Gated Unit for
    Recurrent Neural Networks", IJAC), the paper's equations::

        f_t  = sigmoid(W_xf x_t + W_hf h_{t-1} + b_f)
        hh_t = tanh(W_xh x_t + W_hh (f_t * h_{t-1}) + b_h)
        h_t  = (1 - f_t) * h_{t-1} + f_t * hh_t,                  y_t = h_t

    Params: ``W_xh (2H, F)``, ``W_hh (2H, H)``, ``b (2H,)`` with blocks ``[f, h]``,
    initialised as :func:`rnnjax.cells.gru` (``"orthogonal"``: Haar-orthogonal per
    block, input blocks variance ``1/F``, zero bias; ``"uniform"``: PyTorch's).  Flax's
    ``MGUCell`` swaps the roles of ``f`` and ``1 - f`` and gates ``W_hh h + b`` (cuDNN
    style) instead of ``h``; this cell follows the paper.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.mgu(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, INITS)
    H = hidden_size

    def init_fn(key, input_size):
        w_xh, w_hh, b = gate_params(key, input_size, H, 2, init)
        return {"W_xh": w_xh, "W_hh": w_hh, "b": b}

    def step(w, carry, x):
        a = w["W_xh"] @ x + w["b"]
        f = jax.nn.sigmoid(a[:H] + w["W_hh"][:H] @ carry.h)
        hh = jnp.tanh(a[H:] + w["W_hh"][H:] @ (f * carry.h))
        h = (1.0 - f) * carry.h + f * hh
        return HiddenState(h), h

    return Cell(
        init=init_fn, prepare=identity, initial_carry=zeros_carry(HiddenState, H),
        step=step, input_size=lambda p: p["W_xh"].shape[-1], output_size=H, name="mgu",
        recurrent_matrix=lambda p: p["W_hh"],
    )


def positive(x):
    """``g(x) = x + 0.5`` for ``x >= 0`` and ``sigmoid(x)`` below: the continuous,
    positive activation of Feng et al. 2024 that makes ``log h`` defined."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_positive(x):
    """``log g(x)``, computed stably: ``log(relu(x) + 0.5)`` or ``-softplus(-x)``."""
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))


def log_space_scan(log_a, log_b, log_h0=None, axis: int = 0):
    r"""``h_t = a_t h_{t-1} + b_t`` for positive ``a, b`` in log space (Feng et al. 2024,
    appendix, ``parallel_scan_log``; Heinsen 2023)::

        a*_t  = cumsum_{s<=t} log a_s
        log h_t = a*_t + logcumsumexp_{s<=t}(log b_s - a*_s)     (+ log h_0 as s = 0)

    ``log_a, log_b`` are stacked along ``axis`` (time); returns ``h`` (not its log).
    """
    a_star = jnp.cumsum(log_a, axis=axis)
    terms = log_b - a_star
    if log_h0 is not None:
        terms = jnp.concatenate([jnp.expand_dims(log_h0, axis), terms], axis=axis)
    log_h = jax.lax.cumlogsumexp(terms, axis=axis)
    if log_h0 is not None:
        log_h = jax.lax.slice_in_dim(log_h, 1, None, axis=axis)
    return jnp.exp(a_star + log_h)


def _min_params(key, input_size, H, blocks):
    check_positive_int("input_size", input_size)
    u = initializers.uniform(1.0 / math.sqrt(input_size))
    k1, k2 = jax.random.split(key)
    return {"W": u(k1, (blocks * H, input_size)), "b": u(k2, (blocks * H,))}


def _min_cell(name, H, blocks, coeffs, positive_values):
    def step(w, carry, x):
        a, b = coeffs(w, x)
        h = a * carry.h + b
        return HiddenState(h), h

    return Cell(
        init=lambda key, F: _min_params(key, F, H, blocks), prepare=identity,
        initial_carry=zeros_carry(HiddenState, H), step=step,
        input_size=lambda p: p["W"].shape[-1], output_size=H,
        name=name if positive_values else f"{name}-linear",
        linear=Linear(kind="diagonal", coeffs=coeffs, readout=lambda w, h, x: h),
    )


def mingru(hidden_size: int, positive_values: bool = True) -> Cell:
    r"""minGRU (Feng, Tung, Ahmed, Bengio & Hajimirsadeghi 2024, "Were RNNs All We
    Needed?"), the log-space version of the paper's appendix::

        z_t  = sigmoid(W_z x_t + b_z),      hh_t = g(W_h x_t + b_h)
        h_t  = (1 - z_t) * h_{t-1} + z_t * hh_t,                  y_t = h_t

    with ``g`` = :func:`positive` (``positive_values=False``: ``g(v) = v``, the paper's
    plain version, equal to :func:`rnnjax.cells.gated_linear` with ``a = 1 - z``).
    Params ``W (2H, F)``, ``b (2H,)`` (blocks ``[z, h]``) ``U(-1/sqrt(F), 1/sqrt(F))``
    (``nn.Linear``).  Declared ``Linear(kind="diagonal")``: ``a_t = 1 - z_t``,
    ``b_t = z_t hh_t``.  :func:`rnnjax.run` evaluates this linear-space recurrence
    (``scan="sequential"`` or ``"associative"``); the paper's log-space parallel scan
    is :func:`log_space_scan` of :func:`mingru_log_coeffs`'s ``(log a_t, log b_t)``
    (checked against ``run`` by the tests), not what ``run`` uses.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.mingru(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    H = hidden_size
    g = positive if positive_values else (lambda v: v)

    def coeffs(w, x):
        k = w["W"] @ x + w["b"]
        z = jax.nn.sigmoid(k[:H])
        return 1.0 - z, z * g(k[H:])

    return _min_cell("mingru", H, 2, coeffs, positive_values)


def minlstm(hidden_size: int, positive_values: bool = True) -> Cell:
    r"""minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"), log-space version::

        f_t = sigmoid(W_f x_t + b_f),   i_t = sigmoid(W_i x_t + b_i),   hh_t = g(W_h x_t + b_h)
        f'_t = f_t / (f_t + i_t),       i'_t = i_t / (f_t + i_t)
        h_t  = f'_t * h_{t-1} + i'_t * hh_t,                      y_t = h_t

    (``g`` as :func:`mingru`).  Params ``W (3H, F)``, ``b (3H,)`` (blocks ``[f, i, h]``)
    ``U(-1/sqrt(F), 1/sqrt(F))``.  Declared ``Linear(kind="diagonal")``, and
    :func:`rnnjax.run` evaluates the linear-space recurrence, as :func:`mingru`;
    :func:`minlstm_log_coeffs` gives the paper's ``log f' = -softplus(d)``,
    ``log i' = -softplus(-d)``, ``d = softplus(-k_f) - softplus(-k_i)`` for
    :func:`log_space_scan`.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.minlstm(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    H = hidden_size
    g = positive if positive_values else (lambda v: v)

    def coeffs(w, x):
        k = w["W"] @ x + w["b"]
        f, i = jax.nn.sigmoid(k[:H]), jax.nn.sigmoid(k[H:2 * H])
        return f / (f + i), i / (f + i) * g(k[2 * H:])

    return _min_cell("minlstm", H, 3, coeffs, positive_values)


def mingru_log_coeffs(params, x):
    """``(log(1 - z_t), log z_t + log g(hh))`` of :func:`mingru` (``x: (F,)``)."""
    H = params["W"].shape[0] // 2
    k = params["W"] @ x + params["b"]
    return -jax.nn.softplus(k[:H]), -jax.nn.softplus(-k[:H]) + log_positive(k[H:])


def minlstm_log_coeffs(params, x):
    """``(log f'_t, log i'_t + log g(hh))`` of :func:`minlstm` (``x: (F,)``)."""
    H = params["W"].shape[0] // 3
    k = params["W"] @ x + params["b"]
    d = jax.nn.softplus(-k[:H]) - jax.nn.softplus(-k[H:2 * H])
    return -jax.nn.softplus(d), -jax.nn.softplus(-d) + log_positive(k[2 * H:])


__all__ = ["indrnn", "log_positive", "log_space_scan", "mgu", "mingru", "mingru_log_coeffs",
           "minlstm", "minlstm_log_coeffs", "positive"]
