"""Installing the pipeline's packages into Slicer's Python, checked without the Slicer application.

Slicer's installers (``slicer.packaging.pip_ensure``, ``slicer.util.pip_install``, ``PyTorchUtils``) are replaced by
recorders; "installing" a package writes real package metadata on ``sys.path``, so the checks before and after
run on what Python itself reports.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement

from spineinstanceseg.errors import SpineSegError
from spineinstanceseg.slicer import dependencies as deps

REPO = Path(__file__).resolve().parents[1]
FAKE = "spineinstanceseg-fake-dependency"


def test_requirements_match_pyproject():
    """Slicer must get the same packages and version limits as a pip install of the library."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    ours = {Requirement(r).name.lower(): Requirement(r) for r in deps.REQUIREMENTS}
    for line in project:
        req = Requirement(line)
        if req.name in ("torch", "torchvision"):
            assert req.name != "torch" or Requirement(deps.TORCH_REQUIREMENT).specifier == req.specifier
            continue
        assert req.name.lower() in ours, f"{req.name} is missing from dependencies.REQUIREMENTS"
        assert ours[req.name.lower()].specifier == req.specifier, req.name


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


def _fake_slicer(site: Path, *, with_packaging: bool, calls: list, version: str = "1.2"):
    def install(requirements, **kwargs):
        calls.append((requirements, kwargs))
        _install_metadata(site, version)

    util = types.SimpleNamespace(pip_install=lambda reqs: install(reqs))
    packaging = types.SimpleNamespace(pip_ensure=install) if with_packaging else None
    return types.SimpleNamespace(util=util, packaging=packaging)


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


def test_pip_install_fallback_on_older_slicer(site):
    calls = []
    outcome = deps.ensure_dependencies(
        confirm=lambda text: True,
        requirements=[f"{FAKE}>=1.0"],
        slicer_module=_fake_slicer(site, with_packaging=False, calls=calls),
    )
    assert outcome.ready and len(calls) == 1 and calls[0][1] == {}


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
    assert calls == [(False, ">=2.4")]


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
