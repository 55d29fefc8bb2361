"""The Elman (vanilla) recurrent cell."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax import initializers
from rnnjax.checks import check_choice, check_positive_int
from rnnjax.cell import Cell, HiddenState, Linear, fuse_input_hidden, zeros_carry

ACTIVATIONS = {"tanh": jnp.tanh, "relu": jax.nn.relu, "identity": lambda z: z}
INITS = ("uniform", "orthogonal", "irnn")


def elman(hidden_size: int, activation: str = "tanh", init: str = "uniform") -> Cell:
    r"""Elman RNN (as PyTorch ``nn.RNN``), with IRNN and orthogonal initialisations.

    Equations (column vectors, one example)::

        h_t = f(W_xh x_t + W_hh h_{t-1} + b),      y_t = h_t

    with ``f`` in ``{"tanh", "relu", "identity"}``.  Params: ``W_xh (H, F)``,
    ``W_hh (H, H)``, ``b (H,)``.  (PyTorch's two biases ``b_ih + b_hh`` are one ``b``.)

    Initialisation (``init``):
      * ``"uniform"`` (default, as PyTorch): every entry ``U(-1/sqrt(H), 1/sqrt(H))``.
      * ``"orthogonal"``: ``W_hh`` Haar-orthogonal, ``W_xh`` normal with variance
        ``1/F``, ``b = 0``; the unconstrained baseline for the orthogonal cells.
      * ``"irnn"`` (Le, Jaitly & Hinton 2015): ``W_hh = I``, ``W_xh ~ N(0, 0.001^2)``,
        ``b = 0``; use with ``activation="relu"``.

    With ``activation="identity"`` the cell declares its linear recurrence
    ``h_t = W_hh h_{t-1} + (W_xh x_t + b)`` so the engine can use an associative scan.
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("init", init, INITS)
    f = ACTIVATIONS[activation]
    H = hidden_size

    def init_fn(key, input_size):
        check_positive_int("input_size", input_size)
        k1, k2, k3 = jax.random.split(key, 3)
        if init == "uniform":
            u = initializers.uniform(1.0 / math.sqrt(H))
            return {"W_xh": u(k1, (H, input_size)), "W_hh": u(k2, (H, H)), "b": u(k3, (H,))}
        if init == "orthogonal":
            w_hh = initializers.orthogonal(k2, (H, H))
            w_xh = initializers.lecun_normal(k1, (H, input_size))
        else:  # irnn
            w_hh = initializers.identity(k2, (H, H))
            w_xh = initializers.normal(1e-3)(k1, (H, input_size))
        return {"W_xh": w_xh, "W_hh": w_hh, "b": jnp.zeros((H,), jnp.float32)}

    def step(w, carry, x):
        h = f(jnp.concatenate([x, carry.h]) @ w["W"] + w["b"])
        return HiddenState(h), h

    linear = None
    if activation == "identity":
        linear = Linear(
            kind="dense",
            coeffs=lambda w, x: (w["W_hh"], w["W_xh"] @ x + w["b"]),
            readout=lambda w, h, x: h,
        )

    return Cell(
        init=init_fn,
        prepare=fuse_input_hidden,
        initial_carry=zeros_carry(HiddenState, H),
        step=step,
        input_size=lambda p: p["W_xh"].shape[-1],
        output_size=H,
        name=f"elman-{activation}" if activation != "tanh" else "elman",
        recurrent_matrix=lambda p: p["W_hh"],
        linear=linear,
    )


def irnn(hidden_size: int) -> Cell:
    """IRNN (Le et al. 2015): ``elman(hidden_size, activation="relu", init="irnn")``."""
    return elman(hidden_size, activation="relu", init="irnn")
