r"""Recurrent cells whose matrix is near-orthogonal but not normal: the nnRNN and the
spectral-margin cell.

Both share the state equation of the orthogonal cells (:mod:`rnnjax.cells.orthogonal`;
one example, column vectors)::

    h_t = modrelu(W h_{t-1} + V x_t, b),        y_t = h_t,

with ``V (H, F)`` (nnRNN: PyTorch's default ``U[-1/sqrt(F), 1/sqrt(F)]`` as its
reference; spectral: He-normal) and ``b ~ U[-0.01, 0.01]``; ``W`` is formed once per
sequence in ``prepare`` from the factors below.  The orthogonal factors are
``expm(A - A^T)`` of a ``"skew"`` leaf (:func:`rnnjax.parametrize.expm_orthogonal`),
so :func:`rnnjax.optim.recipe` gives them the orthogonal learning rate.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.cells import parametrize as P
from rnnjax.cells.orthogonal import ACTIVATIONS, dense_cell
from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_choice, check_positive_int
from rnnjax.core.initializers import INPUT_INITS

__all__ = ["nnrnn", "nnrnn_factors", "spectral", "spectral_factors"]


def _rotation_blocks(thetas, alphas, n):
    r"""Block-diagonal ``Lambda = diag_k(alpha_k [[cos t_k, -sin t_k], [sin t_k, cos t_k]])``
    ``(n, n)``; for odd ``n`` the last block is the ``1 x 1`` ``alpha_k cos t_k``."""
    c, s = jnp.cos(thetas), jnp.sin(thetas)
    blocks = alphas[:, None, None] * jnp.stack([jnp.stack([c, -s], -1),
                                                jnp.stack([s, c], -1)], -2)
    return jax.scipy.linalg.block_diag(*blocks)[:n, :n]


def nnrnn_factors(params):
    """``(P, Lambda, T)`` of the nnRNN: orthogonal ``P = expm(A - A^T)``, the
    block-diagonal rotations ``Lambda`` scaled by ``alphas`` and the strictly upper
    triangular ``T = triu(params["upper"], 1)``."""
    Pm = P.expm_orthogonal(params["skew"])
    lam = _rotation_blocks(params["thetas"], params["alphas"], Pm.shape[0])
    return Pm, lam, jnp.triu(params["upper"], 1)


def nnrnn(hidden_size: int, init: str = "henaff", activation: str = "modrelu",
          input_init: str = "pytorch") -> Cell:
    r"""nnRNN (Kerg, Goyette, Puelma Touzel, Gidel, Vorontsov, Bengio & Lajoie 2019,
    "Non-normal recurrent neural network (nnRNN): learning long time dependencies while
    improving expressivity with transient dynamics").

    ``W = P (Lambda + T) P^T`` (the real Schur form): ``P`` orthogonal from
    ``params["skew"] (H, H)``, ``Lambda`` block-diagonal with ``K = ceil(H/2)``
    rotations by ``params["thetas"] (K,)`` scaled by ``params["alphas"] (K,)`` (for odd
    ``H`` the last block is ``1 x 1``: ``alpha cos theta``), ``T`` strictly
    upper triangular from ``params["upper"] (H, H)``.  Init as the reference code
    (``KyleGoyette/nnRNN``, ``OrthoRNNCell``): ``skew`` by ``init`` (``"henaff"``
    default, ``"cayley"``, ``"haar"``), ``thetas ~ U[0, 2 pi)``, ``alphas = 1``,
    ``upper = 0`` (so ``W`` is orthogonal at init; for odd ``H`` the last angle is 0),
    and ``input_init="pytorch"``: ``V ~ U[-1/sqrt(F), 1/sqrt(F)]``, the default
    ``nn.Linear`` init the reference keeps (its ``--iinit`` is stored but never applied
    by ``OrthoRNNCell``), no input bias, modReLU bias ``U[-0.01, 0.01]``
    (:func:`rnnjax.initializers.input_layer`).  The recipe's penalties
    (``alpha_lam sum (alpha - 1)^2`` and weight decay on ``T``) are
    :func:`rnnjax.optim.constraints.nnrnn_penalty`.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.nnrnn(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("init", init, ("henaff", "cayley", "haar"))
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("input_init", input_init, INPUT_INITS)
    H = hidden_size
    K = (H + 1) // 2
    inits = {"henaff": P.henaff, "cayley": P.cayley_init, "haar": P.haar_skew}

    def init_map(key):
        k1, k2 = jax.random.split(key)
        thetas = jax.random.uniform(k2, (K,), jnp.float32, 0.0, 2 * math.pi)
        if H % 2:  # the 1 x 1 block starts at +1, so W is orthogonal at init
            thetas = thetas.at[-1].set(0.0)
        return {"skew": inits[init](k1, H),
                "thetas": thetas,
                "alphas": jnp.ones((K,), jnp.float32),
                "upper": jnp.zeros((H, H), jnp.float32)}

    def matrix(params):
        Pm, lam, T = nnrnn_factors(params)
        return Pm @ (lam + T) @ Pm.T

    return dense_cell("nnrnn", H, activation, init_map, matrix, input_init)


def spectral_factors(params, margin: float):
    """``(U, s, V)`` of the spectral-margin cell: orthogonal ``U, V`` and
    ``s = 1 + 2 m (sigmoid(p) - 1/2)`` in ``(1 - m, 1 + m)``."""
    U = P.expm_orthogonal(params["left"]["skew"])
    V = P.expm_orthogonal(params["right"]["skew"])
    s = 1.0 + 2.0 * margin * (jax.nn.sigmoid(params["sv"]) - 0.5)
    return U, s, V


def spectral(hidden_size: int, margin: float = 0.1, init: str = "henaff",
             activation: str = "modrelu") -> Cell:
    r"""Spectral-margin cell (Vorontsov, Trabelsi, Kadoury & Pal 2017, "On orthogonality
    and learning recurrent networks with long term dependencies").

    ``W = U diag(s) V^T`` with ``U = expm(A_U - A_U^T)``, ``V = expm(A_V - A_V^T)``
    (``params["left"]["skew"]``, ``params["right"]["skew"]``) and singular values
    ``s = 1 + 2 m (sigmoid(p) - 1/2)``, ``p = params["sv"] (H,)``, held in
    ``[1 - m, 1 + m]`` (``m = margin``; ``m = 0`` is an orthogonal cell).  Init:
    ``A_U`` by ``init`` (``"henaff"``, ``"cayley"``, ``"haar"``), ``A_V = 0``, ``p = 0``,
    so ``W = U`` is orthogonal.  The paper builds ``U, V`` from Householder reflections;
    the exponential map here follows geotorch's SVD constraint.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.spectral(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    if not isinstance(margin, (int, float)) or isinstance(margin, bool) or not margin >= 0:
        raise ValueError(f"margin must be a number >= 0, got {margin!r}")
    check_choice("init", init, ("henaff", "cayley", "haar"))
    check_choice("activation", activation, ACTIVATIONS)
    H = hidden_size
    m = float(margin)
    inits = {"henaff": P.henaff, "cayley": P.cayley_init, "haar": P.haar_skew}

    def init_map(key):
        return {"left": {"skew": inits[init](key, H)},
                "right": {"skew": jnp.zeros((H, H), jnp.float32)},
                "sv": jnp.zeros((H,), jnp.float32)}

    def matrix(params):
        U, s, V = spectral_factors(params, m)
        return (U * s[None, :]) @ V.T

    return dense_cell("spectral", H, activation, init_map, matrix)
