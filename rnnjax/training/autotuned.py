"""What a run's ``grad="auto"`` and ``scan="auto"`` become on the machine at hand, for
its ``config.json`` (``grad_used``, ``scan_used``).

:func:`engine_used` asks the engine table (:func:`rnnjax.engine.table.decide`) with the
shapes the run's cell sees (one seed's training batch ``(batch, time, features)`` as
the task encodes it), so the measured choice (:mod:`rnnjax.engine.autotune`) is made
here, once, and the training step traced afterwards finds it in memory and uses it.
"""

from __future__ import annotations

import dataclasses

import jax

from rnnjax.engine.table import decide
from rnnjax.layers import baselines
from rnnjax.training.config import Config, make_cell

__all__ = ["engine_used", "grad_and_scan", "run_shapes"]


def grad_and_scan(engine: str) -> tuple[str, str]:
    """An entry of the engine table as ``rnnjax.run``'s ``(grad, scan)``: ``"manual"``
    is the hand-written BPTT over a sequential scan, every other entry autodiff."""
    return ("manual", "sequential") if engine == "manual" else ("autodiff", engine)


def run_shapes(config: Config, task):
    """``(cell, params, xs)`` as the run's cell sees them, params and ``xs`` as
    ``jax.ShapeDtypeStruct`` (nothing computed)."""
    cell = make_cell(config)
    params = jax.eval_shape(lambda: cell.init(jax.random.key(0), task.input_size))
    xs = jax.eval_shape(lambda: task.encode(task.sample(jax.random.key(0), config.batch)[0]))
    return cell, params, xs


def engine_used(config: Config, task) -> Config:
    """``config`` with ``grad_used``/``scan_used`` filled in (unchanged for the
    non-recurrent baselines)."""
    if config.cell in baselines.MODELS:
        return config
    cell, params, xs = run_shapes(config, task)
    grad, scan = grad_and_scan(decide(cell, params, xs, grad=config.grad).engine)
    return dataclasses.replace(config, grad_used=grad, scan_used=scan)
