"""The memory lab's figures (:mod:`rnnjax.experiments.lab`): a heatmap of accuracy over
cells x tasks and length-generalisation curves per task.  Plain numbers in, PNG out
(:mod:`rnnjax.plots.figures`)."""

from __future__ import annotations

import math

import numpy as np

from rnnjax.plots.figures import cell_style, figure, save

__all__ = ["accuracy_heatmap", "length_curves"]


def accuracy_heatmap(cells, tasks, acc, *, path: str, title: str = "") -> str:
    """``acc[i][j]``: the mean accuracy of ``cells[i]`` on ``tasks[j]`` (None: not run),
    drawn as colour in [0, 1] with the value written in each square."""
    a = np.array([[np.nan if v is None else v for v in row] for row in acc], float)
    fig = figure(figsize=(1.1 + 0.75 * len(tasks), 1.0 + 0.38 * len(cells)))
    ax = fig.add_subplot()
    im = ax.imshow(a, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(tasks)), tasks, rotation=40, ha="right")
    ax.set_yticks(range(len(cells)), cells)
    for i in range(len(cells)):
        for j in range(len(tasks)):
            if np.isfinite(a[i, j]):
                ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if a[i, j] < 0.6 else "black")
    fig.colorbar(im, ax=ax, label="accuracy (training length)")
    if title:
        ax.set_title(title)
    return save(fig, path)


def length_curves(panels: dict, *, path: str) -> str:
    """``panels = {task: {cell: (lengths, means, stds)}}``: accuracy against the
    evaluation length (log scale), one panel per task, mean ± std over seeds."""
    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = math.ceil(n / cols)
    fig = figure(figsize=(3.4 * cols, 2.7 * rows + 0.6))
    for k, (task, curves) in enumerate(panels.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        for cell, (Ls, m, s) in curves.items():
            m, s = np.asarray(m, float), np.asarray(s, float)
            st = cell_style(cell.split("@")[0])
            ax.plot(Ls, m, label=cell, color=st["color"], marker=st["marker"],
                    ls="--" if "@" in cell else "-", ms=4)
            ax.fill_between(Ls, m - s, m + s, color=st["color"], alpha=0.12)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("evaluation length")
        ax.set_ylabel("accuracy")
    handles, labels = fig.axes[0].get_legend_handles_labels() if fig.axes else ([], [])
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6),
                   fontsize=7, bbox_to_anchor=(0.5, -0.02 - 0.03 * (len(labels) // 6)))
    return save(fig, path, tight="bbox")
