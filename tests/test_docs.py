"""The API reference (docs/api.rst) lists exactly the public names of each face: every
name of the face's ``__all__`` (a submodule in ``__all__`` is named in the section's
"Submodules" line), and nothing else."""

import importlib
import re
import types
from pathlib import Path

import pytest

API = Path(__file__).resolve().parents[1] / "docs" / "api.rst"
FACES = {"rnnjax", "rnnjax.cells", "rnnjax.layers", "rnnjax.optim", "rnnjax.analysis",
         "rnnjax.tasks", "rnnjax.interop", "rnnjax.training"}


def sections() -> dict:
    """``{module: (names of its autosummary, submodules named)}`` from docs/api.rst."""
    out, module = {}, None
    lines = API.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^\.\. currentmodule:: (\S+)", line)
        if m:
            module = m.group(1)
            out.setdefault(module, ([], []))
        elif line.startswith("Submodules reachable as attributes:"):
            paragraph = " ".join(lines[i:lines.index("", i)])
            sub = re.findall(r"``([\w.]+)``", paragraph)
            out.setdefault(sub[0].rsplit(".", 1)[0], ([], []))[1].extend(
                s.rsplit(".", 1)[1] for s in sub)
        elif module and re.match(r"^   [A-Za-z_]\w*$", line):
            out[module][0].append(line.strip())
    return out


def test_api_page_has_every_face():
    assert set(sections()) == FACES


@pytest.mark.parametrize("module", sorted(sections()))
def test_api_page_lists_exactly_the_face_all(module):
    names, submodules = sections()[module]
    face = importlib.import_module(module)
    public = list(face.__all__)
    modules = {n for n in public if isinstance(getattr(face, n), types.ModuleType)}
    assert len(names) == len(set(names)), "a name is listed twice"
    assert set(names) == set(public) - modules
    assert set(submodules) == modules
