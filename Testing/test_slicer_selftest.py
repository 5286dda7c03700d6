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

import io
import types
import unittest

import pytest
from slicer_module_loader import MODULE_FILE, bare_slicer
from slicer_module_loader import load_module as load_module_file

from spineinstanceseg.slicer import dependencies as deps


@pytest.fixture
def load_module(monkeypatch):
    """Import SpineInstanceSeg.py as the application would, on a ``slicer`` package without slicer-core."""

    def load(*, version=(5, 12), testing=True):
        return load_module_file(monkeypatch, slicer=bare_slicer(), version=version, testing=testing)

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


def test_mask_conventions_offered_are_the_librarys(load_module, monkeypatch):
    """The panel offers every label convention the library converts (one list, the library's); a Python that cannot
    import the library (an old Slicer) still loads the module, offering only the plain semantic map."""
    import sys

    import numpy as np

    from spineinstanceseg.convention_names import MASK_CONVENTIONS
    from spineinstanceseg.conventions import CONVENTIONS, to_internal
    from spineinstanceseg.volume import Volume

    module, _ = load_module()
    offered = module.SpineInstanceSegParameterNode.__annotations__["maskConvention"].__metadata__[0]
    assert tuple(module.MASK_CONVENTIONS) == tuple(offered) == MASK_CONVENTIONS
    assert module.SpineInstanceSegParameterNode().maskConvention == "semantic" == MASK_CONVENTIONS[0]
    assert not set(MASK_CONVENTIONS) - set(CONVENTIONS)
    empty = Volume(np.zeros((4, 4, 4), np.uint8), is_label=True)
    for name in MASK_CONVENTIONS:
        assert not to_internal(empty, name).semantic.array.any(), name

    monkeypatch.setitem(sys.modules, "spineinstanceseg.convention_names", None)  # the import fails
    old, _ = load_module(version=(5, 8))
    assert old.MASK_CONVENTIONS == ("semantic",)
