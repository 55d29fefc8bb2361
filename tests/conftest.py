"""Tests run with float64 available; each test chooses its dtype explicitly.

The test processes themselves use no persistent compilation cache: with one shared by
the two xdist workers, XLA:CPU crashed a worker with a segmentation fault while
deserialising a cached executable, twice in three full runs (JAX 0.10.2), even with
JAX's file lock on every read and write.  The subprocesses the tests start (the
runner's resume, fault and distributed tests run one configuration in several fresh
processes, one after another) share a cache private to their worker and to this run,
under JAX's lock (a size limit turns it on), so each of their programs is compiled once.
"""

import os
import tempfile

import jax

jax.config.update("jax_compilation_cache_dir", None)  # not in the test processes
os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(
    prefix=f"rnnjax-tests-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-")
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"] = str(16 * 2**30)
jax.config.update("jax_enable_x64", True)
