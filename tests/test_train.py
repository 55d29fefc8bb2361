"""The training runner: validation, learning, orthogonal learning rate, clipping,
determinism, resumption in a fresh process, many seeds with vmap."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rnnjax import cells
from rnnjax.cli import main
from rnnjax.engine.bptt import choose_grad
from rnnjax.optim import label_params
from rnnjax.training.runner import TIMING_KEYS, Config, build, load_history, load_params, train

sys.path.insert(0, os.path.dirname(__file__))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(task="copy", cell="elman", T=5, hidden=8, batch=8, steps=12, log_every=4,
            eval_batch=16, lr=1e-2)


def _deterministic(history):
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history]


@pytest.mark.parametrize("change,message", [
    (dict(task="kopy"), r"task must be one of \['adding', 'charlm', 'copy', 'cycle', 'digits', "
                        r"'induction', 'mnist1d', 'mnist1d_full', 'modadd', 'mqar', 'parity', "
                        r"'pdigits', 'pmnist', 's3', 's5', 'selective_copy', 'smnist'\], "
                        r"got 'kopy'"),
    (dict(cell="lsmt"), r"cell must be one of \[.*'elman'.*'gru'.*'lstm'.*\], got 'lsmt'"),
    (dict(T=0), "T must be a positive integer, got 0"),
    (dict(hidden=0), "hidden must be a positive integer, got 0"),
    (dict(hidden=-4), "hidden must be a positive integer, got -4"),
    (dict(lr=0.0), "lr must be a positive number"),
    (dict(optimizer="adagrad"), "optimizer must be one of"),
    (dict(grad="by-hand"), r"grad must be one of \['auto', 'autodiff', 'manual'\], got 'by-hand'"),
    (dict(grad="manual", cell="mgu"),
     "needs a hand-written backward .cell.backward., and the 'mgu' cell has none"),
    (dict(grad="manual", cell="wavenet"), "got the baseline 'wavenet'"),
])
def test_bad_config_fails_before_training(tmp_path, change, message):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=message):
        train(Config(**{**TINY, **change, "out": str(out)}), progress=False)
    assert not out.exists()  # nothing was written: the error came before any training


def test_missing_mnist_and_cli_errors(tmp_path, capsys):
    path = str(tmp_path / "mnist.npz")
    with pytest.raises(FileNotFoundError) as e:
        train(Config(**{**TINY, "task": "smnist", "data": path}), progress=False)
    assert path in str(e.value) and "x_train, y_train, x_test, y_test" in str(e.value)
    for argv, message in [
            (["train", "--task", "pmnist", "--data", path], path),
            (["train", "--task", "nope"], "task must be one of ['adding', 'charlm', 'copy'"),
            (["train", "--cell", "nope"], "cell must be one of"),
            (["train", "--T", "0"], "T must be a positive integer"),
            (["train", "--hidden", "0"], "hidden must be a positive integer"),
            (["copy", "--cells", "elman,nope"], "cell must be one of")]:
        assert main(argv + ["--no-progress"]) == 2
        err = capsys.readouterr().err
        assert message in err, err


@pytest.mark.slow
def test_runner_learns_copy_T20_with_an_orthogonal_cell():
    """expRNN on copy T=20 drops below half the memoryless baseline in 200 steps; Elman
    tanh does not learn.  A learning outcome, so it is asserted for each of 2 seeds
    (vmapped) with a margin from the spread over 8 seeds (AMD EPYC, float32): expRNN ends
    at 0.16-0.30 of the baseline with recall 0.84-0.93; Elman at 1.06-1.42 with recall
    0.00-0.13 (1.49 seen on an AVX-512 Xeon; up to 3.5 with PyTorch's two-bias uniform
    init).  How far above the baseline a model that does not learn ends depends on the
    CPU's rounding and is no claim, so the old upper bound (1.3) is dropped; the claim,
    no learning, is the lower bound 0.9."""
    cfg = Config(task="copy", cell="exprnn", T=20, hidden=64, batch=32, steps=200,
                 log_every=100, lr=1e-3, lr_orth=1e-4, eval_batch=128, seeds=2)
    last = train(cfg, progress=False).history[-1]
    assert last["baseline"] == pytest.approx(10 * np.log(8) / 40)
    seeds = last["seeds"]
    assert max(seeds["eval_loss"]) < 0.5 * last["baseline"], seeds["eval_loss"]
    assert min(seeds["eval_accuracy"]) > 0.5, seeds["eval_accuracy"]
    assert max(seeds["orth_error"]) < 1e-4  # W = expm(S - S^T) stays orthogonal
    e = train(Config(**{**cfg.to_json(), "cell": "elman", "cell_options": ()}), progress=False)
    ratios = np.array(e.history[-1]["seeds"]["eval_loss"]) / last["baseline"]
    assert ratios.min() > 0.9, ratios


def test_orthogonal_labels_and_learning_rate():
    cfg = Config(task="copy", cell="exprnn", T=3, hidden=4, batch=4, steps=1,
                 optimizer="sgd", lr=0.5, lr_orth=0.01)
    exp = build(cfg)
    labels = label_params(exp.model.init(jax.random.key(0)))
    assert labels == {"cell": {"skew": "orthogonal", "V": "other", "b": "other"},
                      "readout": {"W": "other", "b": "other"}}
    # One SGD step: skew moves by -lr_orth * g, everything else by -lr * g.
    s0 = exp.init(jnp.int32(0))
    key, k = jax.random.split(jax.random.wrap_key_data(s0.key))
    xs, ys = exp.task.sample(k, cfg.batch)
    g = jax.grad(lambda p: exp.task.loss(exp.model.apply(p, exp.task.encode(xs)), ys))(s0.params)
    s1 = jax.jit(exp.step)(s0)
    np.testing.assert_allclose(s1.params["cell"]["skew"],
                               s0.params["cell"]["skew"] - 0.01 * g["cell"]["skew"], atol=1e-7)
    np.testing.assert_allclose(s1.params["cell"]["V"],
                               s0.params["cell"]["V"] - 0.5 * g["cell"]["V"], atol=1e-7)
    np.testing.assert_allclose(s1.params["readout"]["W"],
                               s0.params["readout"]["W"] - 0.5 * g["readout"]["W"], atol=1e-7)
    assert float(s1.gnorm_sum) == pytest.approx(float(optax.tree.norm(g)), rel=1e-5)


@pytest.mark.parametrize("mode", ["element", "global_norm"])
def test_clipping(mode):
    cfg = Config(**{**TINY, "optimizer": "sgd", "lr": 1.0, "clip": 1e-3, "clip_mode": mode})
    exp = build(cfg)
    s0 = exp.init(jnp.int32(0))
    s1 = jax.jit(exp.step)(s0)
    delta = jax.tree.map(lambda a, b: a - b, s1.params, s0.params)
    if mode == "element":
        assert max(float(jnp.max(jnp.abs(d))) for d in jax.tree.leaves(delta)) == \
            pytest.approx(1e-3, rel=1e-5)
    else:
        assert float(optax.tree.norm(delta)) == pytest.approx(1e-3, rel=1e-4)


def test_same_seed_same_metrics_and_files(tmp_path):
    a = train(Config(**{**TINY, "out": str(tmp_path / "a")}), progress=False)
    b = train(Config(**TINY), progress=False)
    assert _deterministic(a.history) == _deterministic(b.history)
    for x, y in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
        np.testing.assert_array_equal(x, y)
    hist = load_history(str(tmp_path / "a"))
    assert [r["step"] for r in hist] == [4, 8, 12]
    assert all("train_loss" in r and "eval_loss" in r and "train_grad_norm" in r for r in hist)
    header = (tmp_path / "a" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[:2] == ["step", "train_loss"]
    assert json.loads((tmp_path / "a" / "config.json").read_text())["out"] == "."  # portable
    saved = Config.load(str(tmp_path / "a"))  # + the engine the runner used (RNNJAX_AUTOTUNE=0)
    assert (saved.grad_used, saved.scan_used) == (choose_grad(cells.elman(8), "auto"),
                                                  "sequential")
    assert dataclasses.replace(saved, grad_used=None, scan_used=None) == Config(
        **{**TINY, "out": str(tmp_path / "a")})
    # The logged training loss is the mean over the window of the per-step losses.
    c = train(Config(**{**TINY, "log_every": 1}), progress=False)
    np.testing.assert_allclose([r["train_loss"] for r in a.history],
                               np.mean(np.reshape([r["train_loss"] for r in c.history], (3, 4)), 1),
                               rtol=1e-6)


@pytest.mark.parametrize("cell", ["elman", "lstm"])
def test_manual_bptt_trains_like_autodiff(cell):
    """grad='manual' (the hand-written BPTT) gives the autodiff run's metrics and params,
    step by step.  float32: the two backward passes round differently and the Elman run
    amplifies it (relative difference per step, measured on the AVX-512 AMD EPYC and
    with --xla_cpu_max_isa=SSE4_2: <= 1.3e-7 over steps 1-8, then growing to 1.6e-4 and
    4.8e-4 by step 12), so the equality is checked at each of the first 6 steps, a
    margin of 700 to rtol 1e-4.  The 12-step comparison of 4-step windows this replaces
    asserted where a trajectory lands."""
    base = {**TINY, "steps": 6, "log_every": 1}
    auto = train(Config(**{**base, "cell": cell, "grad": "autodiff"}), progress=False)
    manual = train(Config(**{**base, "cell": cell, "grad": "manual"}), progress=False)
    assert [r["step"] for r in manual.history] == [r["step"] for r in auto.history] \
        == [1, 2, 3, 4, 5, 6]
    for a, m in zip(auto.history, manual.history):
        for k in ("train_loss", "train_grad_norm", "eval_loss"):
            np.testing.assert_allclose(m[k], a[k], rtol=1e-4)
    for a, m in zip(jax.tree.leaves(auto.state.params), jax.tree.leaves(manual.state.params)):
        np.testing.assert_allclose(m, a, rtol=1e-4, atol=1e-5)


def test_seeds_vmap_equals_separate_runs():
    """The vmapped seeds are the separate runs, step by step.  float32: the vmapped
    matmuls round differently from the single run's, and training amplifies the
    difference (measured on an AVX2 AMD EPYC: relative 1e-7 at steps 1-4, growing to 2e-5
    by step 12, 1.05e-5 seen on an AVX-512 Xeon), so program equality is checked over the
    first 4 steps, each one logged, where rounding stays below 3.1e-7 (a margin of 30 to
    the tolerance 1e-5).  The 12-step windowed comparison this replaces asserted where a
    trajectory lands, which depends on the CPU's kernels."""
    base = {**TINY, "steps": 4, "log_every": 1}
    many = train(Config(**{**base, "seed": 3, "seeds": 4}), progress=False)
    assert many.history[-1]["seeds"]["train_loss"][0] != many.history[-1]["seeds"]["train_loss"][1]
    for i in range(4):
        one = train(Config(**{**base, "seed": 3 + i}), progress=False)
        assert [r["step"] for r in many.history] == [r["step"] for r in one.history] == [1, 2, 3, 4]
        for rec_many, rec_one in zip(many.history, one.history):
            for k in ("train_loss", "train_grad_norm", "eval_loss", "eval_accuracy"):
                np.testing.assert_allclose(rec_many["seeds"][k][i], rec_one[k], rtol=1e-5)
        # params of size ~0.3 differ by ~1e-7 after 4 steps; another seed's by ~0.1
        for x, y in zip(jax.tree.leaves(many.state.params), jax.tree.leaves(one.state.params)):
            np.testing.assert_allclose(x[i], y[0], rtol=1e-5, atol=1e-5)
    last = many.history[-1]
    vals = np.array(last["seeds"]["eval_loss"])
    assert last["eval_loss"] == pytest.approx(vals.mean())
    assert last["eval_loss_std"] == pytest.approx(vals.std())


ARGS = ["train", "--task", "copy", "--cell", "gru", "--T", "10", "--hidden", "8", "--batch",
        "8", "--log-every", "5", "--checkpoint-every", "10", "--keep", "2", "--no-progress",
        "--optimizer", "adam", "--lr", "1e-2"]


def _cli_fresh_process(*args):
    # the same float64 setting as this process (tests/conftest.py), so both halves agree
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_ENABLE_X64="1")
    subprocess.run([sys.executable, "-m", "rnnjax.cli", *ARGS, *args], cwd=ROOT, env=env,
                   check=True, capture_output=True, text=True)


def test_resume_in_a_fresh_process_is_bitwise(tmp_path):
    """The uninterrupted run and the first half run in this process (the same CLI entry
    point); only the resumption runs in a fresh process -- that is what is tested."""
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert main(ARGS + ["--steps", "20", "--out", a]) == 0
    assert main(ARGS + ["--steps", "10", "--out", b]) == 0
    _cli_fresh_process("--steps", "20", "--out", b, "--resume")
    ha, hb = load_history(a), load_history(b)
    assert [r["step"] for r in hb] == [5, 10, 15, 20]
    assert _deterministic(ha) == _deterministic(hb)
    pa, pb = load_params(a, 20), load_params(b, 20)
    for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_array_equal(x, y)
    assert sorted(os.listdir(os.path.join(b, "checkpoints"))) == ["10", "20"]
    with pytest.raises(ValueError, match="already holds checkpoints"):
        train(Config(task="copy", cell="gru", T=10, hidden=8, batch=8, steps=20,
                     checkpoint_every=10, out=b), progress=False)
    with pytest.raises(ValueError, match="hidden=8"):
        train(Config(task="copy", cell="gru", T=10, hidden=9, batch=8, steps=30,
                     log_every=5, optimizer="adam", lr=1e-2, checkpoint_every=10, out=b),
              resume=True, progress=False)


def test_lru_and_wavenet_train_through_the_runner():
    """The LRU (copy, T=10) and the dilated-convolution baseline (adding, T=16) beat their
    memoryless baselines through the same runner as the recurrent cells."""
    lru = train(Config(task="copy", cell="lru", cell_options=(("model_size", 10),), T=10,
                       hidden=64, batch=32, steps=200, log_every=200, lr=3e-3,
                       eval_batch=128), progress=False).history[-1]
    assert lru["eval_loss_over_baseline"] < 0.5
    net = train(Config(task="adding", cell="wavenet", T=16, hidden=16, batch=32, steps=200,
                       log_every=200, lr=3e-3, optimizer="adam", eval_batch=256),
                progress=False).history[-1]
    assert net["eval_loss"] < 0.5 * net["baseline"]
    assert net["eval_grad_norm_layers"] > 0 and "eval_grad_norm_cell" not in net  # per-layer norms
