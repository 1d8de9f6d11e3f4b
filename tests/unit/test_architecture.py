"""The import graph of the installed `communs` package follows the map in ARCHITECTURE.md.

Built from the source of every module (imports at any depth, also inside functions, since a lazy import is
still a dependency), resolved relative imports included. Imports under `if TYPE_CHECKING:` count for the
layer rules but not for cycles: they exist only for the type checker.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGES = ("communs.protocol", "communs.storage", "communs.governance", "communs.node")
# Which top-level part may import which (besides itself).
ALLOWED = {
    "communs.protocol": set(),
    "communs.storage": {"communs.protocol"},
    "communs.governance": {"communs.protocol"},
    "communs.node": {"communs.protocol", "communs.storage", "communs.governance"},
}
ADAPTER = "communs.protocol.libp2p"
LIBP2P_ROOTS = ("trio", "libp2p", "multiaddr", "trio_typing")


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name in PACKAGES:
        pkg = importlib.import_module(name)
        found[name] = Path(pkg.__file__ or "")
        for info in pkgutil.walk_packages(pkg.__path__, name + "."):
            spec = importlib.util.find_spec(info.name)
            assert spec is not None and spec.origin is not None
            found[info.name] = Path(spec.origin)
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path) -> Iterator[tuple[str, bool]]:
    """(imported module, type-checking only) for every import in the module's source."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    base = module if is_pkg else module.rsplit(".", 1)[0]

    def walk(node: ast.AST, typing_only: bool) -> Iterator[tuple[str, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.body:
                    yield from walk_one(sub, True)
                for sub in child.orelse:
                    yield from walk_one(sub, typing_only)
                continue
            yield from walk_one(child, typing_only)

    def walk_one(child: ast.AST, typing_only: bool) -> Iterator[tuple[str, bool]]:
        if isinstance(child, ast.Import):
            for alias in child.names:
                yield alias.name, typing_only
        elif isinstance(child, ast.ImportFrom):
            if child.level:
                parts = base.split(".")
                root = ".".join(parts[: len(parts) - (child.level - 1)])
                target = f"{root}.{child.module}" if child.module else root
            else:
                target = child.module or ""
            yield target, typing_only
            for alias in child.names:  # `from pkg import module`
                yield f"{target}.{alias.name}", typing_only
        else:
            yield from walk(child, typing_only)

    yield from walk(tree, False)


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, set[str]]]:
    mods = _modules()
    runtime: dict[str, set[str]] = {m: set() for m in mods}
    everything: dict[str, set[str]] = {m: set() for m in mods}
    external: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        for target, typing_only in _imports(mod, path):
            if target in mods:
                everything[mod].add(target)
                if not typing_only:
                    runtime[mod].add(target)
            elif not target.startswith("communs."):
                external[mod].add(target.split(".")[0])
    return runtime, everything, external


def _part(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w == v:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _package_edges(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph with a package's __init__ ignored as a target: importing `communs.node` for its version is
    not a dependency on everything below it."""
    return {m: {t for t in ts if not _is_parent(t, m)} for m, ts in graph.items()}


def _is_parent(target: str, module: str) -> bool:
    return module.startswith(target + ".")


def test_no_import_cycle_between_modules() -> None:
    runtime, _, _ = _graph()
    cycles = _cycles(_package_edges(runtime))
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_layers_point_one_way() -> None:
    _, everything, _ = _graph()
    wrong = sorted(
        f"{mod} imports {target}"
        for mod, targets in everything.items()
        for target in targets
        if _part(target) != _part(mod) and _part(target) not in ALLOWED[_part(mod)]
    )
    assert not wrong, "arrows the map forbids: " + "; ".join(wrong)


def test_only_the_adapter_imports_trio_or_libp2p() -> None:
    _, _, external = _graph()
    wrong = sorted(
        f"{mod} imports {lib}"
        for mod, libs in external.items()
        for lib in libs
        if lib in LIBP2P_ROOTS and not (mod == ADAPTER or mod.startswith(ADAPTER + "."))
    )
    assert not wrong, "trio/libp2p outside protocol/libp2p: " + "; ".join(wrong)


@pytest.mark.parametrize("source", [
    "import communs.node.x\n",
    "from .x import y\n",
])
def test_the_graph_builder_sees_imports(tmp_path: Path, source: str) -> None:
    path = tmp_path / "m.py"
    path.write_text("def f():\n    " + source)
    found = {t for t, _ in _imports("communs.node.m", path)}
    assert found & {"communs.node.x", "communs.node.x.y"}


def test_cycle_finder_finds_a_cycle_and_ignores_a_chain() -> None:
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


SERVICE_PACKAGES = ("communs.node.services", "communs.node.exchange")


def _mentions_node_class(path: Path) -> list[str]:
    """Where a module's source names the `Node` class (an annotation, a string annotation, an attribute)."""
    tree = ast.parse(path.read_text(), str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "Node":
            found.append(f"line {node.lineno}")
        elif isinstance(node, ast.alias) and (node.asname or node.name) == "Node":
            found.append(f"line {getattr(node, 'lineno', '?')}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ("Node", "Node | None"):
            found.append(f"line {node.lineno}")
    return found


def test_no_service_holds_the_node() -> None:
    """Services get a NodeContext (node/context.py) and their collaborators, never the Node: importing
    communs.node.node (even for typing) or naming the Node class under services/ or exchange/ fails."""
    mods = _modules()
    _, everything, _ = _graph()
    wrong = []
    for mod, path in sorted(mods.items()):
        if not mod.startswith(SERVICE_PACKAGES):
            continue
        if "communs.node.node" in everything[mod] or any(t.startswith("communs.node.node.") for t in everything[mod]):
            wrong.append(f"{mod} imports communs.node.node")
        wrong += [f"{mod} names Node at {where}" for where in _mentions_node_class(path)]
    assert not wrong, "services holding the node: " + "; ".join(wrong)


@pytest.mark.parametrize("source", [
    "from communs.node.node import Node\n",
    "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..node import Node\n",
    "def f(node: 'Node') -> None: ...\n",
    "class S:\n    def __init__(self, node: Node) -> None: ...\n",
])
def test_the_node_check_sees_a_node_coming_back(tmp_path: Path, source: str) -> None:
    path = tmp_path / "m.py"
    path.write_text(source)
    imports = {t for t, _ in _imports("communs.node.services.m", path)}
    assert "communs.node.node" in imports or _mentions_node_class(path)
