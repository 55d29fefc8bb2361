"""Nothing lost, nothing silently wrong, round three (issue 33, items 5-7): a run folder
that loads from any working directory, one-line errors for a missing optional extra or
a broken plug-in task, nothing written before every check has passed, padding-safe
layers, clean SIGTERM and Ctrl-C, honest timing and reproduce lines, refused complex
carries and ambiguous layouts, diverged cells marked in the copy report.  Each case
failed on the code before it (docs/reliability_round3.md lists them)."""

import hashlib
import json
import os

import jax
import pytest

from rnnjax.cli.main import main as cli_main
from rnnjax.training.config import Config
from rnnjax.training.runner import load_params, train

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
