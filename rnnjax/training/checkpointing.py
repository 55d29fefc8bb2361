r"""Checkpoints that are verified before they are trusted.

Orbax writes a step into a temporary directory and renames it when complete, so a save
killed midway leaves no step directory.  What it cannot see is a step directory damaged
afterwards (a truncated or corrupted file) or a process killed after orbax finished
but before the run recorded the save as complete.  So, after each save, process 0
writes ``<checkpoints>/<step>/rnnjax_manifest.json``: the size and SHA-256 of every file
of the step, written to a temporary file, flushed and renamed (atomic).  A step is good
only if its manifest exists and every file matches it.

:func:`latest_good_step` walks the steps from the newest down; a step that fails is
reported with ``warnings.warn`` (naming the step, the directory and what is wrong)
and the previous step is tried; only the trainer resuming its own run moves it aside to
``<checkpoints>/bad-<step>-<n>`` (so orbax ignores it and the step can be saved again):
a reader (``load_params``, ``gradflow --checkpoint``, ``generate --run``) never changes
a run.  Steps beyond ``keep`` are deleted only after the new step's manifest is durable,
so a kill anywhere in a save leaves the previous complete step usable.  If none is good the error
says so and
names the directory.  Nothing is restored from a file that failed the check.

The one way rnnjax saves and restores parameters is here: :func:`manager` (an orbax
``CheckpointManager`` over ``<out>/checkpoints`` with the items ``state`` and
``history``), :func:`save` (refuses non-finite params, then writes the manifest) and
:func:`restore`; :func:`save_params` / :func:`restore_params` wrap them for a plain
params pytree (the applications).  The training runner (:mod:`rnnjax.training.runner`) saves its
whole ``TrainState`` with the same functions.  orbax is imported on first use (it
takes seconds to import).
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import signal
import threading
import warnings

import jax
import numpy as np
from jax.experimental import multihost_utils

from rnnjax.io.outputs import atomic_open

MANIFEST = "rnnjax_manifest.json"
ITEMS = ("state", "history")


def _ocp():
    import orbax.checkpoint as ocp
    return ocp


def manager(out, *, keep: int = 3, every: int = 1, read_only: bool = False):
    """The orbax ``CheckpointManager`` of the run directory ``out`` (its
    ``checkpoints/`` folder): keeps the last ``keep`` steps, saves every ``every``
    steps (or when forced), synchronously.  Close it (or use it in ``with``).

    Old steps are deleted by :func:`save` only after the new step's manifest is
    durable (orbax's own ``max_to_keep`` would delete them inside ``save()``, before the
    manifest exists: a kill there would leave no usable step).

    ``read_only=True`` (the readers: :func:`restore_params`, ``load_params``) creates
    nothing: a missing ``checkpoints/`` is a ``FileNotFoundError`` naming it."""
    ocp = _ocp()
    directory = os.path.abspath(os.path.join(os.fspath(out), "checkpoints"))
    if read_only and not os.path.isdir(directory):
        raise FileNotFoundError(f"no good checkpoint in {directory} (no such folder)")
    options = ocp.CheckpointManagerOptions(max_to_keep=None, save_interval_steps=every,
                                           enable_async_checkpointing=False,
                                           create=not read_only)
    mngr = ocp.CheckpointManager(directory, options=options, item_names=ITEMS)
    mngr.rnnjax_keep = keep
    return mngr


def _before_manifest(step) -> None:
    """Test hook: runs between orbax's save of ``step`` and its manifest.  With
    ``RNNJAX_FAULT_KILL_BEFORE_MANIFEST=<step>`` in the environment the process
    SIGKILLs itself there (the window the manifest-after-save design must survive)."""
    if os.environ.get("RNNJAX_FAULT_KILL_BEFORE_MANIFEST") == str(int(step)):
        os.kill(os.getpid(), signal.SIGKILL)


def _prune(mngr, step) -> None:
    """Delete the steps older than the newest ``keep`` complete ones (manifest present)."""
    keep = getattr(mngr, "rnnjax_keep", None)
    if not keep:
        return
    directory = os.fspath(mngr.directory)
    complete = [s for s in steps(directory)
                if s <= step and os.path.isfile(os.path.join(_step_dir(directory, s), MANIFEST))]
    if len(complete) <= keep:
        return
    oldest_kept = complete[keep - 1]
    for s in mngr.all_steps():
        if s < oldest_kept:
            mngr.delete(s)


def save(mngr, step: int, state, history=(), *, force: bool = False) -> bool:
    """Save ``state`` (any pytree of arrays holding ``params``) and ``history`` (a
    JSON list) as ``step`` if the manager's interval (or ``force``) says so; then write
    the manifest that marks the save complete; only then delete the steps beyond the
    manager's ``keep``.  Raises ``FloatingPointError`` before writing anything if the
    params hold NaN or inf.  Returns whether it saved."""
    ocp = _ocp()
    params = state.params if hasattr(state, "params") else state["params"]
    check_finite(params)  # never checkpoint non-finite params
    saved = mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                    history=ocp.args.JsonSave(list(history))),
                      force=force)
    if saved:
        mngr.wait_until_finished()
        _before_manifest(step)
        write_manifest(mngr.directory, step)
        _barrier("rnnjax-manifest-written")
        _prune(mngr, step)
    return saved


def restore(mngr, step, like, *, set_aside: bool = False):
    """``(state, history)`` saved at ``step``; ``like`` is a pytree of the state's
    structure (arrays or ``jax.ShapeDtypeStruct``).  ``step=None``: the newest step
    that passes :func:`verify` (:func:`latest_good_step`; only the trainer resuming its
    own run passes ``set_aside=True``: a reader never changes a run)."""
    ocp = _ocp()
    if step is None:
        step = latest_good_step(mngr.directory, set_aside=set_aside)
        mngr.reload()
    def load(target):
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), history=ocp.args.JsonRestore()))

    try:
        got = load(like)
        state = got["state"]
    except ValueError as err:
        # A checkpoint written before a NamedTuple state gained a field that defaults
        # to None (``TrainState.carry``) lacks that key: restore it without those fields.
        absent = [f for f in getattr(like, "_fields", ()) if getattr(like, f) is None]
        if not absent or "do not match" not in str(err):
            raise
        kept = [f for f in like._fields if f not in absent]
        older = collections.namedtuple(type(like).__name__, kept)
        got = load(older(*(getattr(like, f) for f in kept)))
        state = type(like)(**got["state"]._asdict(), **{f: None for f in absent})
    return state, list(got["history"])


def save_params(out, step: int, params, *, keep: int = 3) -> None:
    """Save a params pytree as checkpoint ``step`` of ``out/checkpoints``."""
    with manager(out, keep=keep) as mngr:
        save(mngr, step, {"params": params}, force=True)


def restore_params(out, like, step=None):
    """The params saved by :func:`save_params` in ``out`` (``like``: their structure,
    e.g. ``jax.eval_shape(model.init, key)``); the newest good step when ``step`` is
    None."""
    with manager(out, read_only=True) as mngr:
        state, _ = restore(mngr, step, {"params": like})
    return state["params"]


def _step_dir(directory, step):
    return os.path.join(os.fspath(directory), str(int(step)))


def _files(step_dir):
    out = {}
    for root, _, names in os.walk(step_dir):
        for name in names:
            path = os.path.join(root, name)
            rel = os.path.relpath(path, step_dir)
            if rel == MANIFEST or name.startswith("." + MANIFEST):
                continue
            out[rel] = path
    return out


def _digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory, step) -> str:
    """Record the size and SHA-256 of every file of checkpoint ``step`` (process 0
    only; call after the save has completed).  Returns the manifest's path."""
    step_dir = _step_dir(directory, step)
    path = os.path.join(step_dir, MANIFEST)
    if jax.process_index() != 0:
        return path
    files = {rel: {"size": os.path.getsize(p), "sha256": _digest(p)}
             for rel, p in sorted(_files(step_dir).items())}
    with atomic_open(path, "w") as f:
        json.dump({"step": int(step), "files": files}, f, indent=1)
    return path


def verify(directory, step):
    """``None`` if checkpoint ``step`` matches its manifest, else what is wrong."""
    step_dir = _step_dir(directory, step)
    path = os.path.join(step_dir, MANIFEST)
    if not os.path.isfile(path):
        return ("no manifest: the save did not complete (interrupted after orbax wrote it, "
                "or written by a runner that does not verify checkpoints)")
    try:
        with open(path, "rb") as f:
            recorded = json.loads(f.read().decode("utf-8"))["files"]
        if not isinstance(recorded, dict) or not all(
                isinstance(m, dict) and isinstance(m.get("size"), int)
                and isinstance(m.get("sha256"), str) for m in recorded.values()):
            raise ValueError("'files' must map each file to its size and sha256")
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        return f"unreadable manifest {path} ({type(e).__name__}: {e})"
    present = _files(step_dir)
    missing = sorted(set(recorded) - set(present))
    if missing:
        return f"missing files {missing[:3]}"
    for rel, meta in recorded.items():
        size = os.path.getsize(present[rel])
        if size != meta["size"]:
            return f"{rel} has {size} bytes, {meta['size']} were written"
        if _digest(present[rel]) != meta["sha256"]:
            return f"{rel} does not match its SHA-256"
    return None


def steps(directory) -> list:
    """Step numbers of the checkpoint directories in ``directory``, newest first."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return []
    return sorted((int(n) for n in os.listdir(directory)
                   if n.isdigit() and os.path.isdir(os.path.join(directory, n))),
                  reverse=True)


def _set_aside(directory, step):
    src = _step_dir(directory, step)
    n = 0
    while os.path.exists(os.path.join(directory, f"bad-{step}-{n}")):
        n += 1
    dst = os.path.join(directory, f"bad-{step}-{n}")
    os.replace(src, dst)
    return dst


def _barrier(name):
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def latest_good_step(directory, *, set_aside: bool = False) -> int:
    """The newest step of ``directory`` that passes :func:`verify`.

    Each newer step that fails is reported (``warnings.warn``); with ``set_aside`` (the
    trainer resuming its own run, which holds the run's lock) it is also moved aside so
    the step can be saved again.  Readers leave the run as it is.  Raises
    ``FileNotFoundError`` naming ``directory`` when no step is good.  With several
    processes, process 0 checks and the others wait for it and read its verdict from
    the file system.
    """
    directory = os.path.abspath(os.fspath(directory))
    found = steps(directory)
    bad, good = [], []
    if jax.process_index() == 0 or not set_aside:
        for step in found:
            reason = verify(directory, step)
            if reason is None:
                good = [step]
                break
            what = (f"moved it to {_set_aside(directory, step)}" if set_aside else
                    "left it in place")
            warnings.warn(f"checkpoint step {step} in {directory} is not usable: {reason}; "
                          f"{what} and falling back to the previous checkpoint",
                          RuntimeWarning, stacklevel=2)
            bad.append(f"step {step}: {reason}")
    if set_aside:
        _barrier("rnnjax-latest-good-step")
        good = steps(directory)
    if not good:
        detail = ("; ".join(bad) if bad else
                  "it holds no checkpoint" if not found else "none passed verification")
        raise FileNotFoundError(f"no good checkpoint in {directory} ({detail})")
    return good[0]


def check_finite(tree, what="params") -> None:
    """Raise ``FloatingPointError`` if any floating leaf of ``tree`` holds NaN or inf
    (so non-finite params are never checkpointed)."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        a = np.asarray(leaf)
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            raise FloatingPointError(
                f"{what}{jax.tree_util.keystr(path)} holds non-finite values; "
                "refusing to checkpoint it")


class Preempted(Exception):
    """The run received SIGTERM (preemption) or SIGINT (Ctrl-C), saved a checkpoint at
    ``step`` (when it has a run directory) and stopped; ``--resume`` continues it.
    ``signum`` is the signal; ``exit_code`` is ``128 + signum`` as a shell reports it
    (143 for SIGTERM, 130 for SIGINT)."""

    def __init__(self, step, out=None, signum=signal.SIGTERM):
        self.step, self.out, self.signum = step, out, int(signum)
        self.exit_code = 128 + self.signum
        where = (f"saved a checkpoint of step {step} in {out}; continue with --resume"
                 if out is not None else "no run directory (--out), nothing saved")
        super().__init__(f"{signal.Signals(self.signum).name} at step {step}: {where}")


class SigtermFlag:
    """Catch SIGTERM (preemption) and SIGINT (Ctrl-C) by setting a flag the training
    loop polls; the loop then saves and raises :class:`Preempted`.

    Installed only from the main thread (Python's rule for signal handlers);
    :meth:`restore` puts the previous handlers back.  With several processes the flag is
    agreed on with an all-gather, so every process saves the same step.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self._set = 0
        self._previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handler)

    def _handler(self, signum, frame):
        self._set = int(signum)

    @property
    def signum(self) -> int:
        """The signal received (SIGTERM when several processes disagree)."""
        return self._set or int(signal.SIGTERM)

    def is_set(self) -> bool:
        if jax.process_count() > 1:
            flags = multihost_utils.process_allgather(np.int32(self._set))
            got = [int(f) for f in np.ravel(flags) if f]
            if got and not self._set:
                self._set = got[0]
            return bool(got)
        return bool(self._set)

    def restore(self):
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}


__all__ = ["ITEMS", "MANIFEST", "Preempted", "SigtermFlag", "check_finite",
           "latest_good_step", "manager", "restore", "restore_params", "save", "save_params",
           "steps", "verify", "write_manifest"]
