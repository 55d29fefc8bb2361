"""Files: run folders (claims, locks, markers), atomic writes, parameter files."""

__all__ = ["outputs", "paramfile"]
