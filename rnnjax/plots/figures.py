"""The one plotting convention of rnnjax: figures are ``matplotlib.figure.Figure``
objects drawn without pyplot, so no backend is chosen or changed (importing rnnjax
never touches the user's matplotlib state) and no display is needed; :func:`save`
writes PNG (or any format matplotlib knows from the extension).

A cell keeps one style in every figure of every report (:func:`cell_style`: a colour
and a marker fixed by the cell's place in :data:`rnnjax.cells.REGISTRY`), and markers
are staggered along coinciding lines (:func:`markevery`) so that curves drawn on top
of each other (the orthogonal cells' gradient norms) stay distinguishable.

Used by :mod:`rnnjax.plots`, :mod:`rnnjax.plots.gradflow` and the applications
(:mod:`rnnjax.apps`).  matplotlib is imported on first use.
"""

from __future__ import annotations

import colorsys
import os
import zlib

from rnnjax import cells
from rnnjax.io.outputs import atomic_open

# matplotlib's ten default colours, then sixteen more of distinct hue, then generated
# ones (:func:`_color`): one colour per registered cell (a repeated colour told apart by
# its marker alone is easy to miss)
_COLORS = ("C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9", "#000000",
           "#8b4513", "#ffd700", "#00ced1", "#4b0082", "#9acd32", "#ff1493", "#808000",
           "#000080", "#ff4500", "#2f4f4f", "#7fff00", "#ba55d3", "#ff00ff", "#800000",
           "#00ff7f")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p")


def _color(i: int) -> str:
    """Colour number ``i``: the listed ``_COLORS`` first, then hues stepped by the golden
    ratio with alternating saturation and value, as ``#rrggbb`` (deterministic; the first
    637 colours are distinct, the 312 that :func:`cell_style` uses among them)."""
    if i < len(_COLORS):
        return _COLORS[i]
    j = i - len(_COLORS)
    hue = (0.05 + j * 0.6180339887498949) % 1.0
    sat, val = (0.9, 0.75) if j % 2 == 0 else (0.6, 0.55)
    rgb = colorsys.hsv_to_rgb(hue, sat, val)
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgb)


def cell_style(label: str) -> dict:
    """Matplotlib line options for ``label`` (``"<cell>"``, ``"<cell> (trained)"``,
    ``"<cell> block 2"``, ...): the colour and marker of the cell name (its first
    word) are fixed by the cell's index ``i`` in the registry (a cell of one's own,
    ``module:factory``: the registry's length plus a CRC of the name modulo 312, so it
    never takes a registered cell's colour), colour :func:`_color` ``(i)`` (the 26 listed colours,
    then generated ones, so registered cells never share a colour) and marker number
    ``(i // 26 + i) mod 12``;
    ``"(trained)"`` labels are dashed (gradient-flow figures: initialisation solid,
    trained dashed)."""
    name = str(label).split()[0] if str(label).split() else ""
    names = list(cells.REGISTRY)
    i = names.index(name) if name in names else len(names) + zlib.crc32(name.encode()) % 312
    return {"color": _color(i),
            "marker": _MARKERS[(i // len(_COLORS) + i) % len(_MARKERS)],
            "ls": "--" if "trained" in str(label) else "-"}


def markevery(j: int, n_lines: int, n_points: int, marks: int = 8) -> tuple:
    """Matplotlib ``markevery`` for line ``j`` of ``n_lines`` with ``n_points`` points:
    about ``marks`` markers, every ``e = max(1, n_points // marks)`` points, starting at
    ``min(j e // n_lines, e - 1)``, so the markers of lines drawn on top of each other
    fall at different points."""
    every = max(1, n_points // marks)
    return (min(j * every // max(n_lines, 1), every - 1), every)


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


__all__ = ["axes", "cell_style", "figure", "markevery", "save"]
