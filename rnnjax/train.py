r"""The training runner: one jitted train step, many seeds in one program, metrics,
checkpoints and resumption.

A run is described by a frozen :class:`Config` (what the ``rnnjax train`` command fills
and saves as ``config.json`` beside the run).  :func:`train` then

1. checks the configuration before anything is built (:func:`validate`: unknown task or
   cell names list the valid ones; ``T < 1``, ``hidden <= 0``, a missing data file are
   named);
2. builds the task (:mod:`rnnjax.tasks`) and the model (cell + linear readout,
   :mod:`rnnjax.models`);
3. initialises one :class:`TrainState` per seed ``seed, seed+1, ..., seed+seeds-1``
   and stacks them: every array has a leading ``(seeds,)`` axis and the whole train step
   is ``jax.vmap``-ed over it (so ``--seeds 4`` is four independent runs in one program);
4. runs the jitted step ``steps`` times.  Each step draws a fresh batch from the run's
   PRNG key (``key, k = split(key)``), so the data stream is a pure function of the seed;
5. every ``log_every`` steps writes one record to ``metrics.jsonl`` and ``metrics.csv``:
   ``loss`` (mean training loss since the last record), ``grad_norm`` (mean global
   gradient norm), ``eval_*`` (the task's metrics on a held-out batch fixed by the
   seed), ``grad_norm_<layer>`` (gradient norm per top-level param group on that
   batch), ``orth_error`` (``||W^H W - I||_F`` of the recurrent matrix, for cells with
   orthogonal parameters), ``baseline`` and ``steps_per_sec``; with several seeds every
   metric is the mean over seeds, ``<name>_std`` the standard deviation and
   ``seeds`` the per-seed values;
6. saves ``(params, optimizer state, PRNG key, step, metric accumulators)`` and the
   metric history with an orbax ``CheckpointManager`` every ``checkpoint_every`` steps
   (keeping the last ``keep``) and at the end; ``resume=True`` restores the latest and
   continues, which gives bitwise the same parameters and metrics as an uninterrupted
   run on CPU.

Scale-out and faults (:mod:`rnnjax.distributed`, :mod:`rnnjax.checkpointing`): with
several devices (``Config.devices``, default all local ones) or processes the step runs
data-parallel over a ``("data",)`` mesh; checkpoints are verified on resume (a damaged
newest one is reported and the previous one used); a step with a non-finite loss or
gradient is skipped and counted (``nonfinite_skipped``), ``max_nonfinite`` consecutive
ones stop the run (:class:`NonFiniteError`); SIGTERM saves a checkpoint and raises
:class:`rnnjax.checkpointing.Preempted`.

Optimiser: ``optax`` RMSprop as PyTorch's (``decay 0.99``, ``eps`` outside the square
root; the expRNN recipe), Adam or SGD; optional clipping by global norm or per
element before it; the parameters that :func:`rnnjax.optim.label_params` labels
orthogonal (the unconstrained coordinates of orthogonal/unitary parametrisations) get
``lr_orth``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnnjax import analysis, baselines, bptt, optim
from rnnjax import cells as cells_lib
from rnnjax import checkpointing
from rnnjax import distributed as dist
from rnnjax import tasks as tasks_lib
from rnnjax.checks import check_choice, check_positive_int
from rnnjax.models import Model, cell_with_readout

OPTIMIZERS = optim.OPTIMIZERS
CLIP_MODES = ("global_norm", "element")

# Names of the orthogonal / unitary cells (``rnnjax.cells.orthogonal`` and
# ``rnnjax.cells.unitary``); those present in ``rnnjax.cells.REGISTRY`` join the copy job.
ORTHOGONAL_CELLS = ("exprnn", "scornn", "householder", "urnn", "eunn", "fcurnn")

@dataclass(frozen=True)
class Config:
    """Everything that defines a run (saved as ``config.json``).

    ``T`` is the copy delay, the adding-problem length or the char-LM window (ignored by
    pixel MNIST, whose length is 784).  ``lr_orth=None`` trains every parameter with
    ``lr``.  ``clip=None`` disables clipping.  ``checkpoint_every=0`` saves no checkpoint;
    otherwise one is also saved at the last step.  ``cell_options`` are extra keyword arguments of the cell
    factory as ``(("init", "henaff"),)`` pairs.  ``grad="manual"`` trains with the
    hand-written BPTT of :mod:`rnnjax.bptt` (Elman, LSTM and GRU cells; the same gradient,
    0.7-0.95x the time on a 2-core CPU, see benchmarks/README.md).
    """

    task: str = "copy"
    cell: str = "lstm"
    T: int = 100
    hidden: int = 64
    batch: int = 64
    steps: int = 1000
    lr: float = 1e-3
    lr_orth: Optional[float] = None
    optimizer: str = "rmsprop"
    clip: Optional[float] = None
    clip_mode: str = "global_norm"
    seed: int = 0
    seeds: int = 1
    log_every: int = 50
    eval_batch: int = 256
    checkpoint_every: int = 0
    keep: int = 3
    out: Optional[str] = None
    data: Optional[str] = None
    variant: str = "arjovsky"
    permutation_seed: int = 0
    cell_options: tuple = field(default_factory=tuple)
    devices: Optional[int] = None
    max_nonfinite: int = 10
    grad: str = "auto"

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["cell_options"] = [list(kv) for kv in self.cell_options]
        return d

    @classmethod
    def from_json(cls, d: dict) -> "Config":
        d = dict(d)
        d["cell_options"] = tuple(tuple(kv) for kv in d.get("cell_options", ()))
        return cls(**d)


# Fields that must agree between a run and the checkpoint it resumes.
_RESUME_FIELDS = ("task", "cell", "T", "hidden", "batch", "lr", "lr_orth", "optimizer",
                  "clip", "clip_mode", "seed", "seeds", "log_every", "eval_batch",
                  "variant", "permutation_seed", "cell_options")


def validate(config: Config) -> None:
    """Check ``config`` before anything is built; raise ``ValueError`` naming the field."""
    if not isinstance(config, Config):
        raise TypeError(f"config must be an rnnjax.train.Config, got {type(config).__name__}")
    check_choice("task", config.task, tasks_lib.TASKS)
    check_choice("cell", config.cell, {**cells_lib.REGISTRY, **baselines.MODELS})
    for name in ("T", "hidden", "batch", "seeds", "log_every", "eval_batch", "keep"):
        check_positive_int(name, getattr(config, name))
    for name in ("steps", "checkpoint_every", "seed"):
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    if not (isinstance(config.lr, (int, float)) and config.lr > 0):
        raise ValueError(f"lr must be a positive number, got {config.lr!r}")
    if config.lr_orth is not None and not config.lr_orth > 0:
        raise ValueError(f"lr_orth must be a positive number or None, got {config.lr_orth!r}")
    check_choice("optimizer", config.optimizer, OPTIMIZERS)
    check_choice("clip_mode", config.clip_mode, CLIP_MODES)
    if config.clip is not None and not config.clip > 0:
        raise ValueError(f"clip must be a positive number or None, got {config.clip!r}")
    if config.devices is not None:
        check_positive_int("devices", config.devices)
    if isinstance(config.max_nonfinite, bool) or not isinstance(config.max_nonfinite, int) \
            or config.max_nonfinite < 0:
        raise ValueError(f"max_nonfinite must be a non-negative integer, got "
                         f"{config.max_nonfinite!r}")
    check_choice("grad", config.grad, ("auto", "manual"))
    if config.grad == "manual":
        if config.cell in baselines.MODELS:
            raise ValueError(f"grad='manual' needs a recurrent cell with a hand-written BPTT "
                             f"(cell.backward), got the baseline {config.cell!r}")
        bptt.check_manual(cells_lib.make(config.cell, config.hidden,
                                         **dict(config.cell_options)))
    if config.task == "adding" and config.T < 2:
        raise ValueError(f"T must be >= 2 for the adding problem, got {config.T}")


def make_task(config: Config):
    return tasks_lib.make(config.task, T=config.T, data=config.data, variant=config.variant,
                          permutation_seed=config.permutation_seed)


def make_model(config: Config, task) -> Model:
    """Cell + linear readout, or a non-recurrent baseline (:mod:`rnnjax.baselines`:
    ``wavenet``, ``attention``) of width ``hidden``."""
    if config.cell in baselines.MODELS:
        return baselines.make(config.cell, task.input_size, task.output_size, task.readout,
                              hidden=config.hidden, **dict(config.cell_options))
    cell = cells_lib.make(config.cell, config.hidden, **dict(config.cell_options))
    return cell_with_readout(cell, task.input_size, task.output_size, task.readout,
                             grad=config.grad)


def make_optimizer(config: Config) -> optax.GradientTransformation:
    """The optimiser of ``config``: :func:`rnnjax.optim.recipe` (the orthogonal/unitary
    parameters get ``lr_orth``, or ``lr`` when it is None), after per-element clipping
    when ``clip_mode="element"``."""
    global_clip = config.clip if config.clip_mode == "global_norm" else None
    tx = optim.recipe(config.optimizer, lr=config.lr, lr_orth=config.lr_orth or config.lr,
                      clip=global_clip)
    if config.clip is not None and config.clip_mode == "element":
        tx = optax.chain(optax.clip(config.clip), tx)
    return tx


class TrainState(NamedTuple):
    """State of one seed's run (leaves gain a leading ``(seeds,)`` axis when stacked).

    ``key`` is raw key data (``jax.random.key_data``) so it checkpoints as an array;
    ``loss_sum``/``gnorm_sum``/``count`` accumulate the current logging window (finite
    steps only); ``nonfinite`` counts the current run of consecutive steps whose loss or
    gradient was not finite (their updates are skipped) and ``skipped`` all of them.
    """

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array
    loss_sum: jax.Array
    gnorm_sum: jax.Array
    count: jax.Array
    nonfinite: jax.Array
    skipped: jax.Array


class Experiment(NamedTuple):
    """The built pieces of a run: pure functions over one seed's state."""

    config: Config
    task: Any
    model: Model
    optimizer: optax.GradientTransformation
    init: Any  # seed -> TrainState
    step: Any  # TrainState -> TrainState
    evaluate: Any  # (TrainState, eval batch) -> dict of metrics
    eval_batch: Any  # seed -> held-out (xs, ys)
    orthogonal: bool
    batch: Any = None  # key data -> the training batch (xs, ys) step draws from it
    update: Any = None  # (TrainState, (xs, ys)) -> TrainState; step = update(s, batch(s.key))


def build(config: Config) -> Experiment:
    """Validate ``config`` and build the task, model, optimiser and pure step functions."""
    validate(config)
    task = make_task(config)
    model = make_model(config, task)
    opt = make_optimizer(config)

    probe = jax.eval_shape(model.init, jax.random.key(0))
    has_orth = "orthogonal" in jax.tree.leaves(optim.label_params(probe))
    orthogonal = (has_orth or config.cell in ORTHOGONAL_CELLS) and \
        model.cell is not None and model.cell.recurrent_matrix is not None

    def init(seed):
        k_init, k_data = jax.random.split(jax.random.key(seed))
        # The runner trains in float32 whatever jax_enable_x64 says (a cell drawing an
        # array without a dtype would otherwise get float64 params under x64).
        params = jax.tree.map(
            lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a,
            model.init(k_init))
        z = jnp.zeros((), jnp.float32)
        i0 = jnp.zeros((), jnp.int32)
        return TrainState(params, opt.init(params), jax.random.key_data(k_data),
                          i0, z, z, i0, i0, i0)

    def loss_fn(params, xs, ys):
        return task.loss(model.apply(params, task.encode(xs)), ys)

    def batch(key_data):
        _, k_batch = jax.random.split(jax.random.wrap_key_data(key_data))
        return task.sample(k_batch, config.batch)

    def update(state: TrainState, data) -> TrainState:
        key, _ = jax.random.split(jax.random.wrap_key_data(state.key))
        xs, ys = data
        loss, grads = jax.value_and_grad(loss_fn)(state.params, xs, ys)
        gnorm = optax.tree.norm(grads)
        updates, opt_state = opt.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        # A non-finite loss or gradient norm skips the update (params and optimiser
        # state stay as they were) and is counted.
        ok = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        params, opt_state = jax.tree.map(lambda new, old: jnp.where(ok, new, old),
                                         (params, opt_state), (state.params, state.opt_state))
        zero = jnp.zeros((), jnp.float32)
        return TrainState(params, opt_state, jax.random.key_data(key), state.step + 1,
                          state.loss_sum + jnp.where(ok, loss.astype(jnp.float32), zero),
                          state.gnorm_sum + jnp.where(ok, gnorm.astype(jnp.float32), zero),
                          state.count + ok.astype(jnp.int32),
                          jnp.where(ok, 0, state.nonfinite + 1).astype(jnp.int32),
                          state.skipped + (~ok).astype(jnp.int32))

    def step(state: TrainState) -> TrainState:
        return update(state, batch(state.key))

    def eval_batch(seed):
        # A held-out batch fixed by the seed, from a key the training stream never uses.
        return task.eval_sample(jax.random.fold_in(jax.random.key(seed), 1 << 20),
                                config.eval_batch)

    def evaluate(state: TrainState, batch):
        xs, ys = batch
        out = {f"eval_{k}": v for k, v in
               task.metrics(model.apply(state.params, task.encode(xs)), ys).items()}
        if orthogonal:
            out["orth_error"] = analysis.orthogonality_error(model.cell, state.params["cell"])
        grads = jax.grad(loss_fn)(state.params, xs, ys)
        for name, norm in analysis.grad_norms_by_layer(grads).items():
            if name != "global":  # e.g. grad_norm_cell, grad_norm_readout on held-out data
                out["grad_norm_" + name.strip("[]'")] = norm
        return out

    return Experiment(config, task, model, opt, init, step, evaluate, eval_batch, orthogonal,
                      batch, update)


def _stack(trees):
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def initial_state(exp: Experiment):
    """The stacked initial states and held-out batches of the run's seeds (each seed's
    built by the same jitted function, so a seed's state does not depend on the others)."""
    init, data = jax.jit(exp.init), jax.jit(exp.eval_batch)
    seeds = seed_list(exp.config)
    return (_stack([init(jnp.asarray(s, jnp.int32)) for s in seeds]),
            _stack([data(jnp.asarray(s, jnp.int32)) for s in seeds]))


class Result(NamedTuple):
    """What :func:`train` returns: the final stacked state (leading ``(seeds,)`` axis),
    the list of metric records and the experiment."""

    state: TrainState
    history: list
    experiment: Experiment


def seed_list(config: Config) -> list:
    return [config.seed + i for i in range(config.seeds)]


def _record(step, window, evals, baseline, rate, elapsed, n_seeds):
    """One metrics record: means over seeds, ``_std`` spreads, per-seed lists."""
    values = {"loss": window[0], "grad_norm": window[1], **evals}
    rec = {"step": int(step)}
    per_seed = {}
    for k, v in values.items():
        v = np.asarray(v, np.float64).reshape(n_seeds)
        rec[k] = float(v.mean())
        rec[f"{k}_std"] = float(v.std())
        per_seed[k] = [float(x) for x in v]
    if baseline is not None:
        rec["baseline"] = float(baseline)
        rec["eval_loss_over_baseline"] = rec["eval_loss"] / float(baseline)
    rec["steps_per_sec"] = float(rate)
    rec["time"] = float(elapsed)
    if n_seeds > 1:
        rec["seeds"] = per_seed
    return rec


# Keys of a record that are not deterministic (timings).
TIMING_KEYS = ("steps_per_sec", "time")


def write_metrics(out: str, history: list) -> None:
    """(Re)write ``metrics.jsonl`` and ``metrics.csv`` in ``out`` from ``history``."""
    with open(os.path.join(out, "metrics.jsonl"), "w") as f:
        for rec in history:
            f.write(json.dumps(rec) + "\n")
    cols = []
    for rec in history:
        cols += [k for k in rec if k != "seeds" and k not in cols]
    with open(os.path.join(out, "metrics.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for rec in history:
            w.writerow({k: v for k, v in rec.items() if k != "seeds"})


def _checkpoint_manager(out, config):
    import orbax.checkpoint as ocp
    options = ocp.CheckpointManagerOptions(
        max_to_keep=config.keep,
        save_interval_steps=config.checkpoint_every or max(config.steps, 1),
        enable_async_checkpointing=False)
    return ocp.CheckpointManager(os.path.abspath(os.path.join(out, "checkpoints")),
                                 options=options, item_names=("state", "history"))


def _save(mngr, step, state, history, force=False):
    import orbax.checkpoint as ocp
    checkpointing.check_finite(state.params)  # never checkpoint non-finite params
    if mngr.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                               history=ocp.args.JsonSave(history)),
                 force=force):
        mngr.wait_until_finished()
        checkpointing.write_manifest(mngr.directory, step)  # marks the save complete


def _restore(mngr, step, target):
    import orbax.checkpoint as ocp
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    got = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                                     history=ocp.args.JsonRestore()))
    return got["state"], list(got["history"])


def train(config: Config, *, resume: bool = False, progress: bool = True,
          print_fn=None) -> Result:
    """Run ``config``; see the module docstring.  Returns a :class:`Result`.

    With ``config.out`` set, writes ``config.json``, ``metrics.jsonl``, ``metrics.csv``
    and ``checkpoints/`` there.  ``resume=True`` continues from the latest checkpoint in
    ``out`` (an error if there is none or the saved config disagrees).
    """
    exp = build(config)
    seeds = seed_list(config)
    state, eval_data = initial_state(exp)
    mesh = _mesh(config)  # data parallelism over devices and processes (None: one device)
    if mesh is not None:
        state, eval_data = dist.replicate((state, eval_data), mesh)
    main = dist.is_main()  # only process 0 logs and writes files other than checkpoints
    history: list = []
    out = config.out
    mngr = None
    if out is not None:
        os.makedirs(out, exist_ok=True)
    if out is not None and (config.checkpoint_every or resume):
        ckpt_dir = os.path.join(out, "checkpoints")
        has_ckpt = os.path.isdir(ckpt_dir) and any(
            n.isdigit() for n in os.listdir(ckpt_dir))
        if resume:
            _check_resume(config, out, has_ckpt)
        elif has_ckpt:
            raise ValueError(f"out {out!r} already holds checkpoints; pass --resume to "
                             f"continue that run or choose another --out")
        mngr = _checkpoint_manager(out, config)
        if resume:  # the newest verified step; damaged newer ones are reported, set aside
            step0 = checkpointing.latest_good_step(mngr.directory)
            mngr.reload()
            state, history = _restore(mngr, step0, state)
    elif resume:
        raise ValueError("resume=True needs config.out (the run directory)")
    if out is not None and main:
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(config.to_json(), f, indent=2)

    start = int(np.asarray(state.step)[0])
    if start > config.steps:
        raise ValueError(f"the checkpoint is at step {start}, beyond steps={config.steps}")

    if mesh is None:
        step_fn = jax.jit(jax.vmap(exp.step), donate_argnums=0)
        eval_fn = jax.jit(jax.vmap(exp.evaluate))
    else:
        step_fn, eval_fn = dist.data_parallel(exp, mesh)
    baseline = exp.task.baseline

    from tqdm.auto import tqdm
    bar = tqdm(total=config.steps, initial=start, disable=not (progress and main),
               file=sys.stderr,
               desc=f"{config.task}/{config.cell}", dynamic_ncols=True, leave=False)
    t_window, t_start = time.perf_counter(), time.perf_counter()
    n_window = 0
    sigterm = checkpointing.SigtermFlag()
    try:
        for i in range(start + 1, config.steps + 1):
            state = step_fn(state)
            _check_nonfinite(config, state, i, out, history if main else None)
            if sigterm.is_set():  # preemption: save, then stop
                mngr = mngr or (_checkpoint_manager(out, config) if out is not None else None)
                if mngr is not None:
                    _save(mngr, i, state, history, force=True)
                raise checkpointing.Preempted(i, out if mngr is not None else None)
            n_window += 1
            bar.update(1)
            if i % config.log_every == 0 or i == config.steps:
                count = np.asarray(state.count, np.float64)
                with np.errstate(invalid="ignore"):  # NaN: every step of the window skipped
                    window = (np.asarray(state.loss_sum) / count,
                              np.asarray(state.gnorm_sum) / count)
                evals = jax.device_get(eval_fn(state, eval_data))
                now = time.perf_counter()
                rate = n_window / max(now - t_window, 1e-9)
                evals = {**evals, "nonfinite_skipped": np.asarray(state.skipped)}
                rec = _record(i, window, evals, baseline, rate, now - t_start, len(seeds))
                history.append(rec)
                state = state._replace(loss_sum=jnp.zeros_like(state.loss_sum),
                                       gnorm_sum=jnp.zeros_like(state.gnorm_sum),
                                       count=jnp.zeros_like(state.count))
                bar.set_postfix(loss=f"{rec['loss']:.4f}", eval=f"{rec['eval_loss']:.4f}")
                if print_fn is not None and main:
                    print_fn(_format(rec))
                if out is not None and main:
                    write_metrics(out, history)
                t_window, n_window = time.perf_counter(), 0
            if mngr is not None and config.checkpoint_every and i % config.checkpoint_every == 0:
                _save(mngr, i, state, history)
        if mngr is not None and (mngr.latest_step() or 0) < config.steps:
            _save(mngr, config.steps, state, history, force=True)
    finally:
        sigterm.restore()
        bar.close()
        if mngr is not None:
            mngr.wait_until_finished()
            mngr.close()
    if out is not None and main:
        write_metrics(out, history)
    return Result(state, history, exp)


def _mesh(config):
    """The data-parallel mesh, or None for one device in one process."""
    n = config.devices if config.devices is not None else jax.local_device_count() \
        if jax.process_count() == 1 else jax.device_count()
    if n == 1 and jax.process_count() == 1:
        return None
    mesh = dist.make_mesh(n)
    dist.check_batch(config.batch, mesh)
    return mesh


class NonFiniteError(FloatingPointError):
    """The loss or gradient was non-finite for ``max_nonfinite`` consecutive steps."""


def _check_nonfinite(config, state, step, out, history):
    if not config.max_nonfinite:
        return
    run = np.asarray(state.nonfinite).reshape(-1)
    if run.max() < config.max_nonfinite:
        return
    if out is not None and history is not None:
        write_metrics(out, history)
    bad = [config.seed + i for i in np.flatnonzero(run >= config.max_nonfinite)]
    raise NonFiniteError(
        f"step {step}: the loss or gradient was non-finite for {config.max_nonfinite} "
        f"consecutive steps (steps {step - config.max_nonfinite + 1}..{step}, seed "
        f"{', '.join(map(str, bad))}); their updates were skipped and the run stops here "
        f"(max_nonfinite={config.max_nonfinite}). Lower the learning rate, clip the "
        f"gradients (--clip) or raise --max-nonfinite")


def _format(rec):
    parts = [f"step {rec['step']:6d}", f"loss {rec['loss']:.4f}",
             f"eval {rec['eval_loss']:.4f}"]
    if "baseline" in rec:
        parts.append(f"(baseline {rec['baseline']:.4f})")
    if "eval_accuracy" in rec:
        parts.append(f"acc {rec['eval_accuracy']:.3f}")
    parts.append(f"{rec['steps_per_sec']:.1f} steps/s")
    return "  ".join(parts)


def _check_resume(config, out, has_ckpt):
    if not has_ckpt:
        raise ValueError(f"resume: no checkpoint in {os.path.join(out, 'checkpoints')!r}")
    path = os.path.join(out, "config.json")
    if os.path.exists(path):
        with open(path) as f:
            saved = Config.from_json(json.load(f))
        diff = [k for k in _RESUME_FIELDS if getattr(saved, k) != getattr(config, k)]
        if diff:
            raise ValueError("resume: the run in " + repr(out) + " was made with " + ", ".join(
                f"{k}={getattr(saved, k)!r}" for k in diff) + "; this call has " + ", ".join(
                f"{k}={getattr(config, k)!r}" for k in diff))


def load_history(out: str) -> list:
    """Read ``metrics.jsonl`` of a run directory."""
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_params(out: str, step: Optional[int] = None):
    """The stacked params ``(seeds, ...)`` saved in ``out`` at ``step`` (latest if None)."""
    with open(os.path.join(out, "config.json")) as f:
        config = Config.from_json(json.load(f))
    exp = build(config)
    target, _ = initial_state(exp)
    mngr = _checkpoint_manager(out, config)
    try:
        if step is None:
            step = checkpointing.latest_good_step(mngr.directory)
            mngr.reload()
        state, _ = _restore(mngr, step, target)
    finally:
        mngr.close()
    return state.params


__all__ = ["CLIP_MODES", "Config", "Experiment", "NonFiniteError", "OPTIMIZERS",
           "ORTHOGONAL_CELLS", "Result", "TrainState", "build", "load_history", "load_params",
           "make_optimizer", "train", "validate", "write_metrics"]
