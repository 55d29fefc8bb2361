"""Matplotlib figures for reports: small functions, each drawing one figure.

Every function takes plain numbers (lists / arrays), draws a
``matplotlib.figure.Figure`` (:mod:`rnnjax.plots.figures`: no pyplot, no backend chosen)
and either saves it to ``path`` or returns it.  Lines are keyed by cell name and drawn
in that cell's colour and marker (:func:`rnnjax.plots.figures.cell_style`, the same in every
figure of rnnjax, the gradient-flow ones included); a band shades the spread over seeds.
"""

from __future__ import annotations

from rnnjax.plots import figures


def loss_curves(curves: dict, *, baseline: float | None = None, path: str | None = None,
                title: str = "", ylabel: str = "cross-entropy (nats)",
                baseline_label: str = "memoryless baseline", bands: dict | None = None,
                dpi: int = 100):
    """Loss against training step on a log y-axis, one line per entry of ``curves``.

    Args:
      curves: ``{label: (steps, losses)}``.
      baseline: drawn as a dashed horizontal line when given.
      bands: optional ``{label: (low, high)}`` arrays shaded around a curve (seed spread).
      path: save the figure there (PNG by extension) and close it; else return it.
    """
    fig, ax = figures.axes(figsize=(6.4, 4.0))
    for j, (label, (steps, losses)) in enumerate(curves.items()):
        style = figures.cell_style(label)
        ax.plot(steps, losses, label=label, lw=1.5, ms=4, mfc="none",
                markevery=figures.markevery(j, len(curves), len(steps)), **style)
        if bands and label in bands:
            lo, hi = bands[label]
            ax.fill_between(steps, lo, hi, color=style["color"], alpha=0.2, lw=0)
    if baseline is not None:
        ax.axhline(baseline, color="k", ls="--", lw=1, label=f"{baseline_label} ({baseline:.4f})")
    ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if path is None:
        fig.tight_layout()
        return fig
    return figures.save(fig, path, dpi=dpi, tight="layout")


def grad_norm_curves(curves: dict, *, path: str | None = None, title: str = "",
                     bands: dict | None = None, dpi: int = 100):
    """``||dL/dh_t||`` against ``t`` on a log y-axis, one panel.

    Args:
      curves: ``{label: (norms_at_init, norms_at_end)}``, each ``(T,)``; the end is drawn
        solid, the initialisation dashed, in the cell's colour and marker.
      bands: optional ``{label: ((init_low, init_high), (end_low, end_high))}`` shaded
        around the two curves (seed spread).
    """
    fig, ax = figures.axes(figsize=(6.4, 4.0))
    for j, (label, (init, end)) in enumerate(curves.items()):
        t = range(1, len(end) + 1)
        style = figures.cell_style(label) | {"ls": "-"}
        every = figures.markevery(j, len(curves), len(end))
        ax.plot(t, [max(v, 1e-30) for v in end], lw=1.5, ms=4, mfc="none", markevery=every,
                label=f"{label} (trained)", **style)
        ax.plot(t, [max(v, 1e-30) for v in init], lw=1, ms=3, mfc="none", markevery=every,
                label=f"{label} (init)", **(style | {"ls": "--"}))
        for lo, hi in (bands or {}).get(label, ()):
            ax.fill_between(t, [max(v, 1e-30) for v in lo], [max(v, 1e-30) for v in hi],
                            color=style["color"], alpha=0.15, lw=0)
    ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||")
    if title:
        ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    if path is None:
        fig.tight_layout()
        return fig
    return figures.save(fig, path, dpi=dpi, tight="layout")


def loss_panels(panels: dict, *, path: str, ylabel: str = "cross-entropy (nats)",
                dpi: int = 100):
    """One panel per entry of ``panels = {title: (curves, baseline)}`` (``curves`` as in
    :func:`loss_curves`), side by side with a log y-axis; saved to ``path``."""
    n = len(panels)
    fig = figures.figure(figsize=(4.0 * n, 3.6))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (title, (curves, baseline)) in zip(axes, panels.items()):
        for j, (label, (steps, losses)) in enumerate(curves.items()):
            ax.plot(steps, losses, label=label, lw=1.2, ms=3, mfc="none",
                    markevery=figures.markevery(j, len(curves), len(steps)),
                    **figures.cell_style(label))
        ax.axhline(baseline, color="k", ls="--", lw=1)
        ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[-1].legend(fontsize=6)
    return figures.save(fig, path, dpi=dpi, tight="layout")


def _grid(n, width=3.4, height=2.6):
    """A figure with ``n`` small panels, three a row; returns ``(fig, axes[:n])``."""
    cols = min(n, 3)
    rows = -(-n // cols)
    fig = figures.figure(figsize=(width * cols, height * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


_FIELD_COLORS = ("C0", "k", "C3", "C2", "C4")


def _positive(values):
    """``(index, value)`` of the positive finite entries (None / nan / 0 dropped)."""
    pts = [(i, float(v)) for i, v in enumerate(values)
           if v is not None and float(v) > 0 and float(v) < float("inf")]
    return [i for i, _ in pts], [v for _, v in pts]


def credit_profiles(panels: dict, *, marks=(), path: str, dpi: int = 100):
    """Small multiples, one panel per cell: ``||dL/dz^f_t||`` against ``t`` per carry
    field ``f`` (one colour per field; after training solid, at initialisation dashed),
    log scale; underflowed points (None) are left out and counted in the panel's title.

    Args:
      panels: ``{cell: {"init": {field: [...]}, "end": {field: [...]}}}``.
      marks: steps drawn as dotted vertical lines (e.g. the last symbol, the marker).
    """
    fig, axes = _grid(len(panels))
    for ax, (cell, prof) in zip(axes, panels.items()):
        lost = 0
        for j, f in enumerate(prof["end"]):
            color = _FIELD_COLORS[j % len(_FIELD_COLORS)]
            for stage, ls, lw in (("end", "-", 1.4), ("init", "--", 1.0)):
                vals = prof[stage][f]
                t, v = _positive(vals)
                lost += sum(x is None for x in vals)
                ax.plot(t, v, color=color, ls=ls, lw=lw,
                        label=f"{f} ({'trained' if stage == 'end' else 'init'})")
        for m in marks:
            ax.axvline(m, color="0.5", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(cell + (f"  ({lost} points underflowed)" if lost else ""), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
        ax.set_xlabel("step t", fontsize=8)
    axes[0].set_ylabel("||dL_recall/dz^f_t||", fontsize=8)
    return figures.save(fig, path, dpi=dpi, tight="layout")


def credit_history(panels: dict, *, path: str, title: str = "", dpi: int = 100):
    """Small multiples, one panel per cell: the credit ratio per carry field against
    training step (one colour per field) and the Jacobian norm (grey, dashed), log
    scale; an underflowed ratio (None) is drawn as a ``v`` at the panel's bottom.

    Args:
      panels: ``{cell: {"steps": [...], "ratio": {field: [...]}, "jacobian_norm":
        [...]}}``.
    """
    fig, axes = _grid(len(panels))
    for ax, (cell, h) in zip(axes, panels.items()):
        steps = list(h["steps"])
        lows = []
        for j, (f, vals) in enumerate(h["ratio"].items()):
            color = _FIELD_COLORS[j % len(_FIELD_COLORS)]
            idx, v = _positive(vals)
            ax.plot([steps[i] for i in idx], v, color=color, marker="o", ms=3, lw=1.3,
                    label=f"ratio {f}")
            lows += [(steps[i], color) for i, x in enumerate(vals) if x is None]
        idx, v = _positive(h["jacobian_norm"])
        ax.plot([steps[i] for i in idx], v, color="0.5", ls="--", lw=1,
                label="||dz_r/dz_s||")
        ax.set_yscale("log")
        if lows:
            shown = [y for ln in ax.get_lines() for y in ln.get_ydata()]
            y = min(shown) / 10 if shown else 1e-30
            for st, color in lows:
                ax.plot([st], [y], marker="v", color=color, ls="none")
            ax.plot([], [], marker="v", color="0.3", ls="none", label="underflow")
        ax.set_title(cell, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
        ax.set_xlabel("training step", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return figures.save(fig, path, dpi=dpi, tight="layout")


def against_T(panels: dict, *, path: str, dpi: int = 100):
    """Side-by-side panels, each ``{title: ({label: (Ts, values)}, ylabel)}``: values
    against the delay ``T`` on log axes, one line per label in its cell's style (None
    values left out)."""
    n = len(panels)
    fig = figures.figure(figsize=(4.6 * n, 3.8))
    axes = fig.subplots(1, n, squeeze=False)[0]
    for ax, (title, (curves, ylabel)) in zip(axes, panels.items()):
        for label, (Ts, vals) in curves.items():
            idx, v = _positive(vals)
            style = figures.cell_style(label)
            if len(label.split()) > 1 and label.split()[1] != "h":  # "cell c": dashed
                style = style | {"ls": "--"}
            ax.plot([Ts[i] for i in idx], v, label=label, lw=1.2, ms=4, mfc="none", **style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("delay T")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=6)
    return figures.save(fig, path, dpi=dpi, tight="layout")


__all__ = ["against_T", "credit_history", "credit_profiles", "grad_norm_curves",
           "loss_curves", "loss_panels"]
