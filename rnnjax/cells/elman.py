"""The Elman (vanilla) recurrent cell."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from rnnjax.core import initializers
from rnnjax.core.cell import (
    Backward,
    Cell,
    HiddenState,
    Linear,
    fuse_input_hidden,
    fused_grads,
    where_live,
    zeros_carry,
)
from rnnjax.core.checks import check_choice, check_positive_int
from rnnjax.core.ops import ACTIVATIONS

__all__ = ["INITS", "elman", "elman_backward", "irnn"]

INITS = ("uniform", "orthogonal", "irnn")


def elman_backward(activation: str = "tanh") -> Backward:
    r"""The Elman cell's hand-written BPTT (:class:`rnnjax.core.cell.Backward`).

    Forward ``z_t = [x_t, h_{t-1}] @ W + b`` (``W = [W_xh W_hh]^T``), ``h_t = f(z_t)``;
    the driver stores only ``h_t``.  One reverse step, with ``g_t`` the gradient of
    ``h_t`` from the future::

        delta_t = (g_t + dy_t) * f'(z_t)      f' = 1 - h_t^2 (tanh), [h_t > 0] (relu), 1
        g_{t-1} = W_hh^T delta_t
        dW_xh += delta_t x_t^T    dW_hh += delta_t h_{t-1}^T    db += delta_t

    (the last three once per chunk, :func:`rnnjax.core.cell.fused_grads`).
    """
    f, fprime = ACTIVATIONS[activation]

    def body(w, g, inp):
        (gh,) = g
        h_t, dy_t, live_t = inp
        delta = where_live(live_t, (gh + dy_t) * fprime(h_t), 0.0)
        return (where_live(live_t, delta @ w["W_hh"], gh),), delta

    # faster than autodiff on CPU: 0.6-0.94x (benchmarks/README.md, "bptt" and "peers")
    return Backward(recompute=lambda w: lambda xs, prev, cur: cur, body=body,
                    grads=fused_grads, faster_on=("cpu",))


def elman(hidden_size: int, activation: str = "tanh", init: str = "uniform") -> Cell:
    r"""Elman RNN (as PyTorch ``nn.RNN``), with IRNN and orthogonal initialisations.

    Equations (column vectors, one example)::

        h_t = f(W_xh x_t + W_hh h_{t-1} + b),      y_t = h_t

    with ``f`` in ``{"tanh", "relu", "identity"}``.  Params: ``W_xh (H, F)``,
    ``W_hh (H, H)``, ``b (H,)``.  (PyTorch's two biases ``b_ih + b_hh`` are one ``b``.)

    Initialisation (``init``):
      * ``"uniform"`` (default, as PyTorch): every weight ``U(-1/sqrt(H), 1/sqrt(H))``
        and ``b = b_ih + b_hh``, two such draws summed
        (:func:`rnnjax.initializers.torch_biases`).
      * ``"orthogonal"``: ``W_hh`` Haar-orthogonal, ``W_xh`` normal with variance
        ``1/F``, ``b = 0``; the unconstrained baseline for the orthogonal cells.
      * ``"irnn"`` (Le, Jaitly & Hinton 2015): ``W_hh = I``, ``W_xh ~ N(0, 0.001^2)``,
        ``b = 0``; use with ``activation="relu"``.

    With ``activation="identity"`` the cell declares its linear recurrence
    ``h_t = W_hh h_{t-1} + (W_xh x_t + b)`` so the engine can use an associative scan.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.elman(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    check_positive_int("hidden_size", hidden_size)
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("init", init, INITS)
    f = ACTIVATIONS[activation][0]
    H = hidden_size

    def init_fn(key, input_size):
        check_positive_int("input_size", input_size)
        k1, k2, k3 = jax.random.split(key, 3)
        if init == "uniform":
            u = initializers.uniform(1.0 / math.sqrt(H))
            return {"W_xh": u(k1, (H, input_size)), "W_hh": u(k2, (H, H)),
                    "b": initializers.torch_biases(k3, H, H)}
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
        backward=elman_backward(activation),
    )


def irnn(hidden_size: int) -> Cell:
    """IRNN (Le et al. 2015): ``elman(hidden_size, activation="relu", init="irnn")``.

    Example (a doctest; ``jax``, ``jnp`` and ``rnnjax`` imported)::

        >>> cell = rnnjax.cells.irnn(8)
        >>> rnnjax.run(cell, cell.init(jax.random.key(0), 8), jnp.ones((2, 5, 8)))[0].shape
        (2, 5, 8)
    """
    return elman(hidden_size, activation="relu", init="irnn")
