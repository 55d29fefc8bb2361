"""Small helpers shared by the tests."""

import jax
import jax.numpy as jnp


def to_f64(tree):
    """Cast every floating leaf of ``tree`` to float64."""
    return jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)
