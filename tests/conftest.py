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
"""

import atexit
import gc
import importlib.util
import os
import shutil
import tempfile

os.environ["XLA_FLAGS"] = " ".join(
    [os.environ.get("XLA_FLAGS", ""), "--xla_backend_optimization_level=0"]).strip()

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
