"""Matplotlib figures: one style per cell (:mod:`rnnjax.plots.figures`), the copy
report's figures (:mod:`rnnjax.plots.report`) and the gradient-flow figures
(:mod:`rnnjax.plots.gradflow`)."""

__all__ = ["figures", "gradflow", "report"]
