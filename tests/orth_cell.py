"""A small expRNN-style cell for the runner's tests (the library's orthogonal cells live
in rnnjax.cells.orthogonal): ``W = expm(S - S^T)``, ``h_t = modrelu(W h_{t-1} + U x_t, b)``
(Lezcano-Casado & Martinez-Rubio 2019) with Henaff's block-rotation initialisation."""

import math

import jax
import jax.numpy as jnp
from jax.scipy.linalg import expm

from rnnjax.cell import Cell, HiddenState, zeros_carry


def modrelu(z, b):
    a = jnp.abs(z)
    return jnp.where(a + b > 0, jnp.sign(z) * (a + b), 0.0)


def test_exprnn(hidden_size: int) -> Cell:
    H = hidden_size

    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        s = jax.random.uniform(k1, (H // 2,), jnp.float32, -math.pi, math.pi)
        skew = jnp.zeros((H, H), jnp.float32)
        idx = jnp.arange(H // 2) * 2
        skew = skew.at[idx, idx + 1].set(s)  # expm(S - S^T) = 2x2 rotations by s
        U = jax.random.normal(k2, (H, input_size), jnp.float32) * math.sqrt(1.0 / input_size)
        return {"skew": skew, "U": U, "b": jnp.zeros((H,), jnp.float32)}

    def prepare(p):
        return {"W": expm(p["skew"] - p["skew"].T), "U": p["U"], "b": p["b"]}

    def step(w, carry, x):
        h = modrelu(w["W"] @ carry.h + w["U"] @ x, w["b"])
        return HiddenState(h), h

    return Cell(init=init, prepare=prepare, initial_carry=zeros_carry(HiddenState, H),
                step=step, input_size=lambda p: p["U"].shape[-1], output_size=H,
                name="test-exprnn",
                recurrent_matrix=lambda p: expm(p["skew"] - p["skew"].T))
