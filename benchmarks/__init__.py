"""Benchmarks of rnnjax, run side by side with its peers in one process."""
