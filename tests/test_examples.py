"""The scripts of examples/ run: each at its ``--tiny`` sizes in a fresh interpreter
(the three at once, so the file takes about as long as the slowest), from a clean
working directory, with this checkout's ``rnnjax`` importable."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")

# script -> (arguments, a line its output must hold); "{tmp}" is the test's folder
RUNS = {
    "own_cell.py": (["--tiny"], "leaky_elman  held-out CE"),
    "gradflow_trained.py": (["--tiny", "--out", "{tmp}/gradflow"], "'stage': 'trained'"),
    "seed_sweep.py": (["--tiny", "--cells", "elman", "--num-seeds", "2"], "over 2 seeds"),
}


def test_every_example_is_run_here():
    scripts = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert scripts == sorted(RUNS)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("examples")
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = {}
    for script, (args, _) in RUNS.items():
        cwd = tmp / script[:-3]
        cwd.mkdir()
        procs[script] = subprocess.Popen(
            [sys.executable, os.path.join(EXAMPLES, script)]
            + [a.format(tmp=cwd) for a in args], cwd=cwd, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = {}
    for script, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        out[script] = (proc.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("script", sorted(RUNS))
def test_example_runs(finished, script):
    rc, stdout, stderr = finished[script]
    assert rc == 0, stderr[-3000:]
    assert RUNS[script][1] in stdout, stdout[-2000:]
