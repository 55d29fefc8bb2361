"""Running a cell over time: :func:`run` resolves its options and calls one engine
(sequential scan, associative scan, hand-written BPTT, Newton/DEER, cuDNN)."""

from rnnjax.engine.sequence import flip_sequences, run, scan_cell

__all__ = ["flip_sequences", "run", "scan_cell"]
