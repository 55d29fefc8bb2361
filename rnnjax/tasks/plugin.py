"""Tasks of one's own: ``rnnjax train --task my_module:my_task``.

``my_module`` is any importable module (on ``PYTHONPATH``, or a ``my_module.py`` in the
current directory) and ``my_task`` a factory returning a :class:`rnnjax.tasks.Task`::

    # my_tasks.py
    import jax, jax.numpy as jnp
    from rnnjax.tasks.base import Task, accuracy, cross_entropy, one_hot_encoder

    def echo(T, **options):            # T: --T; also data, variant, ... if it takes them
        def sample(key, batch):        # (xs (batch, T) int, ys (batch, T) int)
            xs = jax.random.randint(key, (batch, T), 0, 4)
            return xs, jnp.roll(xs, 1, axis=1).at[:, 0].set(0)
        def loss(logits, ys):          # logits (batch, T, 4)
            return jnp.mean(cross_entropy(logits, ys))
        return Task(name="echo", sample=sample, eval_sample=sample,
                    encode=one_hot_encoder(4), loss=loss,
                    metrics=lambda lg, ys: {"loss": loss(lg, ys),
                                            "accuracy": accuracy(lg, ys)},
                    input_size=4, output_size=4, readout="all",
                    baseline=float(jnp.log(4)), baseline_note="uniform guess", time=T)

The factory is called with the runner's task options it names among ``T``, ``data``,
``variant``, ``permutation_seed`` (all of them if it takes ``**options``).  The
:class:`~rnnjax.tasks.Task` fields are documented in :mod:`rnnjax.tasks.base`: pure
batch functions of a PRNG key, ``encode`` to float features, a scalar ``loss``,
``metrics`` (a dict holding ``"loss"``), sizes, ``readout`` (``"all"`` or ``"last"``)
and an optional ``baseline``.
"""

from __future__ import annotations

import inspect

from rnnjax.core.plugins import is_plugin, load_object
from rnnjax.tasks.base import Task


def load_factory(spec: str):
    """The task factory named by ``spec = "module:factory"``
    (:func:`rnnjax.core.plugins.load_object`)."""
    return load_object(spec, "task")


def plugin_task(spec: str, **options) -> Task:
    """Build the task ``spec = "module:factory"``, passing the ``options`` the factory's
    signature names (all of them if it takes ``**kwargs``)."""
    factory = load_factory(spec)
    params = inspect.signature(factory).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        options = {k: v for k, v in options.items() if k in params}
    try:
        task = factory(**options)
    except Exception as e:  # noqa: BLE001 - the user's factory: name it, one line
        name = spec.partition(":")[2]
        raise ValueError(f"task {spec!r}: the factory {name}({', '.join(options)}) raised "
                         f"{type(e).__name__}: {e}") from None
    if not isinstance(task, Task):
        raise TypeError(f"task {spec!r}: the factory must return an rnnjax.tasks.Task, got "
                        f"{type(task).__name__}")
    return task


__all__ = ["is_plugin", "load_factory", "plugin_task"]
