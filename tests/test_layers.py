"""The layers of `lineage/` point one way: no import cycle, and no package importing one above it.

Every import statement counts, wherever it stands (module level, inside a function, under `TYPE_CHECKING`):
an import deferred to a function is still a dependency, only a later one. `from pkg import name` is an edge
to the module `pkg.name` when there is one, else to `pkg`. The order, low to high, is `LAYERS`; a package
may import its own modules and any package below it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "lineage"

#: Low to high. `lineage` is the package's own `__init__` (the version); `data` only names packaged files;
#: `catalog` builds models with io/arch helpers and sits right above fingerprint so that it can use nothing
#: higher; `report` renders what the jobs return, and the jobs fill their rows and scores with its helpers.
LAYERS: tuple[str, ...] = (
    "errors", "lineage", "data", "arch", "io", "probe", "features", "fingerprint", "catalog", "compare",
    "decide", "refs", "store", "attribute", "verify", "tree", "report", "jobs", "cli",
)  # fmt: skip


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `line` (the statement as written is `text`)."""

    source: str
    target: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.source}:{self.line} imports {self.target} ({self.text})"


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every `.py` under `root` (a package's `__init__` is the package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _module_of(name: str, known: dict[str, Path]) -> str | None:
    """The longest prefix of `name` that is a module of the package, None when none is."""
    parts = name.split(".")
    while parts and ".".join(parts) not in known:
        parts.pop()
    return ".".join(parts) or None


def imports(root: Path) -> Iterator[Edge]:
    """Every import edge between modules of the package under `root`."""
    known = modules(root)
    top = root.name
    for source, path in known.items():
        package = source if path.name == "__init__.py" else source.rpartition(".")[0]
        code = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, *([node.module] if node.module else [])])
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
            else:
                continue
            text = " ".join((ast.get_source_segment(code, node) or "").split())
            targets = {_module_of(n, known) for n in names if n == top or n.startswith(f"{top}.")}
            for target in sorted(t for t in targets if t is not None and t != source):
                yield Edge(source, target, node.lineno, text)


def layer_of(module: str) -> str:
    """`lineage.io.reader` -> `io`; `lineage` -> `lineage`; `lineage.errors` -> `errors`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward(edges: list[Edge], order: tuple[str, ...]) -> list[str]:
    """The edges from a package to one above it, and to or from a package the order does not place."""
    rank = {name: i for i, name in enumerate(order)}
    problems = []
    for e in edges:
        a, b = layer_of(e.source), layer_of(e.target)
        if a == b:
            continue
        if a not in rank or b not in rank:
            missing = a if a not in rank else b
            problems.append(f"package '{missing}' is not in LAYERS: place it ({e})")
        elif rank[b] > rank[a]:
            problems.append(f"upward: {a} -> {b}: {e}")
    return problems


def cycles(edges: list[Edge]) -> list[list[Edge]]:
    """The import cycles: for each strongly connected set of modules, the edges inside it."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan; the graph of a package is small enough to recurse
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [[e for e in edges if e.source in g and e.target in g] for g in found]


@cache
def _lineage_edges() -> tuple[Edge, ...]:
    return tuple(imports(ROOT))


def test_no_package_imports_one_above_it() -> None:
    problems = upward(list(_lineage_edges()), LAYERS)
    assert not problems, "\n".join(problems)


def test_no_import_cycle() -> None:
    found = cycles(list(_lineage_edges()))
    assert not found, "\n\n".join("cycle:\n" + "\n".join(f"  {e}" for e in group) for group in found)


def test_every_package_has_a_layer() -> None:
    packages = {layer_of(m) for m in modules(ROOT)}
    assert packages <= set(LAYERS), f"place these packages in LAYERS: {sorted(packages - set(LAYERS))}"


def _package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_walk_sees_deferred_upward_imports_and_cycles(tmp_path: Path) -> None:
    pkg = _package(
        tmp_path,
        {
            "__init__.py": "",
            "low/__init__.py": "",
            "low/a.py": "def f():\n    from pkg.high.b import g\n",  # upward, inside a function
            "high/__init__.py": "",
            "high/b.py": "from pkg.low import a\nfrom . import c\n",
            "high/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.high.b import g\n",
        },
    )
    edges = list(imports(pkg))
    assert {(e.source, e.target) for e in edges} == {
        ("pkg.low.a", "pkg.high.b"), ("pkg.high.b", "pkg.low.a"), ("pkg.high.b", "pkg.high.c"),
        ("pkg.high.c", "pkg.high.b"),
    }  # fmt: skip
    (problem,) = upward(edges, ("low", "high"))
    assert problem.startswith("upward: low -> high: pkg.low.a:2 imports pkg.high.b (from pkg.high.b import g)")
    (group,) = cycles(edges)
    assert {e.source for e in group} == {"pkg.low.a", "pkg.high.b", "pkg.high.c"}


@pytest.mark.parametrize(
    ("order", "problem"),
    [(("low", "high"), None), (("high", "low"), "upward: high -> low"), (("low",), "package 'high' is not in LAYERS")],
)
def test_the_walk_names_what_breaks_the_order(tmp_path: Path, order: tuple[str, ...], problem: str | None) -> None:
    pkg = _package(tmp_path, {"__init__.py": "", "low/__init__.py": "", "high/__init__.py": "import pkg.low\n"})
    problems = upward(list(imports(pkg)), order)
    assert problems == [] if problem is None else (len(problems) == 1 and problem in problems[0])
    assert all("pkg.high:1 imports pkg.low (import pkg.low)" in p for p in problems)
