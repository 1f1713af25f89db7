"""The shape of the package, checked on every run: dependencies point inward, no cycles.

`domain` decides and imports nothing of ours but the error tree; the API reaches Asterisk
only through the application layer; nothing but the API itself, the CLI, the daemon's
wiring and the dev tools imports `engine.api`; the product never refers to the test tree,
and the benchmarks import nothing from it. Every import counts, those under
``TYPE_CHECKING`` and inside functions too: a cycle hidden there is still a cycle for the
reader.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENGINE = ROOT / "engine"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in ENGINE.rglob("*.py")}


def _imported(module: str, tree: ast.AST) -> Iterator[str]:
    """The modules of ours that ``module`` imports (``from a import b`` counts ``a.b``
    when ``a.b`` is a module, else ``a``)."""
    is_package = MODULES[module].name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for name in names:
            if name in MODULES and name != module:
                yield name


def _edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = set(_imported(module, ast.parse(path.read_text())))
        # a package's own __init__ is not an edge of its submodules
        edges[module] = {
            t
            for t in targets
            if not (module.startswith(t + ".") and MODULES[t].name == "__init__.py")
        }
    return edges


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


EDGES = _edges()


def test_the_package_has_no_import_cycle() -> None:
    assert _cycles(EDGES) == []


def test_the_domain_imports_nothing_of_ours_but_the_error_tree() -> None:
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in EDGES.items()
        if _under(m, "engine.domain")
        for t in targets
        if not _under(t, "engine.domain") and t != "engine.errors"
    )
    assert wrong == []


def test_the_api_reaches_asterisk_and_repositories_only_through_the_application_layer() -> None:
    allowed_store = {"engine.store.records", "engine.store.database"}
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in EDGES.items()
        if _under(m, "engine.api")
        for t in targets
        if _under(t, "engine.asterisk") or (_under(t, "engine.store") and t not in allowed_store)
    )
    assert wrong == []


def test_only_the_cli_the_daemon_and_the_dev_tools_import_the_api() -> None:
    importers = {"engine.cli", "engine.daemon"}
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in EDGES.items()
        if not _under(m, "engine.api") and m not in importers and not _under(m, "engine.devtools")
        for t in targets
        if _under(t, "engine.api")
    )
    assert wrong == []


def test_the_daemon_never_imports_the_dev_tools() -> None:
    wrong = sorted(
        f"{m} -> {t}"
        for m, targets in EDGES.items()
        if not _under(m, "engine.devtools") and m != "engine.cli"
        for t in targets
        if _under(t, "engine.devtools")
    )
    assert wrong == []


def _imports_of(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_the_product_never_refers_to_the_test_tree() -> None:
    wrong = sorted(
        str(path.relative_to(ROOT))
        for path in MODULES.values()
        if any(_under(name, "tests") for name in _imports_of(path)) or "tests/" in path.read_text()
    )
    assert wrong == []


def test_the_benchmarks_import_nothing_from_the_tests() -> None:
    wrong = sorted(
        str(path.relative_to(ROOT))
        for path in (ROOT / "bench").rglob("*.py")
        if any(_under(name, "tests") for name in _imports_of(path))
    )
    assert wrong == []
