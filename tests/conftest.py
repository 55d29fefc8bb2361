"""Tests run with float64 available; each test chooses its dtype explicitly.

Each test module starts from empty JAX caches (an autouse fixture): a pytest-xdist
worker that kept every program compiled by hundreds of tests grew past 5 GB and XLA:CPU
crashed it with a segmentation fault inside compilation or deserialisation, at random
tests, late in full runs.

The test processes use no persistent compilation cache (XLA:CPU crashed deserialising
from one shared by the two workers).  The subprocesses the tests start (the runner's
resume, fault and distributed tests run one configuration in several fresh processes,
one after another) share a cache private to their worker and to this run, under JAX's
lock (a size limit turns it on), so each of their programs is compiled once.

Tests check values, not speed, so XLA compiles them (and the subprocesses they start)
at backend optimisation level 0: it halves the runner and copy-job tests' time on a
2-core CPU (the programs are small and compiled once each, so compiling dominates).
Three more XLA:CPU flags halve the compile time again (CPU seconds of two tiny runner
trainings, LSTM and expRNN, on the 2-core AMD EPYC: 9.2-10.9 s without, 4.9-5.6 s with):
the classic loop emitters instead of the fusion emitters, one codegen thread per
program (the two pytest-xdist workers already fill the two cores), and LLVM without
its expensive passes.  They change how a kernel is generated, not what it computes.

``RNNJAX_AUTOTUNE=0``: ``grad="auto"``/``scan="auto"`` follow the recorded rules, so the
suite (and the subprocesses it starts) neither times engines nor writes to the user's
cache folder; the tests of the mechanism (tests/test_autotune.py) turn it on with a fake
timer and a temporary cache folder.
"""

import atexit
import gc
import importlib.util
import json
import os
import pathlib
import shutil
import tempfile

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0",
     "--xla_cpu_use_fusion_emitters=false", "--xla_cpu_parallel_codegen_split_count=1",
     "--xla_llvm_disable_expensive_passes=true"]).strip()

os.environ["RNNJAX_AUTOTUNE"] = "0"

import jax  # noqa: E402  (after XLA_FLAGS: XLA reads them when its backend starts)
import pytest

jax.config.update("jax_compilation_cache_dir", None)  # not in the test processes
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE = tempfile.mkdtemp(
    prefix=f"rnnjax-tests-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)  # this process's own folder
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(16 * 2**30)
jax.config.update("jax_enable_x64", True)


# What README's install command and .ci/run install: in CI (CI=true) a missing one is an
# error, not a skip, so a missing install step cannot hide behind skipped tests.
OPTIONAL = ("torch", "equinox", "sklearn", "statsmodels", "mnist1d", "tensorboardX")


def pytest_sessionstart(session):
    missing = [m for m in OPTIONAL if importlib.util.find_spec(m) is None]
    if os.environ.get("CI") == "true" and missing:
        raise pytest.UsageError(f"CI=true but {missing} are not installed; .ci/run installs "
                                "them (README's install command and the peers)")


@pytest.fixture(autouse=True, scope="module")
def _fresh_jax_caches():
    yield
    jax.clear_caches()
    gc.collect()


# The quick lane: ``python -m pytest -n 2 -m "not slow" tests``.  A test is slow when it
# is marked so or when its recorded time (setup + call + teardown, tests/durations.json,
# written by ``python -m pytest -n 2 tests --record-durations`` on the 2-core machine)
# is above SLOW_SECONDS; a new test is quick until the next recording.
DURATIONS = pathlib.Path(__file__).with_name("durations.json")
SLOW_SECONDS = 1.0
_RECORDED: dict = {}


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help=f"write each test's time to {DURATIONS.name} (the slow marks)")


def pytest_collection_modifyitems(config, items):
    recorded = json.loads(DURATIONS.read_text()) if DURATIONS.exists() else {}
    for item in items:
        if recorded.get(item.nodeid, 0.0) > SLOW_SECONDS:
            item.add_marker(pytest.mark.slow)


def pytest_runtest_logreport(report):
    _RECORDED[report.nodeid] = _RECORDED.get(report.nodeid, 0.0) + report.duration


def pytest_sessionfinish(session):
    worker = hasattr(session.config, "workerinput")
    if session.config.getoption("record_durations") and not worker and _RECORDED:
        DURATIONS.write_text(json.dumps({k: round(v, 2) for k, v in sorted(_RECORDED.items())},
                                        indent=0) + "\n")
