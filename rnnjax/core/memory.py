"""How much memory there is, and a refusal before an allocation that cannot fit.

The lowest layer (no rnnjax import): :mod:`rnnjax.core.cell` guards every cell's ``init``
with it and :mod:`rnnjax.core.checks` re-exports it for the runner's estimate."""

from __future__ import annotations

import os

import jax
import numpy as np


def available_memory() -> int:
    """Bytes the first device can hold: its ``bytes_limit`` on an accelerator, the
    machine's physical memory on CPU."""
    try:
        stats = jax.devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = {}
    if stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_memory(what: str, nbytes: float, hint: str = "") -> None:
    """Raise ``ValueError`` before allocating when ``nbytes`` (an estimate) exceeds
    :func:`available_memory`; the message gives the estimate and the limit."""
    limit = available_memory()
    if nbytes > limit:
        raise ValueError(f"{what} needs about {nbytes / 2**30:,.1f} GiB, more than the "
                         f"{limit / 2**30:,.1f} GiB available; {hint or 'use smaller sizes'}")


def tree_bytes(shapes) -> int:
    """Bytes of a pytree of arrays or ``jax.ShapeDtypeStruct`` (``sum size * itemsize``,
    as Python integers: no overflow for absurd shapes)."""
    return sum(int(np.prod([int(d) for d in x.shape], dtype=object)) * np.dtype(x.dtype).itemsize
               for x in jax.tree.leaves(shapes))


__all__ = ["available_memory", "check_memory", "tree_bytes"]
