"""The package's import graph: acyclic, every import at module level, layered.

The pipeline reads bottom-up (formula → design → cross-products → kernel → solver →
results → analyses → front ends); a module may import only modules below it.  The checks
read the source with ``ast``, so a cycle held together by function-local imports (which
Python tolerates at run time) fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jaxlme

PACKAGE = Path(jaxlme.__file__).parent
MODULES = sorted(p.stem for p in PACKAGE.glob("*.py"))

# Modules that only define the core computation: none of them may import a model, a result
# or an analysis (anything that takes a fitted result).
CORE = ["formula", "design", "centering", "structure", "objective", "optimizer", "params", "boundary", "compiled"]
UPPER = ["model", "results", "glmm", "inference", "anova", "kenward_roger", "emmeans", "predict", "r2", "bootstrap"]
# Analyses take a result object; the result class imports them to delegate, never the reverse.
ANALYSES = [
    "inference",
    "anova",
    "kenward_roger",
    "emmeans",
    "predict",
    "r2",
    "bootstrap",
    "simulation",
    "pool",
    "multi",
]


def _imports(module: str) -> list[tuple[str, bool]]:
    """(imported jaxlme module, inside a function?) for every run-time import of ``module``
    (imports under ``if TYPE_CHECKING:`` are for annotations only and skipped)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    out: list[tuple[str, bool]] = []

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            local = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.ImportFrom) and child.level == 1:
                targets = [child.module.split(".")[0]] if child.module else [a.name for a in child.names]
                out.extend((t, local) for t in targets if t in MODULES)
            elif isinstance(child, ast.Import):
                for a in child.names:
                    parts = a.name.split(".")
                    if parts[0] == "jaxlme" and len(parts) > 1:
                        out.append((parts[1], local))
            visit(child, local)

    visit(tree, False)
    return [(t, local) for t, local in out if t != module]


GRAPH = {m: sorted({t for t, _ in _imports(m)}) for m in MODULES}


def _cycle(graph: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for t in graph.get(m, []):
            if state.get(t) == 1:
                return path[path.index(t) :] + [t]
            if t not in state and (found := walk(t)):
                return found
        path.pop()
        state[m] = 2
        return None

    for m in graph:
        if m not in state and (found := walk(m)):
            return found
    return None


def test_cycle_detector_finds_a_planted_cycle():
    assert _cycle({"a": ["b"], "b": ["c"], "c": ["a"], "d": []}) == ["a", "b", "c", "a"]
    assert _cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


def test_import_graph_has_no_cycle():
    assert _cycle(GRAPH) is None, " -> ".join(_cycle(GRAPH))


def test_no_function_local_imports_of_jaxlme_modules():
    local = {m: sorted({t for t, is_local in _imports(m) if is_local}) for m in MODULES}
    assert {m: ts for m, ts in local.items() if ts} == {}


def test_core_modules_import_nothing_above_them():
    bad = {m: [t for t in GRAPH[m] if t in UPPER] for m in CORE}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_analyses_do_not_import_the_result_or_model_modules():
    bad = {m: [t for t in GRAPH[m] if t in ("results", "model", "glmm", "comparison")] for m in ANALYSES}
    assert {m: ts for m, ts in bad.items() if ts} == {}


def test_every_module_is_parsed():
    assert {"model", "results", "inference", "bootstrap", "params", "comparison"} <= set(MODULES)
    assert GRAPH["results"] and "params" in GRAPH["model"]


def _private_imports(tree: ast.AST, internal: bool) -> list[str]:
    """Private names (``_x``, not dunders) taken from another jaxlme module: ``from .m import
    _x`` (``internal``: relative imports inside the package) or, in tests, ``from jaxlme.m
    import _x`` and ``m._x`` on a name bound to a jaxlme module.  Private *modules*
    (``_config``) are the package's own and may be imported inside it."""
    found, bound = [], set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            ours = node.level == 1 if internal else (node.module or "").split(".")[0] == "jaxlme"
            if not ours:
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                if private and (not internal or node.module is not None):
                    found.append(f"{node.module}.{alias.name}")
                if not internal and node.module == "jaxlme":
                    bound.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import) and not internal:
            for alias in node.names:
                if alias.name.split(".")[0] == "jaxlme":
                    bound.add(alias.asname or alias.name.split(".")[0])
    if not internal:
        for node in ast.walk(tree):
            attr = isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
            if attr and isinstance(node.value, ast.Name) and node.value.id in bound:
                found.append(f"{node.value.id}.{node.attr}")
            # jaxlme.module._name
            inner = node.value if attr else None
            if isinstance(inner, ast.Attribute) and isinstance(inner.value, ast.Name) and inner.value.id in bound:
                found.append(f"{inner.value.id}.{inner.attr}.{node.attr}")
    return found


def test_private_import_detector_finds_planted_ones():
    inside = ast.parse("from .design import _hidden, public\nfrom . import _config\n")
    assert _private_imports(inside, internal=True) == ["design._hidden"]
    source = "import jaxlme\nfrom jaxlme import design\nfrom jaxlme.plots import _p\ndesign._x()\njaxlme.m._y\n"
    test = ast.parse(source)
    assert sorted(_private_imports(test, internal=False)) == ["design._x", "jaxlme.m._y", "jaxlme.plots._p"]


def test_modules_share_only_public_names():
    """What one module uses from another is part of that module's interface (documented,
    named without a leading underscore), so a module's private helpers can change freely."""
    bad = {m: _private_imports(ast.parse((PACKAGE / f"{m}.py").read_text()), True) for m in MODULES}
    assert {m: v for m, v in bad.items() if v} == {}


def test_tests_use_public_names():
    """Tests exercise jaxlme through public names only (the package's private helpers are
    tested through the public functions that use them)."""
    tests = Path(__file__).parent
    bad = {p.name: _private_imports(ast.parse(p.read_text()), False) for p in sorted(tests.glob("*.py"))}
    assert {k: v for k, v in bad.items() if v} == {}
