"""The main job, ``rnnjax copy``: trains several cells and writes a report."""

import json
import os
import re
import shutil

import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.cli import main
from rnnjax.experiments.copy_job import BASE_CELLS, DEFAULT, PAPER, default_cells, stays_orthogonal
from rnnjax.training.runner import ORTHOGONAL_CELLS, load_history


def test_default_cells_pick_up_registered_orthogonal_cells(monkeypatch):
    assert default_cells()[:3] == ["elman", "lstm", "gru"]
    # the orthogonal-param cells whose W stays in the group (not nnRNN, spectral margin)
    assert default_cells()[3:] == [c for c in ORTHOGONAL_CELLS
                                   if c in cells.REGISTRY and c not in ("nnrnn", "spectral")]
    assert [stays_orthogonal(c) for c in ("fcurnn", "urnn", "nnrnn", "spectral", "elman")] \
        == [True, True, False, False, False]
    # membership is decided by the cell's params, not its name
    monkeypatch.setitem(cells.REGISTRY, "my_orthogonal", cells.exprnn)
    assert "my_orthogonal" in default_cells()
    monkeypatch.setitem(cells.REGISTRY, "householder", cells.elman)
    assert "householder" not in default_cells()
    assert list(BASE_CELLS) == ["elman", "lstm", "gru"]


def test_presets():
    assert (PAPER.T, PAPER.hidden, PAPER.batch, PAPER.steps, PAPER.lr, PAPER.lr_orth,
            PAPER.optimizer) == (1000, 190, 128, 4000, 2e-4, 2e-5, "rmsprop")
    assert DEFAULT.task == PAPER.task == "copy"


@pytest.mark.slow
def test_copy_job_writes_report(tmp_path, capsys):
    argv = ["copy", "--name", "tiny", "--runs-dir", str(tmp_path), "--T", "5", "--hidden", "8",
            "--batch", "8", "--steps", "6", "--log-every", "3", "--eval-batch", "16",
            "--cells", "elman,gru", "--no-progress"]
    assert main(argv) == 0
    out = tmp_path / "tiny"
    for name in ("report.md", "report.html", "copy_loss.png", "summary.json"):
        assert (out / name).exists(), name
    assert (out / "copy_loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((out / "summary.json").read_text())
    baseline = 10 * np.log(8) / 25
    assert summary["baseline"] == pytest.approx(baseline)
    md = (out / "report.md").read_text()
    assert f"**{baseline:.4f}**" in md and "![loss curves](copy_loss.png)" in md
    for cell in ("elman", "gru"):
        hist = load_history(str(out / cell))
        assert [r["step"] for r in hist] == [3, 6]
        last = hist[-1]
        row = re.search(rf"^\| {cell} \| ([0-9.]+) \| ([0-9.]+) \| ([0-9.]+) \|", md, re.M)
        assert row, md
        assert float(row.group(1)) == pytest.approx(last["eval_loss"], abs=1e-4)
        assert float(row.group(2)) == pytest.approx(last["eval_loss"] / baseline, abs=1e-3)
        assert float(row.group(3)) == pytest.approx(last["eval_accuracy"], abs=1e-3)
        # each cell keeps its trained params (orbax) and a summary of the finished cell
        assert os.path.isdir(out / cell / "checkpoints")
        assert (out / cell / "cell_summary.json").exists()
    # The report carries the command that reproduces it, cell list pinned.
    cmd = re.search(r"```bash\n(.*)\n```", md).group(1)
    assert cmd.startswith("rnnjax copy --name tiny") and cmd.endswith("--cells elman,gru")
    assert "--T 5" in cmd and "--steps 6" in cmd
    # Running that command again (into a new directory: the old one holds checkpoints
    # and is never overwritten) reproduces the numbers.
    assert main(cmd.split()[1:] + ["--no-progress"]) == 2
    again_cmd = cmd.replace("--name tiny", "--name tiny2").split()[1:]
    assert main(again_cmd + ["--no-progress"]) == 0
    again = json.loads((tmp_path / "tiny2" / "summary.json").read_text())
    for cell in ("elman", "gru"):
        assert again["cells"][cell]["curve"] == summary["cells"][cell]["curve"]
    assert "wrote" in capsys.readouterr().out


def test_copy_job_rejects_unknown_cells_before_training(tmp_path, capsys):
    assert main(["copy", "--runs-dir", str(tmp_path), "--cells", "elman,nope",
                 "--no-progress"]) == 2
    assert "cell must be one of" in capsys.readouterr().err
    assert not (tmp_path / "copy" / "elman").exists()


def _credit_of(run_dir, params, data):
    """analysis.credit_assignment of the recall loss on one seed's params and batch,
    with the runner's settings (the numbers the job must report)."""
    from rnnjax import analysis
    from rnnjax.training.runner import CREDIT_SETTINGS, credit_loss

    cfg = rnnjax.Config.load(str(run_dir))
    exp = rnnjax.build(cfg)
    xs, ys = data
    spec = exp.task.credit
    return analysis.credit_assignment(
        exp.model.cell, params["cell"], exp.task.encode(xs),
        credit_loss(exp.model, exp.task, params, ys), spec.source, spec.reference,
        **CREDIT_SETTINGS)


def _close(got, want, rel=1e-4):
    assert got.keys() == want.keys()
    for f in want:
        assert (got[f] is None) == (want[f] is None), (f, got, want)
        if want[f] is not None:
            assert got[f] == pytest.approx(want[f], rel=rel), f


@pytest.mark.slow
def test_quick_copy_job_credit_resume_and_gradflow(tmp_path, capsys):
    """Tiny T, few steps: the credit numbers of the report, summary.json and
    metrics.jsonl equal rnnjax.analysis on the saved params and the held-out batch;
    --resume skips finished cells and gradflow --checkpoint reads a cell of the job."""
    import jax

    argv = ["copy", "--name", "q", "--runs-dir", str(tmp_path), "--T", "6", "--hidden", "4",
            "--batch", "4", "--steps", "4", "--log-every", "2", "--eval-batch", "5",
            "--cells", "lstm,exprnn", "--no-progress"]
    assert main(argv) == 0
    out = tmp_path / "q"
    for name in ("copy_loss.png", "copy_credit_profile.png", "copy_credit_history.png",
                 "copy_orth_error.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    assert not (out / "copy_grad_norms.png").exists()
    printed = capsys.readouterr().out
    assert "[1/2] lstm" in printed and "estimated total" in printed
    summary = json.loads((out / "summary.json").read_text())
    md = (out / "report.md").read_text()
    assert "![credit profile](copy_credit_profile.png)" in md and "factor" not in md
    for cell, fields in (("lstm", {"h", "c"}), ("exprnn", {"h"})):
        s = summary["cells"][cell]
        c = s["credit"]
        assert (c["source"], c["reference"], c["targets"]) == (9, 15, list(range(16, 26)))
        params = jax.tree.map(lambda a: a[0], rnnjax.load_params(str(out / cell)))
        exp = rnnjax.build(rnnjax.Config.load(str(out / cell)))
        state0, data = rnnjax.initial_state(exp)
        data = jax.tree.map(lambda a: a[0], data)
        end = _credit_of(out / cell, params, data)
        init = _credit_of(out / cell, jax.tree.map(lambda a: a[0], state0.params), data)
        assert set(end["ratio"]) == fields
        _close(c["end"]["ratio"], end["ratio"])
        _close(c["init"]["ratio"], init["ratio"])
        assert c["end"]["jacobian_norm"] == pytest.approx(end["jacobian_norm"], rel=1e-4)
        assert c["init"]["jacobian_norm"] == pytest.approx(init["jacobian_norm"], rel=1e-4)
        hist = load_history(str(out / cell))
        assert [h["step"] for h in c["history"]] == [r["step"] for r in hist] == [2, 4]
        last = hist[-1]
        _close({f: last[f"eval_credit_ratio_{f}"] for f in fields}, end["ratio"])
        assert last["eval_credit_jacobian_norm"] == pytest.approx(end["jacobian_norm"],
                                                                  rel=1e-4)
        for h, r in zip(c["history"], hist):
            assert h["ratio"] == {f: r[f"eval_credit_ratio_{f}"] for f in fields}
            assert h["jacobian_norm"] == r["eval_credit_jacobian_norm"]
        # the table prints the same numbers
        row = next(line for line in md.splitlines() if line.startswith(f"| {cell} |"))
        cells_ = [x.strip() for x in row.split("|")[1:-1]]
        for f, v in c["end"]["ratio"].items():
            assert f"{f} {v:.2g}" in cells_[6]
        assert cells_[8] == f"{c['end']['jacobian_norm']:.2g}"
        # the profile's ratio is the table's (one measurement, two views)
        prof = s["credit_profile_end"]
        for f in fields:
            assert prof[f][9] / prof[f][15] == pytest.approx(c["end"]["ratio"][f], rel=1e-4)
    assert summary["cells"]["exprnn"]["orth_error"][-1] < 1e-5
    assert summary["cells"]["lstm"]["orth_error"] is None
    # --resume: both cells are done, nothing is retrained, the same report comes back
    mtime = os.path.getmtime(out / "lstm" / "metrics.jsonl")
    assert main(argv + ["--resume"]) == 0
    assert os.path.getmtime(out / "lstm" / "metrics.jsonl") == mtime
    again = json.loads((out / "summary.json").read_text())
    assert again["cells"]["exprnn"]["curve"] == summary["cells"]["exprnn"]["curve"]
    # an interrupted cell (no cell_summary.json yet) resumes from its checkpoint; its
    # credit at initialisation is measured again, to the same numbers
    os.remove(out / "exprnn" / "cell_summary.json")
    assert main(argv + ["--resume"]) == 0
    again = json.loads((out / "summary.json").read_text())
    assert again["cells"]["exprnn"]["curve"] == summary["cells"]["exprnn"]["curve"]
    _close(again["cells"]["exprnn"]["credit"]["init"]["ratio"],
           summary["cells"]["exprnn"]["credit"]["init"]["ratio"])
    # gradflow reads the job's own cell (at its own length: T + 20 steps of the copy layout)
    assert main(["gradflow", "--checkpoint", str(out / "exprnn"), "--T", "26",
                 "--out", str(tmp_path / "gf")]) == 0
    gf = (tmp_path / "gf" / "summary.md").read_text()
    assert "credit ratio" in gf and "| exprnn | trained | 26 | h | 9, 15 |" in gf


def _summary(T=200, **cells_):
    """A copy summary with chosen numbers: cell -> (over_baseline, accuracy, end ratios,
    init ratios, Jacobian norm at the end, orthogonal?)."""
    cs = {}
    for c, (ob, acc, end, init, jac, orth) in cells_.items():
        cs[c] = {"over_baseline": ob, "eval_accuracy": acc,
                 "orth_error": [1e-6] if orth else None,
                 "credit": {"init": {"ratio": init, "jacobian_norm": 1e-3},
                            "end": {"ratio": end, "jacobian_norm": jac}, "history": []}}
    return {"T": T, "cells": cs}


def test_paragraph_says_what_the_credit_numbers_show():
    from rnnjax.experiments.copy_report import _paragraph
    text = _paragraph(_summary(
        elman=(1.0, 0.12, {"h": 6e-26}, {"h": None}, 1e-20, False),
        lstm=(1.01, 0.13, {"h": 0.0087, "c": 0.04}, {"h": None, "c": None}, 7.6, False),
        gru=(1.0, 0.13, {"h": 0.24}, {"h": 1e-9}, 0.9, False),
        exprnn=(0.1, 0.93, {"h": 0.9}, {"h": 0.5}, 1.0, True),
        urnn=(0.5, 0.6, {"h": 0.7}, {"h": 0.6}, 1.0, True)))
    others = text[text.index("Among the other cells"):]
    orthos = text[text.index("Among the cells whose recurrent matrix stays orthogonal"):
                  text.index("Among the other cells")]
    assert ("lstm, gru did not go below the baseline (0.8x or more) although the recall "
            "gradient reaches the symbols after training (lstm (h 0.0087, c 0.04; "
            "||dz_209/dz_9|| 7.6); gru (h 0.24; ||dz_209/dz_9|| 0.9)): their failure at this "
            "delay and training budget is not a vanishing gradient") in others
    assert ("elman did not go below the baseline (0.8x or more) and the recall gradient "
            "does not reach the symbols after training (elman (h 6e-26; ||dz_209/dz_9|| "
            "1e-20)), as a vanishing gradient would make it") in others
    assert ("at initialisation the recall gradient at the symbols underflowed float32 for "
            "elman, lstm") in others
    assert "exprnn went far below the baseline" in orthos and "exprnn (h 0.9" in orthos
    assert "urnn ended between (urnn (0.50x, credit h 0.7))" in orthos
    assert "||dL_recall/dz^f_9|| / ||dL_recall/dz^f_209||" in text
    # the numbers decide: the same gated cell with a vanished gradient reads otherwise
    text = _paragraph(_summary(gru=(1.0, 0.13, {"h": 1e-5}, {"h": None}, 0.1, False)))
    assert "gru did not go below the baseline (0.8x or more) and the recall gradient " \
           "does not reach" in text and "not a vanishing gradient" not in text
    text = _paragraph(_summary(gru=(1.0, 0.13, {"h": None}, {"h": None}, 0.0, False)))
    assert "gru (h underflow; ||dz_209/dz_9|| 0)" in text


def test_credit_entry_means_over_seeds_and_keeps_underflow():
    from rnnjax.experiments.copy_job import credit_entry
    one = credit_entry({"eval_credit_ratio_h": 0.5, "eval_credit_jacobian_norm": 2.0},
                       ["h"], 1)
    assert one == {"ratio": {"h": 0.5}, "jacobian_norm": 2.0}
    two = credit_entry({"eval_credit_ratio_h": [0.2, None], "eval_credit_ratio_c": [0.1, 0.3],
                        "eval_credit_jacobian_norm": np.array([1.0, 3.0])}, ["h", "c"], 2)
    assert two["ratio"] == {"h": None, "c": pytest.approx(0.2)}
    assert two["jacobian_norm"] == 2.0
    assert two["seeds"][1] == {"ratio": {"h": None, "c": 0.3}, "jacobian_norm": 3.0}


def test_profile_lists_tell_underflow_from_a_true_zero():
    from rnnjax.analysis import CreditProfile
    from rnnjax.experiments.copy_job import profile_lists
    a = CreditProfile({"h": np.array([np.nan, np.nan, 1e-3, 0.0])}, None, None)
    b = CreditProfile({"h": np.array([np.nan, 4e-8, 1e-1, 0.0])}, None, None)
    got = profile_lists([a, b], ["h"])["h"]
    assert got[0] is None and got[3] == 0.0  # every seed underflowed / exactly 0
    assert got[1] == pytest.approx(4e-8) and got[2] == pytest.approx(1e-2)


def test_paper_preset_takes_each_cells_recipe():
    from rnnjax.experiments.copy_job import paper_configs
    from rnnjax.optim import PAPER_RECIPES
    cfgs = paper_configs(PAPER, ["exprnn", "scornn", "urnn", "elman", "gru"])
    assert PAPER.variant == "exprnn"  # expRNN's copy layout
    assert cfgs["gru"] == PAPER  # no recipe: the preset's own
    assert (cfgs["scornn"].optimizer, cfgs["scornn"].lr, cfgs["scornn"].lr_orth) == \
        ("rmsprop_tf1", 1e-3, 1e-4)
    assert cfgs["urnn"].optimizer == "rmsprop_theano" and cfgs["urnn"].clip is None
    assert (cfgs["elman"].clip, cfgs["elman"].clip_mode) == (1.0, "element")  # Arjovsky's
    assert cfgs["exprnn"].clip is None and cfgs["exprnn"].lr_orth == 2e-5
    assert dict(cfgs["urnn"].cell_options) == dict(PAPER_RECIPES["urnn"].cell_options)


def test_progress_prints_the_estimate_and_warns_once_on_divergence():
    from rnnjax.experiments.copy_job import _Progress
    lines = []
    p = _Progress(3, lines.append)
    p.start(0, "scornn", 100)
    rec = {"step": 10, "time": 2.0, "eval_loss": 67.0, "baseline": 0.02, "train_grad_norm": 6000.0,
           "nonfinite_skipped": 0}
    p(rec)
    assert lines[0] == "[1/3] scornn" and "diverging" in lines[1] and "step 10" in lines[1]
    p(dict(rec, step=20, time=3.0))  # 100 ms/step after the first window
    assert "100 ms/step" in lines[2] and "estimated total" in lines[2]
    assert sum("diverging" in s for s in lines) == 1
    p.start(1, "urnn", 100)
    ok = {"step": 10, "time": 1.0, "eval_loss": 2.3, "baseline": 0.02, "train_grad_norm": 1.0,
          "nonfinite_skipped": 0}
    p(ok)
    p(dict(ok, step=20, time=2.0, eval_loss=0.5))  # far above the baseline, but falling
    assert not any("diverging" in s for s in lines[4:])
    p(dict(ok, step=30, time=3.0, eval_loss=3.6))  # above 1.5x its first value
    assert "diverging" in lines[-1]


def _tree(path):
    """Every file under ``path`` but the writer's lock: relative name -> (bytes, mtime)."""
    out = {}
    for root, _, names in os.walk(path):
        for n in names:
            if n == ".rnnjax.lock":
                continue
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, path)] = (f.read(), os.stat(p).st_mtime_ns)
    return out


@pytest.mark.slow
def test_copy_job_with_seeds_refuses_a_used_folder_and_resumes(tmp_path, capsys):
    """--num-seeds 2: the table's mean ± std are those of the per-seed metrics and the
    credit numbers are kept per seed; a second run into the folder is refused (without
    --resume, or while another writer holds it) and changes nothing; --resume retrains
    only the cell that has no checkpoint."""
    import jax

    from rnnjax.io.outputs import lock_out
    from rnnjax.training import runner as train_lib

    argv = ["copy", "--name", "s", "--runs-dir", str(tmp_path), "--T", "3", "--hidden", "4",
            "--batch", "4", "--steps", "2", "--log-every", "1", "--eval-batch", "4",
            "--cells", "exprnn", "--num-seeds", "2", "--no-progress"]
    assert main(argv) == 0
    out = tmp_path / "s"
    assert "CE " in capsys.readouterr().out  # eval CE 0.1234 (1.00 x baseline 0.123)
    md = (out / "report.md").read_text()
    assert "cross-entropy (mean ± std)" in md and "2 seeds 0..1" in md
    last = load_history(str(out / "exprnn"))[-1]
    loss = np.asarray(last["seeds"]["eval_loss"])
    row = re.search(r"^\| exprnn \| ([0-9.]+) ± ([0-9.]+) \| ([0-9.]+) ± ([0-9.]+) \|", md, re.M)
    assert row, md
    assert float(row.group(1)) == pytest.approx(loss.mean(), abs=1e-4)
    assert float(row.group(2)) == pytest.approx(loss.std(), abs=1e-4)
    assert float(row.group(3)) == pytest.approx(loss.mean() / last["baseline"], abs=1e-3)
    s = json.loads((out / "summary.json").read_text())["cells"]["exprnn"]
    params = train_lib.load_params(str(out / "exprnn"))
    exp = train_lib.build(train_lib.Config.load(str(out / "exprnn")))
    _, data = train_lib.initial_state(exp)
    per_seed = [_credit_of(out / "exprnn", jax.tree.map(lambda a: a[k], params),
                           jax.tree.map(lambda a: a[k], data)) for k in range(2)]
    for k in range(2):
        _close(s["credit"]["end"]["seeds"][k]["ratio"], per_seed[k]["ratio"])
        assert s["credit"]["end"]["seeds"][k]["jacobian_norm"] == pytest.approx(
            per_seed[k]["jacobian_norm"], rel=1e-4)
    assert s["credit"]["end"]["ratio"]["h"] == pytest.approx(
        np.mean([p["ratio"]["h"] for p in per_seed]), rel=1e-4)
    assert last["seeds"]["eval_credit_ratio_h"] == [
        x["ratio"]["h"] for x in s["credit"]["end"]["seeds"]]

    before = _tree(out)
    assert main(argv) == 2  # the folder holds a report: refused, nothing touched
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--resume" in err and "--overwrite" in err
    assert _tree(out) == before
    with lock_out(out):  # another writer: refused even with --resume
        assert main(argv + ["--resume"]) == 2
    assert "in use by another writer" in capsys.readouterr().err
    assert _tree(out) == before
    # interrupted before its first checkpoint: --resume trains the cell again
    os.remove(out / "exprnn" / "cell_summary.json")
    shutil.rmtree(out / "exprnn" / "checkpoints")
    assert main(argv + ["--resume"]) == 0
    again = json.loads((out / "summary.json").read_text())["cells"]["exprnn"]
    assert again["curve"] == s["curve"]  # the same seeds give the same run
    assert (out / "exprnn" / "cell_summary.json").exists()


def test_log_spread_is_the_mean_and_std_of_the_logs():
    from rnnjax.experiments.copy_job import log_spread
    p = np.array([[1.0, 1e-3, 0.0], [100.0, 1e-5, 0.0], [10.0, 0.0, 0.0]])
    mid, lo, hi = log_spread(p)
    np.testing.assert_allclose(mid[:2], [10.0, 1e-4], rtol=1e-12)  # geometric means
    sd = np.std(np.log([1.0, 100.0, 10.0]))
    np.testing.assert_allclose([lo[0], hi[0]], [10 * np.exp(-sd), 10 * np.exp(sd)], rtol=1e-12)
    np.testing.assert_allclose([lo[1], hi[1]], [1e-4 / 10, 1e-4 * 10], rtol=1e-12)  # zero left out
    assert mid[2] == lo[2] == hi[2] == 0.0  # every seed underflowed
    for a in log_spread(p[:1]):
        np.testing.assert_array_equal(a, p[0])
    with pytest.raises(ValueError, match="profiles must have shape"):
        log_spread(np.ones(3))


def test_a_cell_keeps_its_colour_and_marker_in_every_figure():
    from matplotlib.colors import to_hex

    from rnnjax.plots import gradflow as gradflow_plots
    from rnnjax.plots import report as plots
    from rnnjax.plots.figures import cell_style

    def styles(ax):
        return {ln.get_label(): (to_hex(ln.get_color()), ln.get_marker())
                for ln in ax.get_lines() if not ln.get_label().startswith("memoryless")}

    want = {c: (to_hex(cell_style(c)["color"]), cell_style(c)["marker"])
            for c in ("elman", "exprnn", "urnn")}
    for order in (["elman", "exprnn", "urnn"], ["urnn", "exprnn"]):
        loss = plots.loss_curves({c: ([1, 2, 3], [1.0, 0.5, 0.2]) for c in order}, baseline=0.3)
        got = styles(loss.axes[0])
        assert got == {c: want[c] for c in order}
        grads = plots.grad_norm_curves({c: ([1.0, 0.5], [1.0, 0.9]) for c in order},
                                       bands={order[0]: (([0.9, 0.4], [1.1, 0.6]),
                                                         ([0.9, 0.8], [1.1, 1.0]))})
        got = styles(grads.axes[0])
        for c in order:
            assert got[f"{c} (trained)"] == got[f"{c} (init)"] == want[c]
        assert len(grads.axes[0].collections) == 2  # the two shaded bands
    # the gradient-flow figures use the same mapping (one mapping, in rnnjax.plots.figures)
    assert gradflow_plots.figures.cell_style is cell_style
    assert len({want[c] for c in want}) == 3


@pytest.mark.slow
def test_sweep_writes_one_report_per_delay_and_refuses_a_used_folder(tmp_path):
    import dataclasses

    from rnnjax.experiments.copy_job import run_copy_sweep
    base = dataclasses.replace(DEFAULT, hidden=4, batch=4, steps=2, log_every=1, eval_batch=4)
    kw = dict(runs_dir=str(tmp_path), progress=False, print_fn=None)
    got = run_copy_sweep("sw", base, ["elman"], Ts=(3, 4), **kw)
    assert sorted(got) == [3, 4]
    out = tmp_path / "sw"
    assert (out / "copy_sweep.png").read_bytes()[:4] == b"\x89PNG"
    md = (out / "report.md").read_text()
    assert "[3](T3/report.md)" in md and "[4](T4/report.md)" in md
    for T in (3, 4):
        s = json.loads((out / f"T{T}" / "summary.json").read_text())
        assert s["baseline"] == pytest.approx(10 * np.log(8) / (T + 20))
    before = _tree(out)
    with pytest.raises(ValueError, match="already holds files"):
        run_copy_sweep("sw", base, ["elman"], Ts=(3, 4), **kw)
    with pytest.raises(ValueError, match="T must be"):   # checked before any folder
        run_copy_sweep("sw2", base, ["elman"], Ts=(3, 0), **kw)
    assert _tree(out) == before and not (tmp_path / "sw2").exists()
