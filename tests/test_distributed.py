"""Data parallelism: 8 virtual CPU devices and two jax.distributed processes give the
single-device run's numbers; the state is replicated and the batch split as stated.

The device count of a CPU backend is fixed when JAX starts, so the multi-device runs
happen in fresh interpreters (subprocesses)."""

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time

import jax
import numpy as np
import pytest

from rnnjax.training import distributed as dist
from rnnjax.training.runner import TIMING_KEYS, Config, load_history, load_params, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(task="adding", cell="gru", T=5, hidden=4, batch=16, steps=6, log_every=2,
             eval_batch=16, lr=1e-2)

EIGHT_DEVICES = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 8)
    import numpy as np
    from jax.sharding import PartitionSpec as P
    from rnnjax.training import distributed as dist
    from rnnjax.training.runner import Config, build, initial_state, train

    small = json.loads(sys.argv[1])
    out = {"device_count": jax.device_count()}
    for n in (1, 8):
        r = train(Config(**small, seeds=2, devices=n), progress=False)
        out[n] = {"loss": [h["train_loss"] for h in r.history],
                  "eval": [h["eval_loss"] for h in r.history],
                  "params": [np.asarray(x).tolist() for x in jax.tree.leaves(r.state.params)]}
        if n == 8:
            leaves = jax.tree.leaves(r.state)
            out["state_specs"] = sorted({str(x.sharding.spec) for x in leaves})
            out["state_devices"] = sorted({len(x.sharding.device_set) for x in leaves})
            out["state_replicated"] = all(x.sharding.is_fully_replicated for x in leaves)
    # the global batch as the step receives it
    mesh = dist.make_mesh(8)
    exp = build(Config(**small, seeds=2, devices=8))
    state, _ = initial_state(exp)
    xs, ys = jax.device_get(jax.jit(jax.vmap(exp.batch))(state))
    data = dist.batch_sharding(mesh, 1)
    gx = dist.global_batch(dist.process_slice(xs, data), data)
    out["batch_spec"] = str(gx.sharding.spec)
    out["shard_shapes"] = sorted({tuple(s.data.shape) for s in gx.addressable_shards})
    out["batch_equal"] = bool(np.array_equal(np.asarray(gx), xs))
    print("RESULT " + json.dumps(out))
""")


def _run(args, timeout=240, env=None):
    env = {**os.environ, "PYTHONPATH": ROOT, **(env or {})}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


# Two residual blocks (layer norm, MLP, dropout) around the GRU: the deep model's
# params, dropout keys and seeds on eight devices, and the sharding of the state.  Plain
# SGD: Adam divides m by sqrt(v), and where a gradient is near zero that quotient
# carries the gradient's rounding at full size (with Adam, one weight of a (2, 12, 4)
# leaf was 1.4e-6 apart after six steps, 7.8e-6 after two, AMD EPYC); with SGD
# the update is the gradient times lr and eight devices must match one to 1e-5.
DEEP = dict(SMALL, depth=2, d_model=4, mlp=1.0, norm="layer", dropout=0.2,
            optimizer="sgd", lr=0.1)


@pytest.mark.slow
def test_eight_virtual_devices_match_one_device():
    p = _run([sys.executable, "-c", EIGHT_DEVICES, json.dumps(DEEP)])
    assert p.returncode == 0, p.stderr[-3000:]
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["device_count"] == 8
    one, eight = out["1"], out["8"]
    np.testing.assert_allclose(eight["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(eight["eval"], one["eval"], rtol=1e-5)
    for a, b in zip(eight["params"], one["params"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert one["loss"][0] != one["loss"][-1]  # it trained
    # params, optimizer state, keys, counters: replicated on all 8 devices
    assert out["state_replicated"] and out["state_specs"] == ["P()"]
    assert out["state_devices"] == [8]
    # the batch (seeds=2, batch=16, T, 2) is split over its batch axis, 2 rows a device
    assert out["batch_spec"] == "P(None, 'data')"
    assert out["shard_shapes"] == [[2, 2, SMALL["T"], 2]]
    assert out["batch_equal"]


# An epoch task (a data set read in the epoch order) and a stateful task (the char LM's
# windows, the carry in the state): the step the runner compiles, on 1 and 2 devices.
TEXT = "abcd efg\n" * 3 + "the cat sat on a mat, a bad cab.\n" * 30
EVERY_TASK = textwrap.dedent("""
    import json, sys
    import jax
    jax.config.update("jax_num_cpu_devices", 2)
    import numpy as np
    from rnnjax.training import distributed as dist
    from rnnjax.training.runner import Config, build, initial_state

    cases, steps = json.loads(sys.argv[1]), 3
    out = {"device_count": jax.device_count()}
    for name, c in cases.items():
        exp = build(Config(**c, seeds=2))
        for n in (1, 2):
            mesh = dist.make_mesh(n)
            state, _ = dist.replicate(initial_state(exp), mesh)
            step_fn, _ = dist.data_parallel(exp, mesh)
            start = [np.asarray(x) for x in jax.tree.leaves(state.params)]
            for _ in range(steps):
                state = step_fn(state)
            leaves = jax.tree.leaves(state)
            out[f"{name}/{n}"] = {
                "moved": max(float(np.max(np.abs(np.asarray(x) - s)))
                             for x, s in zip(jax.tree.leaves(state.params), start)),
                "state": [np.asarray(x).tolist() for x in leaves],
                "devices": sorted({len(x.sharding.device_set) for x in leaves}),
                "replicated": all(x.sharding.is_fully_replicated for x in leaves)}
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow
def test_epoch_and_stateful_tasks_on_two_devices_match_one_device(tmp_path):
    """One step path: a data set trained by epochs (digits, 2 steps an epoch; the third
    starts epoch 2's order) and the stateful char LM
    (carry passed across windows) run the runner's data-parallel step on a mesh of 2
    virtual CPU devices and give the 1-device state after 3 steps.

    float32, not bitwise: on 2 devices the gradient is the mean of two half-batch
    partial sums (an all-reduce), a different summation order than one device's, so
    the gradient differs by a few ulps (measured: params and carry at most 6e-8 apart
    after 3 Adam steps of lr 1e-2, about one float32 ulp of values ~0.5).  rtol 1e-5 /
    atol 1e-6 leave ~15x that margin, and a wrong shard (a row lost, counted twice, a
    carry from another stream) moves values by ~1e-3 or more."""
    data = tmp_path / "t.txt"
    data.write_text(TEXT, encoding="utf-8")
    cases = {"digits": dict(task="digits", cell="elman", hidden=4, batch=646, epochs=1,
                            lr=1e-2, optimizer="adam"),
             "charlm": dict(task="charlm", cell="lstm", T=5, hidden=6, batch=4, steps=3,
                            lr=1e-2, optimizer="adam", data=str(data))}
    p = _run([sys.executable, "-c", EVERY_TASK, json.dumps(cases)])
    assert p.returncode == 0, p.stderr[-3000:]
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")][-1]
    out = json.loads(line[len("RESULT "):])
    assert out["device_count"] == 2
    for name in cases:
        one, two = out[f"{name}/1"], out[f"{name}/2"]
        assert one["devices"] == [1] and two["devices"] == [2] and two["replicated"]
        assert len(one["state"]) == len(two["state"])
        for a, b in zip(two["state"], one["state"]):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        assert one["moved"] > 1e-3  # it trained: 3 steps of lr 1e-2 moved the params


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli_args(config):
    return ["--task", config["task"], "--cell", config["cell"], "--T", str(config["T"]),
            "--hidden", str(config["hidden"]), "--batch", str(config["batch"]),
            "--steps", str(config["steps"]), "--log-every", str(config["log_every"]),
            "--eval-batch", str(config["eval_batch"]), "--lr", str(config["lr"]),
            "--no-progress"]


@pytest.mark.slow
def test_two_processes_match_one_process(tmp_path):
    """Two jax.distributed processes on localhost (one CPU device each, gloo
    collectives) train on the same global batch as one process with one device."""
    out = str(tmp_path / "two")
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": ROOT}
    procs = [subprocess.Popen(
        [sys.executable, "-m", "rnnjax.cli", "train", *_cli_args(SMALL), "--out", out,
         "--checkpoint-every", "3", "--distributed", "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(i)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, e) in zip(procs, outs):
        assert p.returncode == 0, e[-3000:]
    assert "step      2" in outs[0][0] and "step" not in outs[1][0]  # only process 0 logs
    with jax.enable_x64(False):  # as in the subprocesses (the test session enables x64)
        ref = train(Config(**SMALL, devices=1), progress=False)
        params = load_params(out)  # the checkpoint both processes wrote
    got = load_history(out)
    assert [h["step"] for h in got] == [h["step"] for h in ref.history]
    for g, r in zip(got, ref.history):
        for k in ("train_loss", "train_grad_norm", "eval_loss"):
            np.testing.assert_allclose(g[k], r[k], rtol=1e-5)
        assert set(g) - set(TIMING_KEYS) == set(r) - set(TIMING_KEYS)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 params, ref.state.params)


def test_mesh_and_batch_errors():
    n = jax.device_count() + 8
    with pytest.raises(ValueError, match=rf"devices={n} but only {jax.device_count()} "
                                         rf"devices are visible .*device_count={n}"):
        dist.make_mesh(n)
    mesh = dist.make_mesh(1)
    assert mesh.axis_names == ("data",) and mesh.devices.size == 1
    with pytest.raises(ValueError, match="devices must be a positive integer"):
        dist.make_mesh(0)
    with pytest.raises(ValueError, match="batch=6 must be divisible by the 4 devices"):
        dist.check_batch(6, type("M", (), {"devices": np.zeros(4)})())
    with pytest.raises(ValueError, match="coordinator must be HOST:PORT"):
        dist.initialize("localhost", 2, 0)
    with pytest.raises(ValueError, match="process_id must be < num_processes=2, got 2"):
        dist.initialize("localhost:1234", 2, 2)
    with pytest.raises(ValueError, match="devices must be a positive integer, got 0"):
        train(Config(**SMALL, devices=0), progress=False)


def test_single_process_helpers_are_identities():
    mesh = dist.make_mesh(1)
    data = dist.batch_sharding(mesh, 1)
    x = np.arange(24.0).reshape(2, 4, 3)
    assert dist.local_rows(data, x.shape, 1) == slice(0, 4)
    np.testing.assert_array_equal(dist.process_slice(x, data), x)
    g = dist.global_batch(x, data)
    np.testing.assert_array_equal(np.asarray(g), x)
    assert g.sharding == data
    r = dist.replicate({"a": x}, mesh)["a"]
    assert r.sharding.is_fully_replicated and dist.is_main()


# ---------------------------------------------------------------------------------------
# faults: a coordinator that never starts, a process that dies

def _train_process(out, port, pid, *extra, steps=6):
    env = {**os.environ, "PYTHONPATH": ROOT}
    return subprocess.Popen(
        [sys.executable, "-m", "rnnjax.cli", "train", *_cli_args({**SMALL, "steps": steps}),
         "--distributed", "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
         "--process-id", str(pid), *(["--out", out] if out else []), *extra],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("pid, why", [
    (1, r"the coordinator at 127\.0\.0\.1:\d+ never answered"),
    (0, r"the coordinator at 127\.0\.0\.1:\d+ answered but not all 2 processes joined")])
def test_a_missing_coordinator_or_process_fails_in_the_timeout_with_one_line(pid, why):
    """Alone, process 1 finds no coordinator and process 0 waits for a process that
    never comes: each gives up after --coordinator-timeout (not JAX's silent 300 s and
    abort) with one line saying which, exit 75."""
    p = _train_process(None, _free_port(), pid, "--coordinator-timeout", "1.5")
    _, err = p.communicate(timeout=90)
    assert p.returncode == dist.EXIT_CODE, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert re.search(rf"rnnjax: error: process {pid}: {why} within timeout=1.5 s "
                     r"\(--coordinator-timeout\)", last), err[-2000:]
    assert "Traceback" not in err and "Check failure" not in err


@pytest.mark.slow
def test_when_one_process_dies_the_survivor_stops_and_its_checkpoint_is_intact(tmp_path):
    """SIGKILL process 1 of 2 after a checkpoint: process 0's next collective fails, it
    prints one line naming the intact checkpoint and exits 75 (not JAX's abort after the
    heartbeat timeout); the run resumes from that checkpoint."""
    from rnnjax.training import checkpointing
    out = str(tmp_path / "run")
    port = _free_port()
    procs = [_train_process(out, port, i, "--checkpoint-every", "2", "--heartbeat-timeout",
                            "30", steps=100_000) for i in range(2)]
    ckpt = os.path.join(out, "checkpoints")
    deadline = time.time() + 240
    while time.time() < deadline and all(p.poll() is None for p in procs):
        if len(checkpointing.steps(ckpt)) >= 2 and checkpointing.verify(
                ckpt, checkpointing.steps(ckpt)[0]) is None:
            break
        time.sleep(0.05)
    assert all(p.poll() is None for p in procs), procs[0].communicate()[1][-3000:]
    procs[1].kill()
    procs[1].communicate()
    t0 = time.time()
    _, err = procs[0].communicate(timeout=120)
    assert procs[0].returncode == dist.EXIT_CODE, err[-3000:]
    assert time.time() - t0 < 25  # the collective failed at once, before the heartbeat
    last = err.strip().splitlines()[-1]
    m = re.search(r"rnnjax: error: process 0 of 2: another process died or stopped "
                  r"answering \(.*\); the last checkpoint, step (\d+) in (.*), is intact: "
                  r"start every process again with --resume$", last)
    assert m, err[-3000:]
    assert "Traceback" not in err and "Check failure" not in err
    step = int(m.group(1))
    assert m.group(2) == os.path.abspath(ckpt)
    assert checkpointing.steps(ckpt)[0] == step and checkpointing.verify(ckpt, step) is None
    with jax.enable_x64(False):
        params = load_params(out)
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_distributed_timeouts_are_checked_before_jax():
    with pytest.raises(ValueError, match=r"timeout must be a positive number of seconds, "
                                         r"got 0"):
        dist.initialize("localhost:1234", 2, 1, timeout=0)
    with pytest.raises(ValueError, match=r"heartbeat_timeout must be a positive whole "
                                         r"number of seconds, got 2\.5"):
        dist.initialize("localhost:1234", 2, 1, heartbeat_timeout=2.5)
    with pytest.raises(ValueError, match=r"timeout must be a positive number of seconds, "
                                         r"got nan"):
        dist.initialize("localhost:1234", 2, 1, timeout=float("nan"))
    assert not dist.coordinator_answers(f"127.0.0.1:{_free_port()}", wait=0.5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        assert dist.coordinator_answers(f"127.0.0.1:{s.getsockname()[1]}", wait=0.5)
