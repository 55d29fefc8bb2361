"""Small helpers shared by the tests."""

import jax
import jax.numpy as jnp


def to_f64(tree):
    """Cast every floating leaf of ``tree`` to float64."""
    return jax.tree.map(
        lambda a: a.astype(jnp.float64) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)


class CountCompiles:
    """``with CountCompiles() as c: ...`` counts the XLA compilations inside the block
    (JAX's public monitoring events), so a test can assert that a call compiled nothing."""

    EVENT = "/jax/core/compile/backend_compile_duration"

    def __enter__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)
        return self

    def _listen(self, name, duration, **kwargs):
        self.count += name == self.EVENT

    def __exit__(self, *exc):
        jax.monitoring.unregister_event_duration_listener(self._listen)
