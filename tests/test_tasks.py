"""Tasks: generators symbol by symbol, baselines, losses of known strategies."""

import gzip
import math
import os
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import tasks
from rnnjax.tasks import charlm, mnist


@pytest.mark.parametrize("T", [1, 5, 37, 100])
def test_copy_arjovsky_layout_symbol_by_symbol(T):
    x, y = (np.asarray(a) for a in tasks.copy_batch(jax.random.key(T), 16, T))
    assert x.shape == y.shape == (16, T + 20)
    assert x.dtype == y.dtype == np.int32
    data = x[:, :10]
    assert data.min() >= 1 and data.max() <= 8  # 8 data categories 1..8
    np.testing.assert_array_equal(x[:, 10:10 + T - 1], 0)  # T-1 blanks
    np.testing.assert_array_equal(x[:, T + 9], 9)  # the marker
    np.testing.assert_array_equal(x[:, T + 10:], 0)  # 10 blanks
    np.testing.assert_array_equal(y[:, :T + 10], 0)  # T+10 blanks
    np.testing.assert_array_equal(y[:, T + 10:], data)  # then the 10 symbols
    assert (x == 9).sum() == 16  # one marker per sequence, nowhere else


@pytest.mark.parametrize("T", [1, 20, 64])
def test_copy_exprnn_variant_recall_starts_at_marker(T):
    x, y = (np.asarray(a) for a in tasks.copy_batch(jax.random.key(0), 8, T, "exprnn"))
    assert x.shape == y.shape == (8, T + 20)
    np.testing.assert_array_equal(x[:, 10:T + 10], 0)  # T blanks
    np.testing.assert_array_equal(x[:, T + 10], 9)  # marker at the first recall step
    np.testing.assert_array_equal(x[:, T + 11:], 0)  # 9 blanks
    np.testing.assert_array_equal(y[:, :T + 10], 0)
    np.testing.assert_array_equal(y[:, T + 10:], x[:, :10])


def test_copy_symbols_cover_alphabet_uniformly():
    x, _ = tasks.copy_batch(jax.random.key(1), 4000, 3)
    counts = np.bincount(np.asarray(x[:, :10]).ravel(), minlength=10)
    assert counts[0] == 0 and counts[9] == 0
    np.testing.assert_allclose(counts[1:9] / counts.sum(), 1 / 8, atol=0.005)


@pytest.mark.parametrize("T", [1, 10, 100, 1000])
def test_copy_baseline_formula(T):
    assert tasks.copy_baseline(T) == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-15)
    assert tasks.copy_task(T).baseline == tasks.copy_baseline(T)
    assert tasks.copy_task(T).time == T + 20


def _logits_of(probabilities):
    return jnp.log(jnp.asarray(probabilities, jnp.float64))  # log 0 = -inf is fine


@pytest.mark.parametrize("T,variant", [(1, "arjovsky"), (10, "arjovsky"), (57, "exprnn")])
def test_memoryless_strategy_scores_the_baseline_and_the_answer_zero(T, variant):
    task = tasks.copy_task(T, variant)
    x, y = task.sample(jax.random.key(3), 32)
    blank = np.eye(10)[0]
    uniform = np.r_[0, np.full(8, 1 / 8), 0]
    p = np.stack([blank] * (T + 10) + [uniform] * 10)
    memoryless = jnp.broadcast_to(_logits_of(p), (32, T + 20, 10))
    assert float(task.loss(memoryless, y)) == pytest.approx(task.baseline, rel=1e-12)
    answer = _logits_of(jax.nn.one_hot(y, 10, dtype=jnp.float64))
    assert float(task.loss(answer, y)) == 0.0
    m = task.metrics(answer, y)
    assert float(m["accuracy"]) == 1.0
    # Recall accuracy of the memoryless strategy is 0 (argmax picks symbol 1 always,
    # right exactly when the symbol is 1).
    acc = float(task.metrics(memoryless, y)["accuracy"])
    assert acc == pytest.approx(float(np.mean(np.asarray(y[:, T + 10:]) == 1)))


def test_copy_rejects_bad_T():
    for T in (0, -3, 2.5):
        with pytest.raises(ValueError, match="T must be a positive integer"):
            tasks.copy_task(T)
    with pytest.raises(ValueError, match="variant"):
        tasks.copy_task(5, "other")


def test_adding_problem_definition_and_baseline():
    T = 30
    xs, ys = (np.asarray(a) for a in tasks.adding_batch(jax.random.key(0), 4000, T))
    assert xs.shape == (4000, T, 2) and ys.shape == (4000,)
    marks = xs[..., 1]
    assert set(np.unique(marks)) == {0.0, 1.0}
    np.testing.assert_array_equal(marks[:, :T // 2].sum(1), 1)  # one marker per half
    np.testing.assert_array_equal(marks[:, T // 2:].sum(1), 1)
    np.testing.assert_allclose(ys, (xs[..., 0] * marks).sum(1), rtol=1e-6)
    assert xs[..., 0].min() >= 0 and xs[..., 0].max() < 1
    task = tasks.adding_task(T)
    assert task.baseline == 1 / 6
    mse = float(task.loss(jnp.ones((4000, 1)), jnp.asarray(ys)))
    assert mse == pytest.approx(1 / 6, abs=0.01)  # predicting 1: Var(u1 + u2) = 1/6
    assert float(task.loss(jnp.asarray(ys)[:, None], jnp.asarray(ys))) == 0.0
    with pytest.raises(ValueError, match="T must be an integer >= 2"):
        tasks.adding_task(1)


def _write_idx(path, arr, gz=False):
    header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _fake_mnist(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return {"x_train": rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            "y_train": rng.integers(0, 10, n, dtype=np.uint8),
            "x_test": rng.integers(0, 256, (n // 2, 28, 28), dtype=np.uint8),
            "y_test": rng.integers(0, 10, n // 2, dtype=np.uint8)}


@pytest.mark.parametrize("fmt", ["idx", "idx.gz", "npz"])
def test_mnist_reads_local_files(tmp_path, fmt):
    arrays = _fake_mnist()
    if fmt == "npz":
        path = str(tmp_path / "mnist.npz")
        np.savez(path, **arrays)
    else:
        path = str(tmp_path)
        for k, stem in mnist.IDX_FILES.items():
            gz = fmt == "idx.gz"
            _write_idx(os.path.join(path, stem + (".gz" if gz else "")), arrays[k], gz)
    loaded = tasks.load_mnist(path)
    for k in arrays:
        np.testing.assert_array_equal(loaded[k], arrays[k])

    seq = tasks.mnist_task(path)
    xs, ys = seq.sample(jax.random.key(0), 5)
    assert xs.shape == (5, 784, 1) and seq.time == 784 and seq.readout == "last"
    # Each sampled row is one training image read row by row, scaled to [0, 1].
    flat = arrays["x_train"].reshape(-1, 784) / 255.0
    for row, label in zip(np.asarray(xs[..., 0]), np.asarray(ys)):
        i = int(np.argmin(np.abs(flat - row).sum(1)))
        np.testing.assert_allclose(row, flat[i], atol=1e-6)
        assert label == arrays["y_train"][i]
    xe, _ = seq.eval_sample(jax.random.key(0), 3)  # the test split
    test_flat = arrays["x_test"].reshape(-1, 784) / 255.0
    assert np.abs(test_flat[:, None] - np.asarray(xe[..., 0])[None]).sum(-1).min(0).max() < 1e-4

    perm = tasks.mnist_task(path, permuted=True)
    xp, yp = perm.sample(jax.random.key(0), 5)
    p = mnist.permutation(0)
    np.testing.assert_array_equal(np.sort(p), np.arange(784))
    assert not np.array_equal(p, np.arange(784))
    np.testing.assert_array_equal(p, mnist.permutation(0))  # fixed by its seed
    np.testing.assert_allclose(np.asarray(xp[..., 0]), np.asarray(xs[..., 0])[:, p])
    np.testing.assert_array_equal(yp, ys)
    assert perm.baseline == pytest.approx(math.log(10))
    # The data's fingerprint: the same arrays give the same one, other arrays another.
    assert seq.fingerprint == perm.fingerprint == tasks.mnist_task(path).fingerprint
    other = _fake_mnist(seed=1)
    np.savez(str(tmp_path / "other.npz"), **other)
    assert tasks.mnist_task(str(tmp_path / "other.npz")).fingerprint != seq.fingerprint


def test_mnist_missing_file_names_path_and_format(tmp_path):
    missing = str(tmp_path / "nowhere" / "mnist.npz")
    with pytest.raises(FileNotFoundError) as e:
        tasks.mnist_task(missing)
    assert missing in str(e.value) and "x_train" in str(e.value) and "IDX" in str(e.value)
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        tasks.load_mnist(str(tmp_path))  # a directory without the files
    with pytest.raises(FileNotFoundError, match="--data"):
        tasks.make("smnist", T=1, data=None)


def test_charlm_windows_vocab_bpc_and_generation(tmp_path):
    text = "hello wörld, " * 40 + "abcabc" * 10
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    task = tasks.charlm_task(str(path), seq_len=16)
    vocab = charlm.vocab_of(task)
    assert vocab.chars == sorted(set(text)) and task.output_size == len(vocab)
    xs, ys = task.sample(jax.random.key(0), 8)
    assert xs.shape == ys.shape == (8, 16)
    np.testing.assert_array_equal(xs[:, 1:], ys[:, :-1])  # targets are the next character
    for row_x, row_y in zip(np.asarray(xs), np.asarray(ys)):
        assert (vocab.decode(row_x) + vocab.decode(row_y[-1:])) in text
    # Contiguous parts: train, then the valid 5%, then the test 5%.
    n5 = int(len(text) * 0.05)
    valid = text[len(text) - 2 * n5:len(text) - n5]
    assert vocab.decode(task.stream.valid) == valid
    assert vocab.decode(task.stream.test) == text[len(text) - n5:]
    ex, ey = task.eval_sample(jax.random.key(0), 4)  # windows of the valid part
    for row_x, row_y in zip(np.asarray(ex), np.asarray(ey)):
        assert (vocab.decode(row_x) + vocab.decode(row_y[-1:])) in valid
    # Unigram baseline: entropy of the training characters.
    train = text[:len(text) - 2 * n5]
    freq = np.array([train.count(c) for c in vocab.chars if c in train], float) / len(train)
    assert task.baseline == pytest.approx(-(freq * np.log(freq)).sum(), rel=1e-12)
    logits = jnp.zeros((8, 16, len(vocab)))
    m = task.metrics(logits, ys)
    assert float(m["loss"]) == pytest.approx(math.log(len(vocab)), rel=1e-6)
    assert float(m["bpc"]) == pytest.approx(math.log2(len(vocab)), rel=1e-6)

    from rnnjax import cells
    from rnnjax.layers.readout import cell_with_readout
    model = cell_with_readout(cells.elman(8), task.input_size, task.output_size)
    params = model.init(jax.random.key(0))
    a = charlm.sample(model, params, vocab, "hel", 20, key=jax.random.key(1), temperature=1.0)
    b = charlm.sample(model, params, vocab, "hel", 20, key=jax.random.key(1), temperature=1.0)
    assert a == b and len(a) == 20 and set(a) <= set(vocab.chars)
    # Temperature -> 0 is greedy: the argmax of the model's logits at each step.
    g = charlm.sample(model, params, vocab, "hel", 5, key=jax.random.key(2), temperature=1e-6)
    ids = list(vocab.encode("hel"))
    for ch in g:
        onehot = jax.nn.one_hot(jnp.asarray(ids), len(vocab))
        logits = model.apply(params, onehot[None])[0, -1]
        assert vocab.chars[int(jnp.argmax(logits))] == ch
        ids.append(vocab.index[ch])
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        tasks.charlm_task(str(tmp_path / "nope.txt"))
    assert charlm.sample(model, params, vocab, "hel", 5, temperature=0) == g  # exact argmax
    with pytest.raises(ValueError, match="temperature must be a number >= 0, got -1"):
        charlm.sample(model, params, vocab, "h", 2, key=jax.random.key(0), temperature=-1)


def test_task_registry_lists_names():
    assert set(tasks.TASKS) == {"copy", "adding", "smnist", "pmnist", "charlm", "digits",
                                "pdigits", "mnist1d", "mnist1d_full", "selective_copy", "mqar",
                                "induction", "parity", "modadd", "s3", "s5", "cycle"}
    with pytest.raises(ValueError,
                       match=r"task must be one of \['adding', 'charlm', 'copy', 'cycle'"):
        tasks.make("kopy", T=5)
