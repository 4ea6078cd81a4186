"""No import circles in the package: every `import` and `from ... import`, at module level or
inside a function (a lazy import still ties two modules together), read with ast."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "tuning_energy"


def _graph() -> dict[str, set[str]]:
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.with_suffix("").relative_to(PACKAGE.parent).parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, p in mods.items():
        pkg = name if p.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1] if node.level \
                    else []
                mod = ".".join(base + ([node.module] if node.module else []))
                for a in node.names:
                    deps.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in mods else mod)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        # `from . import __version__`: the package itself is not a module's dependency here
        graph[name] = {d for d in deps if d in mods} - {name, "tuning_energy"}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    assert _cycles(_graph()) == []


def test_at_most_ten_modules_sit_at_the_top_of_the_package():
    """The rest lives in subpackages by concern (config/, search/, run/, ...)."""
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top


def test_modules_import_a_name_from_the_module_that_defines_it():
    """`tuning_energy.analysis` re-exports its modules' names for users
    (`from tuning_energy import analysis as an`); inside the package a module imports a
    name from where it is defined, so that its imports say what it depends on."""
    fronts = {"tuning_energy.analysis"}
    wrong = []
    for p in PACKAGE.rglob("*.py"):
        if p in (PACKAGE / "__init__.py", PACKAGE / "analysis" / "__init__.py"):
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in fronts:
                wrong += [f"{p.relative_to(PACKAGE)}: {a.name}" for a in node.names
                          if not (PACKAGE / "analysis" / f"{a.name}.py").exists()]
            elif isinstance(node, ast.ImportFrom) and node.module == "tuning_energy":
                wrong += [f"{p.relative_to(PACKAGE)}: tuning_energy.{a.name}"
                          for a in node.names if f"tuning_energy.{a.name}" in fronts]
    assert wrong == []
