"""The structure ARCHITECTURE.md describes, checked: no import circles, layers only import downwards,
no module too long to read in one sitting.

Imports are read with ``ast`` from every ``bertkit`` module, function-local ones included (a circle
hidden inside a function is still a circle).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "bertkit"

# Top first. A module may import modules of its own layer or of a lower one, never of a higher one.
# Named by their first component under bertkit (tasks covers bertkit.tasks.*).
LAYERS = [
    {"cli", "cli_launch", "__main__"},
    {"train", "evaluation", "embed", "inspection", "build", "tune", "seeds", "serve", "export", "adaptation", "distill"},
    {"tasks", "trainer", "interrupt", "tracking"},
    {"data", "models", "japanese", "encoding", "inference", "outputs", "plotting", "console", "corpus", "masking", "mistakes",
     "nn", "onnx_model", "vocabulary", "student", "study"},
    {"recipe", "hardware", "errors", "metrics", "distributed", "__init__"},
]
# (importer, imported) pairs allowed to point upwards, each for a stated reason.
EXCEPTIONS = {
    # recipe.load validates each task's section, and the task modules register those sections when
    # the task package is imported: recipe imports the package, inside a function, to fill its registry.
    ("recipe", "tasks"),
}
MAX_LINES = 600


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """bertkit module -> the bertkit modules it imports (packages resolved to the submodule named)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.module else base
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bertkit"):
                target = node.module
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("bertkit.") and a.name in modules}
                continue
            else:
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _layer(module: str) -> int:
    first = module.split(".")[1] if module != "bertkit" else "__init__"
    for i, names in enumerate(LAYERS):
        if first in names:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py: add it to LAYERS and ARCHITECTURE.md")


def test_every_module_has_a_layer() -> None:
    for module in _imports():
        _layer(module)


def test_no_import_circles() -> None:
    graph = _imports()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                circles.append(" -> ".join(path[path.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, path + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles: " + "; ".join(circles)


def test_layers_import_only_downwards() -> None:
    upward = []
    for module, deps in _imports().items():
        for dep in deps:
            pair = (module.split(".")[1] if "." in module else module, dep.split(".")[1])
            if _layer(dep) < _layer(module) and pair not in EXCEPTIONS:
                upward.append(f"{module} imports {dep}")
    assert not upward, "imports against the layers (ARCHITECTURE.md): " + "; ".join(sorted(upward))


def test_no_module_is_too_long() -> None:
    long = {p.name: n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them along their sections): {long}"


def test_the_checker_sees_function_local_imports(tmp_path: Path) -> None:
    """The graph includes imports inside functions: interrupt's console import is module-level, but
    the task package's registry import in recipe is inside a function and must still be seen."""
    graph = _imports()
    assert "bertkit.tasks" in graph["bertkit.recipe"]
