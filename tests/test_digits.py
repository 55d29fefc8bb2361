"""The digits / pdigits data-set tasks (scikit-learn's 8x8 digits, pixel by pixel),
epoch training and whole-split evaluation of the runner."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("sklearn")

from rnnjax import tasks  # noqa: E402
from rnnjax.cli import main  # noqa: E402
from rnnjax.tasks import digits  # noqa: E402
from rnnjax.training import checkpointing
from rnnjax.training.runner import Config, build, train  # noqa: E402


def test_loader_shapes_splits_and_determinism():
    a, b, c = digits.load_digits(0), digits.load_digits(0), digits.load_digits(1)
    sizes = {s: a[f"x_{s}"].shape for s in ("train", "valid", "test")}
    assert sizes == {"train": (1293, 64), "valid": (144, 64), "test": (360, 64)}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])  # same seed, same split
    assert not np.array_equal(a["y_test"], c["y_test"])  # another seed, another split
    # The three parts are the 1,797 images, each once.
    from sklearn.datasets import load_digits
    full = load_digits().data / 16.0
    parts = np.concatenate([a["x_train"], a["x_valid"], a["x_test"]])
    assert sorted(map(bytes, parts.astype(np.float32))) == sorted(
        map(bytes, full.astype(np.float32)))
    # Stratified: every class holds 20% +- one image of its images in the test part.
    counts = np.bincount(load_digits().target, minlength=10)
    assert np.all(np.abs(np.bincount(a["y_test"], minlength=10) - 0.2 * counts) <= 1)
    assert a["x_test"].min() == 0.0 and a["x_test"].max() == 1.0


def test_pdigits_is_digits_in_one_fixed_order():
    seq, perm = tasks.make("digits", T=1), tasks.make("pdigits", T=1, permutation_seed=3)
    p = digits.permutation(3)
    assert not np.array_equal(p, np.arange(64))
    np.testing.assert_array_equal(perm.splits.permutation, p)
    np.testing.assert_array_equal(perm.splits.test[0], seq.splits.test[0][:, p])
    np.testing.assert_array_equal(perm.splits.test[1], seq.splits.test[1])
    given = tasks.make("pdigits", T=1, permutation=tuple(range(64))[::-1])
    np.testing.assert_array_equal(given.splits.train[0], seq.splits.train[0][:, ::-1])
    with pytest.raises(ValueError, match="permutation must be a permutation of 0..63"):
        tasks.make("pdigits", T=1, permutation=(0,) * 64)


def test_split_metrics_counts_every_example_once():
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((37, 5, 1))
    ys = rng.integers(0, 4, 37).astype(np.int32)
    w = rng.standard_normal((5, 4))
    logits = xs[..., 0] @ w
    got = jax.jit(lambda: tasks.split_metrics(lambda x: x[..., 0] @ w, (xs, ys), 8))()
    z = logits - logits.max(1, keepdims=True)
    ce = -(z[np.arange(37), ys] - np.log(np.exp(z).sum(1)))
    assert float(got["accuracy"]) == np.mean(np.argmax(logits, 1) == ys)
    np.testing.assert_allclose(float(got["loss"]), ce.mean(), rtol=1e-12)


def test_epoch_batches_visit_each_example_once():
    xs = np.arange(10)[:, None] * 1.0
    ys = np.arange(10)
    key = jax.random.key(0)
    seen = [np.asarray(tasks.epoch_batch((xs, ys), key, s, 3)[1]) for s in range(3)]
    assert len(set(np.concatenate(seen).tolist())) == 9  # 3 batches of 3, no repeat
    again = [np.asarray(tasks.epoch_batch((xs, ys), key, s, 3)[1]) for s in range(3)]
    np.testing.assert_array_equal(seen, again)
    nxt = np.asarray(tasks.epoch_batch((xs, ys), key, 3, 3)[1])  # epoch 2: a new order
    assert not np.array_equal(nxt, seen[0])


def test_runner_reports_whole_test_split_accuracy_and_keeps_best(tmp_path):
    out = tmp_path / "run"
    cfg = Config(task="pdigits", cell="elman", hidden=8, batch=256, epochs=2, lr=1e-2,
                 optimizer="adam", eval_batch=100, out=str(out))
    r = train(cfg, progress=False)
    saved = json.loads((out / "config.json").read_text())
    assert saved["steps"] == 2 * (1293 // 256) and saved["log_every"] == 1293 // 256
    np.testing.assert_array_equal(saved["permutation"], digits.permutation(0))
    last = r.history[-1]
    # Recount over the whole test split with NumPy from the final params' logits.
    exp = build(Config.load(str(out)))
    params = jax.tree.map(lambda a: a[0], r.state.params)
    xs, ys = exp.task.splits.test
    logits = np.asarray(exp.model.apply(params, jnp.asarray(xs, jnp.float32)), np.float64)
    assert last["eval_accuracy"] == pytest.approx(np.mean(np.argmax(logits, 1) == ys),
                                                  abs=1e-6)
    best = json.loads((out / "best.json").read_text())
    top = max(r.history, key=lambda h: (h["valid_accuracy"], -h["valid_loss"]))
    assert best["step"] == top["step"]
    # The kept params score best.json's validation accuracy over the whole split.
    kept = checkpointing.restore_params(str(out / "best"), r.state.params)
    xv, yv = exp.task.splits.valid
    lv = exp.model.apply(jax.tree.map(lambda a: a[0], kept), jnp.asarray(xv, jnp.float32))
    assert best["valid_accuracy"] == pytest.approx(
        np.mean(np.argmax(np.asarray(lv), 1) == yv), abs=1e-6)


def test_cli_refuses_epochs_for_generated_task_and_a_split_too_small(capsys):
    assert main(["train", "--task", "copy", "--epochs", "1", "--no-progress"]) == 2
    assert "epochs is for data-set tasks" in capsys.readouterr().err
    assert main(["train", "--task", "digits", "--epochs", "1", "--batch", "2000",
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "batch must be <= the 1293 training examples" in err, err
