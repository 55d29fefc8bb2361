r"""Unitary recurrent cells: uRNN (Arjovsky), EUNN and the full-capacity uRNN.

All three share one state equation (one example, complex hidden state ``h``)::

    h_t = modrelu(W h_{t-1} + V x_t, b),        y_t = [Re h_t, Im h_t]   (2H features)

with ``W`` unitary, ``V = V_re + i V_im`` the complex input matrix stored as two real
arrays, ``b (H,)`` the real modReLU bias and the complex modReLU
``z / |z| * relu(|z| + b)`` (:func:`rnnjax.parametrize.modrelu`), as in Arjovsky, Shah &
Bengio (2016).  Params are real arrays only; complex numbers live in ``prepare`` and
``step``.  The carry is a :class:`~rnnjax.HiddenState` of complex dtype
(``initial_carry(batch_shape, float32)`` gives complex64 zeros); readouts see the real
``y``.  Init: ``V_re, V_im ~ N(0, 1/(2F))`` (so ``E|V x|^2 = |x|^2 H/F``), ``b = 0``.
``input_init`` (:func:`rnnjax.initializers.input_layer`) gives the papers' own:
``"uniform"`` (EUNN), ``"glorot"`` (Arjovsky's uRNN).  ``recurrent_matrix`` returns the
complex dense ``W``.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cells import parametrize as P
from rnnjax.cells.orthogonal import dense_backward
from rnnjax.core import initializers as I
from rnnjax.core.cell import Cell, HiddenState
from rnnjax.core.checks import check_choice, check_positive_int

__all__ = ["eunn", "fcurnn", "urnn"]


APPLY = ("auto", "dense", "structured")


def _matmul(w, h):
    return h @ w.T


def _unitary_cell(name, hidden, init_map, prepare_map, apply_map, dense, input_init,
                  apply="dense"):
    """Cell ``h_t = modrelu(W h_{t-1} + V x_t, b)``; ``W`` given by ``apply_map(m, h)``
    with ``m = prepare_map(params)`` computed once per sequence, or (``apply="dense"``)
    the dense ``W = dense(params)`` formed once per sequence and one matrix product per
    step."""
    H = hidden
    if apply == "dense":
        prepare_map, apply_map = dense, _matmul

    def init(key, input_size):
        check_positive_int("input_size", input_size)
        k1, k2, k3 = jax.random.split(key, 3)
        return {**init_map(k1), **I.input_layer(
            (k2, k3, jax.random.fold_in(k3, 1)), input_init, H, input_size, ("V_re", "V_im"))}

    def prepare(params):
        return {"W": prepare_map(params), "V": jax.lax.complex(params["V_re"], params["V_im"]),
                "b": params["b"]}

    def initial_carry(batch_shape=(), dtype=jnp.float32):
        return HiddenState(jnp.zeros(tuple(batch_shape) + (H,), P.complex_dtype(dtype)))

    def step(w, carry, x):
        h = P.modrelu(apply_map(w["W"], carry.h) + x.astype(w["V"].dtype) @ w["V"].T, w["b"])
        return HiddenState(h), jnp.concatenate([h.real, h.imag])

    backward = None
    if apply == "dense":
        backward = dense_backward(P.modrelu, complex_state=True)._replace(
            output=lambda states: jnp.concatenate([states[0].real, states[0].imag], -1))
    return Cell(init=init, prepare=prepare, initial_carry=initial_carry, step=step,
                input_size=lambda p: p["V_re"].shape[-1], output_size=2 * H, name=name,
                recurrent_matrix=dense, backward=backward)


def urnn(hidden_size: int, permutation_seed: int = 0, init: str = "uniform",
         input_init: str = "normal", apply: str = "auto") -> Cell:
    r"""uRNN (Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent neural networks").

    ``W = D3 R2 F^{-1} D2 Pi R1 F D1`` (:func:`rnnjax.parametrize.urnn_apply`), applied in
    ``O(H log H)`` per step with FFTs; ``7H`` real parameters: ``params["phases"] (3, H)``
    (``U[-pi, pi]``) and ``params["reflections"] (2, 2, H)`` (``U[-1, 1]``, real and
    imaginary parts of ``v_1, v_2``).  The permutation ``Pi`` is fixed, drawn from
    ``permutation_seed`` when the cell is built (not a parameter).  ``init="arjovsky"``
    draws the reflections as the reference code does (Glorot ``U[-a, a]``,
    ``a = sqrt(6 / (2 + 2H))``, ``amarshah/complex_RNN: models.py``).

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported): ``W`` is unitary
    at initialisation, and the cell's outputs are ``[Re h, Im h]`` (``2H`` features)::

        >>> cell = rnnjax.cells.urnn(8)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> W = cell.recurrent_matrix(params)
        >>> float(jnp.max(jnp.abs(W.conj().T @ W - jnp.eye(8)))) < 1e-5
        True
        >>> rnnjax.run(cell, params, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 16)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, ("uniform", "arjovsky"))
    check_choice("input_init", input_init, I.INPUT_INITS)
    check_choice("apply", apply, APPLY)
    H = hidden_size
    perm = np.random.default_rng(permutation_seed).permutation(H)

    def init_map(key):
        phases, refl = P.urnn_init(key, H)
        if init == "arjovsky":
            refl = refl * math.sqrt(6.0 / (2 + 2 * H))
        return {"phases": phases, "reflections": refl}

    def prepare_map(p):
        d, v = P.urnn_factors(p["phases"], p["reflections"])
        return {"d": d, "v": v}

    def apply_map(m, h):
        return P.urnn_apply_factors(m["d"], m["v"], perm, h)

    def dense(p):
        return P.urnn_dense(p["phases"], p["reflections"], perm,
                            P.complex_dtype(p["phases"].dtype))

    return _unitary_cell("urnn", H, init_map, prepare_map, apply_map, dense, input_init,
                         "structured" if apply == "structured" else "dense")


def eunn(hidden_size: int, capacity: int = 2, input_init: str = "normal",
         apply: str = "auto") -> Cell:
    r"""EUNN (Jing, Shen, Dubcek, Peurifoy, Skirlo, LeCun, Tegmark & Soljacic 2017,
    "Tunable efficient unitary neural networks (EUNN) and their application to RNNs").

    ``W = D R_L ... R_1`` (:func:`rnnjax.parametrize.eunn_apply`): ``L = capacity``
    layers of ``2 x 2`` complex rotations on alternating neighbour pairs, then
    ``D = diag(exp(i omega))``; ``O(H L)`` per step with ``apply="structured"``;
    ``"dense"`` forms ``W`` once per sequence (see :func:`urnn`); ``"auto"`` is
    ``"structured"`` for ``capacity <= 8`` and ``hidden_size > 64``, else ``"dense"``
    (copy-task training step on a 2-core CPU at ``L = 2``: dense/structured 0.75 at
    ``H = 64``, 1.16 at ``H = 128``, 1.24 at ``H = 190``; ``benchmarks/README.md``).
    ``params["angles"] (L, 2, H // 2)`` (``theta``, ``phi``) and ``params["phases"] (H,)``
    (``omega``), all
    ``U[-pi, pi]``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported): ``W`` is unitary
    at initialisation, and the cell's outputs are ``[Re h, Im h]`` (``2H`` features)::

        >>> cell = rnnjax.cells.eunn(8)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> W = cell.recurrent_matrix(params)
        >>> float(jnp.max(jnp.abs(W.conj().T @ W - jnp.eye(8)))) < 1e-5
        True
        >>> rnnjax.run(cell, params, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 16)
    """
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("capacity", capacity)
    check_choice("input_init", input_init, I.INPUT_INITS)
    check_choice("apply", apply, APPLY)
    H = hidden_size
    if H < 2:
        raise ValueError(f"hidden_size must be >= 2 for the EUNN, got {H}")

    def init_map(key):
        k1, k2 = jax.random.split(key)
        return {"angles": jax.random.uniform(k1, (capacity, 2, H // 2), jnp.float32,
                                             -math.pi, math.pi),
                "phases": jax.random.uniform(k2, (H,), jnp.float32, -math.pi, math.pi)}

    def prepare_map(p):
        c1, c2 = P.eunn_coefficients(p["angles"], H)
        return {"c1": c1, "c2": c2, "d": jnp.exp(1j * p["phases"])}

    perms = P.eunn_permutations(H, capacity)

    def apply_map(m, h):
        return P.eunn_apply_factors(m["c1"], m["c2"], m["d"], perms, h)

    return _unitary_cell("eunn", H, init_map, prepare_map, apply_map,
                         lambda p: P.eunn_dense(p["angles"], p["phases"]), input_init,
                         "structured" if apply == "structured" or (
                             apply == "auto" and capacity <= 8 and H > 64) else "dense")


def fcurnn(hidden_size: int, init: str = "haar", param: str = "expm",
           input_init: str = "normal") -> Cell:
    r"""Full-capacity uRNN (Wisdom, Powers, Hershey, Le Roux & Atlas 2016).

    ``param="expm"``: ``W = expm(K)`` with ``K`` skew-Hermitian from the ``H^2`` real
    entries of ``params["skew"]`` (:func:`rnnjax.parametrize.expm_unitary`), formed once
    per sequence; one complex matrix-vector product per step.

    ``param="cayley"``: the paper's own form: ``W`` itself is the parameter, stored as
    the real pair ``params["unitary"] (2, H, H)`` (``W = X[0] + i X[1]``), and kept
    unitary by the optimiser: train that leaf with
    ``rnnjax.optim.riemannian(inner, "unitary", "cayley")``, whose SGD step is the
    paper's multiplicative Cayley update ``W <- (I + lr/2 A)^{-1} (I - lr/2 A) W``,
    ``A = G W^H - W G^H`` (eq. 9; the reference code applies RMSprop to ``G`` first).

    Args:
      init: ``"haar"`` (``W`` Haar on ``U(H)``), ``"henaff"`` (real rotations by
        ``U[-pi, pi]`` angles) or ``"identity"``.
      param: ``"expm"`` or ``"cayley"``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported): ``W`` is unitary
    at initialisation, and the cell's outputs are ``[Re h, Im h]`` (``2H`` features)::

        >>> cell = rnnjax.cells.fcurnn(8)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> W = cell.recurrent_matrix(params)
        >>> float(jnp.max(jnp.abs(W.conj().T @ W - jnp.eye(8)))) < 1e-5
        True
        >>> rnnjax.run(cell, params, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 16)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, ("haar", "henaff", "identity"))
    check_choice("param", param, ("expm", "cayley"))
    check_choice("input_init", input_init, I.INPUT_INITS)
    H = hidden_size
    inits = {"haar": P.haar_unitary_skew, "henaff": P.henaff,
             "identity": lambda k, n: jnp.zeros((n, n), jnp.float32)}

    if param == "cayley":
        def init_map(key):
            w = P.expm_unitary(inits[init](key, H))
            return {"unitary": jnp.stack([w.real, w.imag])}

        def matrix(p):
            return jax.lax.complex(p["unitary"][0], p["unitary"][1])
    else:
        def init_map(key):
            return {"skew": inits[init](key, H)}

        def matrix(p):
            return P.expm_unitary(p["skew"])

    return _unitary_cell("fcurnn", H, init_map, matrix, _matmul, matrix, input_init)
