"""The main job, ``rnnjax copy``: trains several cells and writes a report."""

import json
import os
import re

import numpy as np
import pytest

from rnnjax import cells
from rnnjax.cli import main
from rnnjax.report import BASE_CELLS, DEFAULT, PAPER, default_cells
from rnnjax.train import ORTHOGONAL_CELLS, load_history


def test_default_cells_pick_up_registered_orthogonal_cells(monkeypatch):
    assert default_cells()[:3] == ["elman", "lstm", "gru"]
    assert default_cells()[3:] == [c for c in ORTHOGONAL_CELLS if c in cells.REGISTRY]
    monkeypatch.setitem(cells.REGISTRY, "householder", cells.elman)
    assert "householder" in default_cells()
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
        assert not os.path.exists(out / cell / "checkpoints")
    # The report carries the command that reproduces it, cell list pinned.
    cmd = re.search(r"```bash\n(.*)\n```", md).group(1)
    assert cmd.startswith("rnnjax copy --name tiny") and cmd.endswith("--cells elman,gru")
    assert "--T 5" in cmd and "--steps 6" in cmd
    # Running that command again reproduces the numbers.
    assert main(cmd.split()[1:] + ["--no-progress"]) == 0
    again = json.loads((out / "summary.json").read_text())
    for cell in ("elman", "gru"):
        assert again["cells"][cell]["curve"] == summary["cells"][cell]["curve"]
    assert "wrote" in capsys.readouterr().out


def test_copy_job_rejects_unknown_cells_before_training(tmp_path, capsys):
    assert main(["copy", "--runs-dir", str(tmp_path), "--cells", "elman,nope",
                 "--no-progress"]) == 2
    assert "cell must be one of" in capsys.readouterr().err
    assert not (tmp_path / "copy" / "elman").exists()
