"""The package's layers: imports point down, never up, and never in a circle.

Every ``import`` of a lazyimg module, at module level or inside a function, is an
edge of the import graph (only blocks under ``if TYPE_CHECKING:`` are left out:
they never run). Each module belongs to one layer of the data's way through the
package; a module may import its own layer and the layers below it. The graph as
a whole must have no cycle, and no module may grow past ~350 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lazyimg"

#: Lowest first. A module's layer is the longest prefix listed here.
LAYERS: list[tuple[str, ...]] = [
    ("lazyimg.errors", "lazyimg.testing", "lazyimg._rangeserver", "lazyimg._daskconf"),
    ("lazyimg._plan",),  # pure: chunks, index algebra, read plans
    ("lazyimg._io",),  # what a file is, its axes, and its bytes (local, gzip)
    ("lazyimg._graph",),  # dask graphs
    ("lazyimg._write", "lazyimg.write"),  # headers from labels, atomic writes, save
    ("lazyimg.xarray.accessor", "lazyimg.xarray.convert"),  # labels
    ("lazyimg._display",),  # HTML summary and pictures
    ("lazyimg.image",),  # the user's object: LazyImage, load
    ("lazyimg.xarray",),  # open_dataarray and the xarray engine
    ("lazyimg._demo", "lazyimg.cli", "lazyimg.__main__", "lazyimg"),  # the surface
]
MAX_LINES = 360


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_pkg: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")
        parent = parts if is_pkg else parts[:-1]
        parent = parent[: len(parent) - (node.level - 1)]
        base = ".".join(parent + ([base] if base else []))
    # "from pkg import sub" is an edge to pkg.sub when that is a module, else to pkg
    return [base] + [f"{base}.{a.name}" for a in node.names]


def _skip_type_checking(tree: ast.AST) -> list[ast.AST]:
    keep: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for sub in ast.walk(child):
                    sub.lazyimg_skip = True  # type: ignore[attr-defined]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)) and not getattr(
            node, "lazyimg_skip", False
        ):
            keep.append(node)
    return keep


def import_graph() -> dict[str, set[str]]:
    """Module -> the lazyimg modules it imports (module or function level)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(), str(path))
        targets: set[str] = set()
        for node in _skip_type_checking(tree):
            assert isinstance(node, (ast.Import, ast.ImportFrom))
            found = _resolve(name, node, path.name == "__init__.py")
            subs = [t for t in found[1:] if t in modules]
            if isinstance(node, ast.ImportFrom) and subs and len(subs) == len(found) - 1:
                found = subs
            targets.update(t for t in found if t in modules and t != name)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = i, len(prefix)
    return best


def test_every_module_has_a_layer() -> None:
    assert [m for m in _modules() if layer_of(m) < 0] == []


def test_imports_point_down() -> None:
    upward = [
        f"{src} (layer {layer_of(src)}) imports {dst} (layer {layer_of(dst)})"
        for src, dsts in import_graph().items()
        for dst in sorted(dsts)
        if layer_of(dst) > layer_of(src)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


@pytest.mark.parametrize("module", sorted(_modules()))
def test_module_is_small_and_says_its_job(module: str) -> None:
    path = _modules()[module]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{module} has grown past {MAX_LINES} lines"
    if text.strip():
        assert ast.get_docstring(ast.parse(text)), f"{module} has no docstring saying its job"


def test_the_check_sees_upward_and_circular_imports() -> None:
    # the checker itself: a function-level import is an edge, TYPE_CHECKING is not
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from lazyimg.image import LazyImage\n"
        "def f():\n    from lazyimg.write import save\n"
    )
    names = {n.module for n in _skip_type_checking(tree) if isinstance(n, ast.ImportFrom)}
    assert names == {"typing", "lazyimg.write"}
    assert layer_of("lazyimg._io.gzip.reader") < layer_of("lazyimg._graph") < layer_of("lazyimg")
