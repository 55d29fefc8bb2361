"""Experiments as importable functions: the copy job, gradient flow of a trained
run, orthogonality over training. The ``rnnjax`` command calls these."""

__all__ = ["copy_job", "gradflow", "orthogonality"]
