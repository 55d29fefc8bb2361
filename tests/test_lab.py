"""The memory lab (``rnnjax lab``, :mod:`rnnjax.experiments.lab`): one tiny grid (a
plug-in cell and a registered one x a plug-in task), trained once uninterrupted and once
stopped after its first run and resumed; the leaderboard's numbers are the runs' own
records, and the resumed grid's leaderboard equals the uninterrupted one's bitwise (all
but the seconds)."""

import dataclasses
import json
import os
import textwrap

import numpy as np
import pytest

from rnnjax.cli import main
from rnnjax.experiments.lab import QUICK_RECIPE, run_lab
from rnnjax.training.metrics import load_history

pytestmark = pytest.mark.slow

CELLS = textwrap.dedent('''
    from rnnjax import cells

    def tiny(hidden_size, **options):
        return cells.elman(hidden_size, **options)
''')
TASKS = textwrap.dedent('''
    from rnnjax import tasks

    def flips(T, **options):
        return tasks.parity_task(T)._replace(name="flips")
''')
RECIPE = dataclasses.replace(QUICK_RECIPE, hidden=4, batch=3, steps=4, seeds=2,
                             log_every=2, eval_batch=3)
GRID = dict(cells=["elman", "labplug_cells:tiny"], task_names=["labplug_tasks:flips"],
            lengths=[6], recipe=RECIPE, factors=(1, 2), print_fn=None)


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def grids(tmp_path_factory):
    root = tmp_path_factory.mktemp("lab")
    (root / "labplug_cells.py").write_text(CELLS)
    (root / "labplug_tasks.py").write_text(TASKS)
    mp = pytest.MonkeyPatch()
    mp.syspath_prepend(str(root))
    whole = run_lab(str(root / "whole"), **GRID)

    def stop_after_first(line):
        if line.startswith("[1/"):
            raise _Stop

    with pytest.raises(_Stop):
        run_lab(str(root / "cut"), **{**GRID, "print_fn": stop_after_first})
    assert not os.path.exists(root / "cut" / "leaderboard.json")
    partial = run_lab(str(root / "cut"), **GRID, report_only=True)
    assert partial["grid"]["partial"] == "1 of 2 runs" and len(partial["rows"]) == 1
    resumed = run_lab(str(root / "cut"), **GRID, resume=True)
    yield root, whole, resumed, partial
    mp.undo()


def _strip(board):
    board = json.loads(json.dumps(board))
    board.pop("seconds")
    board["grid"].pop("command")
    for r in board["rows"]:
        r.pop("seconds")
    return board


def test_lab_plugins_join_and_numbers_are_the_runs(grids):
    root, whole, _, _ = grids
    rows = whole["rows"]
    assert [(r["cell"], r["task"], r["T"]) for r in rows] == [
        ("elman", "labplug_tasks:flips", 6), ("labplug_cells:tiny", "labplug_tasks:flips", 6)]
    for r in rows:
        run = root / "whole" / r["run"]
        last = load_history(str(run))[-1]
        assert last["step"] == RECIPE.steps and r["lengths"] == [6, 12]
        assert r["accuracy"]["1"]["seeds"] == last["seeds"]["eval_accuracy"]
        assert r["accuracy"]["1"]["mean"] == pytest.approx(last["eval_accuracy"], rel=1e-12)
        assert r["over_baseline"]["seeds"] == [v / last["baseline"]
                                               for v in last["seeds"]["eval_loss"]]
        field = r["credit_field"]
        assert r["credit_ratio_seeds"] == last["seeds"][f"eval_credit_ratio_{field}"]
        assert r["jacobian_norm"] == pytest.approx(
            np.mean(last["seeds"]["eval_credit_jacobian_norm"]), rel=1e-12)
        with open(run / "lab_run.json") as f:
            entry = json.load(f)
        assert r["accuracy"]["2"]["seeds"] == entry["accuracy"]["2"]
        assert all(0.0 <= a <= 1.0 for a in entry["accuracy"]["2"])
    text = (root / "whole" / "leaderboard.md").read_text()
    assert "labplug_cells:tiny" in text and "## labplug_tasks:flips (T=6)" in text
    for name in ("leaderboard.html", "lab_heatmap.png", "lab_lengths.png"):
        assert (root / "whole" / name).stat().st_size > 0


def test_lab_resume_after_a_stop_gives_the_same_leaderboard(grids):
    root, whole, resumed, partial = grids
    assert _strip(resumed) == _strip(whole)
    assert _strip(partial)["rows"] == _strip(whole)["rows"][:1]  # the finished run
    with open(root / "cut" / "leaderboard.json") as f:
        assert _strip(json.load(f)) == _strip(whole)


def test_lab_refuses_a_used_out_and_bad_options(grids, capsys):
    root = grids[0]
    with pytest.raises(ValueError, match="already holds files"):
        run_lab(str(root / "whole"), **GRID)
    assert main(["lab", "--out", str(root / "x"), "--lengths", "a,b"]) == 2
    assert "--lengths must be comma-separated positive integers" in capsys.readouterr().err
    assert main(["lab", "--out", str(root / "y"), "--cells", "nosuchcell"]) == 2
    assert not os.path.exists(root / "x") and not os.path.exists(root / "y")
