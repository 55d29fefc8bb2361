"""Tests run with float64 available; each test chooses its dtype explicitly."""

import jax

jax.config.update("jax_enable_x64", True)
