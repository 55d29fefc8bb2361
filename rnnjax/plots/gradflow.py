"""Matplotlib figures for gradient-flow analyses (written by ``rnnjax gradflow``).

Each function takes plain dictionaries ``label -> numbers`` and writes one PNG
(:mod:`rnnjax.plots.figures`: no pyplot, no backend chosen, no display needed); it returns
the path written.

A cell keeps one style in every figure (:func:`rnnjax.plots.figures.cell_style`: a colour and
a marker fixed by its place in :data:`rnnjax.cells.REGISTRY`, the same in the copy
report; ``"(trained)"`` labels are dashed), so lines that coincide (the orthogonal
cells' gradient norms) stay distinguishable by their markers, which are staggered along
each line (:func:`rnnjax.plots.figures.markevery`).
"""

from __future__ import annotations

import numpy as np

from rnnjax.plots import figures


def sv_deviation(sv, dtype=np.float64) -> np.ndarray:
    """``|s - 1|`` of singular values ``s``, floored at the dtype's machine epsilon (a
    matrix orthogonal to rounding then reads "at eps" rather than a staircase of
    rounding noise magnified around 1)."""
    eps = float(np.finfo(dtype).eps)
    return np.maximum(np.abs(np.asarray(sv, dtype=float) - 1.0), eps)


def _save(fig, path):
    return figures.save(fig, path, dpi=110, tight="layout")


def _log_axes(fig, ax, path, xlabel, ylabel, title):
    """Log y axis, labels, title, grid and legend of a per-label curve plot; saved."""
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_grad_norms(curves: dict, path: str, *, title: str = "") -> str:
    """``||dL/dh_t||`` against ``t`` on a log scale, one curve per label.

    ``curves``: ``label -> norms (T,)`` (``t = 1..T``) or ``label -> (t, norms)``.
    Zero norms (underflow) are left out of the log plot.
    """
    if not curves:
        raise ValueError("curves must hold at least one curve, got none")
    fig, ax = figures.axes(figsize=(7, 4.2))
    for j, (label, c) in enumerate(curves.items()):
        t, n = c if isinstance(c, tuple) else (np.arange(1, len(c) + 1), c)
        t, n = np.asarray(t), np.asarray(n, dtype=float)
        keep = np.isfinite(n) & (n > 0)
        ax.plot(t[keep], n[keep], label=label, lw=1.4, ms=5, mfc="none",
                markevery=figures.markevery(j, len(curves), int(keep.sum())),
                **figures.cell_style(label))
    return _log_axes(fig, ax, path, "t", r"$\|\partial L / \partial h_t\|$",
                     title or "gradient norm across time")


def plot_singular_values(spectra: dict, path: str, *, title: str = "",
                         dtype=np.float64) -> str:
    """``|s - 1|`` of each label's recurrent-matrix singular values (descending ``s``)
    on a log axis, floored at ``dtype``'s epsilon (:func:`sv_deviation`): an orthogonal
    matrix lies on the floor, a non-orthogonal one at its distance from 1."""
    if not spectra:
        raise ValueError("spectra must hold at least one spectrum, got none")
    fig, ax = figures.axes(figsize=(7, 4.2))
    for label, sv in spectra.items():
        sv = np.sort(np.asarray(sv, dtype=float).ravel())[::-1]
        ax.plot(np.arange(1, len(sv) + 1), sv_deviation(sv, dtype), ms=3, lw=1, label=label,
                **figures.cell_style(label))
    ax.axhline(float(np.finfo(dtype).eps), color="k", lw=0.6, ls=":")
    return _log_axes(fig, ax, path, "index (singular values in descending order)",
                     r"$|\sigma_i(W) - 1|$ (floor: machine epsilon)",
                     title or "recurrent-matrix singular values")


def plot_lyapunov(spectra: dict, path: str, *, title: str = "") -> str:
    """Top Lyapunov exponents (per step) of each label, against index."""
    if not spectra:
        raise ValueError("spectra must hold at least one spectrum, got none")
    fig, ax = figures.axes(figsize=(7, 4.2))
    for label, lam in spectra.items():
        lam = np.asarray(lam, dtype=float).ravel()
        ax.plot(np.arange(1, len(lam) + 1), lam, ms=3, lw=1, label=label,
                **figures.cell_style(label))
    ax.axhline(0.0, color="k", lw=0.6, ls=":")
    ax.set_xlabel("index")
    ax.set_ylabel("Lyapunov exponent (per step)")
    ax.set_title(title or "Lyapunov spectrum")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


__all__ = ["plot_grad_norms", "plot_lyapunov", "plot_singular_values",
           "sv_deviation"]
