"""The measured ``grad="auto"``/``scan="auto"`` (rnnjax.engine.autotune): a fake timer
and a temporary cache folder (the suite itself runs with ``RNNJAX_AUTOTUNE=0``)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells
from rnnjax.cli import main
from rnnjax.engine import autotune
from rnnjax.engine.table import decide


@pytest.fixture
def tuned(monkeypatch, tmp_path):
    """Autotuning on, the cache in ``tmp_path``, and a fake timer whose seconds per
    candidate the test sets (``tuned["seconds"]``); ``tuned["calls"]`` lists the names."""
    state = {"seconds": {"manual": 1.0, "sequential": 2.0}, "calls": [], "dir": tmp_path}
    monkeypatch.setenv("RNNJAX_AUTOTUNE", "1")
    monkeypatch.setenv("RNNJAX_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(autotune, "time_program", lambda fn, args, name="": (
        state["calls"].append(name), state["seconds"][name])[1])
    autotune.clear_memory()
    yield state
    autotune.clear_memory()


CELL = cells.elman(4)
PARAMS = jax.tree.map(lambda a: a.astype(jnp.float64), CELL.init(jax.random.key(0), 3))
XS = jax.random.normal(jax.random.key(1), (2, 5, 3), jnp.float64)


def _grad(grad):
    def loss(p, x):
        ys, final = rnnjax.run(CELL, p, x, grad=grad)
        return jnp.sum(ys ** 2) + jnp.sum(final.h)
    return jax.jit(jax.value_and_grad(loss))


@pytest.mark.slow
def test_auto_runs_the_measured_engine_and_caches_it(tuned):
    # decided inside the trace of jit (abstract inputs): measured there, then used
    got = _grad("auto")(PARAMS, XS)
    assert sorted(tuned["calls"]) == ["manual", "sequential"]
    manual, autodiff = _grad("manual")(PARAMS, XS), _grad("autodiff")(PARAMS, XS)
    for a, b, c in zip(jax.tree.leaves(got), jax.tree.leaves(manual), jax.tree.leaves(autodiff)):
        np.testing.assert_array_equal(a, b)  # the chosen engine's own result
        np.testing.assert_allclose(a, c, rtol=1e-12, atol=1e-12)  # = the other's, rounded
    entries = json.loads((tuned["dir"] / autotune.CACHE_FILE).read_text())["entries"]
    (key, entry), = entries.items()
    assert entry["engine"] == "manual" and entry["timings"] == {"manual": 1.0, "sequential": 2.0}
    assert "cell elman" in key and "T 8 B 2 F 4 H 4" in key and "float64" in key
    # a fresh process (memory cleared) reads the cache and times nothing
    autotune.clear_memory()
    tuned["calls"].clear()
    choice = decide(CELL, PARAMS, XS)
    assert (choice.engine, choice.source, tuned["calls"]) == ("manual", "cache", [])


def test_the_faster_candidate_wins_and_the_key_has_no_object_id(tuned):
    tuned["seconds"] = {"manual": 3.0, "sequential": 2.0}
    twin = CELL._replace()  # another object, the same cell
    assert twin is not CELL
    a, b = decide(CELL, PARAMS, XS), decide(twin, PARAMS, XS)
    assert a.engine == b.engine == "sequential" and a.key == b.key and a.source == "measured"
    assert tuned["calls"] == ["sequential", "manual"]  # timed once for both


def test_off_or_one_candidate_follows_the_rules(tuned, monkeypatch):
    rule = "manual" if jax.default_backend() in CELL.backward.faster_on else "sequential"
    assert decide(CELL, PARAMS, XS, grad="autodiff").source.startswith("rule")
    assert decide(CELL._replace(backward=None), PARAMS, XS).source == "rule: one candidate"
    monkeypatch.setenv("RNNJAX_AUTOTUNE", "0")
    assert decide(CELL, PARAMS, XS) == autotune.Choice(rule, "rule: RNNJAX_AUTOTUNE=0", {}, "")
    assert tuned["calls"] == [] and not any(tuned["dir"].iterdir())


def test_corrupt_cache_warns_once_and_is_replaced(tuned):
    path = tuned["dir"] / autotune.CACHE_FILE
    path.write_text("{not json")
    autotune._WARNED.clear()
    with pytest.warns(RuntimeWarning, match="ignoring the unreadable cache"):
        assert decide(CELL, PARAMS, XS).engine == "manual"
    assert json.loads(path.read_text())["version"] == autotune.VERSION  # written afresh


def test_a_candidate_that_fails_to_run_loses_and_all_failing_falls_back(tuned, monkeypatch):
    def timer(fn, args, name=""):
        if name == "manual" or tuned["seconds"] is None:
            raise RuntimeError("no timer here")
        return 5.0
    monkeypatch.setattr(autotune, "time_program", timer)
    assert decide(CELL, PARAMS, XS).engine == "sequential"
    autotune.clear_memory()
    (tuned["dir"] / autotune.CACHE_FILE).unlink()
    tuned["seconds"] = None
    autotune._WARNED.clear()
    with pytest.warns(RuntimeWarning, match="no candidate could be timed"):
        assert decide(CELL, PARAMS, XS).source == "rule: timing failed"


@pytest.mark.slow
def test_calibrate_prints_the_choice_and_the_timings(tuned, capsys):
    main(["bench", "calibrate", "--cells", "elman"])
    out = capsys.readouterr().out
    assert "copy T=200 (elman): batch 32, hidden 64 -> hand-written BPTT (hand-written BPTT " \
           "1000.00 ms, autodiff through lax.scan 2000.00 ms)" in out
    assert "train (copy, lstm)" in out and str(tuned["dir"]) in out
    assert len(json.loads((tuned["dir"] / autotune.CACHE_FILE).read_text())["entries"]) == 2
