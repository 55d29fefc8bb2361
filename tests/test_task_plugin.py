"""A task of one's own trains through ``rnnjax train --task module:factory``."""

import importlib
import textwrap

import pytest

from rnnjax import cli, tasks
from rnnjax.tasks.plugin import plugin_task
from rnnjax.training.metrics import load_history

MODULE = textwrap.dedent('''
    import jax, jax.numpy as jnp
    from rnnjax.tasks.base import Task, accuracy, cross_entropy, one_hot_encoder

    CALLS = []

    def echo(T, **options):          # output at t: the input at t - 1 (0 at t = 0)
        CALLS.append(dict(T=T, **options))
        def sample(key, batch):
            xs = jax.random.randint(key, (batch, T), 0, 4)
            return xs, jnp.roll(xs, 1, axis=1).at[:, 0].set(0)
        def loss(logits, ys):
            return jnp.mean(cross_entropy(logits, ys))
        return Task(name="echo", sample=sample, eval_sample=sample,
                    encode=one_hot_encoder(4), loss=loss,
                    metrics=lambda lg, ys: {"loss": loss(lg, ys), "accuracy": accuracy(lg, ys)},
                    input_size=4, output_size=4, readout="all",
                    baseline=float(jnp.log(4)), baseline_note="uniform guess", time=T)

    def only_T(T):
        return echo(T)

    def not_a_task(T):
        return 3
''')


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    (tmp_path / "my_rnnjax_tasks.py").write_text(MODULE)
    monkeypatch.chdir(tmp_path)  # a module in the current directory is found
    monkeypatch.delitem(__import__("sys").modules, "my_rnnjax_tasks", raising=False)
    yield tmp_path


def test_user_task_trains_through_the_cli(plugin_dir, capsys):
    out = str(plugin_dir / "run")
    rc = cli.main(["train", "--task", "my_rnnjax_tasks:echo", "--cell", "gru", "--T", "6",
                   "--hidden", "16", "--batch", "32", "--steps", "150", "--log-every", "50",
                   "--optimizer", "adam", "--lr", "1e-2", "--eval-batch", "64",
                   "--out", out, "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    hist = load_history(out)
    first, last = hist[0], hist[-1]
    assert last["baseline"] == pytest.approx(1.3862943611198906)
    assert last["eval_accuracy"] > 0.95  # chance is 0.25
    assert last["eval_loss"] < 0.1 * last["baseline"] < first["eval_loss"]


def test_factory_gets_the_options_it_names(plugin_dir):
    t = plugin_task("my_rnnjax_tasks:only_T", T=7, data=None, variant="arjovsky")
    assert t.time == 7
    tasks.make("my_rnnjax_tasks:echo", T=3, data="x")
    assert importlib.import_module("my_rnnjax_tasks").CALLS[-1] == {"T": 3, "data": "x"}


def test_bad_task_specs_are_named(plugin_dir, capsys):
    with pytest.raises(TypeError, match="must return an rnnjax.tasks.Task, got int"):
        plugin_task("my_rnnjax_tasks:not_a_task", T=3)
    assert cli.main(["train", "--task", "no_such_module_xyz:f"]) == 2
    assert "cannot import module 'no_such_module_xyz'" in capsys.readouterr().err
    assert cli.main(["train", "--task", "my_rnnjax_tasks:missing"]) == 2
    assert "has no callable 'missing'" in capsys.readouterr().err
