"""The Slicer module file itself, imported with stand-ins for the application's modules (qt, slicer.app, ...).

The real application cannot run here, so ``SpineInstanceSeg.py`` is imported with small fakes of what it imports
from Slicer. That runs the module's own code for what a user of a *clean* or an *old* Slicer sees:

* the registered self-test on a clean Slicer in testing mode (Slicer installs no packages then) completes, and
  the example test is reported as skipped with the reason, both through ``runTest`` (Reload and Test) and through
  unittest as ``slicer.testing.runUnitTest`` (ctest) runs it;
* on a Slicer older than the minimum (Python 3.9), the module panel shows which Slicer is needed instead of
  failing on the library's imports.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import types
import unittest
from pathlib import Path

import pytest

from spineinstanceseg.slicer import dependencies as deps

MODULE_FILE = Path(__file__).resolve().parents[1] / "SpineInstanceSeg" / "SpineInstanceSeg.py"


class _Recorder:
    """A layout / display stand-in that remembers what it was given."""

    def __init__(self) -> None:
        self.widgets: list = []

    def addWidget(self, widget) -> None:
        self.widgets.append(widget)

    def addStretch(self, *args) -> None:
        pass


def _parameter_node_wrapper(cls):
    """Stand-in for slicer.parameterNodeWrapper: a plain object with the declared defaults (None otherwise)."""
    fields = list(getattr(cls, "__annotations__", {}))

    def __init__(self, node=None) -> None:
        for name in fields:
            setattr(self, name, getattr(cls, name, None))

    return type(cls.__name__, (), {"__init__": __init__, "__doc__": cls.__doc__})


def _fake_modules(*, version: tuple[int, int], testing: bool, displayed: list[str]) -> dict[str, types.ModuleType]:
    slicer = types.ModuleType("slicer")
    slicer.__path__ = []  # a package, like the real one
    slicer.app = types.SimpleNamespace(
        testingEnabled=lambda: testing, majorVersion=version[0], minorVersion=version[1], slicerHome=""
    )
    slicer.mrmlScene = types.SimpleNamespace(Clear=lambda: None)
    for name in ("vtkMRMLLabelMapVolumeNode", "vtkMRMLMarkupsFiducialNode", "vtkMRMLScalarVolumeNode"):
        setattr(slicer, name, type(name, (), {}))
    slicer.vtkMRMLSegmentationNode = type("vtkMRMLSegmentationNode", (), {})

    def load_ui(path):
        raise AssertionError("the full panel was loaded on an unsupported Slicer")

    util = types.ModuleType("slicer.util")
    util.VTKObservationMixin = type("VTKObservationMixin", (), {"__init__": lambda self: None})
    util.loadUI = load_ui
    slicer.util = util

    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text

    wrapper = types.ModuleType("slicer.parameterNodeWrapper")
    wrapper.Choice = lambda values: values
    wrapper.parameterNodeWrapper = _parameter_node_wrapper

    class Widget:
        def __init__(self, parent=None) -> None:
            self.parent = parent
            self.layout = _Recorder()

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
        "slicer": slicer,
        "slicer.util": util,
        "slicer.i18n": i18n,
        "slicer.parameterNodeWrapper": wrapper,
        "slicer.ScriptedLoadableModule": scripted,
        "qt": qt,
    }


@pytest.fixture
def load_module(monkeypatch):
    """Import SpineInstanceSeg.py as the application would, with the fakes in ``sys.modules``."""

    def load(*, version=(5, 12), testing=True):
        displayed: list[str] = []
        for name, module in _fake_modules(version=version, testing=testing, displayed=displayed).items():
            monkeypatch.setitem(sys.modules, name, module)
        spec = importlib.util.spec_from_file_location("SpineInstanceSeg_under_test", MODULE_FILE)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module, displayed

    return load


@pytest.fixture
def clean_slicer(monkeypatch):
    """The packages of a clean Slicer: nnunetv2 and friends not installed yet."""
    real = deps.check_dependencies

    def missing(requirements=deps.REQUIREMENTS, *, torch_requirement=deps.TORCH_REQUIREMENT):
        status = real(requirements, torch_requirement=torch_requirement)
        return deps.DependencyStatus(missing=("nnunetv2>=2.5", "pynrrd>=1.0"), torch_missing=True,
                                     imported_outdated=status.imported_outdated)  # fmt: skip

    monkeypatch.setattr(deps, "check_dependencies", missing)
    monkeypatch.delenv(deps.INSTALL_IN_TESTING_ENV, raising=False)


def test_self_test_on_a_clean_slicer_skips_with_the_reason(load_module, clean_slicer):
    """Reload and Test (runTest) on a clean Slicer in testing mode: no failure, the skip and its reason shown."""
    module, displayed = load_module(testing=True)
    module.SpineInstanceSegTest().runTest()
    skipped = [m for m in displayed if m.startswith("Skipped:")]
    assert len(skipped) == 1, displayed
    assert "nnunetv2" in skipped[0] and deps.INSTALL_IN_TESTING_ENV in skipped[0] and "testing mode" in skipped[0]


def test_self_test_through_unittest_as_ctest_runs_it(load_module, clean_slicer):
    """slicer.testing.runUnitTest runs the test_* methods with unittest: the example test counts as skipped."""
    module, _ = load_module(testing=True)
    suite = unittest.TestLoader().loadTestsFromTestCase(module.SpineInstanceSegTest)
    result = unittest.TextTestRunner(stream=io.StringIO(), verbosity=0).run(suite)
    assert result.wasSuccessful(), result.failures + result.errors
    assert result.testsRun == 2
    assert [test._testMethodName for test, _ in result.skipped] == ["test_segment_example_with_bundled_models"]


@pytest.mark.parametrize(
    ("slicer_version", "python_version", "ok"),
    [((5, 8), (3, 9), False), ((5, 10), (3, 12), True), ((5, 12), (3, 12), True), ((5, 12), (3, 9), False)],
)
def test_version_check(load_module, slicer_version, python_version, ok):
    module, _ = load_module()
    problem = module.slicerVersionProblem(slicer_version, python_version)
    assert (problem is None) == ok
    if not ok:
        assert "5.10" in problem and ".".join(map(str, slicer_version)) in problem


def test_old_slicer_shows_which_slicer_is_needed(load_module):
    """On Slicer 5.8 (Python 3.9) the panel holds one message naming the minimum version; nothing else loads."""
    module, _ = load_module(version=(5, 8))
    widget = module.SpineInstanceSegWidget()
    widget.setup()
    texts = [w.text for w in widget.layout.widgets]
    assert len(texts) == 1 and "Slicer 5.10 or later" in texts[0] and "Slicer 5.8" in texts[0]
    assert widget.logic is None
    widget.enter()  # entering the module again must not fail either


def test_minimum_version_is_stated_everywhere(load_module):
    module, _ = load_module()
    minimum = ".".join(map(str, module.MINIMUM_SLICER_VERSION))
    assert module.MINIMUM_SLICER_VERSION == deps.MINIMUM_SLICER_VERSION
    readme = (MODULE_FILE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"Slicer {minimum} or later" in readme
    assert f"Slicer {minimum} or" in module.SpineInstanceSeg(types.SimpleNamespace()).parent.helpText


def test_self_test_on_an_old_slicer_skips_instead_of_failing(load_module):
    module, displayed = load_module(version=(5, 8))
    module.SpineInstanceSegTest().runTest()
    assert len([m for m in displayed if m.startswith("Skipped:") and "Slicer 5.10" in m]) == 2, displayed
