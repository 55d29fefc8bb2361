"""Matplotlib figures for gradient-flow analyses (written by ``rnnjax gradflow``).

Each function takes plain dictionaries ``label -> numbers`` and writes one PNG
(:mod:`rnnjax.figures`: no pyplot, no backend chosen, no display needed); it returns
the path written.
"""

from __future__ import annotations

import numpy as np

from rnnjax import figures


def _save(fig, path):
    return figures.save(fig, path, dpi=110, tight="layout")


def plot_grad_norms(curves: dict, path: str, *, title: str = "") -> str:
    """``||dL/dh_t||`` against ``t`` on a log scale, one curve per label.

    ``curves``: ``label -> norms (T,)`` (``t = 1..T``) or ``label -> (t, norms)``.
    Zero norms (underflow) are left out of the log plot.
    """
    if not curves:
        raise ValueError("curves must hold at least one curve, got none")
    fig, ax = figures.axes(figsize=(7, 4.2))
    for label, c in curves.items():
        t, n = c if isinstance(c, tuple) else (np.arange(1, len(c) + 1), c)
        t, n = np.asarray(t), np.asarray(n, dtype=float)
        keep = np.isfinite(n) & (n > 0)
        ax.plot(t[keep], n[keep], label=label, lw=1.4,
                ls="--" if "trained" in str(label) else "-")
    ax.set_yscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel(r"$\|\partial L / \partial h_t\|$")
    ax.set_title(title or "gradient norm across time")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_singular_values(spectra: dict, path: str, *, title: str = "") -> str:
    """Singular values (descending) of each label's recurrent matrix, against index."""
    if not spectra:
        raise ValueError("spectra must hold at least one spectrum, got none")
    fig, ax = figures.axes(figsize=(7, 4.2))
    for label, sv in spectra.items():
        sv = np.sort(np.asarray(sv, dtype=float).ravel())[::-1]
        ax.plot(np.arange(1, len(sv) + 1), sv, marker=".", ms=3, lw=1, label=label)
    ax.axhline(1.0, color="k", lw=0.6, ls=":")
    ax.set_yscale("log")
    ax.set_xlabel("index")
    ax.set_ylabel("singular value of W")
    ax.set_title(title or "recurrent-matrix singular values")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_lyapunov(spectra: dict, path: str, *, title: str = "") -> str:
    """Top Lyapunov exponents (per step) of each label, against index."""
    if not spectra:
        raise ValueError("spectra must hold at least one spectrum, got none")
    fig, ax = figures.axes(figsize=(7, 4.2))
    for label, lam in spectra.items():
        lam = np.asarray(lam, dtype=float).ravel()
        ax.plot(np.arange(1, len(lam) + 1), lam, marker="o", ms=3, lw=1, label=label)
    ax.axhline(0.0, color="k", lw=0.6, ls=":")
    ax.set_xlabel("index")
    ax.set_ylabel("Lyapunov exponent (per step)")
    ax.set_title(title or "Lyapunov spectrum")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


__all__ = ["plot_grad_norms", "plot_lyapunov", "plot_singular_values"]
