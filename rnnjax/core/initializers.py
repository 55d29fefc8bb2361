"""Weight initialisers shared by the cells, applied per gate block.

Each takes ``(key, shape, dtype)`` and returns an array.  Fused gate matrices
``(G * H, n)`` are initialised block by block with :func:`per_block`, so that an
orthogonal recurrent initialisation is orthogonal for every gate, not for the fused
matrix as a whole.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = ["INPUT_INITS", "identity", "input_layer", "lecun_normal", "normal", "orthogonal",
           "per_block", "torch_biases", "uniform"]

# Input-matrix initialisations of the orthogonal / unitary papers' reference code.
INPUT_INITS = ("he", "normal", "uniform", "glorot", "pytorch")


def orthogonal(key, shape, dtype=jnp.float32):
    """Haar-random (semi-)orthogonal matrix: QR of a Gaussian with sign correction."""
    rows, cols = shape
    n, m = max(rows, cols), min(rows, cols)
    a = jax.random.normal(key, (n, m), jnp.float64 if dtype == jnp.float64 else jnp.float32)
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    q = q if rows >= cols else q.T
    return q.astype(dtype)


def lecun_normal(key, shape, dtype=jnp.float32):
    """Normal with variance ``1 / fan_in`` (``fan_in = shape[1]``)."""
    return jax.random.normal(key, shape, dtype) / math.sqrt(max(shape[1], 1))


def uniform(scale: float):
    """``U(-scale, scale)``: PyTorch's RNN initialisation uses ``scale = 1/sqrt(H)``."""

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)

    return init


def identity(key, shape, dtype=jnp.float32):
    """Identity matrix (IRNN, Le et al. 2015)."""
    del key
    return jnp.eye(*shape, dtype=dtype)


def normal(std: float):
    def init(key, shape, dtype=jnp.float32):
        return std * jax.random.normal(key, shape, dtype)

    return init


def per_block(init, blocks: int):
    """Initialise a ``(blocks * H, n)`` matrix as ``blocks`` independent ``(H, n)`` blocks."""

    def fused(key, shape, dtype=jnp.float32):
        rows, cols = shape
        keys = jax.random.split(key, blocks)
        return jnp.concatenate([init(k, (rows // blocks, cols), dtype) for k in keys], axis=0)

    return fused


def input_layer(keys, kind: str, hidden: int, input_size: int, names=("V",)):
    r"""The input matrices ``names`` (each ``(hidden, input_size)``) and modReLU bias
    ``"b" (hidden,)`` of an orthogonal / unitary cell; ``keys``: one per name, then one
    for the bias.  ``p = len(names)`` (2 for the real and imaginary parts of a complex
    ``V``):

    * ``"he"``: ``N(0, 2/F)``, ``b ~ U[-0.01, 0.01]`` (expRNN, ``lezcano/expRNN:
      orthogonal.py``: ``kaiming_normal_``);
    * ``"normal"``: ``N(0, 1/(p F))`` (so ``E|V x|^2 = |x|^2 H / F``), ``b = 0``;
    * ``"uniform"``: ``U[-0.01, 0.01]``, ``b = 0`` (scoRNN ``SpartinStuff/scoRNN:
      scoRNN.py``; EUNN ``jingli9111/EUNN-tensorflow: eunn.py``);
    * ``"glorot"``: ``U[-a, a]``, ``a = sqrt(6 / (F + p H))`` (the ``(F, p H)`` matrix of
      Arjovsky's ``initialize_matrix``), ``b ~ U[-0.01, 0.01]``
      (``amarshah/complex_RNN: models.py``);
    * ``"pytorch"``: ``U[-1/sqrt(F), 1/sqrt(F)]``, PyTorch's default ``nn.Linear(F, H)``
      weight, ``b ~ U[-0.01, 0.01]`` (the nnRNN, ``KyleGoyette/nnRNN: RNN_Cell.py``
      ``OrthoRNNCell``: its ``i_initializer`` is never applied, ``bias=False``, and the
      modReLU bias is ``U[-0.01, 0.01]``).
    """
    if kind not in INPUT_INITS:
        raise ValueError(f"input_init must be one of {INPUT_INITS}, got {kind!r}")
    p, F, H = len(names), input_size, hidden
    shape = (H, F)
    if kind == "he":
        draw = normal(math.sqrt(2.0 / F))
    elif kind == "normal":
        draw = normal(1.0 / math.sqrt(p * F))
    elif kind == "uniform":
        draw = uniform(0.01)
    elif kind == "pytorch":
        draw = uniform(1.0 / math.sqrt(F))
    else:
        draw = uniform(math.sqrt(6.0 / (F + p * H)))
    out = {n: draw(k, shape, jnp.float32) for n, k in zip(names, keys)}
    out["b"] = (uniform(0.01)(keys[p], (H,), jnp.float32) if kind in ("he", "glorot", "pytorch")
                else jnp.zeros((H,), jnp.float32))
    return out


def torch_biases(key, n: int, H: int):
    """PyTorch's ``bias_ih + bias_hh`` ``(n,)`` of a recurrent layer with hidden size
    ``H`` (``nn.RNN``, ``nn.LSTM``): two independent ``U(-1/sqrt(H), 1/sqrt(H))``
    vectors summed, a triangular distribution on ``[-2/sqrt(H), 2/sqrt(H)]`` with
    variance ``2 / (3 H)``."""
    u = uniform(1.0 / math.sqrt(H))
    return u(key, (n,)) + u(jax.random.fold_in(key, 1), (n,))
