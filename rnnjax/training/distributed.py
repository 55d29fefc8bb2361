r"""Data parallelism with JAX's own machinery: a device mesh, named shardings and
``jax.distributed`` for several processes.

The runner (:mod:`rnnjax.training.runner`) uses a one-axis mesh ``("data",)`` over ``n`` devices
(``jax.make_mesh``).  Params, optimiser state, PRNG keys and metric accumulators are
replicated (``NamedSharding(mesh, P())``); a batch ``(seeds, batch, ...)`` is split over
its batch axis (``NamedSharding(mesh, P(None, "data"))``), so each device computes the
loss and gradients of ``batch / n`` examples and XLA inserts the all-reduce of the
gradient mean.  The train step is jitted with these shardings as ``in_shardings`` /
``out_shardings`` and donates the old state.

One device is a mesh of one: the runner has one step path (:func:`data_parallel`)
for every task (sampled batches, epochs over a data set, the stateful char LM).

Several processes (hosts, or several processes on one machine) first call
:func:`initialize` (``jax.distributed.initialize``: coordinator address, number of
processes and process id from arguments, or detected from the cluster environment,
e.g. SLURM's ``SLURM_*`` variables).  The runner's tasks compute their batch from the
replicated state inside the step, so every process runs the same program; a data
loader of one's own that reads only its process's rows assembles the global batch
with :func:`global_batch` (``jax.make_array_from_process_local_data``,
:func:`process_slice` picks the rows).  Only process 0 logs and writes metrics
(:func:`is_main`), and every process takes part in orbax checkpoints.

Faults.  JAX's coordination client aborts the whole process (``SIGABRT``, exit 134,
a C++ stack trace) when it gives up, so a bounded wait with a message of our own must
end the process before JAX does:

* joining: :func:`initialize` waits at most ``timeout`` seconds (default
  :data:`DEFAULT_TIMEOUT`) for the coordinator and every process; past that a watchdog
  prints one line (whether the coordinator at ``HOST:PORT`` answered at all) and exits
  with :data:`EXIT_CODE` (75, ``EX_TEMPFAIL``: start every process again), instead of
  JAX's silent 300 s and abort;
* a process dies: the survivors' next collective fails at once (gloo: "connection
  closed by peer"); :func:`exit_lost_peer` prints one line naming the newest intact
  checkpoint and exits with :data:`EXIT_CODE` without JAX's shutdown barrier (which
  would wait for the dead process and then abort).  A process that stops answering
  without closing its connections is declared dead after ``heartbeat_timeout``
  seconds (default :data:`DEFAULT_HEARTBEAT`; JAX's own abort, then).  No process
  writes after the failure, so the last checkpoint stays as it was saved.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import warnings

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from rnnjax.training import checkpointing

AXIS = "data"
DEFAULT_TIMEOUT = 60.0     # seconds to wait for the coordinator and every process
DEFAULT_HEARTBEAT = 60     # seconds of silence after which a process counts as dead
EXIT_CODE = 75             # EX_TEMPFAIL: restart every process (with --resume)
_GRACE = 10                # JAX's own deadlines lie this much beyond ours


def _seconds(name, v, *, integer=False):
    ok = (not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
          and v > 0 and (not integer or float(v).is_integer()))
    if not ok:
        kind = "a positive whole number of seconds" if integer else "a positive number of seconds"
        raise ValueError(f"{name} must be {kind}, got {v!r}")
    return v


def coordinator_answers(address: str, wait: float = 1.0) -> bool:
    """True if a TCP connection to ``address`` (``HOST:PORT``) opens within ``wait``
    seconds (the coordinator service listens there)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=wait):
            return True
    except (OSError, ValueError):
        return False


def exit_now(message: str, code: int = EXIT_CODE) -> None:
    """Print ``message`` on stderr and end the process with ``code`` at once
    (``os._exit``): no atexit handler runs, so JAX's shutdown barrier, which would wait
    for a dead process and then abort, is skipped.  The kernel releases the run's lock."""
    try:
        sys.stdout.flush()
    finally:
        print(message, file=sys.stderr, flush=True)
        os._exit(code)


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout: float = DEFAULT_TIMEOUT,
               heartbeat_timeout: int = DEFAULT_HEARTBEAT) -> None:
    """``jax.distributed.initialize`` with the given arguments; those left as None are
    detected from the environment (SLURM, Open MPI, Kubernetes, TPU pods; see JAX's
    ``cluster_detection_method``).  Must run before any other JAX call.  On CPU the
    cross-process collectives use gloo.

    ``timeout`` (seconds) bounds the wait for the coordinator and for every process to
    join: past it the process prints which (the coordinator at ``coordinator`` never
    answered, or it answered but not all ``num_processes`` joined) and exits with
    :data:`EXIT_CODE` (see the module docstring; JAX would abort after its own
    ``initialization_timeout``, set ``timeout + 10``).  ``heartbeat_timeout`` (whole
    seconds) is JAX's ``heartbeat_timeout_seconds``: a process silent that long is
    declared dead and the others stop."""
    if coordinator is not None and (not isinstance(coordinator, str) or ":" not in coordinator):
        raise ValueError(f"coordinator must be HOST:PORT, got {coordinator!r}")
    for name, v in (("num_processes", num_processes), ("process_id", process_id)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(f"process_id must be < num_processes={num_processes}, "
                         f"got {process_id}")
    _seconds("timeout", timeout)
    _seconds("heartbeat_timeout", heartbeat_timeout, integer=True)
    try:  # cross-process collectives of the CPU backend (no effect on GPU/TPU)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    except (AttributeError, ValueError):  # pragma: no cover - option renamed
        pass
    joined = threading.Event()
    who = f"process {process_id if process_id is not None else '?'}"

    def give_up():
        if joined.is_set():
            return
        if coordinator is None:
            why, hint = ("the coordinator or a process (detected from the cluster "
                         "environment) did not join"), "start every process"
        elif process_id != 0 and not coordinator_answers(coordinator):
            why, hint = (f"the coordinator at {coordinator} never answered",
                         "is process 0 running and listening there?")
        else:
            n = "" if num_processes is None else f" {num_processes}"
            why, hint = (f"the coordinator at {coordinator} answered but not all{n} "
                         f"processes joined", "start every process")
        exit_now(f"rnnjax: error: {who}: {why} within timeout={timeout:g} s "
                 f"(--coordinator-timeout); {hint}, or raise the timeout")

    watchdog = threading.Timer(timeout, give_up)
    watchdog.daemon = True
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator, num_processes=num_processes,
            process_id=process_id, initialization_timeout=math.ceil(timeout) + _GRACE,
            heartbeat_timeout_seconds=int(heartbeat_timeout))
    finally:
        joined.set()
        watchdog.cancel()


# What gloo and JAX's coordination service say when another process is gone (the error
# comes as jax.errors.JaxRuntimeError from a step, as ValueError from orbax's barriers).
_PEER_LOST = ("gloo", "connection closed by peer", "connection reset by peer",
              "heartbeat timeout", "coordination service")


def peer_lost(error: BaseException) -> bool:
    """True if ``error`` (or an exception it was raised from) is a collective or the
    coordination service failing because another process died or stopped answering."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if any(m in str(error).lower() for m in _PEER_LOST):
            return True
        error = error.__cause__ or error.__context__
    return False


def exit_lost_peer(error: BaseException, out: str | None = None) -> None:
    """End this process after a collective failed because another process died
    (``error``, e.g. gloo's "connection closed by peer"): one line naming the newest
    intact checkpoint of the run directory ``out`` (read only, nothing moved), then
    :func:`exit_now` with :data:`EXIT_CODE`.  Never returns."""
    first = " ".join(str(error).split())[:300]
    if out is None:
        kept = "no run directory (--out), nothing saved"
    else:
        directory = os.path.join(out, "checkpoints")
        try:
            with warnings.catch_warnings():  # a damaged newer step: reported below
                warnings.simplefilter("ignore")
                step = checkpointing.latest_good_step(directory)
            kept = (f"the last checkpoint, step {step} in {directory}, is intact: start "
                    f"every process again with --resume")
        except (OSError, ValueError):
            kept = f"no complete checkpoint in {directory} yet"
    exit_now(f"rnnjax: error: process {jax.process_index()} of {jax.process_count()}: "
             f"another process died or stopped answering ({type(error).__name__}: "
             f"{first}); {kept}")


def is_main() -> bool:
    """True in process 0, the one that logs and writes metrics."""
    return jax.process_index() == 0


def make_mesh(devices: int | None = None) -> Mesh:
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
    """The runner's ``(step_fn, eval_fn)`` over ``mesh`` (one device or many, one process
    or many), for states whose leaves carry a leading ``(seeds,)`` axis
    (:mod:`rnnjax.training.runner`); every task goes this one way.

    ``step_fn(state)`` is one jitted program: the step's global batch ``(seeds, batch,
    ...)`` is computed from the replicated state (``exp.batch``: a fresh draw from the
    PRNG key, the epoch order's rows of a data set, or the stateful task's window ``k =
    step mod K``; the same stream whatever the mesh), constrained to be split over its
    batch axis (``P(None, "data")``), and ``exp.update`` runs on it with the state
    replicated in and out (``in_shardings = out_shardings = P()``, the old state
    donated); XLA's partitioner gives each device ``batch / n`` rows and inserts the
    all-reduce of the gradient mean.  A stateful task's carry lives in the replicated
    state: each device computes its rows and the new carry is gathered.  A mesh of one
    device is the single-device program.
    """
    repl, data = replicated(mesh), batch_sharding(mesh, 1)

    def step(state):
        batch = jax.lax.with_sharding_constraint(jax.vmap(exp.batch)(state), data)
        return jax.vmap(exp.update)(state, batch)

    step_fn = jax.jit(step, in_shardings=(repl,), out_shardings=repl, donate_argnums=0)
    evaluate = jax.jit(jax.vmap(exp.evaluate), in_shardings=(repl, repl),
                       out_shardings=repl)
    return step_fn, evaluate


__all__ = ["AXIS", "DEFAULT_HEARTBEAT", "DEFAULT_TIMEOUT", "EXIT_CODE", "coordinator_answers",
           "exit_lost_peer", "exit_now", "peer_lost", "data_parallel", "batch_sharding",
           "check_batch", "global_batch", "initialize", "is_main",
           "local_rows", "make_mesh", "process_slice", "replicate", "replicated"]
