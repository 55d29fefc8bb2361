"""``--overwrite`` replaces only a run of the same command, after every check, under the
lock: a folder that is not such a run, one the command reads from, one another writer
holds, or a call refused later keeps every byte (the tree is hashed before and after)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import jax
import pytest

from rnnjax import cli
from rnnjax.io import outputs
from rnnjax.training.runner import Config, load_history, train

SMALL = dict(task="adding", cell="gru", T=5, hidden=4, batch=4, log_every=2, eval_batch=4,
             lr=1e-2, optimizer="adam")
TRAIN = ["train", "--task", "adding", "--cell", "gru", "--T", "5", "--hidden", "4",
         "--batch", "4", "--log-every", "2", "--eval-batch", "4", "--no-progress"]
GENERATE = ["generate", "--hidden", "4", "--seq-len", "8", "--batch", "2", "--steps", "2",
            "--length", "3", "--temperature", "0"]


def _tree(path) -> dict:
    """``{relative path: sha256}`` of every file under ``path`` (the lock aside)."""
    got = {}
    for root, dirs, files in os.walk(path):
        for n in files:
            if n == outputs.LOCK:
                continue
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                got[os.path.relpath(p, path)] = hashlib.sha256(f.read()).hexdigest()
        got.update({os.path.relpath(os.path.join(root, d), path) + "/": "dir" for d in dirs})
    return got


@pytest.fixture(scope="module")
def train_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("made") / "run")
    train(Config(**SMALL, steps=4, checkpoint_every=2, out=out), progress=False)
    return out


@pytest.fixture
def run(train_run, tmp_path):
    """A copy of a real training run (checkpoints at steps 2 and 4)."""
    out = str(tmp_path / "run")
    shutil.copytree(train_run, out)
    return out


def _refused(argv, folder, capsys, why):
    """``argv`` exits 2 with one line naming ``folder`` and matching ``why``; nothing
    under ``folder`` changed."""
    before = _tree(folder)
    capsys.readouterr()
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and repr(str(folder)) in err and why in err, err
    assert _tree(folder) == before


def test_train_overwrite_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "checkpoints").mkdir(parents=True)
    (mine / "checkpoints" / "model.pt").write_bytes(os.urandom(256))
    (mine / "notes.txt").write_text("mine")
    _refused([*TRAIN, "--steps", "2", "--out", str(mine), "--overwrite"], mine, capsys,
             "is not an rnnjax run")
    # a config.json that is not rnnjax's counts as no run either
    (mine / "config.json").write_text('{"lr": 3}')
    _refused([*TRAIN, "--steps", "2", "--out", str(mine), "--overwrite"], mine, capsys,
             "is not an rnnjax run")


def test_overwrite_with_an_option_refused_later_touches_nothing(run, capsys):
    n = jax.device_count() + 1
    before = _tree(run)
    assert cli.main([*TRAIN, "--steps", "2", "--out", run, "--overwrite",
                     "--devices", str(n)]) == 2
    assert f"devices={n}" in capsys.readouterr().err
    assert _tree(run) == before


# The writer that holds the lock, as a running `rnnjax train` does (flock on the lock
# file), in a second process.
_HOLDER = """import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], ".rnnjax.lock"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
print("locked", flush=True)
time.sleep(60)
"""


def test_overwrite_while_another_writer_holds_the_lock_touches_nothing(run, capsys):
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, run], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        _refused([*TRAIN, "--steps", "2", "--out", run, "--overwrite"], run, capsys,
                 f"in use by another writer (pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_gradflow_never_overwrites_the_run_it_reads(run, capsys):
    _refused(["gradflow", "--checkpoint", run, "--out", run, "--overwrite",
              "--dtype", "float32"], run, capsys, "which this command reads")


def test_generate_never_overwrites_the_checkpoint_it_restores(tmp_path, capsys):
    g = str(tmp_path / "g")
    assert cli.main([*GENERATE, "--out", g]) == 0
    _refused([*GENERATE, "--restore", g, "--out", g, "--overwrite"], g, capsys,
             "which this command reads")


def test_colors_never_overwrites_a_training_run(run, capsys):
    _refused(["colors", "--length", "3", "--out", run, "--overwrite"], run, capsys,
             "is a run of 'train', not of 'colors'")


def test_overwrite_replaces_a_run_of_the_same_command_and_its_best_files(run, capsys):
    # the old run's best (as if it held an unbeatable record) must not survive
    with open(os.path.join(run, "best.json"), "w") as f:
        json.dump({"step": 4, "valid_accuracy": 1.0, "valid_loss": 0.0}, f)
    os.makedirs(os.path.join(run, "best", "4"))
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["2", "4"]
    assert cli.main([*TRAIN, "--steps", "2", "--checkpoint-every", "2", "--out", run,
                     "--overwrite"]) == 0
    assert [r["step"] for r in load_history(run)] == [2]
    assert sorted(os.listdir(os.path.join(run, "checkpoints"))) == ["2"]
    assert not os.path.exists(os.path.join(run, "best.json"))
    assert not os.path.exists(os.path.join(run, "best"))
    assert outputs.run_of(run) == "train"


def test_a_run_made_before_markers_counts_as_a_training_run(run):
    os.remove(os.path.join(run, outputs.MARKER))
    assert outputs.run_of(run) == "train"
    outputs.check_replaceable(run, "train")
    with pytest.raises(ValueError, match="is a run of 'train', not of 'colors'"):
        outputs.check_replaceable(run, "colors")


def test_an_app_put_back_when_the_overwriting_call_fails(tmp_path, capsys):
    g = str(tmp_path / "c")
    assert cli.main(["colors", "--length", "3", "--out", g]) == 0
    before = _tree(g)
    assert cli.main(["colors", "--length", "3", "--out", g, "--overwrite",
                     "--palettes", str(tmp_path / "missing.txt")]) == 2
    assert _tree(g) == before
    os.remove(os.path.join(g, "colors.png"))
    assert cli.main(["colors", "--length", "3", "--out", g, "--overwrite"]) == 0
    assert os.path.exists(os.path.join(g, "colors.png")) and outputs.run_of(g) == "colors"
    assert not os.path.exists(os.path.join(g, ".rnnjax-replaced"))


def test_results_are_written_with_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        outputs.write_text(tmp_path / "a.json", "{}")
        with outputs.atomic_open(tmp_path / "b.bin", "wb") as f:
            f.write(b"x")
        os.umask(0o077)
        outputs.write_text(tmp_path / "c.json", "{}")
    finally:
        os.umask(old)
    assert [os.stat(tmp_path / n).st_mode & 0o777 for n in ("a.json", "b.bin", "c.json")] \
        == [0o644, 0o644, 0o600]


def test_copy_and_orthogonality_never_overwrite_a_training_run(run):
    from rnnjax.experiments import copy_job as report
    from rnnjax.experiments import orthogonality
    before = _tree(run)
    base = Config(task="copy", T=5, hidden=4, batch=4, steps=2, log_every=2, eval_batch=4)
    with pytest.raises(ValueError, match="is a run of 'train', not of 'copy'"):
        report.run_copy_job(os.path.basename(run), base, ["elman"],
                            runs_dir=os.path.dirname(run), overwrite=True, print_fn=None)
    with pytest.raises(ValueError, match="is a run of 'train', not of 'orthogonality'"):
        orthogonality.run_orthogonality(run, names=["elman"], progress=False,
                                        overwrite=True)
    assert _tree(run) == before
