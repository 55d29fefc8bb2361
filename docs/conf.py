"""Sphinx configuration of the rnnjax documentation site.

Build (warnings are errors, as in CI): ``sphinx-build -W -b html docs docs/_build/html``.
The pages are Markdown (myst-parser) except the API reference (``api.rst``), whose
stubs autosummary writes into ``docs/_autosummary`` at build time.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # the checkout being documented, not another installed copy

project = "rnnjax"
author = "the rnnjax authors"
copyright = "the rnnjax authors; Apache-2.0"

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# The API reference: one stub page per public name, documented from its docstring.
autosummary_generate = True
autosummary_imported_members = True
autodoc_default_options = {"members": False}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = True

# Markdown: `$` is literal text in these pages (shell prompts, SLURM variables), and
# headings get anchors so pages can link to sections.
myst_enable_extensions = []
myst_heading_anchors = 3

html_theme = "alabaster"
html_title = "rnnjax"

# Stub pages: a class that the top level re-exports from another face (``rnnjax.Config``
# is ``rnnjax.training.Config``, ``rnnjax.Layer`` is ``rnnjax.layers.Layer``) is indexed
# under that face only, or Sphinx sees two descriptions of its one canonical name.
templates_path = ["_templates"]


def _reexported_classes() -> list:
    import importlib
    import inspect

    import rnnjax

    api = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "api.rst")).read()
    faces = [f for f in re.findall(r"^\.\. currentmodule:: (\S+)$", api, re.M) if f != "rnnjax"]
    elsewhere = {n for f in faces for n in importlib.import_module(f).__all__}
    return [f"rnnjax.{n}" for n in rnnjax.__all__
            if n in elsewhere and inspect.isclass(getattr(rnnjax, n))]


autosummary_context = {"no_index": _reexported_classes()}


def _docstring(app, what, name, obj, options, lines):
    """Drop the docstring a module-level constant inherits from its type (``dict``'s,
    for ``rnnjax.cells.REGISTRY``), and mend known markup slips of the sources."""
    if what in ("data", "attribute") and lines:
        inherited = (type(obj).__doc__ or "").strip().splitlines()
        if inherited and lines[0].strip() == inherited[0].strip():
            lines[:] = [f"A ``{type(obj).__name__}``; see the guides for its entries."]
    for i, line in enumerate(lines):
        for slip, mended in _SLIPS:
            line = line.replace(slip, mended)
        lines[i] = line


# (in the source, as it reads) -> (what docutils can parse); remove an entry once the
# docstring itself is mended.
_SLIPS = [
    ("``s <= r < `` the first target", "``s <= r <`` the first target"),
    # autosummary ends a summary at the first ". ", even inside a literal
    ("``dh_t/dh_s = J_t J_{t-1} ... J_{s+1}``", "``dh_t/dh_s = J_t J_{t-1} \u2026 J_{s+1}``"),
]


def setup(app):
    app.connect("autodoc-process-docstring", _docstring)
