"""The package's shape, checked: its layers (docs/architecture.md's table, the same list here), no import
from a lower layer to a higher one and no import cycle (function-level imports included), imports at
module top except optional dependencies, and no module of repfusion_zoo/ or recipes/ over 400 lines."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400

#: lowest first; a module may import from its own layer or a lower one. `repfusion_zoo` alone is the
#: package's `__init__` (the re-exports users import), above everything in the package.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("errors", "version", "atomic", "modes", "distributed", "config", "weights")),
    ("blocks", ("models", "normalize", "losses", "timesteps", "data", "metrics", "visualize")),
    ("weights I/O", ("hub",)),
    ("zoo", ("zoo",)),
    ("teachers", ("cache", "teachers")),
    ("method", ("method", "heads", "tasks")),
    ("training", ("training",)),
    ("pipelines", ("pipelines",)),
    ("experiments", ("experiments",)),
    ("interface", ("cli", "__main__", "")),
    ("recipes", ("recipes",)),
]

#: third-party packages that may be imported inside a function (with a comment on the line saying
#: why, the word "optional" in it): the `recipes` extra, not installed by a plain `pip install repfusion-zoo`
OPTIONAL = {"sklearn", "matplotlib", "datasets", "tensorboard", "transformers"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    files = [*REPO.glob("repfusion_zoo/**/*.py"), *REPO.glob("recipes/*.py")]
    return {_module_name(f): f for f in sorted(files)}


MODULES = _modules()


def _targets(module: str, is_package: bool, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement reads (a `from x import y` names module `x.y` where it is one)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    return [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]


def _imports() -> list[tuple[str, int, str, bool, str]]:
    """(module, line, imported module, inside a function, the source line) for every import."""
    found = []
    for module, path in MODULES.items():
        source = path.read_text()
        lines = source.splitlines()

        def walk(node: ast.AST, in_function: bool) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _targets(module, path.name == "__init__.py", child):
                        found.append((module, child.lineno, target, in_function, lines[child.lineno - 1]))
                walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

        walk(ast.parse(source, str(path)), False)
    return found


IMPORTS = _imports()


def layer_of(module: str) -> int:
    """The index in LAYERS of a module of repfusion_zoo/ or recipes/ (-1: none)."""
    best, best_len = -1, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            full = "recipes" if prefix == "recipes" else ("repfusion_zoo" + (f".{prefix}" if prefix else ""))
            matches = module == full if prefix == "" else (module == full or module.startswith(full + "."))
            if matches and len(full) > best_len:
                best, best_len = index, len(full)
    return best


def _own(target: str) -> bool:
    return target.split(".")[0] in ("repfusion_zoo", "recipes")


def test_the_layer_table_in_docs_is_this_one() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    block = text.split("<!-- layers -->")[1].split("<!-- /layers -->")[0]
    rows = [line for line in block.splitlines() if re.match(r"^\|\s*\d+\s*\|", line)]
    documented = []
    for row in rows:
        _, number, name, members, *_ = (cell.strip() for cell in row.split("|"))
        documented.append((int(number), name, tuple(m.strip("` ") for m in members.split(","))))
    expected = [(i, name, tuple("repfusion_zoo" if m == "" else m for m in members))
                for i, (name, members) in enumerate(LAYERS)]
    assert documented == expected


def test_every_module_has_a_layer() -> None:
    assert [m for m in MODULES if layer_of(m) < 0] == []


def test_no_import_runs_up_a_layer() -> None:
    upward = [f"{m}:{line} ({LAYERS[layer_of(m)][0]}) imports {t} ({LAYERS[layer_of(t)][0]})"
              for m, line, t, _, _ in IMPORTS if _own(t) and layer_of(t) > layer_of(m)]
    assert upward == []


def test_no_import_cycle() -> None:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for module, _, target, _, _ in IMPORTS:
        if target in MODULES and target != module:
            graph[module].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_imports_stand_at_module_top_except_optional_dependencies() -> None:
    inside = [(m, line, t, src) for m, line, t, in_function, src in IMPORTS if in_function]
    misplaced = [f"{m}:{line} imports {t} inside a function" for m, line, t, _ in inside
                 if t.split(".")[0] not in OPTIONAL]
    unexplained = [f"{m}:{line}: {src.strip()}" for m, line, t, src in inside
                   if t.split(".")[0] in OPTIONAL and "optional" not in src.partition("#")[2]]
    assert misplaced == [] and unexplained == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_over_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines: split it along its jobs"
