"""The import graph of `nmt` and `serve`, read from the source (every import, typing-only ones included): layers
depend one way (`serve` uses `nmt`; `nmt` never uses `serve`, but for `nmt serve` starting the server; nothing
uses the benchmarks) and no module is part of an import circle."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("nmt", "serve")
# the one way back up: the `nmt serve` sub-command imports the server's options when it is asked for
UPWARD_ALLOWED = {("nmt.cli", "serve")}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the project's modules it imports}, each import resolved to the longest module name it names."""
    modules = _modules()

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        imported: set[str | None] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                imported |= {resolve(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                imported |= {resolve(alias.name) for alias in node.names}
        graph[name] = {m for m in imported if m is not None and m != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

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
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    assert circles(import_graph()) == []


def test_circles_are_found():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layers_depend_one_way():
    upward = [
        (module, imported)
        for module, imports in import_graph().items()
        if module.startswith("nmt")
        for imported in imports
        if imported.split(".")[0] == "serve" and (module, imported.split(".")[0]) not in UPWARD_ALLOWED
    ]
    assert upward == [], "nmt must not import serve (only `nmt serve` starts the server)"
    graph = import_graph()
    assert "serve" in graph["nmt.cli"] or any(m.startswith("serve") for m in graph["nmt.cli"])
    serve_uses_bench = [(m, i) for m, imports in graph.items() if m.startswith("serve") for i in imports]
    assert not [pair for pair in serve_uses_bench if pair[1].startswith("nmt.bench")]
    for path in list((REPO / "nmt").rglob("*.py")) + list((REPO / "serve").rglob("*.py")):
        assert "benchmarks" not in {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])
        }, path
