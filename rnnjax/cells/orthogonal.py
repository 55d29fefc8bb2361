r"""Orthogonal recurrent cells: expRNN, scoRNN and the Householder oRNN.

All three share one state equation (one example, column vectors)::

    h_t = modrelu(W h_{t-1} + V x_t, b),        y_t = h_t,

with ``W`` orthogonal, built from unconstrained params by a map of
:mod:`rnnjax.parametrize` in ``prepare`` -- once per sequence, never inside the time
loop -- and ``modrelu(z, b) = sign(z) relu(|z| + b)`` (``activation`` may instead be
``"tanh"``, ``"relu"`` or ``"identity"``).  Params (real arrays): the parameter of the
map (``"skew"`` or ``"reflections"``, the keys :mod:`rnnjax.optim` gives the
orthogonal learning rate), ``V (H, F)`` and ``b (H,)``.

``V`` is He-normal (``N(0, 2/F)``) and ``b ~ U[-0.01, 0.01]``, as in the expRNN
reference code (Lezcano-Casado, ``github.com/Lezcano/expRNN``); ``input_init="uniform"``
is scoRNN's ``U[-0.01, 0.01]`` with ``b = 0`` (:func:`rnnjax.initializers.input_layer`).
:data:`rnnjax.optim.PAPER_RECIPES` holds each paper's init and optimiser.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnnjax.cells import parametrize as P
from rnnjax.core import initializers as I
from rnnjax.core.cell import Backward, Cell, HiddenState, chunk_outer, where_live, zeros_carry
from rnnjax.core.checks import check_choice, check_positive_int

__all__ = ["ACTIVATIONS", "dense_backward", "dense_cell", "exprnn", "householder", "scornn"]

ACTIVATIONS = {"modrelu": P.modrelu, "tanh": lambda z, b: jnp.tanh(z + b),
               "relu": lambda z, b: jax.nn.relu(z + b), "identity": lambda z, b: z + b}


def dense_backward(f, complex_state: bool = False) -> Backward:
    r"""Hand-written BPTT (:class:`rnnjax.core.cell.Backward`) of
    ``h_t = f(h_{t-1} W^T + x_t V^T, b)`` with ``W`` fixed over the sequence, from the
    prepared weights ``{"W", "V", "b"}`` (dense ``W``; complex for the unitary cells).

    Per chunk the pre-activations ``z_t = h_{t-1} W^T + x_t V^T`` are recomputed in one
    matmul; the reverse sweep is, per step, the activation's derivative and one product
    with ``W``::

        dz_t = f'(z_t)^T (g_t + dy_t),     g_{t-1} = dz_t W,     db += df/db^T (g_t + dy_t)

    and ``dW = sum_t dz_t^T h_{t-1}``, ``dV = sum_t dz_t^T x_t`` in one matmul per chunk;
    the parametrisation's gradient (``expm``, Cayley, Householder, the uRNN/EUNN
    factors) is applied once per sequence by the driver through ``prepare``'s VJP.
    Complex states follow JAX's cotangent convention (the cotangent of ``h`` is
    ``dL/dRe h - i dL/dIm h``; products with ``W`` are transposes, not adjoints); the
    output ``y_t = [Re h_t, Im h_t]`` contributes ``dy_re - i dy_im``.  ``f'`` is the
    activation's own derivative (``jax.vjp`` of ``f`` on the step's elements).
    """
    def recompute(w):
        def run(xs, prev, cur):
            V = w["V"]
            return (prev[0] @ w["W"].T + xs.astype(V.dtype) @ V.T,)
        return run

    def body(w, g, inp):
        z, dy, live = inp
        if complex_state:
            H = z.shape[-1]
            gh = g[0] + (dy[..., :H] - 1j * dy[..., H:]).astype(z.dtype)
        else:
            gh = g[0] + dy
        _, vjp = jax.vjp(f, z, jnp.broadcast_to(w["b"], z.real.shape))
        dz, db = vjp(gh)
        dz, db = where_live(live, dz, 0.0), where_live(live, db, 0.0)
        return (where_live(live, dz @ w["W"], g[0]),), (dz, db)

    def grads(w, d, xs, prev):
        dz, db = d
        V = w["V"]
        dxs = dz @ V
        return ({"W": chunk_outer(dz, prev[0]), "V": chunk_outer(dz, xs.astype(V.dtype)),
                 "b": db.sum((0, 1))}, dxs.real if complex_state else dxs)

    return Backward(recompute=recompute, body=body, grads=grads)


def _input_params(key, hidden, input_size, input_init="he"):
    check_positive_int("input_size", input_size)
    return I.input_layer(jax.random.split(key), input_init, hidden, input_size)


def dense_cell(name, hidden, activation, init_map, matrix, input_init="he"):
    """A cell ``h_t = f(W h_{t-1} + V x_t, b)`` whose ``W = matrix(params)`` is dense."""
    f = ACTIVATIONS[activation]

    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        return {**init_map(k1), **_input_params(k2, hidden, input_size, input_init)}

    def prepare(params):
        return {"W": matrix(params), "V": params["V"], "b": params["b"]}

    def step(w, carry, x):
        h = f(carry.h @ w["W"].T + x @ w["V"].T, w["b"])
        return HiddenState(h), h

    return Cell(init=init, prepare=prepare, initial_carry=zeros_carry(HiddenState, hidden),
                step=step, input_size=lambda p: p["V"].shape[-1], output_size=hidden,
                name=name, recurrent_matrix=matrix, backward=dense_backward(f))


def exprnn(hidden_size: int, init: str = "henaff", dynamic: bool = False,
           activation: str = "modrelu", input_init: str = "he") -> Cell:
    r"""expRNN (Lezcano-Casado & Martinez-Rubio 2019, "Cheap orthogonal constraints in
    neural networks: a simple parametrization of the orthogonal and unitary group").

    ``h_t = modrelu(W h_{t-1} + V x_t, b)`` with ``W = B expm(A - A^T)``
    (:func:`rnnjax.parametrize.expm_orthogonal`, ``A = triu(params["skew"], 1)``).

    Args:
      init: ``"henaff"`` (rotations by ``U[-pi, pi]`` angles, the paper's copy-task
        init), ``"cayley"`` (skew blocks of scoRNN's Cayley init, as the reference
        code's ``cayley_init_``), ``"haar"`` (``W`` Haar on ``SO(n)``) or ``"identity"``.
      dynamic: add a ``"base"`` matrix ``B`` (identity at init, gradient stopped) for the
        dynamic trivialization; call :func:`rnnjax.parametrize.retrivialize` on the
        params every ``K`` optimizer steps.  Without it ``B = I`` (static).

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported): ``W`` is orthogonal
    at initialisation, and the cell runs over a batch of sequences::

        >>> cell = rnnjax.cells.exprnn(8)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> W = cell.recurrent_matrix(params)
        >>> float(jnp.max(jnp.abs(W.T @ W - jnp.eye(8)))) < 1e-5
        True
        >>> rnnjax.run(cell, params, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, ("henaff", "cayley", "haar", "identity"))
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("input_init", input_init, I.INPUT_INITS)
    H = hidden_size
    inits = {"henaff": P.henaff, "cayley": P.cayley_init, "haar": P.haar_skew,
             "identity": lambda k, n: jnp.zeros((n, n), jnp.float32)}

    def init_map(key):
        out = {"skew": inits[init](key, H)}
        if dynamic:
            out["base"] = jnp.eye(H, dtype=jnp.float32)
        return out

    def matrix(params):
        return P.expm_orthogonal(params["skew"], params.get("base"))

    return dense_cell("exprnn", H, activation, init_map, matrix, input_init)


def scornn(hidden_size: int, rho: int | None = None, init: str = "cayley",
           activation: str = "modrelu", input_init: str = "he") -> Cell:
    r"""scoRNN (Helfrich, Willmott & Ye 2018, "Orthogonal recurrent neural networks with
    scaled Cayley transform").

    ``h_t = modrelu(W h_{t-1} + V x_t, b)`` with ``W = (I + A)^{-1} (I - A) D``
    (:func:`rnnjax.parametrize.cayley`), ``A`` skew from ``params["skew"]`` and ``D``
    fixed: ``rho`` entries -1, the rest +1 (default ``rho = H // 2``; a hyper-parameter,
    not trained).

    Args:
      init: ``"cayley"`` (the paper's: rotation angles ``U[0, pi/2]``), ``"haar"``
        (``W`` Haar among orthogonal matrices of determinant ``det D``) or
        ``"identity"`` (``A = 0``, so ``W = D``).

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported): ``W`` is orthogonal
    at initialisation, and the cell runs over a batch of sequences::

        >>> cell = rnnjax.cells.scornn(8)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> W = cell.recurrent_matrix(params)
        >>> float(jnp.max(jnp.abs(W.T @ W - jnp.eye(8)))) < 1e-5
        True
        >>> rnnjax.run(cell, params, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, ("cayley", "haar", "identity"))
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("input_init", input_init, I.INPUT_INITS)
    H = hidden_size
    rho = H // 2 if rho is None else rho
    d = P.scaling_diagonal(H, rho)
    inits = {"cayley": lambda k: P.cayley_init(k, H),
             "haar": lambda k: P.cayley_haar(k, H, d),
             "identity": lambda k: jnp.zeros((H, H), jnp.float32)}

    def matrix(params):
        a = params["skew"]
        return P.cayley(a, d.astype(a.dtype))

    return dense_cell("scornn", H, activation, lambda k: {"skew": inits[init](k)}, matrix,
                       input_init)


def householder(hidden_size: int, reflections: int | None = None, init: str = "random",
                mode: str = "auto", activation: str = "modrelu", input_init: str = "he"
                ) -> Cell:
    r"""oRNN (Mhammedi, Hellicar, Rahman & Bailey 2017, "Efficient orthogonal
    parametrisation of recurrent neural networks using Householder reflections").

    ``h_t = modrelu(W h_{t-1} + V x_t, b)`` with ``W = H_1 ... H_m``,
    ``H_k = I - 2 u_k u_k^T / ||u_k||^2``, ``u = params["reflections"] (m, H)``.

    Args:
      reflections: ``m`` (default ``H``: all of ``O(H)`` is reachable).
      init: ``"random"`` (Gaussian vectors), ``"mhammedi"`` (the reference code's:
        ``u_k`` zero before entry ``k``, Gaussian, unit-normalised, ``m <= H``;
        ``zmhammedi/Orthogonal_RNN: RNN_models.py``; the cell then also carries the
        reference's constraint between updates, ``sgd.py`` ``update_param``: ``u <-
        unit rows of triu(u)``, as ``cell.project``), ``"identity"`` (pairs of equal
        reflections, ``m`` even) or ``"henaff"`` (rotations by ``U[-pi, pi]``, needs
        ``m = H`` even).
      mode: ``"reflect"`` applies the ``m`` reflections to ``h`` every step
        (``O(H m)``, no ``H x H`` matrix); ``"dense"`` forms ``W`` once per sequence in
        ``prepare`` (``O(H^2 m)``) and does one matrix-vector product per step;
        ``"auto"`` reflects when ``m <= 8`` (then the ``m`` sequential rank-one steps are
        cheaper than a matrix product), else forms ``W``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported): ``W`` is orthogonal
    at initialisation, and the cell runs over a batch of sequences::

        >>> cell = rnnjax.cells.householder(8)
        >>> params = cell.init(jax.random.key(0), 3)
        >>> W = cell.recurrent_matrix(params)
        >>> float(jnp.max(jnp.abs(W.T @ W - jnp.eye(8)))) < 1e-5
        True
        >>> rnnjax.run(cell, params, jnp.ones((2, 5, 3)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    H = hidden_size
    m = H if reflections is None else reflections
    check_positive_int("reflections", m)
    check_choice("init", init, ("random", "mhammedi", "identity", "henaff"))
    check_choice("mode", mode, ("auto", "dense", "reflect"))
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("input_init", input_init, I.INPUT_INITS)
    if init == "mhammedi" and m > H:
        raise ValueError(f"init='mhammedi' needs reflections <= hidden_size, got {m} > {H}")
    if init == "identity" and m % 2:
        raise ValueError(f"reflections must be even for init='identity', got {m}")
    if init == "henaff" and (m != H or H % 2):
        raise ValueError(
            f"init='henaff' needs reflections == hidden_size (even), got {m} and {H}")
    reflect = mode == "reflect" or (mode == "auto" and m <= 8)
    f = ACTIVATIONS[activation]

    def init_fn(key, input_size):
        k1, k2 = jax.random.split(key)
        if init == "random":
            u = P.householder_random(k1, m, H)
        elif init == "mhammedi":
            u = P.householder_unit(jnp.triu(P.householder_random(k1, m, H)))
        elif init == "identity":
            u = P.householder_identity(m, H)
        else:
            u = P.householder_henaff(k1, H)
        return {"reflections": u, **_input_params(k2, H, input_size, input_init)}

    def matrix(params):
        return P.householder_dense(params["reflections"])

    def prepare(params):
        if reflect:
            return {"q": P.householder_unit(params["reflections"]), "V": params["V"],
                    "b": params["b"]}
        return {"W": matrix(params), "V": params["V"], "b": params["b"]}

    def step(w, carry, x):
        if reflect:
            z = P.householder_reflect(w["q"], carry.h) + x @ w["V"].T
        else:
            z = carry.h @ w["W"].T + x @ w["V"].T
        h = f(z, w["b"])
        return HiddenState(h), h

    def project(params):  # zmhammedi/Orthogonal_RNN sgd.py: tril, then unit columns
        return {**params, "reflections": P.householder_unit(jnp.triu(params["reflections"]))}

    return Cell(init=init_fn, prepare=prepare, initial_carry=zeros_carry(HiddenState, H),
                step=step, input_size=lambda p: p["V"].shape[-1], output_size=H,
                name="householder", recurrent_matrix=matrix,
                backward=None if reflect else dense_backward(f),
                project=project if init == "mhammedi" else None)
