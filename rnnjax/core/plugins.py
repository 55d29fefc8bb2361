"""Objects of one's own, named ``module:attr``: ``rnnjax train --cell my_cells:peephole``,
``--task my_tasks:echo``.  ``module`` is any importable module (on ``PYTHONPATH``, or a
``module.py`` in the current directory)."""

from __future__ import annotations

import importlib
import os
import sys

__all__ = ["is_plugin", "load_object"]


def is_plugin(name) -> bool:
    """Whether ``name`` is a ``module:attr`` spec rather than a registered name."""
    return isinstance(name, str) and ":" in name


def load_object(spec: str, what: str):
    """The callable named by ``spec = "module:attr"``; ``ValueError`` (one line, naming
    ``what``: "cell", "task") when the module cannot be imported, raises while importing,
    or has no such callable."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{what} must be a registered name or 'module:factory', got {spec!r}")
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.append(cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if e.name is not None and not module_name.startswith(e.name):
            # the module was found; something it imports was not
            raise ValueError(f"{what} {spec!r}: importing module {module_name!r} failed: "
                             f"{e}") from None
        raise ValueError(f"{what} {spec!r}: cannot import module {module_name!r} ({e}); put "
                         f"it on PYTHONPATH or in the current directory") from None
    except Exception as e:  # a syntax error or an exception in the user's module
        raise ValueError(f"{what} {spec!r}: importing module {module_name!r} failed: "
                         f"{type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(cwd)
    obj = getattr(module, attr, None)
    if not callable(obj):
        raise ValueError(f"{what} {spec!r}: module {module_name!r} has no callable {attr!r}")
    return obj
