"""A cell of one's own, from a file in the current folder, trains through ``rnnjax train
--cell my_cells:peephole`` and joins ``rnnjax copy --cells`` with its own colour, with no
change to the package; a broken one is refused in one line before anything is written."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells, cli
from rnnjax.plots.figures import cell_style

PEEPHOLE = '''
import jax, jax.numpy as jnp
from rnnjax import Cell, LSTMState

def peephole(hidden_size, peep_init=0.0):
    """LSTM with peepholes (Gers & Schmidhuber 2000): the gates also read c."""
    H = hidden_size

    def init(key, F):
        k1, k2 = jax.random.split(key)
        return {"W_x": jax.random.normal(k1, (4 * H, F)) / jnp.sqrt(F),
                "W_h": jax.random.normal(k2, (4 * H, H)) / jnp.sqrt(H),
                "p": jnp.full((3, H), peep_init), "b": jnp.zeros(4 * H)}

    def step(w, carry, x):
        i, f, g, o = jnp.split(w["W_x"] @ x + w["W_h"] @ carry.h + w["b"], 4)
        i = jax.nn.sigmoid(i + w["p"][0] * carry.c)
        f = jax.nn.sigmoid(f + w["p"][1] * carry.c)
        c = f * carry.c + i * jnp.tanh(g)
        h = jax.nn.sigmoid(o + w["p"][2] * c) * jnp.tanh(c)
        return LSTMState(h, c), h

    zeros = lambda shape, dtype: LSTMState(jnp.zeros(shape + (H,), dtype),
                                           jnp.zeros(shape + (H,), dtype))
    return Cell(init=init, prepare=lambda p: p, initial_carry=zeros, step=step,
                input_size=lambda p: p["W_x"].shape[1], output_size=H, name="peephole")

def not_a_cell(hidden_size):
    return {"W": jnp.zeros((hidden_size, hidden_size))}

def wrong_carry(hidden_size):
    cell = peephole(hidden_size)
    return cell._replace(step=lambda w, c, x: (c.h, c.h))
'''


@pytest.fixture
def here(tmp_path, monkeypatch):
    (tmp_path / "my_cells.py").write_text(PEEPHOLE)
    (tmp_path / "broken_cells.py").write_text("def peephole(:\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_make_builds_it_with_what_registered_cells_have(here):
    cell = cells.make("my_cells:peephole", 4)
    assert cell is cells.make("my_cells:peephole", 4)  # shared like registered cells
    assert cells.make("my_cells:peephole", 4, peep_init=0.5) is not cell
    params = jax.tree.map(lambda a: a.astype(jnp.float64), cell.init(jax.random.key(0), 3))
    xs = jax.random.normal(jax.random.key(1), (2, 5, 3), jnp.float64)
    ys, final = rnnjax.run(cell, params, xs)
    h = c = np.zeros((2, 4))
    W_x, W_h, p, b = (np.asarray(params[k]) for k in ("W_x", "W_h", "p", "b"))
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for t in range(5):  # the peephole equations in NumPy
        i, f, g, o = np.split(xs[:, t] @ W_x.T + h @ W_h.T + b, 4, axis=-1)
        c = sig(f + p[1] * c) * c + sig(i + p[0] * c) * np.tanh(g)
        h = sig(o + p[2] * c) * np.tanh(c)
        np.testing.assert_allclose(ys[:, t], h, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(final.c, c, rtol=1e-12, atol=1e-12)
    half = cells.make("my_cells:peephole", 4, dtype="bfloat16")  # mixed precision too
    assert rnnjax.run(half, half.init(jax.random.key(0), 3), xs)[0].dtype == jnp.bfloat16


def test_it_trains_through_rnnjax_train_and_resumes(here, capsys):
    out = str(here / "run")
    argv = ["train", "--task", "copy", "--cell", "my_cells:peephole", "--T", "5",
            "--hidden", "4", "--batch", "2", "--eval-batch", "2", "--steps", "4",
            "--log-every", "2", "--out", out, "--no-progress"]
    assert cli.main(argv) == 0
    assert json.loads((here / "run" / "config.json").read_text())["cell"] == "my_cells:peephole"
    records = [json.loads(line) for line in (here / "run" / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [2, 4]
    assert all(np.isfinite(r["train_loss"]) for r in records)
    params = rnnjax.load_params(out)
    assert params["cell"]["p"].shape == (1, 3, 4)  # (seeds, 3, H): the peepholes trained


def test_it_joins_the_copy_job_with_its_own_colour(here):
    argv = ["copy", "--name", "mine", "--runs-dir", str(here), "--T", "4", "--hidden", "4",
            "--batch", "2", "--steps", "2", "--log-every", "1", "--eval-batch", "2",
            "--cells", "elman,my_cells:peephole", "--no-progress"]
    assert cli.main(argv) == 0
    summary = json.loads((here / "mine" / "summary.json").read_text())
    assert set(summary["cells"]) == {"elman", "my_cells:peephole"}
    assert "my_cells:peephole" in (here / "mine" / "report.md").read_text()
    colours = {cell_style(name)["color"] for name in cells.REGISTRY}
    assert cell_style("my_cells:peephole")["color"] not in colours


@pytest.mark.parametrize("spec, message", [
    ("my_cells:nope", "module 'my_cells' has no callable 'nope'"),
    ("no_such_cells:peephole", "cannot import module 'no_such_cells'"),
    ("broken_cells:peephole", "importing module 'broken_cells' failed: SyntaxError"),
    ("my_cells:not_a_cell", "the factory must return an rnnjax.Cell, got dict"),
    ("my_cells:wrong_carry", "step must return a carry like its initial carry"),
])
def test_a_broken_cell_is_one_line_and_nothing_is_written(here, capsys, spec, message):
    out = here / "bad"
    argv = ["train", "--task", "copy", "--cell", spec, "--T", "5", "--hidden", "4",
            "--steps", "2", "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not out.exists()



def test_gradflow_measures_it_beside_a_registered_cell(here):
    out = here / "flow"
    assert cli.main(["gradflow", "--cells", "elman,my_cells:peephole", "--T", "5",
                     "--hidden", "4", "--batch", "2", "--features", "3", "--lyap-steps", "8",
                     "--lyap-k", "2", "--out", str(out)]) == 0
    rows = (out / "gradflow.csv").read_text().splitlines()
    assert sum(row.startswith("my_cells:peephole,") for row in rows) == 5  # t = 1..5
