"""The resolved options of one run of a cell over time: :class:`Spec`.

:func:`rnnjax.engine.table.resolve` builds it once from :func:`rnnjax.run`'s arguments;
the jitted run takes it as its static argument and every engine reads its options from
it (the hand-written BPTT driver :mod:`rnnjax.engine.bptt` too), so no option travels
as a loose parameter.
"""

from __future__ import annotations

from typing import Any, NamedTuple

__all__ = ["Spec"]


class Spec(NamedTuple):
    """What :func:`rnnjax.engine.table.resolve` decided: the engine's name and the
    options it runs with (hashable: the static argument of the jitted run).

    Attributes:
      engine: a key of :data:`rnnjax.engine.table.ENGINES`.
      reverse: each sequence runs from its last valid step to its first.
      time_major: the caller's layout of ``xs`` and ``ys``.
      unroll: steps unrolled per ``lax.scan`` iteration.
      remat: checkpoint the scan (recompute in the backward pass).
      truncate: cut the carry's gradient before steps ``k, 2k, ...`` (None: never).
      newton: the :class:`rnnjax.engine.newton.NewtonOptions` of ``scan="newton"``.
      chunk: the chunk length of ``scan="chunked"`` (None: the engine's default).
    """

    engine: str
    reverse: bool = False
    time_major: bool = False
    unroll: int = 1
    remat: bool = False
    truncate: int | None = None
    newton: Any = None
    chunk: int | None = None
