"""Matplotlib figures for reports: small functions, each drawing one figure.

Every function takes plain numbers (lists / arrays), draws a
``matplotlib.figure.Figure`` (:mod:`rnnjax.figures`: no pyplot, no backend chosen)
and either saves it to ``path`` or returns it.  Lines are keyed by cell name and drawn
in that cell's colour and marker (:func:`rnnjax.figures.cell_style`, the same in every
figure of rnnjax, the gradient-flow ones included); a band shades the spread over seeds.
"""

from __future__ import annotations

from rnnjax import figures


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


__all__ = ["grad_norm_curves", "loss_curves", "loss_panels"]
