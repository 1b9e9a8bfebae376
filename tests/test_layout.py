"""The package's layout: imports flow one way, every module is in the README, sizes stay small.

The import graph is read from the source with `ast`: every `import dlcli...` and
`from dlcli... import ...`, at module level or inside a function (a lazy import is still a
dependency), except those under `if TYPE_CHECKING:`. A package's own initialisation, which
Python runs before any of its submodules, is not an edge: `dlcli.data.files` depends on
`dlcli.data.common`, not on `dlcli.data`, unless it imports from `dlcli.data` itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dlcli"
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 70


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, importer: str) -> set[str]:
    """The dlcli modules that `node` imports, skipping `if TYPE_CHECKING:` blocks."""
    found: set[str] = set()
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for branch in child.orelse:
                found |= _imports(branch, importer)
            continue
        if isinstance(child, ast.Import):
            found |= {alias.name for alias in child.names if alias.name in MODULES}
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:  # relative: from the importer's package
                package = importer.split(".")
                if MODULES[importer].name != "__init__.py":
                    package = package[:-1]
                package = package[: len(package) - child.level + 1]
                base = ".".join([*package, base] if base else package)
            for alias in child.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in MODULES else base)
        found |= _imports(child, importer)
    return {name for name in found if name in MODULES and name != importer}


def import_graph() -> dict[str, set[str]]:
    return {name: _imports(ast.parse(path.read_text()), name) for name, path in MODULES.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reader_sees_lazy_imports_and_skips_type_checking() -> None:
    graph = import_graph()
    assert "dlcli.data.files" in graph["dlcli.data"]  # imported inside load_dataset
    assert "dlcli.spec" not in graph["dlcli.data"]  # under `if TYPE_CHECKING:` only
    assert "dlcli.catalog" in graph["dlcli.spec.names"]  # `from dlcli import catalog`
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_imports_a_private_name_of_another() -> None:
    private = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dlcli"):
                private += [
                    f"{name}: from {node.module} import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert private == []


def test_decoding_an_image_imports_no_spec_pydantic_or_yaml() -> None:
    """Before: dlcli.images imported dlcli.data for ImageInfo, which imported the spec."""
    code = (
        "import sys, dlcli.images\n"
        "heavy = ('dlcli.spec', 'dlcli.catalog', 'pydantic', 'yaml')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout == "[]\n"


def readme_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index("## How the code is laid out")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_every_module_is_listed_in_the_readme() -> None:
    section = readme_section()
    files = {path.relative_to(REPO).as_posix() for path in MODULES.values()}
    listed = {word for word in section.split() if word.startswith("dlcli/")}
    assert sorted(files - listed) == [], "modules missing from 'How the code is laid out'"
    assert sorted(listed - files) == [], "listed in 'How the code is laid out' but not in dlcli/"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_and_functions_stay_small(name: str) -> None:
    source = MODULES[name].read_text()
    lines = len(source.splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name} has {lines} lines (at most {MAX_MODULE_LINES})"
    long = [
        f"{name}.{node.name} (line {node.lineno}): {node.end_lineno - node.lineno + 1} lines"
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]
    assert long == [], f"functions over {MAX_FUNCTION_LINES} lines"
