"""The bottom layer: the Cell protocol (:class:`~rnnjax.core.cell.Cell`,
:class:`~rnnjax.core.cell.Linear`, :class:`~rnnjax.core.cell.Backward`), argument checks,
memory estimates, elementwise ops, initialisers and mixed precision. Imports nothing
else of rnnjax."""

__all__ = ["cell", "checks", "initializers", "memory", "ops", "precision"]
