"""The package's layout: imports flow one way, package faces hold no code, every module is in
ARCHITECTURE.md; the largest modules and functions are reported, not limited.

The import graph is read from the source with `ast`: every `import dlcli...` and
`from dlcli... import ...`, at module level or inside a function (a lazy import is still a
dependency), except those under `if TYPE_CHECKING:`. Importing `dlcli.train.backup` runs
`dlcli/train/__init__.py` first, so an import depends on every package above the module it
names as well: `from dlcli.train import backup` is an edge to `dlcli.train` and to
`dlcli.train.backup`.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "dlcli"


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
    with_packages = {ancestor for name in found for ancestor in _with_ancestors(name)}
    return {name for name in with_packages if name in MODULES and name != importer}


def _with_ancestors(name: str) -> list[str]:
    """`a.b.c` and the packages Python initialises before it: `a.b.c`, `a.b`, `a`."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(len(parts), 1, -1)]


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


def test_the_graph_reader_sees_lazy_imports_packages_and_skips_type_checking() -> None:
    graph = import_graph()
    assert "dlcli.data.npz" in graph["dlcli.data.load"]  # imported inside load_dataset
    assert "dlcli.spec.schema" not in graph["dlcli.data.load"]  # under `if TYPE_CHECKING:` only
    assert "dlcli.spec.keras_catalog" in graph["dlcli.spec.names"]  # `from dlcli.spec import ...`
    assert "dlcli.spec" in graph["dlcli.spec.names"]  # the package's __init__ runs first
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
    """`dlcli predict` decodes images without the spec's modules, pydantic or YAML."""
    code = (
        "import sys, dlcli.data.decode\n"
        "heavy = ('dlcli.spec', 'pydantic', 'yaml')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m.startswith(heavy)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout == "[]\n"


def test_every_package_face_is_a_docstring() -> None:
    """An `__init__.py` says what its package holds and runs nothing: importing one module of a
    package never runs the others."""
    faces = {}
    for name, path in MODULES.items():
        if path.name != "__init__.py":
            continue
        body = ast.parse(path.read_text()).body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
            body = body[1:]
        faces[name] = [ast.unparse(node) for node in body if not _is_version(node)]
    assert {name: code for name, code in faces.items() if code} == {}


def _is_version(node: ast.stmt) -> bool:
    """`__version__ = "..."`, the one assignment a face may hold (as Keras's does)."""
    return isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == [
        "__version__"
    ]


def test_the_top_level_holds_only_the_entry_points_and_errors() -> None:
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "__main__.py", "errors.py"]


def architecture_modules() -> set[str]:
    text = (REPO / "ARCHITECTURE.md").read_text(encoding="utf-8")
    return {word.strip("`") for word in text.split() if word.strip("`").startswith("dlcli/")}


def test_every_module_is_listed_in_architecture_md() -> None:
    files = {path.relative_to(REPO).as_posix() for path in MODULES.values()}
    listed = {word for word in architecture_modules() if word.endswith(".py")}
    assert sorted(files - listed) == [], "modules missing from ARCHITECTURE.md"
    assert sorted(listed - files) == [], "listed in ARCHITECTURE.md but not in dlcli/"


def test_report_the_largest_modules_and_functions() -> None:
    """Size is a smell to look at, not a rule: the largest modules and functions are printed
    (`pytest -s tests/test_layout.py`) for a reader deciding what to split."""
    modules, functions = [], []
    for name, path in MODULES.items():
        source = path.read_text()
        modules.append((len(source.splitlines()), name))
        functions += [
            (node.end_lineno - node.lineno + 1, f"{name}.{node.name}")
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno is not None
        ]
    print("\nlargest modules:", ", ".join(f"{n} ({lines})" for lines, n in sorted(modules)[-5:]))
    print("largest functions:", ", ".join(f"{n} ({size})" for size, n in sorted(functions)[-5:]))
    assert modules and functions
