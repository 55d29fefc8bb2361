"""Array operations shared by cells and layers, each written once.

* :data:`ACTIVATIONS`: ``name -> (f, f')`` with the derivative written in terms of the
  output ``h = f(z)`` (what a hand-written backward has stored):
  ``tanh' = 1 - h^2``, ``relu' = [h > 0]``, ``identity' = 1``.
* :func:`layer_norm`: ``LN(v; g, b) = (v - mean(v)) / sqrt(var(v) + eps) * g + b`` over
  the last axis (Ba, Kiros & Hinton 2016).
* :func:`dropout`: inverted dropout, ``x * m / (1 - rate)`` with ``m ~ Bernoulli(1 - rate)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["ACTIVATIONS", "dropout", "layer_norm"]

ACTIVATIONS = {
    "tanh": (jnp.tanh, lambda h: 1.0 - h * h),
    "relu": (jax.nn.relu, lambda h: (h > 0).astype(h.dtype)),
    "identity": (lambda z: z, lambda h: jnp.ones_like(h)),
}


def layer_norm(v, gain, bias, eps: float = 1e-5):
    """``(v - mean(v)) / sqrt(var(v) + eps) * gain + bias`` over the last axis."""
    mu = jnp.mean(v, -1, keepdims=True)
    var = jnp.mean(jnp.square(v - mu), -1, keepdims=True)
    return (v - mu) * jax.lax.rsqrt(var + eps) * gain + bias


def dropout(key, x, rate: float):
    """Inverted dropout of ``x`` at ``rate`` (kept entries scaled by ``1 / (1 - rate)``)."""
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))
