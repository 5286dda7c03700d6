"""Import ``SpineInstanceSeg.py`` (the Slicer module file) outside the Slicer application.

The application adds modules that neither plain Python nor slicer-core has (``qt``, ``slicer.app``,
``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``, ``slicer.i18n``). :func:`load_module` puts small
stand-ins for exactly those into ``sys.modules`` (through ``monkeypatch``, so they go away after the test) and
executes the module file. Everything else the module imports is real: with ``slicer=None`` it runs on top of
slicer-core's ``slicer`` package (real MRML scene and nodes, real ``slicer.util``, real ``vtk``); with a bare
``types.ModuleType("slicer")`` it runs where not even slicer-core is installed.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import unittest
from pathlib import Path

MODULE_FILE = Path(__file__).resolve().parents[1] / "SpineInstanceSeg" / "SpineInstanceSeg.py"


class Recorder:
    """A layout stand-in that remembers the widgets it was given."""

    def __init__(self) -> None:
        self.widgets: list = []

    def addWidget(self, widget) -> None:
        self.widgets.append(widget)

    def addStretch(self, *args) -> None:
        pass


def parameter_node_wrapper(cls):
    """Stand-in for slicer.parameterNodeWrapper: a plain object with the declared defaults (None otherwise)."""
    fields = list(getattr(cls, "__annotations__", {}))

    def __init__(self, node=None) -> None:
        for name in fields:
            setattr(self, name, getattr(cls, name, None))

    namespace = {"__init__": __init__, "__doc__": cls.__doc__, "__annotations__": dict(cls.__annotations__)}
    return type(cls.__name__, (), namespace)


def bare_slicer() -> types.ModuleType:
    """A ``slicer`` package with only the names the module file imports (no slicer-core needed)."""
    slicer = types.ModuleType("slicer")
    slicer.__path__ = []  # a package, like the real one
    for name in (
        "vtkMRMLLabelMapVolumeNode",
        "vtkMRMLMarkupsFiducialNode",
        "vtkMRMLScalarVolumeNode",
        "vtkMRMLSegmentationNode",
    ):
        setattr(slicer, name, type(name, (), {}))

    def load_ui(path):
        raise AssertionError("the full panel was loaded on an unsupported Slicer")

    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    util.loadUI = load_ui
    slicer.util = util
    slicer.mrmlScene = types.SimpleNamespace(Clear=lambda: None)
    return slicer


def application_modules(*, displayed: list[str]) -> dict[str, types.ModuleType]:
    """What the Slicer application adds on top of slicer-core: the scripted-module base classes, the
    parameter node wrapper, translation functions and ``qt`` (a QLabel is all the module builds without a .ui)."""
    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text

    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.Choice = lambda values: values
    wrapper.parameterNodeWrapper = parameter_node_wrapper

    class Widget:
        def __init__(self, parent=None) -> None:
            self.parent = parent
            self.layout = Recorder()

        def setup(self) -> None:
            pass

    class Test(unittest.TestCase):
        def delayDisplay(self, message, msec=None) -> None:
            displayed.append(str(message))

    scripted = types.ModuleType("slicer.ScriptedLoadableModule")
    scripted.ScriptedLoadableModule = type(
        "ScriptedLoadableModule", (), {"__init__": lambda self, parent: setattr(self, "parent", parent)}
    )
    scripted.ScriptedLoadableModuleWidget = Widget
    scripted.ScriptedLoadableModuleLogic = type(
        "ScriptedLoadableModuleLogic", (), {"__init__": lambda self: None, "getParameterNode": lambda self: None}
    )
    scripted.ScriptedLoadableModuleTest = Test

    class QLabel:
        def __init__(self, text="") -> None:
            self.text = text
            self.wordWrap = False

        def setStyleSheet(self, style) -> None:
            pass

    qt = types.ModuleType("qt")
    qt.QLabel = QLabel
    return {
        "slicer.i18n": i18n,
        "slicer.parameterNodeWrapper": wrapper,
        "slicer.ScriptedLoadableModule": scripted,
        "qt": qt,
    }


def load_module(monkeypatch, *, slicer=None, version=(5, 12), testing=True, scene=None):
    """Execute SpineInstanceSeg.py as the application would; returns (module, messages of delayDisplay).

    ``slicer``: the ``slicer`` package to run on (default: slicer-core's, imported here). ``version``: what
    ``slicer.app`` reports. ``scene``: ``slicer.mrmlScene`` (default: a new vtkMRMLScene on slicer-core).
    """
    if slicer is None:
        import slicer

        if scene is None:
            scene = slicer.vtkMRMLScene()
    displayed: list[str] = []
    app = types.SimpleNamespace(
        testingEnabled=lambda: testing, majorVersion=version[0], minorVersion=version[1], slicerHome=""
    )
    monkeypatch.setattr(slicer, "app", app, raising=False)
    if scene is not None:
        monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setitem(sys.modules, "slicer", slicer)
    if isinstance(getattr(slicer, "util", None), types.ModuleType):
        monkeypatch.setitem(sys.modules, "slicer.util", slicer.util)
    for name, module in application_modules(displayed=displayed).items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(sys, "path", list(sys.path))  # the module puts its Logic folder first: undone afterwards
    spec = importlib.util.spec_from_file_location("SpineInstanceSeg_under_test", MODULE_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, displayed
