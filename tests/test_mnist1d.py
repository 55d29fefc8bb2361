"""MNIST-1D (the mnist1d package, generated offline) as a sequence-classification task:
splits, determinism, the runner's whole-split evaluation, and data fingerprints."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("mnist1d")
pytest.importorskip("sklearn")

from rnnjax import tasks  # noqa: E402
from rnnjax.tasks import mnist1d  # noqa: E402
from rnnjax.tasks.base import arrays_sha256  # noqa: E402
from rnnjax.training.runner import Config, build, train  # noqa: E402


def test_loader_splits_shapes_and_leaves_numpy_global_state_alone():
    before = np.random.get_state()[1].copy()
    d = mnist1d.load_mnist1d()
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    shapes = {s: (d[f"x_{s}"].shape, d[f"y_{s}"].shape) for s in ("train", "valid", "test")}
    assert shapes == {"train": ((3600, 40), (3600,)), "valid": ((400, 40), (400,)),
                      "test": ((1000, 40), (1000,))}
    assert d["x_train"].dtype == np.float32 and d["y_train"].dtype == np.int32
    # 5,000 examples, 500 per class, standardised over the whole set (mean 0, std 1).
    ys = np.concatenate([d["y_train"], d["y_valid"], d["y_test"]])
    np.testing.assert_array_equal(np.bincount(ys, minlength=10), np.full(10, 500))
    xs = np.concatenate([d["x_train"], d["x_valid"], d["x_test"]]).astype(np.float64)
    assert abs(xs.mean()) < 1e-5 and xs.std() == pytest.approx(1.0, abs=1e-5)
    # The package's own generator gives the same split (train = its first 3,600).
    from mnist1d.data import get_dataset_args, make_dataset
    state = np.random.get_state()
    ref = make_dataset(get_dataset_args())
    np.random.set_state(state)
    np.testing.assert_array_equal(d["x_test"], ref["x_test"].astype(np.float32))
    np.testing.assert_array_equal(d["y_valid"], ref["y"][3600:])


def test_task_and_fingerprints():
    task = tasks.make("mnist1d")
    assert (task.time, task.input_size, task.output_size, task.readout) == (40, 1, 10, "last")
    xs, ys = task.sample(jax.random.key(0), 5)
    assert xs.shape == (5, 40, 1) and ys.shape == (5,)
    assert task.fingerprint == arrays_sha256(
        *(a for part in (task.splits.train, task.splits.valid, task.splits.test)
          for a in part))
    d1, d2 = tasks.make("digits"), tasks.make("digits")
    p = tasks.make("pdigits", permutation_seed=1)
    assert d1.fingerprint == d2.fingerprint != p.fingerprint != task.fingerprint


def test_runner_trains_by_epochs_and_counts_the_whole_test_split(tmp_path):
    cfg = Config(task="mnist1d", cell="gru", hidden=8, batch=400, epochs=1, lr=1e-2,
                 optimizer="adam", eval_batch=500, out=str(tmp_path / "run"))
    r = train(cfg, progress=False)
    assert r.experiment.config.steps == 3600 // 400 and len(r.history) == 1
    exp = build(Config.load(str(tmp_path / "run")))
    params = jax.tree.map(lambda a: a[0], r.state.params)
    xs, ys = exp.task.splits.test
    logits = np.asarray(exp.model.apply(params, jnp.asarray(xs)), np.float64)
    assert r.history[-1]["eval_accuracy"] == pytest.approx(
        np.mean(np.argmax(logits, 1) == ys), abs=1e-6)
    z = logits - logits.max(1, keepdims=True)
    ce = np.log(np.exp(z).sum(1)) - z[np.arange(len(ys)), ys]
    assert r.history[-1]["eval_loss"] == pytest.approx(ce.mean(), rel=1e-4)
