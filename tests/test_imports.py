"""The package reads as layers: no module imports, directly or through others, one that imports it.

Imports are read with `ast` from the source, at every level (module top, inside functions, under
`TYPE_CHECKING`): a function-level import still ties two modules together.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cxrdrift"


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (relative and absolute imports of the package)."""
    modules = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package_of = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package_of.split(".")[:len(package_of.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                # `from .pkg import sub` imports the submodule when there is one
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_circles_are_found_in_a_small_package(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import thing\n")
    (package / "b.py").write_text("def f():\n    from . import c\n")
    (package / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import x\n")
    (package / "d.py").write_text("from .a import thing\n")
    (package / "sub" / "__init__.py").write_text("")
    (package / "sub" / "e.py").write_text("from ..d import y\nfrom . import f\n")
    (package / "sub" / "f.py").write_text("import os\n")
    graph = import_graph(package)
    assert graph["pkg.sub.e"] == {"pkg.d", "pkg.sub.f"}
    assert circles(graph) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_the_package_has_no_import_circles():
    graph = import_graph()
    assert len(graph) > 20 and "cxrdrift.plots.drift" in graph
    found = circles(graph)
    assert not found, "import circles: " + "; ".join(" <-> ".join(group) for group in found)


def test_the_bottom_layers_import_nothing_above_them():
    graph = import_graph()
    assert graph["cxrdrift.config"] == set() and graph["cxrdrift.metrics"] == set()
    assert graph["cxrdrift.models"] == set()              # builds models; resolves no run's weights
    assert "cxrdrift.models" not in graph["cxrdrift.data"]  # the data layer knows no backbone
    assert graph["cxrdrift.artifacts"] == {"cxrdrift.config"}
