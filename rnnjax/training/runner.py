r"""The training runner: one jitted train step, many seeds in one program, metrics,
checkpoints and resumption.

A run is described by a frozen :class:`Config` (:mod:`rnnjax.training.config`, what the
``rnnjax train`` command fills and saves as ``config.json`` beside the run).
:func:`train` then

1. checks the configuration before anything is built (:func:`validate`: unknown task or
   cell names list the valid ones; ``T < 1``, ``hidden <= 0``, a missing data file are
   named);
2. builds the task (:mod:`rnnjax.tasks`) and the model (cell + linear readout,
   :mod:`rnnjax.layers.readout`);
   With ``progress`` a tqdm bar is drawn only when stderr is a terminal; otherwise
   (a pipe, a log file) one line per log record is printed instead.
3. initialises one :class:`TrainState` per seed ``seed, seed+1, ..., seed+seeds-1``
   and stacks them: every array has a leading ``(seeds,)`` axis and the whole train step
   (:func:`rnnjax.training.make_update`, the update rule every loop of rnnjax runs) is
   ``jax.vmap``-ed over it (so ``--seeds 4`` is four independent runs in one program);
4. runs the jitted step ``steps`` times.  Each step draws a fresh batch from the run's
   PRNG key (``key, k = split(key)``), so the data stream is a pure function of the seed;
5. every ``log_every`` steps writes one record (:mod:`rnnjax.training.metrics`) to
   ``metrics.jsonl`` and ``metrics.csv``: ``train_loss`` (mean training loss since the
   last record, with the penalties of the constraint options), ``train_grad_norm``
   (mean global gradient norm on those training batches), ``eval_*`` (the task's
   metrics on a held-out batch fixed by the seed; for
   data-set tasks ``eval_loss`` and ``eval_accuracy`` over the *whole* test split and
   ``valid_*`` over the whole validation split, batched and jitted,
   :func:`rnnjax.tasks.split_metrics`), ``eval_grad_norm_<layer>`` (gradient norm per
   top-level param group on that held-out batch), ``orth_error`` (``||W^H W - I||_F`` of the
   recurrent matrix, for cells with orthogonal parameters), ``eval_credit_ratio_<field>``
   and ``eval_credit_jacobian_norm`` for a task with credit steps (the copy task,
   :func:`credit_metrics`: ``||dL_target/dz^f_source|| / ||dL_target/dz^f_reference||``
   per carry field, null where the gradient underflowed, and ``||dz_reference /
   dz_source||_2``), ``baseline`` and ``steps_per_sec``; with several seeds every
   metric is the mean over seeds, ``<name>_std`` the standard deviation and ``seeds``
   the per-seed values;
6. saves ``(params, optimizer state, PRNG key, step, metric accumulators)`` and the
   metric history (:mod:`rnnjax.training.checkpointing`, orbax) every ``checkpoint_every`` steps
   (keeping the last ``keep``) and at the end; ``resume=True`` restores the latest and
   continues, which gives bitwise the same parameters and metrics as an uninterrupted
   run on CPU;
7. for tasks with a validation split, keeps the params of the record with the best
   ``valid_accuracy`` (mean over seeds; ties: lower ``valid_loss``) in ``out/best``
   (:func:`rnnjax.training.checkpointing.save_params`) with its record in ``best.json``.

Data-set tasks train by ``epochs`` (:func:`resolve`): each epoch visits every training
example once (:func:`rnnjax.tasks.epoch_batch`, order from ``seed``, shared by the seeds
of one program, the same order on any number of devices).

Stateful tasks (``Task.stream``, the char LM; :mod:`rnnjax.tasks.stateful`) run the PTB
protocol through the same update rule (``make_update(..., has_aux=True)``): the training
text is laid out as ``batch`` streams, step ``i`` trains on window ``k = i mod K`` of
``T`` characters of every stream from ``TrainState.carry``, the carry window ``k-1``
left (zeros when ``k = 0``; its gradient is cut), and stores the carry leaving window
``k`` back in the state, so checkpoints hold it and a resumed run continues exactly.
Their records report ``eval_*`` / ``valid_*`` (loss, bpc) over the whole test / valid
text read with carried state (:func:`rnnjax.tasks.stateful.text_metrics`); the best
params are those of the lowest ``valid_loss``.  The data's fingerprint
(``Task.fingerprint``) is saved as ``config.data_sha256``; a resumed run on other data
is refused (:func:`rnnjax.training.config.check_resume`).

Scale-out and faults (:mod:`rnnjax.training.distributed`,
:mod:`rnnjax.training.checkpointing`): with
several devices (``Config.devices``, default all local ones) or processes the step of
every task (sampled, epochs, stateful) runs data-parallel over a ``("data",)`` mesh
(one device: a mesh of one, the same program); checkpoints are verified on resume (a damaged
newest one is reported and the previous one used); a step with a non-finite loss or
gradient is skipped and counted (``nonfinite_skipped``), ``max_nonfinite`` consecutive
ones stop the run (:class:`NonFiniteError`); SIGTERM saves a checkpoint and raises
:class:`rnnjax.training.checkpointing.Preempted`.

Orthogonality by constraint, for any recurrent cell (:mod:`rnnjax.optim.constraints`):
``orth_penalty``, the nnRNN penalties and gradient flossing add their terms to the
training loss (flossing on every ``floss_every``-th step, a second compiled step);
``riemannian`` moves ``W_hh`` on ``O(H)`` (:func:`rnnjax.optim.recipe`).

Optimiser: ``optax`` RMSprop as PyTorch's (``decay 0.99``, ``eps`` outside the square
root; the expRNN recipe), Adam or SGD; optional clipping by global norm or per
element before it; the parameters that :func:`rnnjax.optim.label_params` labels
orthogonal (the unconstrained coordinates of orthogonal/unitary parametrisations) get
``lr_orth``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from rnnjax import optim
from rnnjax.cells import parametrize
from rnnjax.io import outputs
from rnnjax.training import checkpointing
from rnnjax.training import distributed as dist
from rnnjax.training.autotuned import engine_used
from rnnjax.training.config import (
    CLIP_MODES,
    OPTIMIZERS,
    Config,
    check_resume,
    orthogonal_cells,
    validate,
)
from rnnjax.training.experiment import (
    CREDIT_SETTINGS,
    Experiment,
    build,
    credit_loss,
    credit_metrics,
    credit_values,
    has_credit,
    initial_state,
    make_model,
    make_optimizer,
    make_task,
    resolve,
    seed_list,
)
from rnnjax.training.metrics import (
    TIMING_KEYS,
    NonFiniteError,
    TensorBoard,
    check_nonfinite,
    format_record,
    load_history,
    make_record,
    write_metrics,
)
from rnnjax.training.update import TrainState


class Result(NamedTuple):
    """What :func:`train` returns: the final stacked state (leading ``(seeds,)`` axis),
    the list of metric records, the experiment and, with ``evaluate_initial``, the
    held-out metrics of the initial state (``(seeds,)`` arrays; None otherwise)."""

    state: TrainState
    history: list
    experiment: Experiment
    initial: dict | None = None


class _Run(NamedTuple):
    """Where a run writes: ``out`` (or None), its checkpoint manager (or None), whether
    this process writes logs and metrics, the data-parallel mesh and the
    writer's lock on ``out`` (or None)."""

    out: str | None
    mngr: Any
    main: bool
    mesh: Any
    lock: Any = None


def _mesh(config):
    """The data-parallel mesh over ``config.devices`` (default: every local device, or
    every device of a multi-process run); one device is a mesh of one, so every task
    (sampled, epochs, stateful) takes the same step path."""
    n = config.devices if config.devices is not None else jax.local_device_count() \
        if jax.process_count() == 1 else jax.device_count()
    mesh = dist.make_mesh(n)
    dist.check_batch(config.batch, mesh)
    return mesh


def _manager(config):
    return checkpointing.manager(config.out, keep=config.keep,
                                 every=config.checkpoint_every or max(config.steps, 1))


def _open_run(config: Config, resume: bool, overwrite: bool = False) -> _Run:
    """Check the run directory (no silent overwrite: a folder holding files needs
    ``resume`` or ``overwrite``; a resumed run must agree with its config.json), lock it
    for this writer and open its checkpoint manager."""
    out, mngr, lock = config.out, None, None
    if out is None and resume:
        raise ValueError("resume=True needs config.out (the run directory)")
    mesh = _mesh(config)  # every check before the folder is touched
    if out is not None:
        has_ckpt = bool(checkpointing.steps(os.path.join(out, "checkpoints")))
        if has_ckpt and not (resume or overwrite):
            raise ValueError(f"out {out!r} already holds checkpoints; pass --resume to "
                             f"continue that run, --overwrite to replace it, or choose "
                             f"another --out")
        if dist.is_main():
            outputs.prepare_out(out, resume, overwrite, command="train",
                                reads=[config.data])
            lock = outputs.lock_out(out)  # the lock first, then the old run goes
        else:
            os.makedirs(out, exist_ok=True)
        try:
            if resume:
                check_resume(config, out, has_ckpt)
            if lock is not None:
                outputs.claim_out(out, "train", overwrite)
            if config.checkpoint_every or resume:
                mngr = _manager(config)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
    return _Run(out, mngr, dist.is_main(), mesh, lock)


def _starting_state(exp: Experiment, run: _Run, resume: bool):
    """``(state, eval batches, history)``: fresh, or restored from the newest verified
    checkpoint (damaged newer ones are reported and set aside), placed on the mesh."""
    state, eval_data = dist.replicate(initial_state(exp), run.mesh)
    history: list = []
    if resume:
        state, history = checkpointing.restore(run.mngr, None, state, set_aside=True)
    start = int(np.asarray(state.step)[0])
    if start > exp.config.steps:
        raise ValueError(f"the checkpoint is at step {start}, beyond "
                         f"steps={exp.config.steps}")
    return state, eval_data, history


def _compile(exp: Experiment, mesh):
    """``(step_fn, eval_fn, floss_fn)`` over the stacked seeds and the mesh (one path for
    one device or many, :func:`rnnjax.training.distributed.data_parallel`);
    ``floss_fn``, the step with gradient flossing, is None unless ``floss_every``."""
    floss = (None if exp.floss_update is None
             else dist.data_parallel(exp._replace(update=exp.floss_update), mesh)[0])
    return (*dist.data_parallel(exp, mesh), floss)


def _eval_values(eval_fn, state, eval_data) -> dict:
    """The held-out metrics of ``state`` as NumPy ``(seeds,)`` arrays (the Jacobian
    norm's log turned into the norm in float64: no underflow)."""
    values = dict(jax.device_get(eval_fn(state, eval_data)))
    if "eval_credit_log_jacobian_norm" in values:
        values["eval_credit_jacobian_norm"] = np.exp(np.asarray(
            values.pop("eval_credit_log_jacobian_norm"), np.float64))
    return values


def _log(exp, state, eval_fn, eval_data, step, rate, elapsed):
    """The record of ``step`` and the state with its logging window reset."""
    count = np.asarray(state.count, np.float64)
    with np.errstate(invalid="ignore"):  # NaN: every step of the window skipped
        values = {"train_loss": np.asarray(state.loss_sum) / count,
                  "train_grad_norm": np.asarray(state.gnorm_sum) / count}
    values.update(_eval_values(eval_fn, state, eval_data))
    values["nonfinite_skipped"] = np.asarray(state.skipped)
    rec = make_record(step, values, exp.task.baseline, rate, elapsed, exp.config.seeds)
    state = state._replace(loss_sum=jnp.zeros_like(state.loss_sum),
                           gnorm_sum=jnp.zeros_like(state.gnorm_sum),
                           count=jnp.zeros_like(state.count))
    return rec, state


def _retrivializer(config, params):
    """``(K, fn)``: every ``K`` steps ``params <- fn(params)``, the dynamic trivialization
    of :func:`rnnjax.parametrize.retrivialize` per seed; ``K = 0`` when the params hold
    no ``"base"`` or ``config.retrivialize_every == 0``."""
    has_base = "frozen" in jax.tree.leaves(optim.label_params(params))
    k = 100 if config.retrivialize_every is None else config.retrivialize_every
    if not (has_base and k):
        return 0, None
    return k, jax.jit(jax.vmap(parametrize.retrivialize))


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or not a file
        return False


def _loop(exp, run, state, eval_data, history, *, progress, print_fn, on_record=None,
          initial=None):
    """Steps ``start+1 .. steps``: train, log every ``log_every``, checkpoint every
    ``checkpoint_every`` and at the end; SIGTERM saves and raises ``Preempted``.  A dict
    ``initial`` receives the held-out metrics of the starting state when it is step 0."""
    config = exp.config
    step_fn, eval_fn, floss_fn = _compile(exp, run.mesh)
    retrivialize_every, retrivialize = _retrivializer(config, state.params)
    start = int(np.asarray(state.step)[0])
    if initial is not None and start == 0:
        initial.update(_eval_values(eval_fn, state, eval_data))
    mngr = run.mngr
    show_bar = progress and run.main and _is_terminal(sys.stderr)
    if progress and run.main and not show_bar and print_fn is None:
        # Not a terminal (a pipe, a log file): one line per log record, no bar.
        def print_fn(line, _prefix=f"{config.task}/{config.cell} "):
            print(_prefix + line, file=sys.stderr, flush=True)
    bar = tqdm(total=config.steps, initial=start, disable=not show_bar,
               file=sys.stderr, desc=f"{config.task}/{config.cell}", dynamic_ncols=True,
               leave=False)
    board = (TensorBoard(run.out) if config.tensorboard and run.out is not None and run.main
             else None)
    t_window = t_start = time.perf_counter()
    n_window = 0
    sigterm = checkpointing.SigtermFlag()
    try:
        for i in range(start + 1, config.steps + 1):
            flossing = floss_fn is not None and (i - 1) % config.floss_every == 0
            state = (floss_fn if flossing else step_fn)(state)
            if retrivialize_every and i % retrivialize_every == 0:
                state = state._replace(params=retrivialize(state.params))
            try:
                check_nonfinite(state.nonfinite, config.max_nonfinite, i, config.seed)
            except NonFiniteError:
                if run.out is not None and run.main:
                    write_metrics(run.out, history)
                raise
            if sigterm.is_set():  # preemption: save, then stop
                if mngr is None and run.out is not None:
                    mngr = _manager(config)
                if mngr is not None:
                    checkpointing.save(mngr, i, state, history, force=True)
                raise checkpointing.Preempted(i, run.out if mngr is not None else None,
                                              sigterm.signum)
            n_window += 1
            bar.update(1)
            if i % config.log_every == 0 or i == config.steps:
                now = time.perf_counter()
                rec, state = _log(exp, state, eval_fn, eval_data, i,
                                  n_window / max(now - t_window, 1e-9), now - t_start)
                history.append(rec)
                bar.set_postfix(train=f"{rec['train_loss']:.4f}", eval=f"{rec['eval_loss']:.4f}")
                if print_fn is not None and run.main:
                    print_fn(format_record(rec, config.task))
                if on_record is not None and run.main:
                    on_record(rec)
                if run.out is not None and run.main:
                    write_metrics(run.out, history)
                    _keep_best(run.out, rec, state)
                if board is not None:
                    board.write(rec)
                t_window, n_window = time.perf_counter(), 0
            if mngr is not None and config.checkpoint_every and i % config.checkpoint_every == 0:
                checkpointing.save(mngr, i, state, history)
        if mngr is not None and (mngr.latest_step() or 0) < config.steps:
            checkpointing.save(mngr, config.steps, state, history, force=True)
        if sigterm.is_set():  # after the last step's check: the run is complete, saved
            raise checkpointing.Preempted(config.steps, run.out if mngr is not None else None,
                                          sigterm.signum)
    finally:
        sigterm.restore()
        bar.close()
        if board is not None:
            board.close()
        if mngr is not None:
            mngr.wait_until_finished()
            mngr.close()
    return state, history


def _rank(rec: dict) -> tuple:
    """Higher is better: ``(valid_accuracy, -valid_loss)``, or ``-valid_loss`` alone for
    a task without accuracy (the char LM's bits per character)."""
    return (rec.get("valid_accuracy", 0.0), -rec["valid_loss"])


def _keep_best(out: str, rec: dict, state) -> bool:
    """Save ``state.params`` in ``out/best`` and ``rec`` in ``out/best.json`` when ``rec``
    has the best ``valid_accuracy`` so far (ties: lower ``valid_loss``; a task without
    accuracy: the lowest ``valid_loss``)."""
    if "valid_loss" not in rec:
        return False
    path = os.path.join(out, "best.json")
    if os.path.exists(path):
        with open(path) as f:
            best = json.load(f)
        if _rank(rec) <= _rank(best):
            return False
    checkpointing.save_params(os.path.join(out, "best"), rec["step"], state.params, keep=1)
    with outputs.atomic_open(path) as f:
        json.dump({k: v for k, v in rec.items() if k != "seeds"}, f, indent=2)
    return True


def train(config: Config, *, resume: bool = False, overwrite: bool = False,
          progress: bool = True, print_fn=None, on_record=None,
          evaluate_initial: bool = False, checked: bool = False) -> Result:
    """Run ``config``; see the module docstring.  Returns a :class:`Result`.

    With ``config.out`` set, writes ``config.json``, ``metrics.jsonl``, ``metrics.csv``
    and ``checkpoints/`` there (each file atomically, :mod:`rnnjax.io.outputs`), holding the
    folder's writer lock.  A folder that already holds files is refused unless
    ``resume=True`` (continue from the latest checkpoint in ``out``: an error if there
    is none, if its config.json is missing or disagrees) or ``overwrite=True``.
    SIGTERM and SIGINT save a checkpoint and raise
    :class:`rnnjax.training.checkpointing.Preempted`.  ``on_record``, if given, is called with
    each metrics record (a dict) as it is logged.  ``evaluate_initial=True`` also
    evaluates the initial state of a run that starts at step 0 (not a resumed one),
    ``Result.initial`` (the held-out metrics per seed, NumPy ``(seeds,)`` arrays; not a
    record of ``metrics.jsonl``).  ``checked=True``: the caller has run
    :func:`rnnjax.training.config.validate` on ``config`` already (the copy job, which
    checks every cell first), so it is not validated again.
    """
    exp = build(config, checked=checked)
    exp = exp._replace(config=engine_used(exp.config, exp.task))  # grad/scan_used
    config = exp.config  # with epochs, permutation and the engine resolved
    if config.tensorboard and config.out is not None:
        TensorBoard.writer_class()  # an optional package missing: refused before any file
    fresh = (config.out is not None and not resume
             and not outputs.holds_files(config.out))
    run = _open_run(config, resume, overwrite)
    try:
        state, eval_data, history = _starting_state(exp, run, resume)
        if resume and print_fn is not None and run.main:
            print_fn(f"resumed from step {int(np.asarray(state.step)[0])} in {run.out}")
        if run.out is not None and run.main:
            config.save(run.out)
        initial = {} if evaluate_initial else None
        state, history = _loop(exp, run, state, eval_data, history, progress=progress,
                               print_fn=print_fn, on_record=on_record, initial=initial)
        if run.out is not None and run.main:
            write_metrics(run.out, history)
    except BaseException:
        if fresh and run.main:  # failed before its first record or checkpoint: a rerun
            outputs.unwrite(run.out, ["config.json"])  # must not need --resume
        raise
    finally:
        if run.lock is not None:
            run.lock.release()
    return Result(state, history, exp, initial or None)


def load_params(out: str, step: int | None = None):
    """The stacked params ``(seeds, ...)`` saved in ``out`` at ``step`` (the newest
    verified one if None)."""
    config = Config.load(out)  # its out is ``out``, wherever the run was made
    target, _ = initial_state(build(config))
    with checkpointing.manager(out, read_only=True) as mngr:
        state, _ = checkpointing.restore(mngr, step, target)
    return state.params


def __getattr__(name):
    # ORTHOGONAL_CELLS: derived from the registry's params (no hand-kept list of names);
    # prefer orthogonal_cells().
    if name == "ORTHOGONAL_CELLS":
        return tuple(orthogonal_cells())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CLIP_MODES", "Config", "Experiment", "NonFiniteError", "OPTIMIZERS", "Result",
           "CREDIT_SETTINGS", "TIMING_KEYS", "TrainState", "build", "credit_loss",
           "credit_metrics", "credit_values", "has_credit", "initial_state", "load_history",
           "load_params", "make_model", "make_optimizer", "make_task", "orthogonal_cells",
           "resolve", "seed_list", "train", "validate", "write_metrics"]
