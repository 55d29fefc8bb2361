"""Nothing lost, nothing silently wrong, round three (issue 33, items 5-7): a run folder
that loads from any working directory, one-line errors for a missing optional extra or
a broken plug-in task, nothing written before every check has passed, padding-safe
layers, clean SIGTERM and Ctrl-C, honest timing and reproduce lines, refused complex
carries and ambiguous layouts, diverged cells marked in the copy report.  Each case
failed on the code before it (docs/guides/reliability.md lists them)."""

import hashlib
import json
import os
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax.cli.command import main as cli_main
from rnnjax.training.config import Config
from rnnjax.training.runner import load_params, train

# The checkout whose rnnjax this process imports: the subprocesses import the same one.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(rnnjax.__file__)))
SMALL = dict(task="adding", cell="gru", T=5, hidden=4, batch=4, log_every=2, eval_batch=4,
             lr=1e-2, optimizer="adam")


def _tree(root):
    """``{relative path: None for a folder, the bytes' SHA-256 for a file}`` of ``root``:
    every byte of every file."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny finished training run made with a *relative* ``--out`` from its own
    working directory (``<base>/runs/a``); returns its absolute path."""
    base = tmp_path_factory.mktemp("made-here")
    cwd = os.getcwd()
    os.chdir(base)
    try:
        train(Config(**SMALL, steps=2, checkpoint_every=2, out=os.path.join("runs", "a")),
              progress=False)
    finally:
        os.chdir(cwd)
    return str(base / "runs" / "a")


# ---------------------------------------------------------------------------------------
# (a) a run folder is self-contained

def test_config_json_stores_paths_relative_to_the_run_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "t.txt").write_text("abc")
    os.makedirs("runs/a/data")
    Config(task="charlm", out="runs/a", data="texts/t.txt").save("runs/a")
    saved = json.loads((tmp_path / "runs" / "a" / "config.json").read_text())
    assert saved["out"] == "." and saved["data"] == str(tmp_path / "texts" / "t.txt")
    Config(task="charlm", out="runs/a", data="runs/a/data/t.txt").save("runs/a")
    saved = json.loads((tmp_path / "runs" / "a" / "config.json").read_text())
    assert saved["data"] == os.path.join("data", "t.txt")  # inside: moves with the run
    monkeypatch.chdir("/")
    loaded = Config.load(str(tmp_path / "runs" / "a"))
    assert loaded.out == str(tmp_path / "runs" / "a")
    assert loaded.data == str(tmp_path / "runs" / "a" / "data" / "t.txt")


def test_a_config_json_of_before_resolves_against_where_the_run_was_made(tmp_path,
                                                                       monkeypatch):
    # written by the code before: out and data as given, relative to the cwd of then
    run = tmp_path / "runs" / "a"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(
        Config(task="charlm", out="runs/a", data="texts/t.txt").to_json()))
    monkeypatch.chdir("/")
    loaded = Config.load(str(run))
    assert loaded.out == str(run) and loaded.data == str(tmp_path / "texts" / "t.txt")


def test_load_params_works_from_any_working_directory_and_changes_nothing(
        run_dir, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    before = _tree(os.path.dirname(os.path.dirname(run_dir)))
    params = load_params(run_dir)
    assert jax.tree.leaves(params)[0].shape[0] == 1  # stacked over the one seed
    assert os.listdir(elsewhere) == []  # no runs/a/checkpoints made here
    assert _tree(os.path.dirname(os.path.dirname(run_dir))) == before


def test_gradflow_checkpoint_from_another_working_directory(run_dir, tmp_path, monkeypatch,
                                                            capsys):
    monkeypatch.chdir(tmp_path)
    before = _tree(run_dir)
    rc = cli_main(["gradflow", "--checkpoint", run_dir, "--out", "gf", "--lyap-steps", "10",
                   "--lyap-k", "2"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "gf" / "gradflow.csv").exists()
    assert sorted(os.listdir(tmp_path)) == ["gf"]
    assert _tree(run_dir) == before


def test_reading_a_run_without_checkpoints_creates_nothing(run_dir, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_bytes(open(os.path.join(run_dir, "config.json"), "rb").read())
    with pytest.raises(FileNotFoundError, match=r"no good checkpoint in .*bare/checkpoints "
                                                r"\(no such folder\)"):
        load_params(str(bare))
    assert sorted(os.listdir(bare)) == ["config.json"]


# ---------------------------------------------------------------------------------------
# (d) a missing optional extra or a broken plug-in task: one line naming it, exit 2

def _cli(argv, capsys):
    """``(exit code, stderr)`` of the command line ``argv`` run in this process."""
    rc = cli_main(argv)
    return rc, capsys.readouterr().err


def _one_line_error(rc, err, command):
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rnnjax {command}: error: "), err
    assert "internal error" not in err and "Traceback" not in err


TRAIN = ["train", "--T", "5", "--hidden", "4", "--batch", "4", "--steps", "2", "--log-every",
         "2", "--eval-batch", "4", "--no-progress"]


def test_a_missing_data_extra_is_one_line_naming_it_and_the_install_command(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # as if scikit-learn were absent
    rc, err = _cli(TRAIN + ["--task", "digits", "--out", str(tmp_path / "new")], capsys)
    _one_line_error(rc, err, "train")
    assert "scikit-learn" in err and 'pip install -e ".[data]"' in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("name, extra", [("statsmodels.tsa.arima", "data"),
                                         ("tensorboardX", "tensorboard"),
                                         ("torch", "peers")])
def test_a_bare_missing_optional_package_names_its_extra(name, extra):
    from rnnjax.cli.command import import_error_line
    line = import_error_line(ModuleNotFoundError(f"No module named {name!r}", name=name))
    assert f"[{extra}] extra" in line and f'pip install "rnnjax[{extra}]"' in line
    assert f'pip install -e ".[{extra}]"' in line


PLUGINS = {
    "syntax": ("def task(T:\n    pass\n", r"module 'rj_syntax' failed: "
                                          r"SyntaxError: .*line 1"),
    "raises": ("def task(T):\n    raise RuntimeError('no data for T=%d' % T)\n",
               r"the factory task\(T\) raised RuntimeError: no data for T=5"),
    "import": ("import rj_not_a_package_anywhere\ndef task(T):\n    pass\n",
               r"module 'rj_import' failed: No module named "
               r"'rj_not_a_package_anywhere'"),
}


@pytest.mark.parametrize("kind", sorted(PLUGINS))
def test_a_broken_plugin_task_is_one_line_naming_the_module(kind, tmp_path, monkeypatch,
                                                            capsys):

    source, message = PLUGINS[kind]
    (tmp_path / f"rj_{kind}.py").write_text(source)
    monkeypatch.chdir(tmp_path)  # the plug-in lies in the working directory
    monkeypatch.delitem(sys.modules, f"rj_{kind}", raising=False)
    rc, err = _cli(TRAIN + ["--task", f"rj_{kind}:task", "--out", "new"], capsys)
    _one_line_error(rc, err, "train")
    assert re.search(message, err), err
    assert not (tmp_path / "new").exists()


# ---------------------------------------------------------------------------------------
# (e) nothing is written until every check has passed

def test_tensorboard_without_tensorboardx_writes_nothing_and_the_rerun_is_a_new_run(
        tmp_path, monkeypatch, capsys):
    out = tmp_path / "new"
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    rc, err = _cli(TRAIN + ["--task", "adding", "--cell", "gru", "--tensorboard", "--out",
                            str(out)], capsys)
    _one_line_error(rc, err, "train")
    assert "pip install tensorboardX" in err
    assert not out.exists()
    monkeypatch.undo()  # "installed": the same command now trains, no --resume needed
    rc, err = _cli(TRAIN + ["--task", "adding", "--cell", "gru", "--tensorboard", "--out",
                            str(out)], capsys)
    assert rc == 0, err
    assert {"config.json", "metrics.jsonl", "tensorboard"} <= set(os.listdir(out))


def test_a_new_run_that_fails_before_its_first_record_leaves_no_config_json(tmp_path,
                                                                          monkeypatch):
    import rnnjax.training.runner as runner
    out = str(tmp_path / "run")

    def broken(exp, mesh):
        raise RuntimeError("out of memory while compiling")  # as RESOURCE_EXHAUSTED

    monkeypatch.setattr(runner, "_compile", broken)
    with pytest.raises(RuntimeError, match="out of memory"):
        train(Config(**SMALL, steps=2, out=out), progress=False)
    assert [n for n in os.listdir(out) if not n.startswith(".")] == []
    monkeypatch.undo()
    got = train(Config(**SMALL, steps=2, out=out), progress=False)  # not "pass --resume"
    assert [r["step"] for r in got.history] == [2]


# ---------------------------------------------------------------------------------------
# (g) lru_block is padding-safe, as run, stack and bidirectional are

@pytest.mark.parametrize("bad, time_major", [(np.nan, False), (np.inf, False),
                                             (np.nan, True)])
def test_nan_or_inf_padding_in_lru_block_reaches_no_output_and_no_gradient(bad, time_major):
    from rnnjax import layers
    block = layers.lru_block(4, 3)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), block.init(jax.random.key(0), 3))
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3), jnp.float64)
    lengths = jnp.array([2, 5])
    padded, clean = xs.at[0, 2:].set(bad), xs.at[0, 2:].set(0.0)
    if time_major:
        padded, clean = jnp.swapaxes(padded, 0, 1), jnp.swapaxes(clean, 0, 1)

    def loss(p, x):
        ys, _ = block.apply(p, x, lengths=lengths, time_major=time_major)
        return jnp.sum(ys ** 2)

    for p_grad in (jax.grad(loss)(params, padded), jax.grad(loss, 1)(params, padded)):
        assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(p_grad))
    jax.tree.map(np.testing.assert_array_equal, jax.grad(loss)(params, padded),
                 jax.grad(loss)(params, clean))
    ys, _ = block.apply(params, padded, lengths=lengths, time_major=time_major)
    want, _ = block.apply(params, clean, lengths=lengths, time_major=time_major)
    np.testing.assert_array_equal(ys, want)


# ---------------------------------------------------------------------------------------
# (b, c) SIGTERM and Ctrl-C at any moment: one line, exit 143 / 130, the cell in
# progress checkpointed; never SIGSEGV, never a KeyboardInterrupt traceback

COPY = ["copy", "--name", "c", "--T", "3", "--hidden", "4", "--batch", "4", "--steps", "4",
        "--log-every", "2", "--eval-batch", "4", "--no-progress"]


def _catches(pid, sig) -> bool:
    """Whether process ``pid`` has a handler for ``sig`` (``SigCgt`` of /proc)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(mask >> (int(sig) - 1) & 1)


def _spawn(command, cwd, **env):
    import subprocess
    env = {**os.environ, "PYTHONPATH": ROOT, **env}  # XLA_FLAGS as in this process
    return subprocess.Popen([sys.executable] + command, cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(proc, ready, what):
    import time
    deadline = time.monotonic() + 240
    while not ready():
        assert proc.poll() is None, f"the child ended first ({what}): rc={proc.returncode}" \
                                    f"\n{proc.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.002)


def _one_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err and "internal error" not in err
    return lines[0]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_during_start_up_is_one_line_and_writes_nothing(sig, tmp_path):
    import signal
    signum = getattr(signal, sig)
    proc = _spawn(["-m", "rnnjax.cli"] + COPY + ["--cells", "elman"], tmp_path)
    # the command's handler is in place from rnnjax's first import line; JAX's import
    # (seconds) is still ahead
    _wait_for(proc, lambda: _catches(proc.pid, signal.SIGTERM), "the start-up handler")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err[-3000:]
    assert _one_line(err) == (f"rnnjax copy: stopped by {sig} during start-up, before "
                              f"anything was written")
    assert os.listdir(tmp_path) == []


# The child holds (waits for the file RELEASE, having created HELD) at the point named
# by HOLD: "train" after the metrics record of step 2 of the first cell (inside the
# training steps), "between" when the job starts its second cell.  It runs the command
# as the process's own (main() reads sys.argv).
_HELD_COPY = """
import os, sys, time
import rnnjax.training.runner as runner
import rnnjax.experiments.copy_job as job
from rnnjax.cli import main as _face
import rnnjax.cli.command  # noqa: F401
cli = sys.modules["rnnjax.cli.command"]
hold, held, release = os.environ["HOLD"], os.environ["HELD"], os.environ["RELEASE"]
def wait():
    open(held, "w").close()
    while not os.path.exists(release):
        time.sleep(0.005)
if hold == "train":
    original = runner.write_metrics
    def write_metrics(out, history):
        original(out, history)
        if history and history[-1]["step"] == 2 and not os.path.exists(held):
            wait()
    runner.write_metrics = write_metrics
else:
    start = job._Progress.start
    def progress_start(self, i, cell, steps):
        if i == 1:
            wait()
        return start(self, i, cell, steps)
    job._Progress.start = progress_start
cli.main()
"""


def _held_copy(tmp_path, hold, sig, cells):
    import signal
    held, release = str(tmp_path / "held"), str(tmp_path / "release")
    proc = _spawn(["-c", _HELD_COPY] + COPY + ["--cells", cells, "--runs-dir", "runs"],
                  tmp_path, HOLD=hold, HELD=held, RELEASE=release)
    _wait_for(proc, lambda: os.path.exists(held), f"the hold at {hold!r}")
    proc.send_signal(getattr(signal, sig))
    open(release, "w").close()
    _, err = proc.communicate(timeout=240)
    return proc.returncode, err


def test_sigterm_in_a_copy_cell_checkpoints_it_exits_143_and_resumes(tmp_path, capsys,
                                                                    monkeypatch):
    from rnnjax.training import checkpointing
    rc, err = _held_copy(tmp_path, "train", "SIGTERM", "elman")
    line = _one_line(err)
    assert rc == 143, err[-3000:]
    cell = tmp_path / "runs" / "c" / "elman"
    assert re.fullmatch(r"rnnjax copy: SIGTERM at step (\d): saved a checkpoint of step "
                        r"\1 in runs/c/elman; continue with --resume", line), line
    step = int(re.search(r"step (\d)", line).group(1))
    assert step >= 2 and checkpointing.verify(str(cell / "checkpoints"), step) is None
    monkeypatch.chdir(tmp_path)
    rc, err = _cli(COPY + ["--cells", "elman", "--resume"], capsys)
    assert rc == 0, err
    summary = json.loads((tmp_path / "runs" / "c" / "summary.json").read_text())
    assert summary["cells"]["elman"]["steps"] == [2, 4]


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_between_copy_cells_is_one_line_and_keeps_the_finished_cell(sig, tmp_path):
    from rnnjax.training import checkpointing
    rc, err = _held_copy(tmp_path, "between", sig, "elman,gru")
    line = _one_line(err)
    assert rc == (143 if sig == "SIGTERM" else 130), err[-3000:]
    assert line == (f"rnnjax copy: stopped by {sig} outside the training steps (no file is "
                    f"half-written); --resume continues from the latest checkpoint, if one "
                    f"was saved")
    done = tmp_path / "runs" / "c" / "elman"
    assert json.loads((done / "cell_summary.json").read_text())["steps"] == [2, 4]
    assert checkpointing.verify(str(done / "checkpoints"), 4) is None
    assert not (tmp_path / "runs" / "c" / "gru").exists()


# ---------------------------------------------------------------------------------------
# (f) honest timing and reproduce lines

def test_the_estimate_after_a_resume_counts_the_compile_time_from_the_resumed_step():
    from rnnjax.experiments.copy_job import _Progress
    lines = []
    tracker = _Progress(1, lines.append)
    tracker.start(0, "elman", 300)
    # resumed at step 100: 50 steps at 0.1 s after 5 s of compilation, then 50 more
    base = {"eval_loss": 1.0, "train_grad_norm": 1.0, "nonfinite_skipped": 0}
    tracker({**base, "step": 150, "time": 10.0, "steps_per_sec": 5.0})
    tracker({**base, "step": 200, "time": 15.0, "steps_per_sec": 10.0})
    assert lines[-1].startswith("  elman: 100 ms/step (5 s to compile); estimated total ")


def test_a_resumed_cell_keeps_the_seconds_of_the_calls_before():
    from rnnjax.experiments.copy_job import _earlier_calls_seconds
    times = [1.0, 2.0, 3.0, 0.5, 1.5, 0.7, 2.5]  # three calls: 3 s, 1.5 s, this one
    assert _earlier_calls_seconds([{"time": t} for t in times], 2) == 4.5
    assert _earlier_calls_seconds([{"time": t} for t in times[:3]], 3) == 0.0


def test_a_copy_job_from_python_names_no_command_and_its_resume_keeps_the_total(tmp_path):
    from rnnjax.experiments.copy_job import run_copy_job
    base = Config(task="copy", T=3, hidden=4, batch=4, steps=4, log_every=2, eval_batch=4)
    first = run_copy_job("py", base, ["elman"], runs_dir=str(tmp_path), progress=False,
                         print_fn=None)
    out = tmp_path / "py"
    report = (out / "report.md").read_text()
    assert "rnnjax copy" not in report and "Made by a Python call" in report
    assert "rnnjax copy" not in (out / "report.html").read_text()
    again = run_copy_job("py", base, ["elman"], runs_dir=str(tmp_path), progress=False,
                         print_fn=None, resume=True)  # every cell read back
    assert again["seconds"] == first["seconds"] == first["cells"]["elman"]["seconds"] > 0
    assert f"Total time: {first['seconds']:.0f} s" in (out / "report.md").read_text()


# ---------------------------------------------------------------------------------------
# (h) a complex carry for a real cell is refused; (i) from_torch_module keeps the layout

def test_a_complex_carry_for_a_real_cell_is_refused_by_name():
    from rnnjax import cells, run
    cell = cells.elman(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jnp.ones((2, 4, 2), jnp.float32)
    carry = cell.initial_carry((2,), jnp.complex64)
    with pytest.raises(TypeError, match=r"carry\.h has dtype complex64 but the elman cell's "
                                        r"carry is real \(float32\)"):
        run(cell, params, xs, carry=carry)
    urnn = cells.urnn(4)  # a cell whose own carry is complex still takes one
    p = urnn.init(jax.random.key(0), 2)
    ys, _ = run(urnn, p, xs, carry=urnn.initial_carry((2,), jnp.float32))
    assert ys.shape[:2] == (2, 4)


def test_from_torch_module_defaults_to_the_modules_own_layout():
    torch = pytest.importorskip("torch")
    from rnnjax import interop
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)  # (B, T) or (T, B)
    for batch_first in (False, True):  # PyTorch's default first
        torch.manual_seed(0)
        m = torch.nn.GRU(3, 4, batch_first=batch_first)
        with torch.no_grad():
            want = m(torch.from_numpy(x))[0].numpy()
        layer, params = interop.from_torch_module(m)
        ys, _ = layer.apply(params, jnp.asarray(x))  # no time_major: the module's layout
        np.testing.assert_allclose(np.asarray(ys), want, atol=1e-5)
        if not batch_first:  # an explicit layout still wins
            ys_bt, _ = layer.apply(params, jnp.swapaxes(jnp.asarray(x), 0, 1),
                                   time_major=False)
            np.testing.assert_allclose(np.asarray(ys_bt), want.swapaxes(0, 1), atol=1e-5)


# ---------------------------------------------------------------------------------------
# (j) the copy report marks a diverged cell in its table and its paragraph

def test_the_copy_report_marks_a_diverged_cell(tmp_path):
    from rnnjax.experiments.copy_job import run_copy_job
    base = Config(task="copy", T=3, hidden=4, batch=4, steps=6, log_every=2, eval_batch=4,
                  lr=10.0, lr_orth=None, clip=None)  # `rnnjax copy --lr 10`
    summary = run_copy_job("d", base, ["elman"], runs_dir=str(tmp_path), progress=False,
                           print_fn=None)
    assert summary["cells"]["elman"]["diverged"] is True
    report = (tmp_path / "d" / "report.md").read_text()
    row = next(line for line in report.splitlines() if line.startswith("| elman |"))
    assert "DIVERGED" in row
    assert "elman diverged during training" in report
    page = (tmp_path / "d" / "report.html").read_text()
    assert "DIVERGED" in page and "elman diverged during training" in page
