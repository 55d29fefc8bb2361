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
