"""Static checks of the Slicer module (the application cannot run here): .ui <-> code <-> parameter node, CMake.

* every ``self.ui.<name>`` the module uses exists in the .ui file with a widget class that fits its use;
* every ``SlicerParameterName`` names a field of the parameterNodeWrapper class, with a widget class that
  Slicer's GUI connectors can bind to that field's type, and every field has a widget;
* the module compiles, calls only logic methods that exist, and imports only library names that exist;
* CMake lists every Python file and data file of the module and the library, and nothing that does not exist.
"""

from __future__ import annotations

import ast
import py_compile
import re
import xml.etree.ElementTree as ET
from fnmatch import fnmatch
from importlib import import_module
from pathlib import Path

import numpy as np
import pytest
import tomllib

REPO = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO / "SpineInstanceSeg"
MODULE_FILE = MODULE_DIR / "SpineInstanceSeg.py"
UI_FILE = MODULE_DIR / "Resources" / "UI" / "SpineInstanceSeg.ui"
LIBRARY_DIR = MODULE_DIR / "Logic" / "spineinstanceseg"

SOURCE = MODULE_FILE.read_text(encoding="utf-8")
TREE = ast.parse(SOURCE)

# Widget classes that fit how the module uses a widget attribute (None = any widget).
ATTRIBUTE_CLASSES: dict[str, set[str] | None] = {
    "appendPlainText": {"QPlainTextEdit"},
    "clear": {"QPlainTextEdit", "QTextEdit", "QLineEdit", "QComboBox"},
    "collapsed": {"ctkCollapsibleButton"},
    "value": {"QProgressBar", "QSpinBox", "QSlider", "QDoubleSpinBox", "ctkSliderWidget"},
    "text": {"QLabel", "QPushButton", "QLineEdit", "QCheckBox", "ctkCollapsibleButton"},
    "toolTip": None,
    "enabled": None,
    "visible": None,
}
SIGNAL_CLASSES = {"clicked(bool)": {"QPushButton", "QToolButton", "QCheckBox"}}


def _ui_widgets() -> dict[str, tuple[str, dict[str, str]]]:
    """name -> (class, {dynamic property: value}) for every widget of the .ui file."""
    root = ET.parse(UI_FILE).getroot()
    widgets = {}
    for widget in root.iter("widget"):
        props = {}
        for prop in widget.findall("property"):
            string = prop.find("string")
            if string is not None:
                props[prop.get("name")] = string.text or ""
        widgets[widget.get("name")] = (widget.get("class"), props)
    return widgets


def _parameter_fields() -> dict[str, str]:
    """Field name -> annotation source of the @parameterNodeWrapper class."""
    for node in TREE.body:
        if isinstance(node, ast.ClassDef) and any(
            isinstance(d, ast.Name) and d.id == "parameterNodeWrapper" for d in node.decorator_list
        ):
            return {
                stmt.target.id: ast.get_source_segment(SOURCE, stmt.annotation)
                for stmt in node.body
                if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
            }
    raise AssertionError("no @parameterNodeWrapper class in the module")


def _enum_classes() -> set[str]:
    return {
        node.name
        for node in TREE.body
        if isinstance(node, ast.ClassDef)
        and any(ast.get_source_segment(SOURCE, b) in ("enum.Enum", "Enum") for b in node.bases)
    }


def _classes_for(annotation: str) -> set[str]:
    """Widget classes that Slicer's parameterNodeWrapper GUI connectors bind to a field of this type."""
    if "vtkMRML" in annotation:
        return {"qMRMLNodeComboBox", "qMRMLSubjectHierarchyTreeView"}
    if annotation in _enum_classes():
        return {"QComboBox"}
    if annotation.startswith("pathlib."):
        return {"ctkPathLineEdit", "ctkDirectoryButton"}
    if annotation == "bool":
        return {"QCheckBox", "QPushButton"}
    if "Choice(" in annotation:
        return {"QComboBox"}
    if annotation == "str":
        return {"QLineEdit", "QTextEdit"}
    if annotation == "int":
        return {"QSpinBox", "QSlider"}
    if annotation == "float":
        return {"QDoubleSpinBox", "ctkSliderWidget"}
    raise AssertionError(f"no known GUI connector for parameter type {annotation!r}: extend this test")


def test_module_compiles(tmp_path):
    py_compile.compile(str(MODULE_FILE), cfile=str(tmp_path / "module.pyc"), doraise=True)


def test_module_parses_as_python_39_and_imports_no_library_before_the_version_check():
    """An old Slicer (Python 3.9) must load the module far enough to show which Slicer it needs."""
    ast.parse(SOURCE, feature_version=(3, 9))
    top_level = [n for n in TREE.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = [getattr(n, "module", None) or n.names[0].name for n in top_level]
    assert not [m for m in modules if m.startswith("spineinstanceseg")], modules


def test_every_ui_name_the_module_uses_exists_with_a_fitting_class():
    widgets = _ui_widgets()
    uses = re.findall(r"self\.ui\.(\w+)(?:\.(\w+))?(?:\(\s*\"([^\"]+)\")?", SOURCE)
    assert uses, "the module uses no self.ui widgets?"
    for name, attribute, signal in uses:
        assert name in widgets, f"self.ui.{name} is not in {UI_FILE.name}"
        cls = widgets[name][0]
        if attribute == "connect":
            assert signal in SIGNAL_CLASSES, f"unknown signal {signal!r} of {name}: extend SIGNAL_CLASSES"
            assert cls in SIGNAL_CLASSES[signal], f"{name} is a {cls}, which has no {signal}"
        elif attribute:
            assert attribute in ATTRIBUTE_CLASSES, f"self.ui.{name}.{attribute}: extend ATTRIBUTE_CLASSES"
            allowed = ATTRIBUTE_CLASSES[attribute]
            assert allowed is None or cls in allowed, f"self.ui.{name}.{attribute} but {name} is a {cls}"


def test_parameter_names_match_the_parameter_node():
    fields = _parameter_fields()
    bound = {
        props["SlicerParameterName"]: (name, cls)
        for name, (cls, props) in _ui_widgets().items()
        if "SlicerParameterName" in props
    }
    unknown = sorted(set(bound) - set(fields))
    assert not unknown, f"SlicerParameterName without a parameter node field: {unknown}"
    unbound = sorted(set(fields) - set(bound))
    assert not unbound, f"parameter node fields without a widget: {unbound}"
    for parameter, (widget, cls) in bound.items():
        allowed = _classes_for(fields[parameter])
        assert cls in allowed, f"{widget} ({cls}) cannot be bound to {parameter}: {fields[parameter]}"


def test_ui_connects_every_node_selector_to_the_scene():
    root = ET.parse(UI_FILE).getroot()
    selectors = {n for n, (cls, _) in _ui_widgets().items() if cls == "qMRMLNodeComboBox"}
    connected = {
        c.findtext("receiver")
        for c in root.iter("connection")
        if c.findtext("signal") == "mrmlSceneChanged(vtkMRMLScene*)"
        and c.findtext("slot") == "setMRMLScene(vtkMRMLScene*)"
    }
    assert selectors and selectors <= connected, f"selectors without a scene: {sorted(selectors - connected)}"


def test_logic_methods_and_library_imports_exist():
    logic = next(n for n in TREE.body if isinstance(n, ast.ClassDef) and n.name == "SpineInstanceSegLogic")
    methods = {f.name for f in logic.body if isinstance(f, ast.FunctionDef)} | {"getParameterNode"}
    called = set(re.findall(r"\blogic\.(\w+)\(", SOURCE)) | set(re.findall(r"self\.logic\.(\w+)\(", SOURCE))
    assert called and called <= methods, f"logic methods called but not defined: {sorted(called - methods)}"
    imports = [
        (node.module, alias.name)
        for node in ast.walk(TREE)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("spineinstanceseg")
        for alias in node.names
    ]
    assert len(imports) >= 8
    for module, name in imports:
        assert hasattr(import_module(module), name), f"from {module} import {name} fails"


def test_user_facing_strings_are_translatable():
    """Literal strings given to dialogs, labels and tooltips go through _() (slicer.i18n)."""
    dialogs = r"(?:error|info|warning|confirmYesNo|confirmOkCancel)Display\("
    bare = re.findall(rf"(?:{dialogs}|\.text = |\.toolTip = |\.title = )(\"[^\"]*[A-Za-z][^\"]*\")", SOURCE)
    assert not bare, f"untranslated user-facing strings: {bare}"
    assert "from slicer.i18n import tr as _" in SOURCE


# ------------------------------------------------------------------ CMake
def _cmake_list(text: str, variable: str) -> list[str]:
    match = re.search(rf"set\({variable}\s+(.*?)\)", text, re.S)
    assert match, f"{variable} is not set in the CMake file"
    items = [ln.split("#")[0].strip() for ln in match.group(1).splitlines()]
    return [item.replace("${MODULE_NAME}", "SpineInstanceSeg") for item in items if item]


def _package_data_patterns() -> list[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return list(config["tool"]["setuptools"]["package-data"]["spineinstanceseg"])


def _library_files(patterns: list[str]) -> set[str]:
    out = set()
    for path in LIBRARY_DIR.rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(LIBRARY_DIR).as_posix()
            if any(fnmatch(rel, p) or fnmatch(path.name, p.split("/")[-1]) for p in patterns):
                out.add(path.relative_to(MODULE_DIR).as_posix())
    return out


def test_cmake_lists_every_python_and_data_file():
    text = (MODULE_DIR / "CMakeLists.txt").read_text()
    scripts = _cmake_list(text, "MODULE_PYTHON_SCRIPTS")
    resources = _cmake_list(text, "MODULE_PYTHON_RESOURCES")
    python = _library_files(["*.py"]) | {"SpineInstanceSeg.py"}
    missing = sorted(python - set(scripts))
    data = _library_files(_package_data_patterns()) | {
        "Resources/Icons/SpineInstanceSeg.png",
        "Resources/UI/SpineInstanceSeg.ui",
    }
    missing_data = sorted(data - set(resources))
    absent = sorted(p for p in scripts + resources if not (MODULE_DIR / p).is_file())
    assert not (missing or missing_data or absent), (
        "SpineInstanceSeg/CMakeLists.txt is out of date.\n"
        + ("Add to MODULE_PYTHON_SCRIPTS:\n" + "\n".join(f"  {p}" for p in missing) + "\n" if missing else "")
        + (
            "Add to MODULE_PYTHON_RESOURCES:\n" + "\n".join(f"  {p}" for p in missing_data) + "\n"
            if missing_data
            else ""
        )
        + ("Remove (no such file):\n" + "\n".join(f"  {p}" for p in absent) if absent else "")
    )
    assert len(scripts) == len(set(scripts)), "a file is listed twice"
    assert "WITH_GENERIC_TESTS" in text
    assert re.search(r"slicer_add_python_unittest\(\s*SCRIPT \$\{MODULE_NAME\}\.py", text), "self-test not registered"


def test_extension_cmake_metadata():
    text = (REPO / "CMakeLists.txt").read_text()
    assert re.search(r"project\(SpineInstanceSeg\)", text)
    assert 'set(EXTENSION_CATEGORY "Segmentation")' in text
    assert re.search(r'set\(EXTENSION_DEPENDS "?PyTorch"?\)', text)
    assert re.search(r"add_subdirectory\(SpineInstanceSeg\)", text)
    for field in ("EXTENSION_HOMEPAGE", "EXTENSION_CONTRIBUTORS", "EXTENSION_DESCRIPTION", "EXTENSION_ICONURL"):
        assert re.search(rf'set\({field} "[^"]+"\)', text), field
    assert "SpineInstanceSeg.png" in re.search(r'EXTENSION_ICONURL "([^"]+)"', text).group(1)


@pytest.mark.parametrize("icon", [REPO / "SpineInstanceSeg.png", MODULE_DIR / "Resources/Icons/SpineInstanceSeg.png"])
def test_icons_are_real_128px_pictures(icon):
    from PIL import Image

    image = np.asarray(Image.open(icon).convert("RGBA"))
    assert image.shape == (128, 128, 4)
    opaque = image[image[..., 3] > 128][:, :3]
    assert len(opaque) > 0.5 * 128 * 128, "mostly transparent"
    assert len(np.unique(opaque // 32, axis=0)) >= 6, "too few colours for a picture"
    assert float(opaque.std()) > 30.0, "nearly blank"
