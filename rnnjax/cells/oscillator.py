"""Oscillator and ODE-based cells: coRNN, UnICORNN, Lipschitz RNN, AntisymmetricRNN.

Each cell is the time discretisation of an ODE whose Jacobian is designed to keep
gradients from exploding or vanishing: second-order oscillators (coRNN, UnICORNN,
Rusch & Mishra 2021) and first-order systems with a (nearly) skew-symmetric
recurrence (AntisymmetricRNN, Chang et al. 2019; Lipschitz RNN, Erichson et al. 2021).
Matrices act on column vectors (``W h``).  The defaults are the hyper-parameters of the
papers' reference code for sequential MNIST (named in each docstring).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.core import initializers
from rnnjax.core.cell import Cell, HiddenState, identity, zeros_carry
from rnnjax.core.checks import check_positive_int


class OscillatorState(NamedTuple):
    """Carry of the oscillator cells: position ``h`` (the paper's ``y``, also the output)
    and velocity ``z``."""

    h: jax.Array
    z: jax.Array


def _check_positive(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def _check_nonnegative(name, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")


def cornn(hidden_size: int, dt: float = 0.042, gamma: float = 2.7,
          epsilon: float = 4.7) -> Cell:
    r"""Coupled oscillatory RNN (Rusch & Mishra 2021, "Coupled Oscillatory Recurrent
    Neural Network (coRNN)", ICLR; tk-rusch/coRNN).

    The IMEX discretisation of ``y'' = tanh(W y + Wz y' + V x + b) - gamma y - eps y'``
    (one example, ``h = y``)::

        z_t = z_{t-1} + dt * (tanh(V x_t + Wz z_{t-1} + W h_{t-1} + b)
                              - gamma * h_{t-1} - epsilon * z_{t-1})
        h_t = h_{t-1} + dt * z_t,                               y_t = h_t

    Params: ``W_x (H, F)``, ``W_z (H, H)``, ``W_h (H, H)``, ``b (H,)``: the reference
    code's single ``nn.Linear(F + 2H, H)`` on ``[x, z, y]``, initialised as PyTorch does,
    every entry ``U(-1/sqrt(F + 2H), 1/sqrt(F + 2H))``.  Defaults are the reference
    sMNIST values (``dt=0.042, gamma=2.7, epsilon=4.7``); its adding task uses
    ``dt=0.06, gamma=66, epsilon=15`` and psMNIST ``dt=0.076, gamma=0.4, epsilon=8``.
    Carry :class:`OscillatorState` ``(h, z)``.  ``recurrent_matrix`` is the stacked
    ``[W_h; W_z]`` ``(2H, H)``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.cornn(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    _check_positive("dt", dt)
    _check_nonnegative("gamma", gamma)
    _check_nonnegative("epsilon", epsilon)
    H = hidden_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        u = initializers.uniform(1.0 / math.sqrt(input_size + 2 * H))
        k = jax.random.split(key, 4)
        return {"W_x": u(k[0], (H, input_size)), "W_z": u(k[1], (H, H)),
                "W_h": u(k[2], (H, H)), "b": u(k[3], (H,))}

    def step(w, carry, x):
        drive = jnp.tanh(w["W_x"] @ x + w["W_z"] @ carry.z + w["W_h"] @ carry.h + w["b"])
        z = carry.z + dt * (drive - gamma * carry.h - epsilon * carry.z)
        h = carry.h + dt * z
        return OscillatorState(h, z), h

    return Cell(
        init=init, prepare=identity, initial_carry=zeros_carry(OscillatorState, H),
        step=step, input_size=lambda p: p["W_x"].shape[-1], output_size=H, name="cornn",
        recurrent_matrix=lambda p: jnp.concatenate([p["W_h"], p["W_z"]], axis=0),
    )


def unicornn(hidden_size: int, dt: float = 0.19, alpha: float = 30.65) -> Cell:
    r"""Undamped independent controlled oscillator RNN, one layer (Rusch & Mishra 2021,
    "UnICORNN: A recurrent model for learning very long time dependencies", ICML;
    tk-rusch/unicornn, the CUDA kernel ``unicornn_fwd``).

    The symplectic-Euler step of ``y'' = -[tanh(w * y + V x + b) + alpha y]`` with a
    learned per-unit time step ``dt * sigmoid(c)`` (elementwise, one example)::

        delta = dt * sigmoid(c)                                 (H,)
        z_t = z_{t-1} - delta * (tanh(w * h_{t-1} + V x_t + b) + alpha * h_{t-1})
        h_t = h_{t-1} + delta * z_t,                            y_t = h_t

    Params (one layer of the reference ``UnICORNN``: its ``Linear_overtime`` input map
    and ``UnICORNN_recurrence``): ``V (H, F)`` Kaiming-uniform with ``a=8``
    (``U(-sqrt(6/(65 F)), sqrt(6/(65 F)))``), ``b = 0``, ``w (H,)`` ``U(0, 1)``,
    ``c (H,)`` ``U(-0.1, 0.1)``.  Defaults: the reference psMNIST values (``dt=0.19``,
    ``alpha=30.65``).  Carry :class:`OscillatorState` ``(h, z)``;
    ``recurrent_matrix`` is ``diag(w)``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.unicornn(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    _check_positive("dt", dt)
    _check_nonnegative("alpha", alpha)
    H = hidden_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 3)
        bound = math.sqrt(6.0 / (65.0 * input_size))
        return {"V": initializers.uniform(bound)(k[0], (H, input_size)),
                "b": jnp.zeros((H,), jnp.float32),
                "w": jax.random.uniform(k[1], (H,), jnp.float32, 0.0, 1.0),
                "c": jax.random.uniform(k[2], (H,), jnp.float32, -0.1, 0.1)}

    def step(w, carry, x):
        delta = dt * jax.nn.sigmoid(w["c"])
        force = jnp.tanh(w["w"] * carry.h + w["V"] @ x + w["b"]) + alpha * carry.h
        z = carry.z - delta * force
        h = carry.h + delta * z
        return OscillatorState(h, z), h

    return Cell(
        init=init, prepare=identity, initial_carry=zeros_carry(OscillatorState, H),
        step=step, input_size=lambda p: p["V"].shape[-1], output_size=H, name="unicornn",
        recurrent_matrix=lambda p: jnp.diag(p["w"]),
    )


def _gaussian(key, H, init_std):
    """The reference ``gaussian_init_``: entries ``N(0, (init_std / H)^2)``."""
    return jax.random.normal(key, (H, H), jnp.float32) * (init_std / H)


def _input_map(key, H, F):
    """``nn.Linear(F, H)`` with PyTorch's default init: weight and bias
    ``U(-1/sqrt(F), 1/sqrt(F))`` (erichson/LipschitzRNN ``models.py`` since commit
    94182a2 "remove init", which dropped the Xavier-normal weights and zero biases)."""
    k1, k2 = jax.random.split(key)
    u = initializers.uniform(1.0 / math.sqrt(F))
    return {"V": u(k1, (H, F)), "b": u(k2, (H,))}


def lipschitz_matrix(M, beta, gamma):
    """``(1 - beta) (M + M^T) + beta (M - M^T) - gamma I`` (Erichson et al. 2021, eq. 4)."""
    return (1.0 - beta) * (M + M.T) + beta * (M - M.T) - gamma * jnp.eye(M.shape[0], dtype=M.dtype)


def lipschitz(hidden_size: int, beta: float = 0.75, gamma: float = 0.001, eps: float = 0.03,
              init_std: float = 0.1) -> Cell:
    r"""Lipschitz RNN (Erichson et al. 2021, "Lipschitz Recurrent Neural Networks", ICLR;
    erichson/LipschitzRNN, ``model='LipschitzRNN'``, Euler solver).

    The forward-Euler step of ``h' = A h + tanh(W h + V x + b)`` (one example)::

        A = (1 - beta)(M_A + M_A^T) + beta (M_A - M_A^T) - gamma I
        W = (1 - beta)(M_W + M_W^T) + beta (M_W - M_W^T) - gamma I
        h_t = h_{t-1} + eps * A h_{t-1} + eps * tanh(W h_{t-1} + V x_t + b),  y_t = h_t

    ``prepare`` builds ``A`` and ``W`` once per sequence.  Params: ``M_A, M_W (H, H)``
    ``N(0, (init_std/H)^2)`` (the reference ``tools.py`` ``gaussian_init_``: its
    *standard deviation* is ``init_std / H``), ``V (H, F)`` and ``b (H,)``
    ``U(-1/sqrt(F), 1/sqrt(F))`` (``self.E = nn.Linear(input_dim, n_units)`` with
    PyTorch's default init).  Defaults: the current reference command for ordered
    pixel MNIST (erichson/LipschitzRNN ``README.md``, commit
    ``df7b156e45d31ce31515191aecda9fe94461bcf0``: ``--eps 0.03 --beta 0.75 --gamma
    0.001``, Adam lr 0.003; the permuted-MNIST command differs only in lr 0.0035),
    which sets no ``--init_std``, so ``driver.py``'s default ``0.1`` (commit
    ``df6552e89fb9aacd086a93dadca624d2ce62ace3``).  An earlier README (commit 7f7812a,
    2020) had ``eps=0.01, beta=0.65, init_std=32`` and Xavier-normal input weights.  The
    reference code multiplies row vectors (``h @ A``); here ``A h``, i.e. its ``A^T``,
    which has the same distribution at initialisation.  ``recurrent_matrix`` is
    ``[A; W]`` ``(2H, H)``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.lipschitz(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    if not 0.0 <= float(beta) <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")
    _check_nonnegative("gamma", gamma)
    _check_positive("eps", eps)
    _check_positive("init_std", init_std)
    H = hidden_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k = jax.random.split(key, 3)
        return {"M_A": _gaussian(k[0], H, init_std), "M_W": _gaussian(k[1], H, init_std),
                **_input_map(k[2], H, input_size)}

    def prepare(p):
        return {"A": lipschitz_matrix(p["M_A"], beta, gamma),
                "W": lipschitz_matrix(p["M_W"], beta, gamma), "V": p["V"], "b": p["b"]}

    def step(w, carry, x):
        h = carry.h
        h = h + eps * (w["A"] @ h) + eps * jnp.tanh(w["W"] @ h + w["V"] @ x + w["b"])
        return HiddenState(h), h

    def recurrent(p):
        w = prepare(p)
        return jnp.concatenate([w["A"], w["W"]], axis=0)

    return Cell(
        init=init, prepare=prepare, initial_carry=zeros_carry(HiddenState, H), step=step,
        input_size=lambda p: p["V"].shape[-1], output_size=H, name="lipschitz",
        recurrent_matrix=recurrent,
    )


def antisymmetric(hidden_size: int, eps: float = 0.01, gamma: float = 0.01,
                  init_std: float = 1.0) -> Cell:
    r"""AntisymmetricRNN (Chang, Chen, Haber & Chi 2019, "AntisymmetricRNN: A Dynamical
    System View on Recurrent Neural Networks", ICLR), ungated.

    The forward-Euler step of ``h' = tanh((M - M^T - gamma I) h + V x + b)``::

        W   = M - M^T - gamma I                     (eigenvalues with real part -gamma)
        h_t = h_{t-1} + eps * tanh(W h_{t-1} + V x_t + b),        y_t = h_t

    Params: ``M (H, H)`` ``N(0, (init_std/H)^2)``, ``V (H, F)`` and ``b (H,)``
    ``U(-1/sqrt(F), 1/sqrt(F))`` (as ``asymRNN`` in erichson/LipschitzRNN
    ``models.py``, PyTorch's ``nn.Linear`` default; the paper has no public code).  Defaults:
    ``eps=0.01, gamma=0.01`` (the paper's pixel-MNIST settings).
    ``recurrent_matrix`` is ``W``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.antisymmetric(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    _check_positive("eps", eps)
    _check_nonnegative("gamma", gamma)
    _check_positive("init_std", init_std)
    H = hidden_size

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k1, k2 = jax.random.split(key)
        return {"M": _gaussian(k1, H, init_std), **_input_map(k2, H, input_size)}

    def prepare(p):
        return {"W": lipschitz_matrix(p["M"], 1.0, gamma), "V": p["V"], "b": p["b"]}

    def step(w, carry, x):
        h = carry.h + eps * jnp.tanh(w["W"] @ carry.h + w["V"] @ x + w["b"])
        return HiddenState(h), h

    return Cell(
        init=init, prepare=prepare, initial_carry=zeros_carry(HiddenState, H), step=step,
        input_size=lambda p: p["V"].shape[-1], output_size=H, name="antisymmetric",
        recurrent_matrix=lambda p: prepare(p)["W"],
    )


__all__ = ["OscillatorState", "antisymmetric", "cornn", "lipschitz", "lipschitz_matrix",
           "unicornn"]
