"""Optimisers: the papers' recipes (Optax chains), Riemannian updates on the
orthogonal and unitary groups; the constraints that keep weights on them live in
:mod:`rnnjax.optim.constraints`."""

from rnnjax.optim.recipes import (
    FROZEN_KEYS,
    MANIFOLD_KEYS,
    OPTIMIZERS,
    ORTHOGONAL_KEYS,
    PAPER_RECIPES,
    RETRACTIONS,
    LossScaleState,
    PaperRecipe,
    dynamic_loss_scale,
    label_params,
    recipe,
    riemannian,
    rmsprop_accumulator,
    rmsprop_tf1,
    rmsprop_theano,
)

__all__ = [
    "dynamic_loss_scale",
    "FROZEN_KEYS",
    "label_params",
    "LossScaleState",
    "MANIFOLD_KEYS",
    "OPTIMIZERS",
    "ORTHOGONAL_KEYS",
    "PAPER_RECIPES",
    "PaperRecipe",
    "recipe",
    "RETRACTIONS",
    "riemannian",
    "rmsprop_accumulator",
    "rmsprop_tf1",
    "rmsprop_theano",
]
