"""The shape of the house: no import cycle, no rnnjax import inside a function, and the
hand-written backward chosen by what a cell carries (``cell.backward``), never its name."""

import ast
import doctest
import importlib
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells, layers
from rnnjax.core.cell import Cell, HiddenState, zeros_carry

PKG = pathlib.Path(rnnjax.__file__).parent


def _modules():
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, ast.parse(path.read_text(), str(path))


MODULES = {name: tree for name, _, tree in _modules()}


def _targets(node, importer):
    """rnnjax modules an import statement loads (a submodule when the name is one)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "rnnjax"]
    if node.level:  # relative import
        base = importer.rsplit(".", node.level)[0] if "." in importer else importer
        mod = f"{base}.{node.module}" if node.module else base
    else:
        mod = node.module or ""
    if mod.split(".")[0] != "rnnjax":
        return []
    return [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod for a in node.names]


def _import_graph():
    graph = {}
    for name, tree in MODULES.items():
        graph[name] = {t for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
                       for t in _targets(node, name) if t != name and t in MODULES}
    return graph


def _cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_import_graph_has_no_cycle():
    graph = _import_graph()
    assert "rnnjax.engine.bptt" in graph["rnnjax.engine.table"]
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_rnnjax_import_inside_a_function():
    found = []
    for name, tree in MODULES.items():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)) and _targets(node, name):
                        found.append(f"{name}.{fn.name} line {node.lineno}")
    assert not found, found


def test_every_public_module_declares_all():
    missing = [name for name, tree in MODULES.items()
               if not name.split(".")[-1].startswith("_") and name != "rnnjax.__main__"
               and not any(getattr(t, "id", None) == "__all__" for n in tree.body
                           for t in (n.targets if isinstance(n, ast.Assign) else
                                     [n.target] if isinstance(n, ast.AnnAssign) else []))]
    assert not missing, missing


# --------------------------------------------------------------- backward is a field

def _grads(cell, params, xs, grad):
    def loss(p, x):
        ys, final = rnnjax.run(cell, p, x, grad=grad)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final.h ** 2)
    return jax.grad(loss, argnums=(0, 1))(params, xs)


def test_own_cell_with_lstm_equations_under_another_name_gets_the_manual_gradient():
    mine = cells.lstm(5)._replace(name="my-memory-cell")
    xs = jax.random.normal(jax.random.key(1), (3, 11, 4), jnp.float64)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), mine.init(jax.random.key(0), 4))
    (pm, xm), (pa, xa) = _grads(mine, params, xs, "manual"), _grads(mine, params, xs, "autodiff")
    for k in pa:
        np.testing.assert_allclose(pm[k], pa[k], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xm, xa, rtol=1e-10, atol=1e-12)


def test_a_cell_named_lstm_with_other_equations_is_refused_manual():
    H = 3

    def step(w, carry, x):
        h = jnp.sin(w["W"] @ x + carry.h)
        return HiddenState(h), h

    impostor = Cell(init=lambda k, f: {"W": jax.random.normal(k, (H, f))},
                    prepare=lambda p: p, initial_carry=zeros_carry(HiddenState, H), step=step,
                    input_size=lambda p: p["W"].shape[-1], output_size=H, name="lstm")
    params = impostor.init(jax.random.key(0), 2)
    xs = jnp.ones((2, 5, 2))
    with pytest.raises(ValueError, match="'lstm' cell has none"):
        rnnjax.run(impostor, params, xs, grad="manual")
    ys, _ = rnnjax.run(impostor, params, xs)  # autodiff path unaffected
    assert ys.shape == (2, 5, H)


def test_recurrent_dropout_with_manual_grad_is_refused_before_tracing():
    layer = layers.unidirectional(cells.lstm(4), recurrent_dropout=0.5)
    params = layer.init(jax.random.key(0), 3)
    xs = jnp.ones((2, 6, 3))
    with pytest.raises(ValueError, match="grad='manual' needs a hand-written backward"):
        layer.apply(params, xs, key=jax.random.key(1), grad="manual")
    # without dropout the same layer trains through the manual backward
    ys, _ = layer.apply(params, xs, grad="manual")
    np.testing.assert_allclose(ys, layer.apply(params, xs)[0], rtol=1e-6)


# --------------------------------------------------------------- runnable docstrings

FACTORY_MODULES = sorted({getattr(f, "__module__", "") for f in cells.REGISTRY.values()})


def test_every_registered_factory_has_a_runnable_example():
    assert len(FACTORY_MODULES) >= 8, FACTORY_MODULES
    missing = [name for name, f in cells.REGISTRY.items() if ">>>" not in (f.__doc__ or "")]
    assert not missing, f"factories without a docstring example: {missing}"


@pytest.mark.parametrize("module", FACTORY_MODULES)
def test_cell_docstring_examples_run(module):
    with jax.enable_x64(False):  # the examples are written for the default float32
        result = doctest.testmod(importlib.import_module(module), verbose=False,
                                 extraglobs={"jax": jax, "jnp": jnp, "rnnjax": rnnjax})
    assert result.attempted > 0, f"{module} has no docstring example"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


# The floors of the house, bottom to top: a module imports only from its own floor or
# below (README's "Map of the package" draws the same order).
FLOORS = [["core"], ["engine"], ["cells"], ["io", "layers", "interop", "plots"],
          ["analysis", "optim"], ["tasks"], ["training"], ["experiments"], ["apps"], ["cli"]]
FLOOR = {pkg: level for level, pkgs in enumerate(FLOORS) for pkg in pkgs}


def _floor(module):
    parts = module.split(".")
    return FLOOR[parts[1]] if len(parts) > 1 else len(FLOORS)  # rnnjax itself: the roof


def test_every_subpackage_has_a_floor():
    assert {name.split(".")[1] for name in MODULES if name.count(".") >= 1} == set(FLOOR)


def test_no_module_imports_from_a_floor_above_its_own():
    upward = sorted(f"{m} (floor {_floor(m)}) imports {t} (floor {_floor(t)})"
                    for m, targets in _import_graph().items() for t in targets
                    if _floor(t) > _floor(m))
    assert not upward, "\n".join(upward)


def test_the_floor_rule_catches_an_upward_import():
    assert _floor("rnnjax.engine.sequence") < _floor("rnnjax.cells.elman") < _floor("rnnjax.cli")


def test_top_level_is_small_and_modules_are_short():
    assert len(list(PKG.glob("*.py"))) <= 10
    long = {name: n for name, path, _ in _modules()
            if (n := len(path.read_text().splitlines())) > 500}
    assert not long, long
