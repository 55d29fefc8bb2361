"""Fault tolerance: SIGKILL/SIGTERM and resume, damaged checkpoints, non-finite steps."""

import collections
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax.training.config as config_lib
import rnnjax.training.experiment as experiment_lib
from rnnjax.training import checkpointing
from rnnjax.training.runner import (
    TIMING_KEYS,
    Config,
    NonFiniteError,
    TrainState,
    build,
    load_history,
    load_params,
    train,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _deterministic(history):
    return [{k: v for k, v in rec.items() if k not in TIMING_KEYS} for rec in history]


# ---------------------------------------------------------------------------------------
# SIGKILL at three points and SIGTERM at a fourth, each followed by --resume

KILL = dict(task="adding", cell="gru", T=20, hidden=8, batch=8, steps=80, log_every=5,
            eval_batch=8, lr=1e-2, checkpoint_every=10)


# The child waits after writing the metrics record of step ``HOLD`` (or the first after
# it) until the file ``RELEASE`` exists, so it cannot finish before the parent's signal
# lands, however loaded the machine; the signal may still arrive anywhere before the hold.
_HELD_CHILD = """
import os, sys, time
import rnnjax.training.runner as t
from rnnjax import cli
hold, release, original = int(os.environ["HOLD"]), os.environ["RELEASE"], t.write_metrics
def write_metrics(out, history):
    original(out, history)
    global hold
    if history and history[-1]["step"] >= hold:
        hold = float("inf")
        while not os.path.exists(release):
            time.sleep(0.005)
t.write_metrics = write_metrics
sys.exit(cli.main(sys.argv[1:]))
"""


def _cli(out, resume, hold=None):
    c = KILL
    args = ["train", "--task", c["task"], "--cell",
            c["cell"], "--T", str(c["T"]), "--hidden", str(c["hidden"]), "--batch",
            str(c["batch"]), "--steps", str(c["steps"]), "--log-every", str(c["log_every"]),
            "--eval-batch", str(c["eval_batch"]), "--lr", str(c["lr"]), "--checkpoint-every",
            str(c["checkpoint_every"]), "--out", out, "--no-progress"]
    env = {**os.environ, "PYTHONPATH": ROOT}  # XLA_FLAGS as in this process (conftest)
    if hold is None:
        command = [sys.executable, "-m", "rnnjax.cli"]
    else:
        command = [sys.executable, "-c", _HELD_CHILD]
        env.update(HOLD=str(hold), RELEASE=out + f".release-{hold}")
    return subprocess.Popen(command + args + (["--resume"] if resume else []), cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _last_logged(out):
    try:
        with open(os.path.join(out, "metrics.jsonl")) as f:
            return max([json.loads(l)["step"] for l in f if l.strip()] or [0])
    except (OSError, ValueError):
        return 0


def _interrupt(proc, ready, sig, release):
    """Send ``sig`` to ``proc`` as soon as ``ready()``, then create ``release`` (the held
    child goes on to see a SIGTERM); return (returncode, stderr)."""
    while not ready() and proc.poll() is None:
        time.sleep(0.002)
    assert proc.poll() is None, f"the child ended first: rc={proc.returncode}"
    os.kill(proc.pid, sig)
    open(release, "w").close()
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow
def test_sigkill_three_times_and_sigterm_then_resume_is_bitwise(tmp_path):
    out = str(tmp_path / "run")
    ckpt = os.path.join(out, "checkpoints")
    points = [  # (ready, signal, the step the child waits at if no signal came yet)
        # right after the first checkpoint is complete
        (lambda: os.path.exists(os.path.join(ckpt, "10", checkpointing.MANIFEST)),
         signal.SIGKILL, 15),
        # between two checkpoints
        (lambda: _last_logged(out) >= 25, signal.SIGKILL, 25),
        # as soon as orbax has renamed step 40 into place: often before its manifest
        (lambda: os.path.isdir(os.path.join(ckpt, "40")), signal.SIGKILL, 45),
        # preemption
        (lambda: _last_logged(out) >= 55, signal.SIGTERM, 55),
    ]
    stderr = []
    for n, (ready, sig, hold) in enumerate(points):
        rc, err = _interrupt(_cli(out, resume=n > 0, hold=hold), ready, sig,
                             out + f".release-{hold}")
        stderr.append(err)
        if sig == signal.SIGKILL:
            assert rc == -signal.SIGKILL, f"interruption {n}: rc={rc}\n{err[-2000:]}"
        else:
            assert rc == 143, f"SIGTERM: rc={rc}\n{err[-2000:]}"
            assert "SIGTERM at step" in err
            step = int(err.split("SIGTERM at step ")[1].split(":")[0])
            assert 55 <= step < KILL["steps"]
            assert checkpointing.verify(ckpt, step) is None  # saved before exiting
    final = _cli(out, resume=True)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err[-2000:]
    # a step set aside is always reported
    for name in os.listdir(ckpt):
        if name.startswith("bad-"):
            assert any(f"checkpoint step {name.split('-')[1]} " in e for e in stderr + [err])

    with jax.enable_x64(False):  # as in the subprocesses (the test session enables x64)
        ref = train(Config(**KILL), progress=False)
        params = load_params(out)
    jax.tree.map(np.testing.assert_array_equal, params, ref.state.params)
    assert _deterministic(load_history(out)) == _deterministic(ref.history)


# ---------------------------------------------------------------------------------------
# damaged checkpoints

SMALL = dict(task="adding", cell="gru", T=5, hidden=4, batch=8, log_every=2, eval_batch=8,
             lr=1e-2, checkpoint_every=2)


def _biggest_file(step_dir):
    files = [os.path.join(r, n) for r, _, ns in os.walk(step_dir) for n in ns
             if n != checkpointing.MANIFEST]
    return max(files, key=os.path.getsize)


@pytest.mark.slow
def test_truncated_latest_checkpoint_falls_back_to_previous(tmp_path):
    ref = train(Config(**SMALL, steps=8), progress=False)
    out = str(tmp_path / "run")
    train(Config(**SMALL, steps=6, out=out), progress=False)
    ckpt = os.path.join(out, "checkpoints")
    assert checkpointing.steps(ckpt) == [6, 4, 2]
    victim = _biggest_file(os.path.join(ckpt, "6"))
    with open(victim, "r+b") as f:
        f.truncate(os.path.getsize(victim) // 2)
    with pytest.warns(RuntimeWarning, match=r"checkpoint step 6 in .*checkpoints is not "
                                            r"usable: .* has \d+ bytes, \d+ were written"):
        got = train(Config(**SMALL, steps=8, out=out), resume=True, progress=False)
    jax.tree.map(np.testing.assert_array_equal, got.state.params, ref.state.params)
    assert _deterministic(got.history) == _deterministic(ref.history)
    assert os.path.isdir(os.path.join(ckpt, "bad-6-0"))  # set aside, then 6 saved again
    assert checkpointing.verify(ckpt, 6) is None


def test_no_good_checkpoint_names_the_directory(tmp_path):
    out = str(tmp_path / "run")
    train(Config(**SMALL, steps=4, out=out), progress=False)
    ckpt = os.path.join(out, "checkpoints")
    # step 4: one byte flipped (same size); step 2: manifest gone
    victim = _biggest_file(os.path.join(ckpt, "4"))
    with open(victim, "r+b") as f:
        b = f.read(1)
        f.seek(0)
        f.write(bytes([b[0] ^ 0xFF]))
    os.remove(os.path.join(ckpt, "2", checkpointing.MANIFEST))
    with pytest.warns(RuntimeWarning) as caught:
        with pytest.raises(FileNotFoundError, match=r"no good checkpoint in .*run/checkpoints "
                                                   r"\(step 4: .*SHA-256; step 2: no manifest"):
            train(Config(**SMALL, steps=6, out=out), resume=True, progress=False)
    assert [str(w.message).split(" in ")[0] for w in caught] == [
        "checkpoint step 4", "checkpoint step 2"]


def test_verify_reports_what_is_wrong(tmp_path):
    d = tmp_path / "ck"
    (d / "3" / "sub").mkdir(parents=True)
    (d / "3" / "a.bin").write_bytes(b"abcdef")
    (d / "3" / "sub" / "b.bin").write_bytes(b"xyz")
    assert "no manifest" in checkpointing.verify(d, 3)
    checkpointing.write_manifest(d, 3)
    assert checkpointing.verify(d, 3) is None
    (d / "3" / "sub" / "b.bin").write_bytes(b"xyZ")
    assert checkpointing.verify(d, 3) == "sub/b.bin does not match its SHA-256"
    (d / "3" / "sub" / "b.bin").unlink()
    assert checkpointing.verify(d, 3) == "missing files ['sub/b.bin']"
    empty = re.escape(str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError,
                       match=f"no good checkpoint in {empty} \\(it holds no checkpoint\\)"):
        checkpointing.latest_good_step(tmp_path / "empty")


# ---------------------------------------------------------------------------------------
# non-finite losses and gradients

def test_nonfinite_batch_skips_the_update_and_is_counted():
    exp = build(Config(**SMALL, steps=2))
    update = jax.jit(exp.update)
    s0 = jax.jit(exp.init)(jnp.asarray(0, jnp.int32))
    xs, ys = exp.batch(s0)
    s1 = update(s0, (xs.at[0, 0, 0].set(jnp.nan), ys))
    jax.tree.map(np.testing.assert_array_equal, s1.params, s0.params)
    jax.tree.map(np.testing.assert_array_equal, s1.opt_state, s0.opt_state)
    assert (int(s1.step), int(s1.nonfinite), int(s1.skipped), int(s1.count)) == (1, 1, 1, 0)
    assert float(s1.loss_sum) == 0.0 and float(s1.gnorm_sum) == 0.0
    good = update(s0, (xs, ys))
    np.testing.assert_array_equal(s1.key, good.key)  # the data stream moves on regardless
    xs2, ys2 = exp.batch(s1)
    s2 = update(s1, (xs2, ys2))
    assert (int(s2.nonfinite), int(s2.skipped), int(s2.count)) == (0, 1, 1)
    assert not np.array_equal(s2.params["cell"]["W_hh"], s0.params["cell"]["W_hh"])
    assert np.isfinite(float(s2.loss_sum)) and float(s2.loss_sum) > 0


def _poison(monkeypatch, rate):
    """Make the training batches NaN with probability ``rate``, decided by their key."""
    make = config_lib.make_task

    def make_task(config):
        task = make(config)

        def sample(key, batch):
            xs, ys = task.sample(key, batch)
            bad = jax.random.uniform(jax.random.fold_in(key, 7)) < rate
            return jnp.where(bad, jnp.nan, xs), ys

        return task._replace(sample=sample)

    for module in (config_lib, experiment_lib):  # where the runner looks it up
        monkeypatch.setattr(module, "make_task", make_task)


def test_injected_nan_gradients_are_skipped_and_counted(monkeypatch):
    _poison(monkeypatch, 0.3)
    steps = 12
    r = train(Config(**{**SMALL, "checkpoint_every": 0, "log_every": 6}, steps=steps,
                     max_nonfinite=0), progress=False)
    # the same decisions, replayed from the run's key stream
    key = jax.random.split(jax.random.key(0))[1]
    expected = []
    for _ in range(steps):
        key, k_batch = jax.random.split(key)
        expected.append(bool(jax.random.uniform(jax.random.fold_in(k_batch, 7)) < 0.3))
    assert 0 < sum(expected) < steps
    assert [h["nonfinite_skipped"] for h in r.history] == [sum(expected[:6]), sum(expected)]
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(r.state.params))
    assert all(np.isfinite(h["train_loss"]) for h in r.history)


def test_persistent_nans_stop_the_run_naming_the_step(monkeypatch, tmp_path):
    _poison(monkeypatch, 2.0)  # every batch
    with pytest.raises(NonFiniteError, match=r"step 3: the loss or gradient was non-finite "
                                             r"for 3 consecutive steps \(steps 1\.\.3, seed 0\)"):
        train(Config(**SMALL, steps=10, max_nonfinite=3, out=str(tmp_path / "r")),
              progress=False)
    # params stayed finite (every update skipped): the step-2 checkpoint holds the init
    saved = load_params(str(tmp_path / "r"), 2)
    init = jax.jit(build(Config(**SMALL, steps=10)).init)(jnp.asarray(0, jnp.int32)).params
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[0], b), saved, init)


def test_nonfinite_params_are_never_checkpointed():
    with pytest.raises(FloatingPointError, match=r"params\['cell'\]\['b'\] holds non-finite"):
        checkpointing.check_finite({"cell": {"W": np.ones(2), "b": np.array([0.0, np.inf])}})
    checkpointing.check_finite({"step": np.int32(3), "w": np.zeros(3)})
    with pytest.raises(ValueError, match="max_nonfinite must be a non-negative integer"):
        train(Config(**SMALL, steps=2, max_nonfinite=-1), progress=False)


def test_a_checkpoint_from_before_train_state_had_a_carry_restores(tmp_path):
    # Runs checkpointed before ``TrainState.carry`` existed saved nine fields; resuming
    # them must restore (carry None), not fail on orbax's tree-structure check.
    fields = [f for f in TrainState._fields if f != "carry"]
    Older = collections.namedtuple("TrainState", fields)
    values = {f: np.full((2,), i, np.float32) for i, f in enumerate(fields)}
    values["params"] = {"cell": {"W": np.arange(6.0, dtype=np.float32).reshape(2, 3)}}
    with checkpointing.manager(tmp_path) as mngr:
        checkpointing.save(mngr, 5, Older(**values), [{"step": 5}], force=True)
    like = TrainState(**jax.tree.map(np.zeros_like, values), carry=None)
    with checkpointing.manager(tmp_path) as mngr:
        state, history = checkpointing.restore(mngr, None, like)
    assert isinstance(state, TrainState) and state.carry is None
    np.testing.assert_array_equal(state.params["cell"]["W"], values["params"]["cell"]["W"])
    np.testing.assert_array_equal(state.skipped, values["skipped"])
    assert history == [{"step": 5}]
