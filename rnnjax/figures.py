"""The one plotting convention of rnnjax: figures are ``matplotlib.figure.Figure``
objects drawn without pyplot, so no backend is chosen or changed (importing rnnjax
never touches the user's matplotlib state) and no display is needed; :func:`save`
writes PNG (or any format matplotlib knows from the extension).

Used by :mod:`rnnjax.plots`, :mod:`rnnjax.gradflow_plots` and the applications
(:mod:`rnnjax.apps`).  matplotlib is imported on first use.
"""

from __future__ import annotations

import os

from rnnjax.outputs import atomic_open


def figure(**kwargs):
    """A new ``matplotlib.figure.Figure(**kwargs)`` (e.g. ``figsize=(6.4, 4.0)``)."""
    from matplotlib.figure import Figure
    return Figure(**kwargs)


def axes(**kwargs):
    """``(figure, axes)``: a figure with one subplot (pyplot's ``subplots()``)."""
    fig = figure(**kwargs)
    return fig, fig.add_subplot()


def save(fig, path, *, dpi: int = 100, tight: str = "bbox") -> str:
    """Write ``fig`` to ``path`` (creating its folder) and return ``path``.

    ``tight="bbox"`` crops to the drawn area (``bbox_inches="tight"``);
    ``tight="layout"`` runs ``fig.tight_layout()`` and keeps the figure size.
    """
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fmt = os.path.splitext(path)[1].lstrip(".") or None
    with atomic_open(path, "wb") as f:  # never a half-written figure
        if tight == "layout":
            fig.tight_layout()
            fig.savefig(f, dpi=dpi, format=fmt)
        else:
            fig.savefig(f, dpi=dpi, bbox_inches="tight", format=fmt)
    return path


__all__ = ["axes", "figure", "save"]
