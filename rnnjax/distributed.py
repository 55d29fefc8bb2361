r"""Data parallelism with JAX's own machinery: a device mesh, named shardings and
``jax.distributed`` for several processes.

The runner (:mod:`rnnjax.train`) uses a one-axis mesh ``("data",)`` over ``n`` devices
(``jax.make_mesh``).  Params, optimiser state, PRNG keys and metric accumulators are
replicated (``NamedSharding(mesh, P())``); a batch ``(seeds, batch, ...)`` is split over
its batch axis (``NamedSharding(mesh, P(None, "data"))``), so each device computes the
loss and gradients of ``batch / n`` examples and XLA inserts the all-reduce of the
gradient mean.  The train step is jitted with these shardings as ``in_shardings`` /
``out_shardings`` and donates the old state.

Several processes (hosts, or several processes on one machine) first call
:func:`initialize` (``jax.distributed.initialize``: coordinator address, number of
processes and process id from arguments, or detected from the cluster environment,
e.g. SLURM's ``SLURM_*`` variables).  Each process then contributes the rows of the
global batch that live on its own devices (:func:`global_batch`,
``jax.make_array_from_process_local_data``); only process 0 logs and writes metrics
(:func:`is_main`), and every process takes part in orbax checkpoints.
"""

from __future__ import annotations

import os
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "data"


def initialize(coordinator: Optional[str] = None, num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> None:
    """``jax.distributed.initialize`` with the given arguments; those left as None are
    detected from the environment (SLURM, Open MPI, Kubernetes, TPU pods; see JAX's
    ``cluster_detection_method``).  Must run before any other JAX call.  On CPU the
    cross-process collectives use gloo."""
    if coordinator is not None and ":" not in coordinator:
        raise ValueError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    for name, v in (("num_processes", num_processes), ("process_id", process_id)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(f"process_id must be < num_processes={num_processes}, "
                         f"got {process_id}")
    try:  # cross-process collectives of the CPU backend (no effect on GPU/TPU)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):  # pragma: no cover - option renamed
        pass
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                               process_id=process_id)


def is_main() -> bool:
    """True in process 0, the one that logs and writes metrics."""
    return jax.process_index() == 0


def make_mesh(devices: Optional[int] = None) -> Mesh:
    """A one-axis ``("data",)`` mesh over the first ``devices`` devices (all of them
    when None).  With several processes the mesh must span every process's devices."""
    total = jax.device_count()
    n = total if devices is None else devices
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"devices must be a positive integer or None, got {devices!r}")
    if n > total:
        raise ValueError(f"devices={n} but only {total} devices are visible "
                         f"({jax.devices()[0].platform}); on CPU set "
                         f"XLA_FLAGS=--xla_force_host_platform_device_count={n}")
    if jax.process_count() > 1 and n != total:
        raise ValueError(f"with {jax.process_count()} processes the mesh must use all "
                         f"{total} devices, got devices={n}")
    # Auto axes: XLA's partitioner propagates the batch sharding through the model and
    # inserts the gradient all-reduce (jax.make_mesh defaults to Explicit axes, which
    # would demand sharding annotations inside the engine's vmap).
    return jax.make_mesh((n,), (AXIS,), axis_types=(jax.sharding.AxisType.Auto,),
                         devices=jax.devices()[:n])


def replicated(mesh: Mesh) -> NamedSharding:
    """``NamedSharding(mesh, P())``: a full copy on every device."""
    return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
    """Split axis ``batch_axis`` over the ``"data"`` mesh axis, replicate the rest."""
    return NamedSharding(mesh, P(*([None] * batch_axis), AXIS))


def check_batch(batch: int, mesh: Mesh) -> None:
    n = mesh.devices.size
    if batch % n:
        raise ValueError(f"batch={batch} must be divisible by the {n} devices of the mesh")


def replicate(tree, mesh: Mesh):
    """Every leaf of ``tree`` (the same values in every process) as a global array
    replicated over ``mesh``."""
    sharding = replicated(mesh)
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def local_rows(sharding: NamedSharding, global_shape, axis: int) -> slice:
    """The block of ``axis`` held by this process's devices under ``sharding``."""
    idx = sharding.addressable_devices_indices_map(tuple(global_shape)).values()
    starts = [i[axis].start or 0 for i in idx]
    stops = [global_shape[axis] if i[axis].stop is None else i[axis].stop for i in idx]
    return slice(min(starts), max(stops))


def global_batch(tree, sharding: NamedSharding, axis: int = 1):
    """A global batch assembled from each process's rows
    (``jax.make_array_from_process_local_data``).

    ``tree`` holds this process's rows along ``axis`` (all of them in a single process);
    every process holds the same number, so the global ``axis`` is the local one times
    ``jax.process_count()``.
    """
    def assemble(x):
        x = np.asarray(x)
        shape = list(x.shape)
        shape[axis] *= jax.process_count()
        return jax.make_array_from_process_local_data(sharding, x, tuple(shape))

    return jax.tree.map(assemble, tree)


def process_slice(tree, sharding: NamedSharding, axis: int = 1):
    """This process's rows (along ``axis``) of a global batch every process can compute
    (the synthetic tasks draw the whole batch from the shared PRNG key)."""
    return jax.tree.map(
        lambda x: np.asarray(x)[(slice(None),) * axis + (local_rows(sharding, np.shape(x),
                                                                    axis),)], tree)


def data_parallel(exp, mesh: Mesh):
    """The runner's ``(step_fn, eval_fn)`` over ``mesh``, for states whose leaves carry a
    leading ``(seeds,)`` axis (:mod:`rnnjax.train`).

    ``step_fn(state)``: every process draws the global batch ``(seeds, batch, ...)`` from
    the shared PRNG key on one of its own devices (``exp.batch``, the same stream as the
    single-device step), keeps the rows of its devices and assembles the global
    batch (:func:`global_batch`); then ``exp.update`` runs under ``jit`` with
    ``in_shardings=(replicated, batch-sharded)``, ``out_shardings=replicated`` and the
    old state donated.
    """
    repl, data = replicated(mesh), batch_sharding(mesh, 1)
    device = jax.local_devices()[0]
    sample = jax.jit(jax.vmap(exp.batch))
    update = jax.jit(jax.vmap(exp.update), in_shardings=(repl, data), out_shardings=repl,
                     donate_argnums=0)
    evaluate = jax.jit(jax.vmap(exp.evaluate), in_shardings=(repl, repl),
                       out_shardings=repl)

    def step_fn(state):
        key = jax.device_put(np.asarray(state.key.addressable_data(0)), device)
        local = process_slice(jax.device_get(sample(key)), data, axis=1)
        return update(state, global_batch(local, data, axis=1))

    return step_fn, evaluate


__all__ = ["AXIS", "data_parallel", "batch_sharding", "check_batch", "global_batch", "initialize", "is_main",
           "local_rows", "make_mesh", "process_slice", "replicate", "replicated"]
