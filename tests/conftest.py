"""Tests run with float64 available; each test chooses its dtype explicitly.

No persistent compilation cache: with one shared by the test processes (and the
subprocesses they start), XLA:CPU crashed the process with a segmentation fault while
deserialising a cached executable, twice in three full runs (JAX 0.10.2, even with
JAX's file lock on every read and write), so a run could fail at random.  Each process
compiles what it runs; a cache directory set in the environment is ignored here.
"""

import os

import jax

os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # nor in the subprocesses tests start
jax.config.update("jax_enable_x64", True)
