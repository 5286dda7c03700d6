"""The library's layers point only down, and segmenting never loads training or phantom code.

Every module of ``spineinstanceseg`` belongs to one unit (a top-level module or a sub-package), and every unit to
one layer. The imports of every module, module-level and function-local alike, are read with :mod:`ast`:

* an import may go to a lower layer, or within its own unit; between two units of the same layer only in the
  foundation layer (geometry and I/O build on each other there);
* no cycle between modules, whether the imports are at module level or inside functions;
* a function-local import of a project module is allowed only where loading late pays: start-up stays fast
  (torch, nnU-Net, the training and phantom code load only when they are used), or a module stays importable
  before Slicer has installed the packages it lacks; the import (or the block of imports it belongs to) says so
  in a comment containing ``lazy:``.

Layers, bottom to top (see README, Layout):
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO / "SpineInstanceSeg" / "Logic" / "spineinstanceseg"
SLICER_MODULE = REPO / "SpineInstanceSeg" / "SpineInstanceSeg.py"
PACKAGE = "spineinstanceseg"

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # Geometry-carrying volume, I/O, resampling, errors, progress, devices, label and level tables.
    (
        "foundation",
        (
            PACKAGE,
            "errors",
            "atomic",
            "hashing",
            "progress",
            "devices",
            "volume",
            "orientation",
            "io",
            "resample",
            "semantic",
            "levels",
            "convention_names",
            "output_kinds",
            "stage1_names",
            "examples",
        ),
    ),  # fmt: skip
    # Label conventions, metrics, and the result type every later layer hands around.
    ("domain", ("conventions", "metrics", "results")),
    # Stage 1 (nnU-Net, mask sources), stage 2 (windows, network, fusion), output writers of a result.
    ("steps", ("stage1", "stage2", "outputs")),
    # What runs on top of the steps: the job (image -> stage 1 -> stage 2 -> sanity -> naming -> outputs) and batch
    # runs, the evaluation of results, synthetic phantoms (for training and tests; no step may need them).
    ("pipeline", ("pipeline", "evaluate", "phantom")),
    # The shells: the `spineseg` command and the Slicer side.
    ("shells", ("cli", "slicer")),
)
__doc__ += "\n".join(f"{k}. {name}: {', '.join(units)}" for k, (name, units) in enumerate(LAYERS))

LAYER_OF = {unit: k for k, (_, units) in enumerate(LAYERS) for unit in units}

# Modules that train models or make phantoms: never needed to segment. (The `spineseg` sub-commands that run them,
# cli.train and cli.phantom, only define arguments and load these in their run().)
TRAINING_AND_PHANTOM = (
    "spineinstanceseg.phantom",
    "spineinstanceseg.stage1.training",
    "spineinstanceseg.stage1.dataset",
    "spineinstanceseg.stage1.dataset_sources",
    "spineinstanceseg.stage1.trainers",
    "spineinstanceseg.stage2.training",
    "spineinstanceseg.stage2.training_data",
    "spineinstanceseg.conventions.derived",
)


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported project module (a sub-module where the name is one, else the package/module)
    line: int
    local: bool  # inside a function
    commented_lazy: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    base = PACKAGE_DIR.parent.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        parent = ".".join(base + ([node.module] if node.module else []))
    else:
        parent = node.module or ""
    if parent.split(".")[0] != PACKAGE:
        return []
    return [f"{parent}.{a.name}" if _is_module(f"{parent}.{a.name}") else parent for a in node.names]


def _comment_zones(tree: ast.AST, lines: list[str]) -> dict[int, str]:
    """``id(import node) -> source text`` from the end of the statement before its block of consecutive imports
    down to the import itself: where a comment that explains the block stands."""
    zones: dict[int, str] = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            statements = getattr(node, field, None)
            if not isinstance(statements, list):
                continue
            previous_end, start = getattr(node, "lineno", 0), None
            for statement in statements:
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    start = previous_end if start is None else start
                    zones[id(statement)] = "\n".join(lines[start : statement.end_lineno])
                else:
                    start = None
                previous_end = statement.end_lineno
    return zones


def _imports(path: Path) -> list[Import]:
    module, is_package = _module_name(path), path.name == "__init__.py"
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    zones = _comment_zones(tree, source.splitlines())
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        explained = "lazy:" in zones.get(id(node), "")
        for target in _targets(node, module, is_package):
            found.append(Import(module, target, node.lineno, id(node) in in_function, explained))
    return found


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else PACKAGE


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE_DIR.rglob("*.py")) for imp in _imports(path)]


def test_every_module_has_a_layer():
    units = {_unit(_module_name(p)) for p in PACKAGE_DIR.rglob("*.py")}
    assert units - set(LAYER_OF) == set(), "put these units into a layer of LAYERS"
    assert set(LAYER_OF) - units == set(), "LAYERS names units that do not exist"


def test_imports_point_down(imports):
    wrong = []
    for imp in imports:
        a, b = _unit(imp.source), _unit(imp.target)
        if a == b:
            continue
        la, lb = LAYER_OF[a], LAYER_OF[b]
        if lb > la or (lb == la and la != 0):
            kind = "upward" if lb > la else "sideways"
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target} ({kind}: {LAYERS[la][0]} -> {LAYERS[lb][0]})")
    assert not wrong, "\n".join(wrong)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles(imports):
    modules: dict[str, set[str]] = {}
    units: dict[str, set[str]] = {}
    for imp in imports:
        if imp.source != imp.target:
            modules.setdefault(imp.source, set()).add(imp.target)
        if _unit(imp.source) != _unit(imp.target):
            units.setdefault(_unit(imp.source), set()).add(_unit(imp.target))
    assert _cycles(units) == [], "cycles between packages"
    assert _cycles(modules) == [], "cycles between modules"


def test_function_local_imports_say_why(imports):
    unexplained = [f"{i.source}:{i.line} -> {i.target}" for i in imports if i.local and not i.commented_lazy]
    assert not unexplained, "import these at module level, or say with '# lazy: ...' what loading late saves"


def test_the_slicer_module_imports_no_training_or_phantom_code(imports):
    """Everything the Slicer module can import, at module level or inside functions, followed through the graph."""
    tree = ast.parse(SLICER_MODULE.read_text(encoding="utf-8"))
    todo = [
        target
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for target in _targets(node, "SpineInstanceSeg", False)
    ]
    edges: dict[str, set[str]] = {}
    for imp in imports:
        edges.setdefault(imp.source, set()).add(imp.target)
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(edges.get(name, ()))
    assert todo == [] and seen, "the Slicer module imports nothing of the library"
    assert sorted(m for m in seen if m.startswith(TRAINING_AND_PHANTOM)) == []


def test_segmenting_loads_no_training_or_phantom_code(small_example, tmp_path):
    """`spineseg segment --mask` on a (small) CT in a fresh interpreter: what did it import?"""
    code = (
        "import sys\n"
        "from spineinstanceseg.cli.main import main\n"
        f"code = main(['segment', {str(small_example.image)!r}, {str(tmp_path)!r}, "
        f"'--mask', {str(small_example.semantic)!r}, '--device', 'cpu'])\n"
        "print('MODULES', *sorted(m for m in sys.modules if m.startswith('spineinstanceseg')))\n"
        "sys.exit(code)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    loaded = next(line for line in run.stdout.splitlines() if line.startswith("MODULES")).split()[1:]
    assert "spineinstanceseg.pipeline.run" in loaded and "spineinstanceseg.outputs.writer" in loaded
    assert sorted(m for m in loaded if m.startswith(TRAINING_AND_PHANTOM)) == []
