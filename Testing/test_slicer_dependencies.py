"""Installing the pipeline's packages into Slicer's Python, checked without the Slicer application.

Slicer's installers (``slicer.packaging.pip_ensure`` with the signature of Slicer's own function,
``slicer.util.pip_install``, ``PyTorchUtils``) are replaced by recorders that behave like Slicer's (including
"install nothing in testing mode"); "installing" a package writes real package metadata on ``sys.path``, so the
checks before and after run on what Python itself reports.
"""

from __future__ import annotations

import sys
import types
from importlib.metadata import version
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from spineinstanceseg.errors import SpineSegError
from spineinstanceseg.slicer import dependencies as deps

REPO = Path(__file__).resolve().parents[1]
FAKE = "spineinstanceseg-fake-dependency"


def test_requirements_have_one_source():
    """pyproject.toml and the Slicer installer read the same requirement files: Slicer gets the runtime
    requirements (torch from the PyTorch extension) plus the [slicer] extra, the folder helpers the [batch] extra;
    test tools (panoptica's numpy cap) never reach Slicer. TotalSegmentator is an extra of its own, part of the
    test extra, and never installed by the Slicer module."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert {"dependencies", "optional-dependencies"} <= set(pyproject["project"]["dynamic"])
    dynamic = pyproject["tool"]["setuptools"]["dynamic"]
    folder = deps.REQUIREMENTS_DIR.relative_to(REPO).as_posix()
    assert dynamic["dependencies"]["file"] == [f"{folder}/runtime.txt"]
    assert {k: v["file"] for k, v in dynamic["optional-dependencies"].items()} == {
        extra: [f"{folder}/{extra}.txt"] for extra in ("batch", "slicer", "test", "totalsegmentator")
    }
    assert set(deps.read_requirements("totalsegmentator")) <= set(deps.read_requirements("test"))
    runtime = deps.read_requirements("runtime")
    assert deps.REQUIREMENTS == tuple(r for r in runtime if Requirement(r).name != "torch") + deps.read_requirements(
        "slicer"
    )
    assert deps.BATCH_REQUIREMENTS == deps.read_requirements("batch") == ("dask[distributed]>=2024.1",)
    assert Requirement(deps.TORCH_REQUIREMENT).name == "torch" and deps.TORCH_REQUIREMENT in runtime
    names = {Requirement(r).name for r in runtime}
    assert not names & {"torchvision", "dask", "psutil", "panoptica", "pytest", "totalsegmentator"}, names
    assert not {Requirement(r).name.lower() for r in deps.REQUIREMENTS} & {"totalsegmentator"}
    numpy = next(Requirement(r) for r in runtime if Requirement(r).name == "numpy")
    assert not any(spec.operator in ("<", "<=") for spec in numpy.specifier), "numpy<2.3 is a test-tool cap"


def test_this_environment_is_complete():
    status = deps.check_dependencies()
    assert status.satisfied, status


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path where a fake installer can put package metadata."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("spineinstanceseg_fake_dependency", None)


def _install_metadata(site: Path, version: str) -> None:
    info = site / f"spineinstanceseg_fake_dependency-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {FAKE}\nVersion: {version}\n")


def _pinned(constraints_file) -> list[str]:
    """The lines of a pip constraints file (empty without one)."""
    return Path(constraints_file).read_text().split() if constraints_file else []


def _fake_slicer(site: Path, *, with_packaging: bool, calls: list, version: str = "1.2", testing: bool = False):
    """A ``slicer`` module whose installers record their calls and behave like Slicer's own."""

    def pip_ensure(
        requirements,
        constraints=None,
        skip_packages=None,
        prompt_install=True,
        prompt_restart=True,
        requester=None,
        skip_in_testing=True,
        show_progress=True,
    ):  # the signature of slicer.packaging.pip_ensure (Slicer 5.11+)
        kwargs = dict(
            constraints=constraints,
            skip_packages=skip_packages,
            prompt_install=prompt_install,
            prompt_restart=prompt_restart,
            requester=requester,
            skip_in_testing=skip_in_testing,
        )
        kwargs["pinned"] = _pinned(constraints)  # what pip is held to, read while the file exists
        calls.append((requirements, kwargs))
        if skip_in_testing and testing:  # what Slicer does: nothing, silently
            return None
        _install_metadata(site, version)
        return None

    def pip_install(args):  # slicer.util.pip_install of Slicer 5.10: a list of pip arguments
        constraints = args[args.index("-c") + 1] if "-c" in args else None
        requirements = [a for i, a in enumerate(args) if a != "-c" and (i == 0 or args[i - 1] != "-c")]
        calls.append((requirements, {"pinned": _pinned(constraints)}))
        _install_metadata(site, version)

    app = types.SimpleNamespace(testingEnabled=lambda: testing)
    packaging = types.SimpleNamespace(pip_ensure=pip_ensure) if with_packaging else None
    return types.SimpleNamespace(util=types.SimpleNamespace(pip_install=pip_install), packaging=packaging, app=app)


def test_nothing_is_installed_without_confirmation(site):
    calls, asked = [], []
    outcome = deps.ensure_dependencies(
        confirm=lambda text: asked.append(text) or False,
        requirements=[f"{FAKE}>=1.0"],
        slicer_module=_fake_slicer(site, with_packaging=True, calls=calls),
    )
    assert outcome.declined and not outcome.ready
    assert calls == []
    assert FAKE in asked[0] and "Install now?" in asked[0]


def test_pip_ensure_is_used_and_torch_is_kept_away_from_pip(site):
    calls = []
    outcome = deps.ensure_dependencies(
        confirm=lambda text: True,
        requirements=[f"{FAKE}>=1.0"],
        slicer_module=_fake_slicer(site, with_packaging=True, calls=calls),
    )
    assert outcome.ready and outcome.installed == (f"{FAKE}>=1.0",)
    ((requirements, kwargs),) = calls
    assert requirements == [f"{FAKE}>=1.0"]
    assert "torch" in kwargs["skip_packages"] and kwargs["prompt_install"] is False  # we asked already
    assert {"SimpleITK", "numpy", "vtk", "torchvision"} <= set(kwargs["skip_packages"])
    assert kwargs["prompt_restart"] is False  # the module asks about restarts itself
    # pip is held to the installed numpy and torch, so a dependency cannot replace Slicer's own copies
    assert {f"numpy=={version('numpy')}", f"torch=={version('torch')}"} <= set(kwargs["pinned"])


def test_pip_install_fallback_on_older_slicer(site):
    calls = []
    outcome = deps.ensure_dependencies(
        confirm=lambda text: True,
        requirements=[f"{FAKE}>=1.0"],
        slicer_module=_fake_slicer(site, with_packaging=False, calls=calls),
    )
    assert outcome.ready and len(calls) == 1
    ((requirements, kwargs),) = calls
    assert requirements == [f"{FAKE}>=1.0"]
    # the same constraints as with pip_ensure: Slicer's own packages stay as they are
    assert {f"numpy=={version('numpy')}", f"torch=={version('torch')}"} <= set(kwargs["pinned"])


def test_failed_install_is_an_error_naming_the_package(site):
    calls = []
    with pytest.raises(SpineSegError, match=FAKE):
        deps.ensure_dependencies(
            confirm=lambda text: True,
            requirements=[f"{FAKE}>=2.0"],  # the fake installs 1.2: still unsatisfied
            slicer_module=_fake_slicer(site, with_packaging=True, calls=calls),
        )


def test_old_version_already_imported_needs_a_restart(site):
    _install_metadata(site, "0.5")
    sys.modules["spineinstanceseg_fake_dependency"] = types.SimpleNamespace(__version__="0.5")
    requirement = f"{FAKE}>=1.0"
    before = deps.check_dependencies([requirement])
    assert before.missing == (requirement,)
    assert before.imported_outdated and "imported 0.5" in before.imported_outdated[0]
    # pip replaces the files, but the old module stays in memory until Slicer restarts.
    for old in site.glob("*-0.5.dist-info"):
        for f in old.iterdir():
            f.unlink()
        old.rmdir()
    calls = []
    outcome = deps.ensure_dependencies(
        confirm=lambda text: True,
        requirements=[requirement],
        slicer_module=_fake_slicer(site, with_packaging=True, calls=calls),
    )
    assert outcome.installed == (requirement,)
    assert not outcome.ready and FAKE in outcome.restart_needed[0]


def test_torch_comes_from_the_pytorch_extension():
    calls = []

    class Logic:
        @staticmethod
        def torchInstalled():
            return False

        def installTorch(self, askConfirmation=False, forceComputationBackend=None, torchVersionRequirement=None):
            calls.append((askConfirmation, torchVersionRequirement))
            return types.SimpleNamespace(__version__="2.4.0")

    deps._install_torch(types.SimpleNamespace(PyTorchUtilsLogic=Logic))
    assert calls == [(False, deps.TORCH_REQUIREMENT[len("torch") :])] == [(False, ">=2.1.2")]


def test_importing_the_module_touches_neither_slicer_nor_pip():
    """Import in a fresh Python where importing slicer, pip or PyTorchUtils fails: nothing may run at import."""
    import subprocess

    code = (
        "import sys\n"
        "for name in ('slicer', 'pip', 'PyTorchUtils'): sys.modules[name] = None\n"
        "import spineinstanceseg.slicer.dependencies as d\n"
        "import spineinstanceseg.slicer.process_runner, spineinstanceseg.slicer.job\n"
        "print(len(d.REQUIREMENTS))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(deps.REQUIREMENTS))


def test_testing_mode_installs_nothing_and_reports_it(site):
    """Slicer's pip_ensure installs nothing in testing mode; before, the check after "installing" then failed with
    "installing did not provide ..." and the self-test failed on a clean Slicer."""
    calls, asked = [], []
    outcome = deps.ensure_dependencies(
        confirm=lambda text: asked.append(text) or True,
        requirements=[f"{FAKE}>=1.0"],
        slicer_module=_fake_slicer(site, with_packaging=True, calls=calls, testing=True),
    )
    assert outcome.not_installed_in_testing == (f"{FAKE}>=1.0",) and not outcome.ready
    assert calls == [] and asked == []  # no dialog (it would auto-close with OK) and no pip


def test_install_in_testing_asks_slicer_to_install_in_testing_mode(site):
    calls = []
    outcome = deps.ensure_dependencies(
        confirm=lambda text: True,
        requirements=[f"{FAKE}>=1.0"],
        slicer_module=_fake_slicer(site, with_packaging=True, calls=calls, testing=True),
        install_in_testing=True,
    )
    assert outcome.ready and outcome.installed == (f"{FAKE}>=1.0",)
    assert calls[0][1]["skip_in_testing"] is False


def test_development_name_pydeps_is_used_too(site):
    calls = []
    fake = _fake_slicer(site, with_packaging=True, calls=calls)
    fake.pydeps, fake.packaging = fake.packaging, None
    outcome = deps.ensure_dependencies(confirm=lambda text: True, requirements=[f"{FAKE}>=1.0"], slicer_module=fake)
    assert outcome.ready and calls[0][1]["skip_packages"]  # pip_ensure, not the plain pip fallback


def test_constraints_pin_what_slicer_bundles(monkeypatch, tmp_path):
    """numpy, SimpleITK, torch ... are pinned to the installed versions; a bundled module unknown to pip (Slicer's
    own vtk) gets an unsatisfiable constraint, so pip fails rather than installing a copy over it."""
    import importlib.metadata

    (tmp_path / "slicer_builtin_lib.py").write_text("__version__ = '9.9'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(deps, "BUNDLED_PACKAGES", ("numpy", "SimpleITK", "torch", "slicer_builtin_lib"))
    lines = deps.constraints_lines()
    assert f"numpy=={importlib.metadata.version('numpy')}" in lines
    assert f"SimpleITK=={importlib.metadata.version('SimpleITK')}" in lines
    assert f"torch=={importlib.metadata.version('torch')}" in lines
    assert "slicer_builtin_lib<0" in lines


def test_unsuitable_bundled_package_is_an_error_never_an_install(site):
    calls = []
    with pytest.raises(SpineSegError, match=r"numpy .*needs numpy>=99.*Slicer 5\.10"):
        deps.ensure_dependencies(
            confirm=lambda text: True,
            requirements=["numpy>=99", f"{FAKE}>=1.0"],
            slicer_module=_fake_slicer(site, with_packaging=True, calls=calls),
        )
    assert calls == []


def test_self_test_skips_with_a_reason_on_a_clean_slicer(site):
    """A clean Slicer in testing mode: the self-test gets a reason to skip, and nothing is installed."""
    calls = []
    fake = _fake_slicer(site, with_packaging=True, calls=calls, testing=True)
    reason = deps.prepare_self_test(environ={}, requirements=[f"{FAKE}>=1.0"], slicer_module=fake)
    assert reason and FAKE in reason and deps.INSTALL_IN_TESTING_ENV in reason and "testing mode" in reason
    assert calls == []


def test_self_test_installs_when_asked(site):
    calls = []
    fake = _fake_slicer(site, with_packaging=True, calls=calls, testing=True)
    requirements = [f"{FAKE}>=1.0"]
    environ = {deps.INSTALL_IN_TESTING_ENV: "1"}
    assert deps.prepare_self_test(environ=environ, requirements=requirements, slicer_module=fake) is None
    assert calls[0][1]["skip_in_testing"] is False
    assert deps.prepare_self_test(environ={}, requirements=requirements, slicer_module=fake) is None  # satisfied now


def test_self_test_reports_a_failed_install_as_a_skip_reason(site):
    fake = _fake_slicer(site, with_packaging=True, calls=[], testing=True)
    environ = {deps.INSTALL_IN_TESTING_ENV: "1"}
    reason = deps.prepare_self_test(environ=environ, requirements=[f"{FAKE}>=5.0"], slicer_module=fake)  # gets 1.2
    assert reason and "failed" in reason and FAKE in reason


def test_module_stays_importable_by_python_39():
    """An old Slicer (Python 3.9) must be able to import it to say why the module cannot run there."""
    import ast

    source = Path(deps.__file__).read_text(encoding="utf-8")
    ast.parse(source, feature_version=(3, 9))
    assert "from __future__ import annotations" in source
