"""The ``mnist1d-gru`` preset (MNIST-1D's GRU baseline, greydanus/mnist1d
notebooks/models.py GRUBase and notebooks/train.py): its config is the reference
protocol, its model a bidirectional GRU read out over all 40 outputs, it runs from the
command line with options overriding it, and a bad preset name is refused.

The data are replaced by a small synthetic set of the same shapes (the real generator
takes seconds); tests/test_mnist1d.py checks the real data."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import cli, layers, tasks
from rnnjax.cells import gru
from rnnjax.tasks import mnist1d
from rnnjax.training.config import PRESETS, Config, preset, validate
from rnnjax.training.runner import make_model


def _fake_generate(n_train=200, n_test=50):
    """What ``mnist1d._generate`` returns ``(x, y, x_test, y_test)``, small and random."""
    rng = np.random.default_rng(0)
    return (rng.normal(size=(n_train, 40)), rng.integers(0, 10, n_train),
            rng.normal(size=(n_test, 40)), rng.integers(0, 10, n_test))


@pytest.fixture
def small_mnist1d(monkeypatch):
    monkeypatch.setattr(mnist1d, "_generate", _fake_generate)


def test_preset_config_is_the_reference_protocol():
    c = preset("mnist1d-gru")
    assert c is PRESETS["mnist1d-gru"]
    # notebooks/models.py GRUBase(input_size=1, output_size=10): hidden_size=6,
    # bidirectional=True, one nn.Linear over the flattened outputs; PyTorch's init.
    assert (c.task, c.cell, c.hidden, c.bidirectional, c.readout) == (
        "mnist1d_full", "gru", 6, True, "flatten")
    assert dict(c.cell_options) == {"init": "uniform"}
    # notebooks/train.py get_model_args: Adam lr 1e-2 (weight decay 0), batch 100,
    # total_steps 8000; no clipping.
    assert (c.optimizer, c.lr, c.clip, c.batch) == ("adam", 1e-2, None, 100)
    assert c.epochs * tasks.steps_per_epoch(4000, c.batch) == 8000
    # the whole 1,000-example test split in one evaluation batch
    assert c.eval_batch == 1000
    validate(c)


def test_full_split_trains_on_all_4000_examples(small_mnist1d):
    d = mnist1d.load_mnist1d(n_valid=0)
    assert d["x_train"].shape == (200, 40) and d["x_valid"] is None
    task = tasks.make("mnist1d_full")
    assert task.splits.valid is None and task.splits.train[0].shape == (200, 40, 1)
    assert mnist1d.load_mnist1d(n_valid=40)["x_valid"].shape == (40, 40)
    with pytest.raises(ValueError, match=r"n_valid must be an integer in \[0, 200\), got -1"):
        mnist1d.load_mnist1d(n_valid=-1)


def test_preset_model_is_bidirectional_with_a_readout_over_all_40_outputs(small_mnist1d):
    c = preset("mnist1d-gru")
    model = make_model(c, tasks.make(c.task))
    params = model.init(jax.random.key(0))
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes["readout"] == {"W": (10, 40 * 2 * 6), "b": (10,)}
    for way in ("fwd", "bwd"):
        assert shapes["rnn"][way] == {"W_xh": (18, 1), "W_hh": (18, 6), "b": (18,),
                                      "b_hn": (6,)}
    bound = 1 / np.sqrt(480)  # torch.nn.Linear(480, 10)'s default init
    assert float(jnp.max(jnp.abs(params["readout"]["W"]))) <= bound
    assert float(jnp.max(jnp.abs(params["readout"]["b"]))) <= bound
    # o = W vec(y_1 .. y_40) + b with y_t = [fwd_t, bwd_t], h0 = 0 both ways
    xs = jax.random.normal(jax.random.key(1), (3, 40, 1))

    @jax.jit  # one program for both (compiling dominates)
    def both(params, xs):
        ys, _ = layers.bidirectional(gru(6, init="uniform")).apply(params["rnn"], xs)
        return (model.apply(params, xs),
                ys.reshape(3, 480) @ params["readout"]["W"].T + params["readout"]["b"])

    got, expect = both(params, xs)
    np.testing.assert_allclose(got, expect, rtol=1e-5, atol=1e-6)


def test_flatten_needs_one_output_per_sequence_and_a_recurrent_cell():
    with pytest.raises(ValueError, match="readout='flatten'.*'copy' task reads an output "
                                         "at every step"):
        make_model(Config(task="copy", T=5, readout="flatten"), tasks.make("copy", T=5))
    with pytest.raises(ValueError, match="readout must be one of \\['flatten'\\], got 'x'"):
        validate(Config(readout="x"))
    with pytest.raises(ValueError, match="bidirectional need a recurrent cell, got the "
                                         "baseline 'wavenet'"):
        validate(Config(cell="wavenet", bidirectional=True))


SET_BY_THE_RUN = ("steps", "log_every", "data_sha256", "grad_used", "scan_used")


def test_tiny_run_of_the_preset_from_the_command_line(small_mnist1d, tmp_path, capsys):
    out = tmp_path / "run"
    # --batch 64 is Config's default: given on the command line, it still overrides
    # the preset's 100.
    rc = cli.main(["train", "--preset", "mnist1d-gru", "--epochs", "1", "--batch", "64",
                   "--grad", "autodiff", "--checkpoint-every", "0", "--no-progress",
                   "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    saved = Config.load(str(out))
    want = dataclasses.replace(preset("mnist1d-gru"), epochs=1, batch=64, grad="autodiff",
                               out=str(out))
    assert {f.name: getattr(saved, f.name) for f in dataclasses.fields(Config)
            if f.name not in SET_BY_THE_RUN} == \
        {f.name: getattr(want, f.name) for f in dataclasses.fields(Config)
         if f.name not in SET_BY_THE_RUN}
    # what the run decided and wrote: the engine --grad autodiff runs on
    assert (saved.grad_used, saved.scan_used) == ("autodiff", "sequential")
    assert saved.steps == 200 // 64
    rec = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rec] == [3] and 0 <= rec[0]["eval_accuracy"] <= 1
    assert "valid_loss" not in rec[0] and not (out / "best.json").exists()


def test_bad_preset_name_is_refused_naming_the_option_and_the_choices(capsys):
    with pytest.raises(ValueError, match=r"preset must be one of \['mnist1d-gru'\], got "
                                         r"'mnist1d_gru'"):
        preset("mnist1d_gru")
    assert cli.main(["train", "--preset", "mnist1d_gru"]) == 2
    assert "preset must be one of ['mnist1d-gru'], got 'mnist1d_gru'" in \
        capsys.readouterr().err
    assert cli.main(["train", "--preset", "mnist1d-gru", "--steps", "5"]) == 2
    assert "give --epochs instead" in capsys.readouterr().err
