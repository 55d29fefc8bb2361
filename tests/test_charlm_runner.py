"""`rnnjax train --task charlm`: the PTB protocol through the one training loop (carry
passed between consecutive windows, gradients cut at window boundaries, whole-text
evaluation), the carry checkpointed and resumed exactly, the data fingerprint checked
on resume, the shipped default text, and `rnnjax generate --run` on such a run."""

import hashlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import tasks
from rnnjax.apps import generate
from rnnjax.cli import main
from rnnjax.tasks import charlm, stateful
from rnnjax.training.runner import Config, build, train

# A text whose parts all hold its 8 characters (a valid test of the vocabulary too).
TEXT = ("abcd efg\n" * 3 + "the cat sat on a mat, a bad cab.\n" * 30)


def _text(tmp_path, text=TEXT, name="t.txt"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def _config(data, **kw):
    base = dict(task="charlm", cell="lstm", T=5, hidden=6, batch=3, steps=8, log_every=4,
                lr=1e-2, optimizer="adam", data=data)
    return Config(**{**base, **kw})


def _unstack(tree):
    return jax.tree.map(lambda a: a[0], tree)


def test_runner_passes_the_carry_cuts_gradients_and_evaluates_whole_texts(tmp_path):
    exp = build(_config(_text(tmp_path)))
    stream = exp.task.stream
    K = stateful.windows_per_epoch(len(stream.train), 3, 5)
    streams = stateful.batchify(stream.train, 3)
    assert K == (streams.shape[1] - 1) // 5 >= 2
    cell, V = exp.model.cell, stream.vocab
    state = jax.jit(exp.init)(jnp.asarray(0, jnp.int32))
    step = jax.jit(exp.step)

    @jax.jit
    def reference(state, carry_in, x, y):
        # The window's loss from a constant carry: its gradient stops at the boundary.
        def loss(p):
            xs = jax.nn.one_hot(x, V, dtype=jnp.float32)
            hs, _ = rnnjax.run(cell, p["cell"], xs, carry=carry_in)
            logits = hs @ p["readout"]["W"].T + p["readout"]["b"]
            return jnp.mean(tasks.cross_entropy(logits, y))
        grads = jax.grad(loss)(state.params)
        updates, _ = exp.optimizer.update(grads, state.opt_state, state.params)
        _, carry_out = rnnjax.run(cell, state.params["cell"],
                                  jax.nn.one_hot(x, V, dtype=jnp.float32), carry=carry_in)
        return jax.tree.map(lambda p, u: p + u, state.params, updates), carry_out

    for i in range(K + 2):  # across one epoch boundary
        k = i % K
        x, y = (jnp.asarray(a) for a in stateful.window(streams, k, 5))
        carry_in = (state.carry if k else
                    cell.initial_carry((3,), jnp.float32))  # zeros at each epoch start
        want, carry_out = reference(state, carry_in, x, y)
        state = step(state)
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(want)):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
        # The carry entering window k+1 is the carry leaving window k.
        for a, b in zip(jax.tree.leaves(state.carry), jax.tree.leaves(carry_out)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # Whole-text evaluation with carried state equals one long rnnjax.run per part.
    got = jax.jit(exp.evaluate)(state, exp.eval_batch(jnp.asarray(0, jnp.int32)))
    for name, part in (("eval", stream.test), ("valid", stream.valid)):
        xs = jax.nn.one_hot(part[:-1], V, dtype=jnp.float32)[None]
        hs, _ = rnnjax.run(cell, state.params["cell"], xs)
        logits = hs @ state.params["readout"]["W"].T + state.params["readout"]["b"]
        nll = float(jnp.mean(tasks.cross_entropy(logits[0], jnp.asarray(part[1:]))))
        assert float(got[f"{name}_loss"]) == pytest.approx(nll, rel=1e-5)
        assert float(got[f"{name}_bpc"]) == pytest.approx(nll / math.log(2), rel=1e-5)
        assert float(got[f"{name}_bpc"]) == pytest.approx(
            stateful.evaluate_bpc(cell, state.params, part, 5, V), rel=1e-5)


def test_resume_equals_an_uninterrupted_run_and_checks_the_data(tmp_path, capsys):
    data = _text(tmp_path)
    # Checkpoint at step 3, inside the first epoch (the carry is not zero there).
    full = train(_config(data, steps=6, log_every=3, checkpoint_every=3,
                         out=str(tmp_path / "full")), progress=False)
    half = _config(data, steps=3, log_every=3, checkpoint_every=3, out=str(tmp_path / "r"))
    first = train(half, progress=False)
    assert any(np.abs(np.asarray(c)).max() > 0 for c in jax.tree.leaves(first.state.carry))
    resumed = train(_config(data, steps=6, log_every=3, checkpoint_every=3,
                            out=str(tmp_path / "r")), resume=True, progress=False)
    for a, b in zip(jax.tree.leaves((full.state.params, full.state.carry)),
                    jax.tree.leaves((resumed.state.params, resumed.state.carry))):
        np.testing.assert_array_equal(a, b)
    for h_full, h_res in zip(full.history, resumed.history):
        for k in ("train_loss", "valid_loss", "eval_loss"):
            assert h_full[k] == h_res[k]
    saved = json.loads((tmp_path / "r" / "config.json").read_text())
    assert saved["data_sha256"] == hashlib.sha256(TEXT.encode()).hexdigest()
    # Another text with the same vocabulary size: refused before anything changes.
    other = _text(tmp_path, TEXT.replace("cat", "act"), "other.txt")
    assert len(set(open(other).read())) == len(set(TEXT))
    before = sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir())
    with pytest.raises(ValueError, match="trained on other data"):
        train(_config(other, steps=9, log_every=3, checkpoint_every=3,
                      out=str(tmp_path / "r")), resume=True, progress=False)
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == before
    # The same through the CLI (options from the run's config.json): one line, exit 2.
    assert main(["train", "--out", str(tmp_path / "r"), "--resume", "--data", other,
                 "--steps", "9", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "trained on other data" in err and err.count("\n") == 1, err
    assert sorted(p.name for p in (tmp_path / "r" / "checkpoints").iterdir()) == before


def test_default_text_is_the_shipped_one_and_generate_samples_a_run(tmp_path):
    task = tasks.make("charlm", T=50)
    assert task.fingerprint == ("cf30d7aa6cf2701439fc762dd8d3f8b4039f002a6df70c75d4cf89cabf0fc63e")
    s = task.stream
    assert len(s.train) + len(s.valid) + len(s.test) == 200376 and s.vocab == 62
    assert len(s.valid) == len(s.test) == int(200376 * 0.05)
    # A runner's charlm run (default text) samples through `rnnjax generate --run`.
    run = str(tmp_path / "run")
    train(Config(task="charlm", cell="gru", T=20, hidden=8, batch=4, steps=2, log_every=2,
                 checkpoint_every=2, out=run), progress=False)
    summary = generate.run_generate(str(tmp_path / "gen"), run_dir=run, prompt="KING",
                                    length=10, temperatures=(0.0,), print_fn=lambda *_: None)
    assert len(summary["samples"]["0.0"]) == 10
    assert set(summary["samples"]["0.0"]) <= set(charlm.vocab_of(task).chars)


def test_cli_refuses_a_text_too_small_for_the_windows(tmp_path, capsys):
    data = _text(tmp_path)
    out = tmp_path / "run"
    assert main(["train", "--task", "charlm", "--data", data, "--batch", "200", "--T", "5",
                 "--no-progress", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds no window of length T=5" in err and "batch=200" in err, err
    assert not out.exists() or not any(out.iterdir())
    assert main(["train", "--task", "charlm", "--data", str(tmp_path / "nope.txt"),
                 "--no-progress"]) == 2
    assert "nope.txt" in capsys.readouterr().err
