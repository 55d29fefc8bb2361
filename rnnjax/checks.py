"""Argument checks shared by the public functions: each error names the argument,
what was expected and what came."""

from __future__ import annotations


def check_choice(name, value, valid):
    """Raise ``ValueError`` unless ``value`` is one of ``valid``; the message lists them."""
    if value not in valid:
        raise ValueError(f"{name} must be one of {sorted(valid)}, got {value!r}")


def check_positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_rate(name, value):
    if not (0.0 <= float(value) < 1.0):
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
