"""Tests run with float64 available; each test chooses its dtype explicitly.

Compiled programs go to a persistent cache shared by the test processes and the
subprocesses they start (the runner's resume and fault tests run one configuration in
several fresh processes), so each program is compiled once per machine.
"""

import os
import tempfile

import jax

CACHE = os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "rnnjax-tests-xla-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.config.update("jax_enable_x64", True)
