"""Tests run with float64 available; each test chooses its dtype explicitly.

Compiled programs go to a persistent cache shared by the test processes and the
subprocesses they start (the runner's resume and fault tests run one configuration in
several fresh processes), so each program is compiled once per machine.

JAX writes a cache entry in place, without a lock, unless the cache has a size limit; a
process reading an entry another is still writing then deserialises half an executable
and crashes. The limit below (far above what the suite writes) turns JAX's file lock on
for every read and write, in the test processes and, through the environment, in the
subprocesses they start.
"""

import os
import tempfile

import jax

CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "rnnjax-tests-xla-cache-locked"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(16 * 2**30))
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.config.update("jax_compilation_cache_max_size",
                  int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))
jax.config.update("jax_enable_x64", True)
