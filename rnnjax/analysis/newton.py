r"""How fast Newton's method evaluates a cell in parallel, against the cell's dynamics.

DEER and quasi-DEER (:mod:`rnnjax.engine.newton`) converge in a few iterations when the driven
cell is contractive and need up to ``T`` iterations when it is chaotic: Gonzalez,
Kozachkov, Zoltowski, Clarkson & Linderman (2025, "Predictability enables
parallelization of nonlinear state space models") bound the conditioning of the
Newton system by the top Lyapunov exponent ``lambda_1``: with ``lambda_1 < 0`` the
iterations needed grow like ``log T`` at most, with ``lambda_1 > 0`` like ``T``.

:func:`newton_convergence` measures both on the same inputs -- iterations to tolerance
for several prefixes of ``xs`` and ``lambda_1`` from
:func:`rnnjax.analysis.lyapunov_spectrum` -- and :func:`convergence_cells` builds the
comparison set of the issue: Elman tanh cells with gain below and above 1
(``W_hh ~ N(0, g^2/H)``, chaotic for ``g > 1``: Sompolinsky, Crisanti & Sommers 1988),
a GRU and an orthogonal cell (expRNN, ``lambda_1 ~ 0``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.analysis import lyapunov_spectrum
from rnnjax.cells import elman, exprnn, gru
from rnnjax.core.cell import Cell
from rnnjax.core.checks import check_positive_int
from rnnjax.core.precision import cast_floating
from rnnjax.engine.newton import NewtonOptions, check_newton_options, scan_newton

__all__ = ["NewtonConvergence", "convergence_cells", "newton_convergence"]


class NewtonConvergence(NamedTuple):
    """One cell's row: top Lyapunov exponent and iterations to tolerance against T."""

    name: str
    lyapunov: float  # lambda_1 per step (natural log), on the longest prefix
    T: tuple  # prefix lengths
    iterations: tuple  # Newton iterations for each prefix (== T's cap if not converged)


def convergence_cells(hidden_size: int, input_size: int, *, gains=(0.5, 2.0), key=None,
                      dtype=jnp.float64) -> dict:
    """``{name: (cell, params)}``: Elman tanh with ``W_hh ~ N(0, g^2/H)`` for each gain
    ``g`` (``"elman-g0.5"``, ...), ``"gru"`` and the orthogonal ``"exprnn"``, params cast
    to ``dtype``.  Input weights ``N(0, 1/F)``, Elman biases 0."""
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("input_size", input_size)
    H, F = hidden_size, input_size
    key = jax.random.key(0) if key is None else key
    keys = jax.random.split(key, len(gains) + 2)
    out = {}
    for g, k in zip(gains, keys):
        if not float(g) > 0:
            raise ValueError(f"gains must be positive numbers, got {g!r}")
        k1, k2 = jax.random.split(k)
        params = {"W_xh": jax.random.normal(k1, (H, F)) / np.sqrt(F),
                  "W_hh": float(g) * jax.random.normal(k2, (H, H)) / np.sqrt(H),
                  "b": jnp.zeros((H,))}
        out[f"elman-g{g:g}"] = (elman(H), cast_floating(params, dtype))
    for name, cell, k in (("gru", gru(H), keys[-2]), ("exprnn", exprnn(H), keys[-1])):
        out[name] = (cell, cast_floating(cell.init(k, F), dtype))
    return out


def newton_convergence(cells: dict, xs, *, Ts=None, options: NewtonOptions | None = None,
                       burn_in: int | None = None) -> list:
    """Iterations to tolerance against T and the top Lyapunov exponent, per cell.

    Args:
      cells: ``{name: (cell, params)}`` (e.g. :func:`convergence_cells`).
      xs: one input sequence ``(T, F)``, the same for every cell.
      Ts: prefix lengths to solve (default ``T/8, T/4, T/2, T``).
      options: :class:`rnnjax.engine.newton.NewtonOptions` (default: DEER, ``max_iters = T``).
      burn_in: steps excluded from the Lyapunov average (default ``T // 10``).

    Returns a list of :class:`NewtonConvergence`, one per cell, in the order of ``cells``.
    """
    xs = jnp.asarray(xs)
    if xs.ndim != 2 or xs.shape[0] < 1:
        raise ValueError(f"xs must have shape (time, features) with time >= 1, "
                         f"got {xs.shape}")
    T = xs.shape[0]
    Ts = tuple(sorted({max(1, T // 8), max(1, T // 4), max(1, T // 2), T})) if Ts is None \
        else tuple(Ts)
    if not Ts or any(isinstance(t, bool) or not isinstance(t, int) or not 1 <= t <= T
                     for t in Ts):
        raise ValueError(f"Ts must be integers in [1, {T}], got {Ts!r}")
    options = check_newton_options(options)
    burn_in = T // 10 if burn_in is None else burn_in
    rows = []
    for name, (cell, params) in cells.items():
        if not isinstance(cell, Cell):
            raise TypeError(f"cells[{name!r}] must be (rnnjax.Cell, params), "
                            f"got {type(cell).__name__}")
        carry = cell.initial_carry((1,), xs.dtype)
        its = tuple(int(_iterations(cell, params, carry, xs[:t, None], options)[0])
                    for t in Ts)
        lam = float(lyapunov_spectrum(cell, params, xs, k=1, burn_in=burn_in)[0])
        rows.append(NewtonConvergence(name, lam, Ts, its))
    return rows


@jax.jit(static_argnames=("cell", "options"))
def _iterations(cell, params, carry, xs, options):
    return scan_newton(cell, params, carry, xs, options=options)[2]
