"""Hardening: nothing lost (checkpoints, results files, output folders, readers), nothing
silently wrong, and bad input refused by name (a table of cases through the public API
and the CLI)."""

import errno
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import checkpointing, metrics, outputs
from rnnjax.train import Config, load_history, load_params, train

SMALL = dict(task="adding", cell="gru", T=5, hidden=4, batch=4, log_every=2, eval_batch=4,
             lr=1e-2, optimizer="adam")


def _strip(history):
    return [{k: v for k, v in r.items() if k not in metrics.TIMING_KEYS} for r in history]


# ---------------------------------------------------------------------------------------
# data loss

class _Killed(BaseException):
    """Stands for SIGKILL in-process (not an Exception: nothing may catch it)."""


def test_kill_between_orbax_save_and_manifest_with_keep_1_loses_nothing(tmp_path, monkeypatch):
    ref = train(Config(**SMALL, steps=6), progress=False)
    out = str(tmp_path / "run")

    def kill(step):
        if step == 4:
            raise _Killed

    monkeypatch.setattr(checkpointing, "_before_manifest", kill)
    with pytest.raises(_Killed):
        train(Config(**SMALL, steps=6, checkpoint_every=2, keep=1, out=out), progress=False)
    ckpt = os.path.join(out, "checkpoints")
    # step 4 is complete for orbax but has no manifest; step 2 was not deleted
    assert checkpointing.steps(ckpt) == [4, 2]
    assert "no manifest" in checkpointing.verify(ckpt, 4)
    assert checkpointing.verify(ckpt, 2) is None
    monkeypatch.undo()
    with pytest.warns(RuntimeWarning, match="step 4 .* no manifest"):
        got = train(Config(**SMALL, steps=6, checkpoint_every=2, keep=1, out=out),
                    resume=True, progress=False)
    jax.tree.map(np.testing.assert_array_equal, got.state.params, ref.state.params)
    assert _strip(got.history) == _strip(ref.history)
    assert checkpointing.steps(ckpt) == [6]  # keep=1 honoured once 6 is durable


def test_a_reader_never_moves_a_step_of_a_live_run(tmp_path):
    out = str(tmp_path / "run")
    train(Config(**SMALL, steps=4, checkpoint_every=2, out=out), progress=False)
    ckpt = os.path.join(out, "checkpoints")
    want = load_params(out, 2)
    os.remove(os.path.join(ckpt, "4", checkpointing.MANIFEST))  # as if being written
    with pytest.warns(RuntimeWarning, match="step 4 .*left it in place"):
        got = load_params(out)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    assert sorted(os.listdir(ckpt)) == ["2", "4"]  # nothing set aside by the reader


def test_a_non_empty_out_is_refused_unless_resume_or_overwrite(tmp_path):
    out = str(tmp_path / "run")
    train(Config(**SMALL, steps=2, out=out), progress=False)
    before = open(os.path.join(out, "config.json")).read()
    with pytest.raises(ValueError, match=r"out .*run' already holds files \(config.json, "
                                         r"metrics.csv, metrics.jsonl\); pass --resume"):
        train(Config(**SMALL, steps=4, out=out), progress=False)
    assert open(os.path.join(out, "config.json")).read() == before
    got = train(Config(**SMALL, steps=4, out=out), overwrite=True, progress=False)
    assert [r["step"] for r in load_history(out)] == [r["step"] for r in got.history] == [2, 4]


def test_a_second_writer_is_refused_by_the_lock(tmp_path):
    out = str(tmp_path / "run")
    train(Config(**SMALL, steps=2, checkpoint_every=2, out=out), progress=False)
    with outputs.lock_out(out):
        with pytest.raises(ValueError, match=rf"in use by another writer \(pid {os.getpid()}"):
            train(Config(**SMALL, steps=4, checkpoint_every=2, out=out), resume=True,
                  progress=False)
    # released: the run continues
    assert train(Config(**SMALL, steps=4, checkpoint_every=2, out=out), resume=True,
                 progress=False).history[-1]["step"] == 4


def test_disk_full_while_logging_leaves_the_previous_complete_metrics(tmp_path, monkeypatch):
    out = str(tmp_path)
    metrics.write_metrics(out, [{"step": 1, "loss": 1.0}])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        metrics.write_metrics(out, [{"step": 1, "loss": 1.0}, {"step": 2, "loss": 0.5}])
    monkeypatch.undo()
    assert load_history(out) == [{"step": 1, "loss": 1.0}]
    assert sorted(os.listdir(out)) == ["metrics.csv", "metrics.jsonl"]  # no temp file left


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write('{"step": 1, "loss": 1.0}\n{"step": 2, "lo')
    with pytest.warns(RuntimeWarning, match="last line \\(2\\) is torn"):
        assert load_history(str(tmp_path)) == [{"step": 1, "loss": 1.0}]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write('{"step": 1, "lo\n{"step": 2, "loss": 1.0}\n')
    with pytest.raises(ValueError, match="metrics.jsonl line 1 is not a JSON record"):
        load_history(str(tmp_path))


@pytest.mark.parametrize("manifest", ["[]", "{}", '{"files": {"a": {"size": 1}}}', "\xff"])
def test_a_malformed_manifest_is_a_reason_not_a_crash(tmp_path, manifest):
    d = tmp_path / "3"
    d.mkdir()
    (d / "a").write_bytes(b"x")
    (d / checkpointing.MANIFEST).write_bytes(manifest.encode("latin-1"))
    assert checkpointing.verify(tmp_path, 3).startswith("unreadable manifest")


def test_resume_without_config_json_is_refused(tmp_path):
    out = str(tmp_path / "run")
    train(Config(**SMALL, steps=2, checkpoint_every=2, out=out), progress=False)
    os.remove(os.path.join(out, "config.json"))
    with pytest.raises(ValueError, match="config.json' is missing"):
        train(Config(**{**SMALL, "lr": 0.5}, steps=4, checkpoint_every=2, out=out), resume=True,
              progress=False)


def test_apps_refuse_a_non_empty_out_and_leave_no_folder_on_bad_arguments(tmp_path):
    from rnnjax.apps import seq2seq
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "seq2seq.json").write_text("{}")
    with pytest.raises(ValueError, match="already holds files \\(seq2seq.json\\)"):
        seq2seq.run_seq2seq(tmp_path / "old", steps=1)
    assert (tmp_path / "old" / "seq2seq.json").read_text() == "{}"
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        seq2seq.run_seq2seq(tmp_path / "new", steps=0)
    assert not (tmp_path / "new").exists()


def test_atomic_open_keeps_the_old_file_when_the_writer_fails(tmp_path):
    p = tmp_path / "summary.json"
    p.write_text("old")
    with pytest.raises(RuntimeError):
        with outputs.atomic_open(p) as f:
            f.write("half")
            raise RuntimeError
    assert p.read_text() == "old" and os.listdir(tmp_path) == ["summary.json"]


# ---------------------------------------------------------------------------------------
# silently wrong

def _gru_inputs(T=4):
    from rnnjax import cells
    cell = cells.gru(3)
    params = cell.init(jax.random.key(0), 2)
    xs = jax.random.normal(jax.random.key(1), (2, T, 2))
    return cell, params, xs


@pytest.mark.parametrize("reverse", [False, True])
def test_traced_lengths_out_of_range_are_clipped_to_0_T(reverse):
    from rnnjax import run
    cell, params, xs = _gru_inputs()
    got = jax.jit(lambda l: run(cell, params, xs, lengths=l, reverse=reverse))(
        jnp.array([-2, 9]))
    want = run(cell, params, xs, lengths=jnp.array([0, 4]), reverse=reverse)
    jax.tree.map(np.testing.assert_array_equal, got, want)
    assert np.all(np.isfinite(got[0]))
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 4\].*got values in "
                                         r"\[-2, 9\]"):
        run(cell, params, xs, lengths=jnp.array([-2, 9]))  # concrete: refused


@pytest.mark.parametrize("reverse", [False, True])
def test_nan_in_the_padding_reaches_no_gradient(reverse):
    from rnnjax import run
    cell, params, xs = _gru_inputs()
    lengths = jnp.array([2, 4])
    padded = xs.at[0, 2:].set(jnp.nan)
    clean = xs.at[0, 2:].set(0.0)

    def loss(p, x):
        ys, c = run(cell, p, x, lengths=lengths, reverse=reverse)
        return jnp.sum(ys ** 2) + jnp.sum(c.h)

    g_nan, g_clean = jax.grad(loss)(params, padded), jax.grad(loss)(params, clean)
    jax.tree.map(np.testing.assert_array_equal, g_nan, g_clean)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(g_nan))
    gx = jax.grad(loss, argnums=1)(params, padded)
    assert np.all(gx[0, 2:] == 0) and np.all(np.isfinite(gx))


@pytest.mark.parametrize("kw, message", [
    (dict(lr=float("nan")), r"lr must be a positive number \(finite\), got nan"),
    (dict(lr=float("inf")), r"lr must be a positive number \(finite\), got inf"),
    (dict(lr=1e-3, lr_orth=float("inf")), r"lr_orth must be a positive number"),
    (dict(lr=-1.0), r"lr must be a positive number"),
    (dict(clip=float("nan")), r"clip must be a positive number \(finite\) or None"),
])
def test_optim_recipe_refuses_non_finite_rates(kw, message):
    from rnnjax import optim
    with pytest.raises(ValueError, match=message):
        optim.recipe("adam", **kw)


def test_save_params_npz_refuses_a_folder_and_a_name_without_npz(tmp_path):
    from rnnjax import analysis
    with pytest.raises(ValueError, match=r"path must be a file name ending in \.npz, got a "
                                         r"folder"):
        analysis.save_params_npz(str(tmp_path), "elman", 2, {}, 1)
    with pytest.raises(ValueError, match="got a name without .npz"):
        analysis.save_params_npz(str(tmp_path / "p"), "elman", 2, {}, 1)
    assert os.listdir(tmp_path) == []


def test_retrivialize_on_params_without_a_base_raises():
    from rnnjax import cells, parametrize
    params = cells.lstm(3).init(jax.random.key(0), 2)
    with pytest.raises(ValueError, match="params hold no dict with both 'skew' and 'base'"):
        parametrize.retrivialize(params)


def test_bptt_explain_refuses_a_label_outside_0_1():
    from rnnjax import explain
    spec = {"W_xh": [[1.0]], "W_hh": [[0.5]], "b_h": [0.0], "W_ho": [[1.0]], "b_o": [0.0],
            "label": 2.0, "inputs": [[1.0], [0.5]]}
    with pytest.raises(ValueError, match=r"spec label must lie in \[0, 1\] for loss 'bce'.*"
                                         r"got \[2.0\]"):
        explain.explain(spec)
    assert explain.explain({**spec, "label": 1.0})["loss"] > 0
