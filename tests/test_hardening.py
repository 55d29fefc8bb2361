"""Hardening: nothing lost (checkpoints, results files, output folders, readers), nothing
silently wrong, and bad input refused by name (a table of cases through the public API
and the CLI)."""

import errno
import hashlib
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax.io import outputs
from rnnjax.training import checkpointing, metrics
from rnnjax.training.runner import Config, load_history, load_params, train

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
    metrics.write_metrics(out, [{"step": 1, "train_loss": 1.0}])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        metrics.write_metrics(out, [{"step": 1, "train_loss": 1.0}, {"step": 2, "train_loss": 0.5}])
    monkeypatch.undo()
    assert load_history(out) == [{"step": 1, "train_loss": 1.0}]
    assert sorted(os.listdir(out)) == ["metrics.csv", "metrics.jsonl"]  # no temp file left


def test_a_torn_last_metrics_line_is_dropped_with_a_warning(tmp_path):
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write('{"step": 1, "train_loss": 1.0}\n{"step": 2, "tra')
    with pytest.warns(RuntimeWarning, match="last line \\(2\\) is torn"):
        assert load_history(str(tmp_path)) == [{"step": 1, "train_loss": 1.0}]
    with open(tmp_path / "metrics.jsonl", "w") as f:
        f.write('{"step": 1, "lo\n{"step": 2, "train_loss": 1.0}\n')
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


def test_gradflow_writes_a_non_empty_out_only_with_overwrite_and_holds_the_lock(
        tmp_path, monkeypatch):
    from rnnjax.experiments import gradflow
    out = tmp_path / "gf"
    out.mkdir()
    (out / "mine.txt").write_text("mine")
    kw = dict(hidden=4, lyap_steps=10, lyap_k=2, dtype="float32", print_fn=lambda *a: None)
    with pytest.raises(ValueError, match=r"already holds files \(mine.txt\)"):
        gradflow.gradflow(["elman"], [5], str(out), **kw)
    assert sorted(os.listdir(out)) == ["mine.txt"]
    seen, real = [], gradflow._measure_and_write

    def spy(jobs, Ts, o, *a):  # a second writer is refused while this one works
        with pytest.raises(ValueError, match="in use by another writer"):
            outputs.lock_out(o)
        seen.append(o)
        return real(jobs, Ts, o, *a)

    # --overwrite replaces only a run of gradflow: the user's folder is refused
    with pytest.raises(ValueError, match=r"cannot be overwritten: it is not an rnnjax run"):
        gradflow.gradflow(["elman"], [5], str(out), overwrite=True, **kw)
    assert sorted(os.listdir(out)) == ["mine.txt"]
    out = tmp_path / "gf-run"
    gradflow.gradflow(["elman"], [5], str(out), **kw)
    monkeypatch.setattr(gradflow, "_measure_and_write", spy)
    res = gradflow.gradflow(["elman"], [5], str(out), overwrite=True, **kw)
    assert seen == [str(out)] and len(res["rows"]) == 5
    assert (out / "gradflow.csv").exists() and outputs.run_of(str(out)) == "gradflow"
    outputs.lock_out(str(out)).release()  # released after the call

    def fail(*a):
        raise RuntimeError("simulated failure")

    # a folder this call created is removed again when it fails before writing
    monkeypatch.setattr(gradflow, "_measure_and_write", fail)
    with pytest.raises(RuntimeError, match="simulated failure"):
        gradflow.gradflow(["elman"], [5], str(tmp_path / "new"), **kw)
    assert not (tmp_path / "new").exists()


def test_bptt_explain_refuses_a_label_outside_0_1():
    from rnnjax.analysis import explain
    spec = {"W_xh": [[1.0]], "W_hh": [[0.5]], "b_h": [0.0], "W_ho": [[1.0]], "b_o": [0.0],
            "label": 2.0, "inputs": [[1.0], [0.5]]}
    with pytest.raises(ValueError, match=r"spec label must lie in \[0, 1\] for loss 'bce'.*"
                                         r"got \[2.0\]"):
        explain.explain(spec)
    assert explain.explain({**spec, "label": 1.0})["loss"] > 0


# ---------------------------------------------------------------------------------------
# bad input, table-driven: each refused with ValueError/TypeError naming the argument,
# what was expected and what came

def _api_cases():
    from rnnjax import analysis, cells, interop, layers, optim, parametrize, run
    from rnnjax.apps import classify, colors, forecast, generate, seq2seq
    from rnnjax.experiments import gradflow
    from rnnjax.training import distributed
    from rnnjax.training.runner import validate
    gru = cells.gru(3)
    p = gru.init(jax.random.key(0), 2)
    xs = jnp.ones((2, 4, 2))
    C = lambda **kw: validate(Config(**kw))  # noqa: E731
    bi = layers.bidirectional(gru)
    p_bi = bi.init(jax.random.key(0), 2)
    st = layers.stack([gru, gru])
    p_st = st.init(jax.random.key(0), 2)
    lb = layers.lru_block(4, 2)
    p_lb = lb.init(jax.random.key(0), 2)
    sd = {"weight_ih_l0": np.ones((9, 2), np.float32), "weight_hh_l0": np.ones((9, 3), np.float32),
          "bias_ih_l0": np.zeros(9, np.float32), "bias_hh_l0": np.zeros(9, np.float32)}
    nan_hh = sd["weight_hh_l0"].copy()
    nan_hh[1, 2] = np.nan
    flax_lstm = {n: {"kernel": np.ones((2, 3), np.float32),
                     **({"bias": np.zeros(3, np.float32)} if n[0] == "h" else {})}
                 for n in ("ii", "if", "ig", "io", "hi", "hf", "hg", "ho")}
    return [
        # layers: params and carries with missing or extra keys, named by layer
        ("bidirectional params missing bwd", lambda: bi.apply({"fwd": p_bi["fwd"]}, xs),
         ValueError, r"bidirectional layer params must have the keys \['bwd', 'fwd'\], "
         r"got \['fwd'\] \(missing \['bwd'\]\)"),
        ("bidirectional params extra key", lambda: bi.apply({**p_bi, "up": p}, xs), ValueError,
         r"bidirectional layer params must have the keys .*\(unexpected \['up'\]\)"),
        ("bidirectional params a list", lambda: bi.apply([p, p], xs), TypeError,
         r"bidirectional layer params must be a dict with the keys \['bwd', 'fwd'\], got list"),
        ("bidirectional carry missing fwd", lambda: bi.apply(p_bi, xs, carry={
            "bwd": gru.initial_carry((2,), jnp.float32)}), ValueError,
         r"bidirectional layer carry must have the keys .*\(missing \['fwd'\]\)"),
        ("stack params of one layer for two", lambda: st.apply(p_st[:1], xs), ValueError,
         r"stack params must hold 2 entries \(one per layer\), got 1"),
        ("stack carry of three layers for two", lambda: st.apply(p_st, xs, carry=[None] * 3),
         ValueError, r"stack carry must hold 2 entries \(one per layer\), got 3"),
        ("stack params a dict", lambda: st.apply({"0": p}, xs), TypeError,
         r"stack params must be a list of 2 entries \(one per layer\), got dict"),
        ("lru_block params missing W_1", lambda: lb.apply(
            {k: v for k, v in p_lb.items() if k != "W_1"}, xs), ValueError,
         r"lru_block layer params must have the keys .*\(missing \['W_1'\]\)"),
        # cells: absurd sizes refused with the estimate before any allocation; bad keys
        ("lstm(2_000_000).init", lambda: cells.lstm(2_000_000).init(jax.random.key(0), 3),
         ValueError, r"initialising the lstm cell \(input_size=3\) needs about [\d,.]+ GiB, "
         r"more than the [\d,.]+ GiB available"),
        ("s5 factory of 1e6 states", lambda: cells.make("s5", 1_000_000), ValueError,
         r"the HiPPO-LegS initialisation at state_size=1000000 needs about [\d,.]+ GiB"),
        ("gru init of 1e10 inputs", lambda: gru.init(jax.random.key(0), 10**10), ValueError,
         r"initialising the gru cell \(input_size=10000000000\) needs about [\d,.]+ GiB"),
        ("a numpy init out of memory", lambda: gru._replace(
            init=lambda key, n: {"W": np.ones((2**40, n))}).init(jax.random.key(0), 2),
         ValueError, r"initialising the gru cell \(input_size=2\) ran out of memory "
         r"\(Unable to allocate"),
        ("init with an int key", lambda: gru.init(42, 2), TypeError,
         r"key must be a JAX PRNG key \(jax.random.key\(seed\)\), got int 42"),
        ("initial_carry of an int batch", lambda: gru.initial_carry(3, jnp.float32), TypeError,
         r"batch_shape must be a tuple of non-negative ints .*got 3"),
        # interop: non-finite and mis-shaped weights named
        ("from_torch NaN weight", lambda: interop.from_torch(
            {**sd, "weight_hh_l0": nan_hh}, mode="gru", hidden_size=3), ValueError,
         r"state_dict\['weight_hh_l0'\] holds non-finite values \(1 NaN, 0 infinite of 27, "
         r"first at index \(1, 2\)\)"),
        ("from_torch Inf bias", lambda: interop.from_torch(
            {**sd, "bias_hh_l0": np.full(9, np.inf, np.float32)}, mode="gru", hidden_size=3),
         ValueError, r"state_dict\['bias_hh_l0'\] holds non-finite values \(0 NaN, 9 infinite"),
        ("from_torch integer weight", lambda: interop.from_torch(
            {**sd, "weight_ih_l0": np.ones((9, 2), np.int64)}, mode="gru", hidden_size=3),
         ValueError, r"state_dict\['weight_ih_l0'\] must be a floating-point weight, got "
         r"dtype int64"),
        ("from_torch missing key", lambda: interop.from_torch(
            {k: v for k, v in sd.items() if k != "bias_hh_l0"}, mode="gru", hidden_size=3),
         ValueError, r"state_dict is missing key 'bias_hh_l0'"),
        ("from_torch extra key", lambda: interop.from_torch(
            {**sd, "weight_hr_l0": np.ones((3, 3))}, mode="gru", hidden_size=3), ValueError,
         r"state_dict has keys \['weight_hr_l0'\] that a gru module"),
        ("from_torch wrong shape", lambda: interop.from_torch(
            {**sd, "weight_hh_l0": np.ones((9, 4), np.float32)}, mode="gru", hidden_size=3),
         ValueError, r"state_dict\['weight_hh_l0'\] must have shape \(9, 3\), got \(9, 4\)"),
        ("from_flax_lstm NaN kernel", lambda: interop.from_flax_lstm(
            {**flax_lstm, "hf": {"kernel": np.full((3, 3), np.nan), "bias": np.zeros(3)}}),
         ValueError, r"Flax LSTMCell params\['hf'\]\['kernel'\] holds non-finite values "
         r"\(9 NaN"),
        ("to_torch NaN param", lambda: interop.to_torch(
            [{**p, "W_hh": p["W_hh"].at[0, 0].set(jnp.inf)}], mode="gru"), ValueError,
         r"params\[0\]\['W_hh'\] holds non-finite values \(0 NaN, 1 infinite.*not exported"),
        # gradflow writes through prepare_out and the writer's lock
        ("gradflow into a non-empty out", lambda: gradflow.gradflow(
            ["elman"], [5], _folder_with("x.txt", b"mine"), hidden=4), ValueError,
         r"already holds files \(x.txt\)"),
        ("gradflow into a locked out", lambda: _locked(lambda d: gradflow.gradflow(
            ["elman"], [5], d, hidden=4)), ValueError, r"is in use by another writer \(pid"),
        # distributed: timeouts checked before JAX
        ("initialize timeout 0", lambda: distributed.initialize("localhost:1", 2, 1, timeout=0),
         ValueError, "timeout must be a positive number of seconds, got 0"),
        ("initialize heartbeat 2.5", lambda: distributed.initialize(
            "localhost:1", 2, 1, heartbeat_timeout=2.5), ValueError,
         "heartbeat_timeout must be a positive whole number of seconds, got 2.5"),
        # the sequence engine
        ("run params of another hidden size", lambda: run(gru, cells.gru(5).init(
            jax.random.key(0), 2), xs), ValueError, r"params\['W_hh'\] has shape \(15, 5\) but "
         r"the gru cell with 2 input features expects \(9, 3\)"),
        ("run params of another cell", lambda: run(gru, cells.lstm(3).init(
            jax.random.key(0), 2), xs), ValueError, r"params .*missing|has shape"),
        ("run params missing a key", lambda: run(gru, {k: v for k, v in p.items()
                                                       if k != "b_hn"}, xs),
         ValueError, r"missing \[\"params\['b_hn'\]\"\]"),
        ("run params with an extra key", lambda: run(gru, {**p, "junk": jnp.ones(2)}, xs),
         ValueError, r"unexpected \[\"params\['junk'\]\"\]"),
        ("run xs of another width", lambda: run(gru, p, jnp.ones((2, 4, 5))), ValueError,
         "xs has 5 features but the gru cell was built for 2"),
        ("run xs rank 1", lambda: run(gru, p, jnp.ones(4)), ValueError, "xs must have rank >= 2"),
        ("run integer xs", lambda: run(gru, p, jnp.ones((2, 4, 2), jnp.int32)), TypeError,
         "xs must be a floating-point array, got dtype int32"),
        ("run lengths of another shape", lambda: run(gru, p, xs, lengths=jnp.ones(3, int)),
         ValueError, r"lengths must have the batch shape of xs \(2,\), got shape \(3,\)"),
        ("run float lengths", lambda: run(gru, p, xs, lengths=jnp.ones(2)), TypeError,
         "lengths must be an integer array"),
        ("run lengths too large", lambda: run(gru, p, xs, lengths=jnp.array([1, 5])),
         ValueError, r"lengths must lie in \[0, 4\]"),
        ("run negative lengths", lambda: run(gru, p, xs, lengths=jnp.array([-1, 2])),
         ValueError, r"lengths must lie in \[0, 4\]"),
        ("run carry of another shape", lambda: run(gru, p, xs, carry=gru.initial_carry(
            (3,), jnp.float32)), ValueError, r"carry\.h has shape \(3, 3\) but \(2, 3\)"),
        ("run carry missing a field", lambda: run(cells.lstm(3), cells.lstm(3).init(
            jax.random.key(0), 2), xs, carry=gru.initial_carry((2,), jnp.float32)),
         ValueError, "carry must have the structure"),
        ("run truncate 0", lambda: run(gru, p, xs, truncate=0), ValueError,
         "truncate must be None or a positive integer, got 0"),
        ("run unroll 0", lambda: run(gru, p, xs, unroll=0), ValueError,
         "unroll must be a positive integer, got 0"),
        ("run grad name", lambda: run(gru, p, xs, grad="magic"), ValueError,
         r"grad must be one of \['auto', 'autodiff', 'manual'\], got 'magic'"),
        ("run not a cell", lambda: run(lambda x: x, p, xs), TypeError,
         "cell must be an rnnjax.Cell, got function"),
        ("run resets of another shape", lambda: run(gru, p, xs, resets=jnp.zeros((2, 3),
                                                                                  bool)),
         ValueError, r"resets must have shape"),
        # the trainer's configuration
        ("config hidden 0", lambda: C(hidden=0), ValueError,
         "hidden must be a positive integer, got 0"),
        ("config T 0", lambda: C(T=0), ValueError, "T must be a positive integer, got 0"),
        ("config batch 0", lambda: C(batch=0), ValueError,
         "batch must be a positive integer, got 0"),
        ("config steps -1", lambda: C(steps=-1), ValueError,
         "steps must be a non-negative integer, got -1"),
        ("config lr nan", lambda: C(lr=float("nan")), ValueError,
         r"lr must be a positive number \(finite\), got nan"),
        ("config lr inf", lambda: C(lr=float("inf")), ValueError,
         r"lr must be a positive number \(finite\), got inf"),
        ("config lr 0", lambda: C(lr=0.0), ValueError, "lr must be a positive number"),
        ("config lr_orth inf", lambda: C(lr_orth=float("inf")), ValueError,
         r"lr_orth must be a positive number \(finite\) or None, got inf"),
        ("config clip -1", lambda: C(clip=-1.0), ValueError,
         r"clip must be a positive number \(finite\) or None, got -1.0"),
        ("config clip nan", lambda: C(clip=float("nan")), ValueError, "clip must be a positive"),
        ("config task", lambda: C(task="nope"), ValueError, "task must be one of .*got 'nope'"),
        ("config cell", lambda: C(cell="nope"), ValueError, "cell must be one of .*got 'nope'"),
        ("config optimizer", lambda: C(optimizer="lbfgs"), ValueError,
         "optimizer must be one of .*got 'lbfgs'"),
        ("config clip_mode", lambda: C(clip_mode="x"), ValueError, "clip_mode must be one of"),
        ("config seeds 0", lambda: C(seeds=0), ValueError, "seeds must be a positive integer"),
        ("config keep 0", lambda: C(keep=0), ValueError, "keep must be a positive integer"),
        ("config log_every 0", lambda: C(log_every=0), ValueError,
         "log_every must be a positive integer"),
        ("config float hidden", lambda: C(hidden=4.5), ValueError,
         "hidden must be a positive integer, got 4.5"),
        ("config bool batch", lambda: C(batch=True), ValueError,
         "batch must be a positive integer, got True"),
        ("config hidden 300000", lambda: C(hidden=300_000), ValueError,
         r"this run needs about [\d,.]+ GiB, more than the [\d,.]+ GiB available"),
        ("config T 3e9", lambda: C(T=3_000_000_000), ValueError, r"this run needs about"),
        ("config not a Config", lambda: validate({"task": "copy"}), TypeError,
         "config must be an rnnjax.Config, got dict"),
        # optimiser
        ("recipe lr nan", lambda: optim.recipe("adam", lr=float("nan")), ValueError,
         r"lr must be a positive number \(finite\), got nan"),
        ("recipe optimizer", lambda: optim.recipe("lbfgs"), ValueError,
         "optimizer must be one of"),
        # applications (checked before any work or folder)
        ("classify batch 0", lambda: classify.run_classify(None, batch=0), ValueError,
         "out must be a folder path, got None"),
        ("seq2seq batch 0", lambda: seq2seq.run_seq2seq(_fresh(), batch=0), ValueError,
         "batch must be a positive integer, got 0"),
        ("seq2seq lr nan", lambda: seq2seq.run_seq2seq(_fresh(), lr=float("nan")), ValueError,
         r"lr must be a positive number \(finite\), got nan"),
        ("classify lr inf", lambda: classify.run_classify(_fresh(), lr=float("inf")),
         ValueError, r"lr must be a positive number \(finite\), got inf"),
        ("classify batch 0", lambda: classify.run_classify(_fresh(), batch=0), ValueError,
         "batch must be a positive integer, got 0"),
        ("forecast batch 0", lambda: forecast.run_forecast(_fresh(), batch=0), ValueError,
         "batch must be a positive integer, got 0"),
        ("forecast lr -1", lambda: forecast.run_forecast(_fresh(), lr=-1.0), ValueError,
         "lr must be a positive number"),
        ("colors lr nan", lambda: colors.run_colors(_fresh(), palettes=generate.DATA,
                                                    lr=float("nan")),
         ValueError, r"lr must be a positive number \(finite\), got nan"),
        ("colors train_steps 0", lambda: colors.run_colors(_fresh(), train_steps=0),
         ValueError, "train_steps must be a positive integer, got 0"),
        ("generate batch 0", lambda: generate.run_generate(_fresh(), batch=0), ValueError,
         "batch must be a positive integer, got 0"),
        ("generate prompt outside the vocabulary", lambda: generate.run_generate(
            _fresh(), steps=1, prompt="\u2603"), ValueError,
         r"prompt has characters \['\u2603'\] that are not in the vocabulary"),
        ("app out is a file", lambda: seq2seq.run_seq2seq(_a_file()), ValueError,
         "out must be a folder, got the existing file"),
        ("app out empty", lambda: seq2seq.run_seq2seq(""), ValueError,
         "out must be a folder path, got ''"),
        # files
        ("npz params to a folder", lambda: analysis.save_params_npz(_fresh(True), "elman", 2,
                                                                    {}, 1),
         ValueError, r"path must be a file name ending in \.npz, got a folder"),
        ("npz params from a text file", lambda: analysis.load_params_npz(_a_file()),
         ValueError, r"is not a params file of save_params_npz"),
        ("config.json binary", lambda: Config.load(_folder_with("config.json", b"\xff\x00")),
         ValueError, r"config.json is not a readable config.json of a run"),
        ("config.json a list", lambda: Config.load(_folder_with("config.json", b"[]")),
         ValueError, r"config.json is not a readable config.json .*expected a JSON object"),
        ("config.json unknown field", lambda: Config.load(_folder_with("config.json",
                                                                        b'{"nope": 1}')),
         ValueError, r"config.json is not a readable config.json .*nope"),
        ("metrics.jsonl binary", lambda: load_history(_folder_with("metrics.jsonl",
                                                                   b"\xff\xfe")),
         ValueError, r"metrics.jsonl is not UTF-8 text"),
        ("retrivialize without base", lambda: parametrize.retrivialize({"W": jnp.eye(2)}),
         ValueError, "params hold no dict with both 'skew' and 'base'"),
        ("prepare_out resume and overwrite", lambda: outputs.prepare_out(
            _fresh(), True, True), ValueError, "resume and overwrite exclude each other"),
    ]


_TMP = []      # the case's tmp_path
_SETUP = [{}]  # the tree as the case's own setup left it (before the refused call)


def _tree(root):
    """``{relative path: None for a folder, the bytes' SHA-256 for a file}`` of ``root``."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return out


def _set_up(value):
    """Record the tree after a setup helper wrote what the case needs; return ``value``."""
    _SETUP[0] = _tree(_TMP[0])
    return value


def _fresh(create=False):
    d = os.path.join(_TMP[0], f"f{len(os.listdir(_TMP[0]))}")
    if create:
        os.makedirs(d)
    return _set_up(d)


def _locked(call):
    """``call(d)`` on an empty folder ``d`` whose writer's lock another writer holds."""
    d = _fresh(True)
    with outputs.lock_out(d):
        _set_up(d)  # the lock's own file belongs to the setup
        return call(d)


def _a_file():
    path = _fresh() + ".txt"
    with open(path, "w") as f:
        f.write("not an npz\n")
    return _set_up(path)


def _folder_with(name, data):
    d = _fresh(True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    return _set_up(d)


API_CASES = _api_cases()


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_input_through_the_api_is_refused_by_name(case, tmp_path):
    _TMP[:] = [str(tmp_path)]
    _SETUP[0] = _tree(tmp_path)
    _, call, exc, message = case
    with pytest.raises(exc, match=message):
        call()
    # the refused call wrote, changed and removed nothing: the whole tree is as the
    # case's setup left it (a lock the setup held is released, so its file may be gone)
    after, setup = _tree(tmp_path), _SETUP[0]
    changed = sorted(p for p in set(after) | set(setup)
                     if after.get(p, "gone") != setup.get(p, "gone")
                     and not (p not in after and "lock" in os.path.basename(p)))
    assert not changed, f"the refused call changed {changed}"


CLI_CASES = [
    (["train", "--batch", "0"], "batch must be a positive integer, got 0"),
    (["train", "--lr", "nan"], r"lr must be a positive number \(finite\), got nan"),
    (["train", "--lr", "inf"], r"lr must be a positive number \(finite\), got inf"),
    (["train", "--hidden", "300000"], r"this run needs about [\d,.]+ GiB"),
    (["train", "--T", "3e9"], r"argument --T: invalid int value: '3e9'"),
    (["train", "--cell", "nope"], "cell must be one of"),
    (["train", "--resume"], r"resume=True needs config.out"),
    (["train", "--out", "OUTFILE"], "out must be a folder, got the existing file"),
    (["train", "--out", "NONEMPTY"], r"already holds files \(x.txt\); pass --resume"),
    (["train", "--out", "NONEMPTY", "--resume", "--steps", "1"], r"resume: no checkpoint in"),
    (["classify", "--batch", "0", "--out", "NEW"], "batch must be a positive integer, got 0"),
    (["seq2seq", "--lr", "nan", "--out", "NEW"], r"lr must be a positive number \(finite\)"),
    (["forecast", "--batch", "0", "--out", "NEW"], "batch must be a positive integer, got 0"),
    (["generate", "--batch", "0", "--out", "NEW"], "batch must be a positive integer, got 0"),
    (["generate", "--out", "NONEMPTY"], r"already holds files \(x.txt\); pass --overwrite"),
    (["generate", "--data", "BINARY", "--out", "NEW", "--steps", "1"], r"BINARY|UTF-8"),
    (["classify", "--out", "NONEMPTY"], r"already holds files"),
    (["bptt-explain", "BADLABEL"], r"spec label must lie in \[0, 1\] for loss 'bce'"),
    (["gradflow", "--checkpoint", "OUTFILE", "--out", "NEW", "--T", "5"],
     r"OUTFILE.* is not a params file of save_params_npz"),
    (["gradflow", "--out", "NONEMPTY", "--cells", "elman", "--T", "5", "--hidden", "4"],
     r"already holds files \(x.txt\)"),
    (["gradflow", "--hidden", "0", "--out", "NEW"], "hidden must be a positive integer, got 0"),
    (["gradflow", "--T", "0", "--out", "NEW"], "T must be a positive integer, got 0"),
    (["gradflow", "--checkpoint", "NEW", "--out", "NEW"],
     r"--checkpoint .*new does not exist \(expected a training run's folder or a \.npz"),
    (["gradflow", "--T", "5,5", "--out", "NEW"], r"T must list distinct lengths, got \[5, 5\]"),
    (["gradflow", "--T", "2000000000", "--cells", "elman", "--out", "NEW"],
     r"gradflow at T=2000000000 \(batch 4, hidden 64\) needs about [\d,.]+ GiB, more than"),
    (["train", "--distributed", "--coordinator", "localhost:1", "--num-processes", "2",
      "--process-id", "1", "--coordinator-timeout", "0"],
     r"timeout must be a positive number of seconds, got 0.0"),
    (["train", "--distributed", "--coordinator", "localhost:1", "--num-processes", "2",
      "--process-id", "1", "--heartbeat-timeout", "-1"],
     r"heartbeat_timeout must be a positive whole number of seconds, got -1"),
    (["train", "--distributed", "--coordinator", "localhost", "--num-processes", "2",
      "--process-id", "1"], r"coordinator must be HOST:PORT, got 'localhost'"),
]


@pytest.mark.parametrize("argv, message", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_bad_input_through_the_cli_is_one_line_and_exit_2(argv, message, tmp_path, capsys):
    from rnnjax import cli
    (tmp_path / "nonempty").mkdir()
    (tmp_path / "nonempty" / "x.txt").write_text("mine")
    (tmp_path / "outfile").write_text("a file")
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00\x81" * 50)
    spec = {"W_xh": [[1.0]], "W_hh": [[0.5]], "b_h": [0.0], "W_ho": [[1.0]], "b_o": [0.0],
            "label": 3.0, "inputs": [[1.0]]}
    (tmp_path / "badlabel.json").write_text(json.dumps(spec))
    paths = {"OUTFILE": "outfile", "NONEMPTY": "nonempty", "NEW": "new", "BINARY": "binary",
             "BADLABEL": "badlabel.json"}
    argv = [str(tmp_path / paths[a]) if a in paths else a for a in argv]
    message = message.replace("OUTFILE", "outfile").replace("BINARY", "binary")
    try:
        rc = cli.main(argv + (["--no-progress"] if argv[0] == "train" else []))
    except SystemExit as e:  # argparse's own errors (usage line + one error line)
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, err
    assert re.search(message, err), err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"rnnjax {argv[0]}: error:") or "usage" in err
    assert (tmp_path / "nonempty" / "x.txt").read_text() == "mine"
    assert not (tmp_path / "new").exists()


def test_sigint_saves_a_checkpoint_like_sigterm_and_exits_130(tmp_path):
    import signal
    ref = train(Config(**SMALL, steps=6), progress=False)
    out = str(tmp_path / "run")
    ctrl_c = lambda line: os.kill(os.getpid(), signal.SIGINT)  # noqa: E731 - at step 2's log
    with pytest.raises(checkpointing.Preempted, match="SIGINT at step 3: saved a checkpoint "
                                                      "of step 3") as e:
        train(Config(**SMALL, steps=6, out=out), progress=False, print_fn=ctrl_c)
    assert e.value.exit_code == 130 and checkpointing.steps(os.path.join(out, "checkpoints")) == [3]
    got = train(Config(**SMALL, steps=6, out=out), resume=True, progress=False)
    jax.tree.map(np.testing.assert_array_equal, got.state.params, ref.state.params)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_xs_and_carry_run_in_the_params_dtype(dtype):
    from rnnjax import run
    cell, params, xs = _gru_inputs()
    params = jax.tree.map(lambda a: a.astype(jnp.float32), params)
    xs_h = xs.astype(dtype)
    ys, c = run(cell, params, xs_h, carry=cell.initial_carry((2,), dtype))
    want = run(cell, params, xs_h.astype(jnp.float32))
    assert ys.dtype == jnp.float32
    jax.tree.map(np.testing.assert_array_equal, (ys, c), want)
