"""The engine table: every way rnnjax runs a cell over time is one :class:`Engine`.

An entry holds its scan function, what it is (said in every error that refuses an
option), the options it takes, the explicit ``grad`` values it accepts, its own check
of the cell and inputs, and its ``scan="auto"`` rule.  :func:`resolve` turns the
arguments of :func:`rnnjax.run` into one hashable :class:`Spec`, once, before tracing:

1. ``scan="auto"`` asks the entries of :data:`AUTO_ORDER` in turn (cuDNN, then the
   associative scan) whether they take this call and pick it; the sequential scan
   otherwise;
2. a sequential scan becomes the hand-written BPTT (``"manual"``) when
   ``grad="manual"``, or when ``grad="auto"`` and
   :func:`rnnjax.engine.bptt.choose_grad` measured it faster on this backend;
3. with ``RNNJAX_AUTOTUNE`` on (the default), an ``auto`` that leaves more than one
   entry able to run the call is decided instead by timing them on the machine at hand
   (:mod:`rnnjax.engine.autotune`, cached on disk): the sequential scan, the
   hand-written BPTT and the :data:`AUTO_ORDER` entries whose ``tunes`` says so; steps
   1-2 are its fallback;
4. the chosen entry refuses, by name, every option it does not take
   (``remat``, ``truncate``, ``unroll > 1``, ``resets``, an explicit ``grad``), then
   runs its own check.

Adding an engine is one entry of :data:`ENGINES`.  Every scan function has one contract: time-major,
batch-flattened ``xs (T, B, F)``, carry leaves ``(B, ...)``, ``lengths (B,)`` or None,
``resets (T, B)`` or None; it returns ``(ys (T, B, O), final carry, iterations (B,) or
None)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax.core.checks import check_choice, check_positive_int
from rnnjax.engine import autotune
from rnnjax.engine.associative import associative_scan_cell, choose_scan
from rnnjax.engine.bptt import GRADS, check_manual, choose_grad, scan_manual
from rnnjax.engine.chunked import CHUNK, scan_chunked
from rnnjax.engine.cudnn import CUDNN, check_cudnn, choose_cudnn, scan_cudnn
from rnnjax.engine.inputs import common_float_dtype, shape_dtype
from rnnjax.engine.newton import check_newton_options, scan_newton
from rnnjax.engine.sequential import scan_cell
from rnnjax.engine.spec import Spec

__all__ = ["AUTO_ORDER", "ENGINES", "Engine", "Spec", "decide", "resolve", "scan_choices"]


class Engine(NamedTuple):
    """One way of running a cell over time.

    Attributes:
      name: its ``scan=`` value (``"manual"`` is reached through ``grad="manual"``).
      scan: ``(cell, params, carry, xs, lengths, resets, init, spec) -> (ys, final,
        iterations or None)`` in the contract of the module docstring (``init``: the
        Newton warm start, or None).
      does: what it is, quoted when it refuses an option.
      takes: the options it accepts among ``remat``, ``truncate``, ``unroll``, ``resets``,
        ``chunk``.
      grads: the explicit ``grad`` values it accepts (``"auto"`` always).
      check: ``(cell, params, xs) -> None``, raising for a cell or input it cannot run.
      picks: ``(cell, params, xs, T) -> bool``: whether ``scan="auto"`` takes it (asked
        only when it accepts the call's options), or None if ``auto`` never does.
      tunes: ``(cell, params, xs, T) -> bool``: whether the measured ``scan="auto"``
        (:mod:`rnnjax.engine.autotune`) times it against the sequential scan (asked only
        when it accepts the call's options and its check passes), or None: never.
    """

    name: str
    scan: Callable
    does: str
    takes: frozenset = frozenset()
    grads: frozenset = frozenset({"autodiff"})
    check: Callable | None = None
    picks: Callable | None = None
    tunes: Callable | None = None


def _sequential(cell, params, carry, xs, lengths, resets, init, spec):
    ys, final = scan_cell(cell, cell.prepare(params), carry, xs, lengths,
                          reverse=spec.reverse, unroll=spec.unroll, remat=spec.remat,
                          truncate=spec.truncate, resets=resets)
    return ys, final, None


def _manual(cell, params, carry, xs, lengths, resets, init, spec):
    ys, final = scan_manual(cell, params, carry, xs, lengths, reverse=spec.reverse,
                            truncate=spec.truncate, unroll=spec.unroll, resets=resets)
    return ys, final, None


def _associative(cell, params, carry, xs, lengths, resets, init, spec):
    if xs.shape[0] == 0:  # nothing to combine: the sequential scan's empty result
        return _sequential(cell, params, carry, xs, lengths, resets, init, spec)
    ys, final = associative_scan_cell(cell, cell.prepare(params), carry, xs, lengths,
                                      reverse=spec.reverse, remat=spec.remat, resets=resets)
    return ys, final, None


def _newton(cell, params, carry, xs, lengths, resets, init, spec):
    """DEER / quasi-DEER / ELK; ``iterations`` is ``(iterations, failed)`` per example,
    which :func:`rnnjax.run` reports (``NewtonOptions.on_fail``)."""
    options = spec.newton if init is None else spec.newton._replace(init=init)
    ys, final, iters, failed = scan_newton(cell, params, carry, xs, lengths,
                                           reverse=spec.reverse, resets=resets,
                                           options=options, with_failures=True)
    if spec.newton.on_fail == "sequential":  # the sequential result where Newton failed
        ys_s, final_s, _ = _sequential(cell, params, carry, xs, lengths, resets, None,
                                       spec._replace(engine="sequential"))
        ys = jnp.where(failed[None, :, None], ys_s, ys)
        final = jax.tree.map(
            lambda a, b: jnp.where(failed.reshape((-1,) + (1,) * (a.ndim - 1)), b, a),
            final, final_s)
    return ys, final, (iters, failed)


def _cudnn(cell, params, carry, xs, lengths, resets, init, spec):
    ys, final = scan_cudnn(params, carry, xs, lengths, reverse=spec.reverse)
    return ys, final, None


def _chunked(cell, params, carry, xs, lengths, resets, init, spec):
    if xs.shape[0] == 0:
        return _sequential(cell, params, carry, xs, lengths, resets, init, spec)
    ys, final = scan_chunked(cell, cell.prepare(params), carry, xs, lengths,
                             reverse=spec.reverse, resets=resets,
                             chunk=CHUNK if spec.chunk is None else spec.chunk)
    return ys, final, None


def _check_chunked(cell, params, xs):
    if cell.chunk is None:
        raise ValueError(f"scan='chunked' needs a cell that declares a chunkwise-parallel "
                         f"form (Cell.chunk), but the {cell.name} cell declares none; "
                         "use scan='sequential' or 'auto'")


def _check_associative(cell, params, xs):
    if cell.linear is None:
        raise ValueError(f"scan='associative' needs a cell that declares a linear recurrence "
                         f"(Cell.linear), but the {cell.name} cell declares none; "
                         "use scan='sequential' or 'auto'")


def _picks_associative(cell, params, xs, T):
    return choose_scan(cell, "auto", T) == "associative"


ENGINES = {e.name: e for e in (
    Engine("sequential", _sequential, "is lax.scan over the time steps",
           frozenset({"remat", "truncate", "unroll", "resets"})),
    Engine("manual", _manual, "runs the cell's hand-written backward (cell.backward) as a "
           "sequential scan that stores its own residuals",
           frozenset({"truncate", "unroll", "resets"}), frozenset({"manual"}),
           check=lambda cell, params, xs: check_manual(cell)),
    Engine("associative", _associative, "combines all steps at once in a parallel scan "
           "(no steps to cut or unroll)", frozenset({"remat", "resets"}),
           check=_check_associative, picks=_picks_associative,
           tunes=lambda cell, params, xs, T: cell.linear.kind == "diagonal"),
    Engine("chunked", _chunked, "runs the recurrence chunk by chunk in its parallel form "
           "(cell.chunk)", frozenset({"resets", "chunk"}), check=_check_chunked),
    Engine("newton", _newton, "solves the whole sequence at once and takes the implicit "
           "gradient", frozenset({"resets"}), frozenset()),
    Engine(CUDNN, _cudnn, "runs the whole sequence in one cuDNN call with cuDNN's backward",
           check=check_cudnn, picks=lambda cell, params, xs, T: choose_cudnn(cell, params, xs),
           tunes=lambda cell, params, xs, T: True),
)}

#: the engines ``scan="auto"`` asks, in this order, before the sequential scan
AUTO_ORDER = (CUDNN, "associative")


def scan_choices() -> tuple:
    """The values of ``rnnjax.run``'s ``scan``: ``"auto"`` and every entry of the table
    but ``"manual"`` (reached through ``grad="manual"``)."""
    return ("auto",) + tuple(name for name in ENGINES if name != "manual")


def _given(remat, truncate, unroll, resets, chunk=None) -> dict:
    """The options of the call that are not at their defaults, as shown in errors."""
    given = {"remat": remat if remat else None, "truncate": truncate,
             "unroll": unroll if unroll != 1 else None,
             "resets": "an array" if resets is not None else None, "chunk": chunk}
    return {k: v for k, v in given.items() if v is not None}


def _accepts(engine: Engine, grad: str, given: dict) -> bool:
    return (grad == "auto" or grad in engine.grads) and set(given) <= engine.takes


def _runs(engine: Engine, cell, params, xs, T, grad: str, given: dict) -> bool:
    """Whether ``engine`` takes the call's ``grad`` and options and its check passes."""
    if not _accepts(engine, grad, given):
        return False
    try:
        if engine.check is not None:
            engine.check(cell, params, xs)
    except (ValueError, RuntimeError, TypeError):
        return False
    return True


def _measured(cell, params, xs, T, grad, scan, rule, given, spec: Spec) -> autotune.Choice:
    """What :func:`rnnjax.engine.autotune.choose` times fastest among the engines that
    can run the call (``rule``: the recorded rules' choice, its fallback)."""
    if grad == "manual" or scan not in ("auto", "sequential") or (
            scan == "sequential" and grad == "autodiff"):
        return autotune.Choice(rule, "rule: nothing to choose", {}, "")
    names = ["sequential", "manual"] + ([n for n in AUTO_ORDER if ENGINES[n].tunes is not None]
                                        if scan == "auto" else [])
    names = [n for n in names if (n != "manual" or cell.backward is not None)
             and _runs(ENGINES[n], cell, params, xs, T, grad, given)
             and (n in ("sequential", "manual") or ENGINES[n].tunes(cell, params, xs, T))]
    batch = xs.shape[1:-1] if spec.time_major else xs.shape[:-2]
    options = {"reverse": spec.reverse, "unroll": spec.unroll, "remat": spec.remat,
               "truncate": spec.truncate, "resets": "resets" in given}
    return autotune.choose(
        cell, params, common_float_dtype(shape_dtype(xs)[1], params), T, math.prod(batch),
        xs.shape[-1],
        candidates={n: (ENGINES[n].scan, spec._replace(engine=n)) for n in names},
        rule=rule, options=options, resets=True if "resets" in given else None)


def decide(cell, params, xs, T: int | None = None, *, grad: str = "auto",
           scan: str = "auto", remat: bool = False, truncate=None, unroll: int = 1,
           resets=None, reverse: bool = False, time_major: bool = False,
           chunk=None) -> autotune.Choice:
    """The entry of :data:`ENGINES` that :func:`rnnjax.run` with these arguments runs
    (``"manual"``: the hand-written BPTT) and why: measured (:mod:`rnnjax.engine.autotune`)
    or by the recorded rules (``RNNJAX_AUTOTUNE=0``, one candidate, timing failed).
    ``xs`` may be a ``jax.ShapeDtypeStruct`` and ``params`` ``jax.eval_shape``'s;
    ``T`` defaults to ``xs``'s time axis.  Options are checked by :func:`resolve`."""
    if T is None:
        T = xs.shape[0] if time_major else xs.shape[-2]
    given = _given(remat, truncate, unroll, resets, chunk)
    if scan == "auto":
        name = next((n for n in AUTO_ORDER if _accepts(ENGINES[n], grad, given)
                     and ENGINES[n].picks(cell, params, xs, T)), "sequential")
    else:
        name = scan
    if name == "sequential" and (grad == "manual" or (
            grad == "auto" and choose_grad(cell, grad, scan=name, remat=remat) == "manual")):
        name = "manual"
    if not autotune.enabled() or name == "newton":
        return autotune.Choice(name, f"rule: {autotune.ENV}=0" if name != "newton"
                               else "rule: asked", {}, "")
    return _measured(cell, params, xs, T, grad, scan, name, given,
                     Spec(name, bool(reverse), bool(time_major), unroll, bool(remat), truncate,
                          chunk=chunk))


def resolve(cell, params, xs, T: int, *, grad: str = "auto", scan: str = "auto",
            remat: bool = False, truncate=None, unroll: int = 1, resets=None,
            reverse: bool = False, time_major: bool = False, newton=None,
            chunk=None) -> tuple[Spec, Any]:
    """Resolve :func:`rnnjax.run`'s options into ``(Spec, Newton warm start or None)``,
    raising ``ValueError`` (``RuntimeError`` for a missing backend) before tracing."""
    check_choice("grad", grad, GRADS)
    check_choice("scan", scan, scan_choices())
    if chunk is not None:
        check_positive_int("chunk", chunk)
    given = _given(remat, truncate, unroll, resets, chunk)
    name = decide(cell, params, xs, T, grad=grad, scan=scan, remat=remat, truncate=truncate,
                  unroll=unroll, resets=resets, reverse=reverse,
                  time_major=time_major, chunk=chunk).engine
    engine = ENGINES[name]
    label = "grad='manual'" if name == "manual" else f"scan={name!r}"
    if grad != "auto" and grad not in engine.grads:
        raise ValueError(f"{label} {engine.does}; it cannot be combined with grad={grad!r}")
    for option, value in given.items():
        if option not in engine.takes:
            raise ValueError(f"{label} {engine.does}; it cannot be combined with "
                             f"{option}={value!r}")
    if engine.check is not None:
        engine.check(cell, params, xs)
    if name != "newton" and newton is not None:
        raise ValueError(f"newton options apply to scan='newton' only, got scan={scan!r}")
    init = None
    if name == "newton":
        newton = check_newton_options(newton)
        if not isinstance(newton.init, str):
            newton, init = newton._replace(init="zeros"), newton.init
    return Spec(name, bool(reverse), bool(time_major), unroll, bool(remat), truncate,
                newton, chunk), init

