"""Python packages of the pipeline inside Slicer's Python: check, ask, install; never at import time.

Supported Slicer versions: :data:`MINIMUM_SLICER_VERSION` and later (the first Slicer whose Python, 3.12, is at
least the library's Python 3.10; Slicer 5.8 and older run Python 3.9).

* **What Slicer bundles is never replaced**: numpy, scipy, SimpleITK and vtk come with Slicer (5.10: numpy
  2.0.2, scipy 1.13.1; 5.12: numpy 2.4.6, scipy 1.17.1), torch and torchvision with its PyTorch extension. A pin
  such as the ``numpy<2.3`` of a test tool would have downgraded Slicer's numpy. They are checked (an unsuitable
  bundled version is an error that says which Slicer to use), never installed; every pip call gets them as
  ``skip_packages`` and as constraints pinned to the installed versions, so a dependency that wants another
  version makes pip fail instead of overwriting Slicer's copy.
* **torch** comes from the PyTorch extension (``PyTorchUtils``), which picks the build for the GPU driver.
* **everything else** goes through Slicer's own dependency API, ``pip_ensure`` of ``slicer.packaging`` (its
  name in Slicer 5.11 and later) or ``slicer.pydeps`` (the name it had while it was developed), with
  ``skip_packages`` and the constraints file; Slicer 5.10, which has neither, gets ``slicer.util.pip_install``
  with the same constraints file (``pip install -c constraints.txt ...``).
* **Testing mode** (``slicer.app.testingEnabled()``, e.g. ctest): Slicer's own installer installs nothing then,
  and neither does :func:`ensure_dependencies` unless asked to (``install_in_testing=True``); the module's
  self-test uses :func:`prepare_self_test`, which installs only when :data:`INSTALL_IN_TESTING_ENV` is ``1`` and
  otherwise returns the reason to skip.
* A package already imported in this session at an unsuitable version cannot be replaced in memory: the outcome
  says a restart is needed.

The ``slicer_module`` and ``pytorch_utils`` arguments exist so that all of this can be checked without the
application. This module must stay importable by Slicer's Python 3.9 (so the module can tell an old Slicer why
it cannot run): no syntax newer than 3.9 outside annotations.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SpineSegError

__all__ = [
    "MINIMUM_SLICER_VERSION",
    "TORCH_REQUIREMENT",
    "REQUIREMENTS",
    "REQUIREMENTS_DIR",
    "read_requirements",
    "BATCH_REQUIREMENTS",
    "BUNDLED_PACKAGES",
    "INSTALL_IN_TESTING_ENV",
    "DependencyStatus",
    "InstallOutcome",
    "check_dependencies",
    "confirmation_text",
    "constraints_lines",
    "ensure_dependencies",
    "prepare_self_test",
]

log = logging.getLogger(__name__)

MINIMUM_SLICER_VERSION = (5, 10)
REQUIREMENTS_DIR = Path(__file__).resolve().parents[1] / "requirements"


def read_requirements(name: str) -> tuple[str, ...]:
    """The requirements of ``requirements/<name>.txt`` (the one list of them; pyproject.toml reads the same files)."""
    lines = (REQUIREMENTS_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(line.strip() for line in lines if line.strip() and not line.strip().startswith("#"))


_RUNTIME = read_requirements("runtime")
TORCH_REQUIREMENT = next(r for r in _RUNTIME if r.startswith("torch"))
# The library's runtime requirements minus torch (it comes from Slicer's PyTorch extension), plus the [slicer] extra.
REQUIREMENTS: tuple[str, ...] = tuple(r for r in _RUNTIME if r != TORCH_REQUIREMENT) + read_requirements("slicer")
# The [batch] extra: only the folder helpers (spineseg batch) need it.
BATCH_REQUIREMENTS: tuple[str, ...] = read_requirements("batch")
# Provided by Slicer or its PyTorch extension: checked, never installed or replaced.
BUNDLED_PACKAGES: tuple[str, ...] = ("numpy", "scipy", "SimpleITK", "vtk", "torch", "torchvision")
INSTALL_IN_TESTING_ENV = "SPINEINSTANCESEG_INSTALL_IN_TESTING"
# Distribution name -> top-level import name, where they differ.
IMPORT_NAMES = {"scikit-image": "skimage", "pynrrd": "nrrd", "dask": "dask", "nnunetv2": "nnunetv2"}


@dataclass(frozen=True)
class DependencyStatus:
    """What is missing.

    Attributes:
        missing: Requirements pip may install (not satisfied by the installed packages; torch excluded).
        torch_missing: torch is absent or too old.
        imported_outdated: ``"name (imported x.y, needs spec)"`` for packages already imported in this session at
            an unsuitable version: installing cannot fix them before a restart.
        bundled_unsuitable: ``"name x.y (needs spec)"`` for packages Slicer bundles at an unsuitable version.
    """

    missing: tuple[str, ...] = ()
    torch_missing: bool = False
    imported_outdated: tuple[str, ...] = ()
    bundled_unsuitable: tuple[str, ...] = ()

    @property
    def satisfied(self) -> bool:
        return not (self.missing or self.torch_missing or self.imported_outdated or self.bundled_unsuitable)

    @property
    def installable(self) -> bool:
        """Something is missing that installing can provide."""
        return bool(self.missing or self.torch_missing)


@dataclass(frozen=True)
class InstallOutcome:
    """What :func:`ensure_dependencies` did.

    Attributes:
        installed: Requirements installed now.
        restart_needed: Packages that need a Slicer restart before they can be used.
        declined: The user said no.
        not_installed_in_testing: Missing requirements left alone because Slicer runs in testing mode.
    """

    installed: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = field(default=())
    declined: bool = False
    not_installed_in_testing: tuple[str, ...] = ()

    @property
    def ready(self) -> bool:
        return not (self.declined or self.restart_needed or self.not_installed_in_testing)


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _import_name(distribution: str) -> str:
    return IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(requirement).name


def _is_bundled(name: str) -> bool:
    return _canonical(name) in {_canonical(b) for b in BUNDLED_PACKAGES}


def _installed_version(distribution: str) -> str | None:
    """Version from package metadata; for a bundled package without metadata, its module's ``__version__``."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        pass
    if not _is_bundled(distribution):
        return None
    try:
        module = importlib.import_module(_import_name(distribution))
    except ImportError:
        return None
    return str(getattr(module, "__version__", "")) or None


def _imported_version(distribution: str) -> str | None:
    """Version of the module already in memory (``None`` if not imported)."""
    module = sys.modules.get(_import_name(distribution))
    if module is None:
        return None
    return str(getattr(module, "__version__", "")) or None


def _unsatisfied(requirement: str) -> tuple[bool, bool, str | None, str | None]:
    """``(installed version satisfies, imported version satisfies, installed version, imported version)``."""
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    installed = _installed_version(req.name)
    ok_installed = installed is not None and req.specifier.contains(installed.split("+")[0], prereleases=True)
    imported = _imported_version(req.name)
    ok_imported = imported is None or req.specifier.contains(imported.split("+")[0], prereleases=True)
    return ok_installed, ok_imported, installed, imported


def check_dependencies(
    requirements: Sequence[str] = REQUIREMENTS, *, torch_requirement: str | None = TORCH_REQUIREMENT
) -> DependencyStatus:
    """Compare installed and imported packages with the requirements (reads metadata, installs nothing)."""
    missing, outdated, bundled = [], [], []
    for requirement in requirements:
        ok_installed, ok_imported, installed, imported = _unsatisfied(requirement)
        if not ok_installed and _is_bundled(_name(requirement)):
            bundled.append(f"{_name(requirement)} {installed or '(absent)'} (needs {requirement})")
        elif not ok_installed:
            missing.append(requirement)
        if not ok_imported:
            outdated.append(f"{_name(requirement)} (imported {imported}, needs {requirement})")
    torch_ok = True
    if torch_requirement is not None:
        torch_ok, torch_imported_ok, _, torch_imported = _unsatisfied(torch_requirement)
        if not torch_imported_ok:
            outdated.append(f"torch (imported {torch_imported}, needs {torch_requirement})")
    return DependencyStatus(tuple(missing), not torch_ok, tuple(outdated), tuple(bundled))


def confirmation_text(status: DependencyStatus) -> str:
    """The question shown before installing anything (English; the module translates its own dialog frame)."""
    lines = ["SpineInstanceSeg needs Python packages that are not installed in Slicer yet:"]
    if status.torch_missing:
        lines.append(f"  - PyTorch ({TORCH_REQUIREMENT}) through the PyTorch extension")
    lines += [f"  - {req}" for req in status.missing]
    lines.append("Slicer's own numpy, SimpleITK, VTK and PyTorch are kept as they are.")
    lines.append("This downloads several hundred MB and can take minutes. Install now?")
    return "\n".join(lines)


def constraints_lines() -> list[str]:
    """pip constraints that keep every bundled package as it is installed now.

    ``name==version`` for a bundled package with metadata; ``name<0`` (no version can satisfy it) for one that is
    importable but unknown to pip (Slicer's own vtk): a dependency on it then makes pip fail rather than install a
    second copy over Slicer's.
    """
    lines = []
    for name in BUNDLED_PACKAGES:
        try:
            lines.append(f"{name}=={importlib.metadata.version(name)}")
            continue
        except importlib.metadata.PackageNotFoundError:
            pass
        if importlib.util.find_spec(_import_name(name)) is not None:
            lines.append(f"{name}<0")
    return lines


def _write_constraints(folder: Path) -> Path:
    path = folder / "spineinstanceseg-constraints.txt"
    path.write_text("\n".join(constraints_lines()) + "\n", encoding="utf-8")
    return path


def _install_torch(pytorch_utils) -> None:
    if pytorch_utils is None:
        try:
            import PyTorchUtils  # the PyTorch extension's module (a declared extension dependency)
        except ImportError as err:
            raise SpineSegError(
                "the PyTorch extension is not installed",
                fix="install the 'PyTorch' extension from the Extensions Manager, restart Slicer, and try again",
            ) from err
        pytorch_utils = PyTorchUtils
    logic = pytorch_utils.PyTorchUtilsLogic()
    if not logic.torchInstalled():
        torch = logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT[len("torch") :])
        if torch is None:
            raise SpineSegError("PyTorch was not installed", fix="install it in the PyTorch Utils module")


def _testing(slicer_module) -> bool:
    app = getattr(slicer_module, "app", None)
    try:
        return bool(app is not None and app.testingEnabled())
    except Exception:  # an application object without testingEnabled(): not testing
        return False


def _pip_ensure_function(slicer_module) -> Callable | None:
    """Slicer's ``pip_ensure`` (``slicer.packaging`` in Slicer >= 5.11, ``slicer.pydeps`` in its development
    versions), or ``None`` on Slicer 5.10."""
    for name in ("packaging", "pydeps"):
        module = getattr(slicer_module, name, None)
        if module is None and hasattr(slicer_module, "__path__"):  # the real package: submodule not imported yet
            try:
                module = importlib.import_module(f"{slicer_module.__name__}.{name}")
            except ImportError:
                module = None
        if module is not None and callable(getattr(module, "pip_ensure", None)):
            return module.pip_ensure
    return None


def _pip_install(slicer_module, requirements: Sequence[str], *, requester: str, in_testing: bool) -> None:
    """Install ``requirements`` with Slicer's installer, bundled packages skipped and pinned."""
    with tempfile.TemporaryDirectory(prefix="spineinstanceseg-pip-") as folder:
        constraints = _write_constraints(Path(folder))
        pip_ensure = _pip_ensure_function(slicer_module)
        if pip_ensure is not None:
            # Already confirmed: no second dialog; restarts are handled by the caller (InstallOutcome).
            pip_ensure(
                list(requirements),
                constraints=str(constraints),
                skip_packages=list(BUNDLED_PACKAGES),
                prompt_install=False,
                prompt_restart=False,
                requester=requester,
                skip_in_testing=not in_testing,
            )
        else:  # Slicer 5.10: no dependency API, plain pip with the same constraints
            slicer_module.util.pip_install(["-c", str(constraints), *requirements])


def _bundled_error(status: DependencyStatus):
    version = ".".join(str(v) for v in MINIMUM_SLICER_VERSION)
    return SpineSegError(
        f"packages that come with Slicer do not fit: {'; '.join(status.bundled_unsuitable)}",
        fix=f"use Slicer {version} or later (SpineInstanceSeg never replaces the numpy, SimpleITK, VTK or PyTorch "
        "that Slicer and its PyTorch extension provide)",
    )


def ensure_dependencies(
    *,
    confirm: Callable[[str], bool],
    requirements: Sequence[str] = REQUIREMENTS,
    requester: str = "SpineInstanceSeg",
    slicer_module=None,
    pytorch_utils=None,
    install_in_testing: bool = False,
    torch_requirement: str | None = TORCH_REQUIREMENT,
) -> InstallOutcome:
    """Install what :func:`check_dependencies` finds missing, after ``confirm(question)`` returned True.

    Args:
        confirm: Shows the question, returns the answer (the module uses an OK/Cancel dialog).
        requirements: Default: what "Segment spine" needs; :data:`BATCH_REQUIREMENTS` for the folder helpers.
        slicer_module: The ``slicer`` package (default: imported here; only inside Slicer).
        pytorch_utils: The ``PyTorchUtils`` module (default: imported here).
        install_in_testing: Install even when Slicer runs in testing mode (default: leave the environment alone
            and list the missing packages in ``not_installed_in_testing``).
        torch_requirement: torch through the PyTorch extension; ``None`` when the requirements do not need it.

    Returns:
        What was installed, and which packages need a Slicer restart before they can be used.

    Raises:
        SpineSegError: a bundled package does not fit (never replaced), or installing did not provide a package.
    """
    status = check_dependencies(requirements, torch_requirement=torch_requirement)
    if status.bundled_unsuitable:
        raise _bundled_error(status)
    if not status.installable:
        return InstallOutcome(restart_needed=status.imported_outdated)
    if slicer_module is None:
        import slicer as slicer_module
    in_testing = _testing(slicer_module)
    if in_testing and not install_in_testing:
        wanted = (("torch",) if status.torch_missing else ()) + status.missing
        log.info("Slicer runs in testing mode: not installing %s", ", ".join(wanted))
        return InstallOutcome(not_installed_in_testing=wanted)
    if not confirm(confirmation_text(status)):
        return InstallOutcome(declined=True)
    if status.torch_missing:
        _install_torch(pytorch_utils)
    if status.missing:
        _pip_install(slicer_module, status.missing, requester=requester, in_testing=in_testing)
    importlib.invalidate_caches()
    after = check_dependencies(requirements, torch_requirement=torch_requirement)
    if after.missing or after.torch_missing:
        still = ", ".join((("torch",) if after.torch_missing else ()) + after.missing)
        raise SpineSegError(f"installing did not provide {still}", fix="see the Python console for pip's log")
    installed = (("torch",) if status.torch_missing else ()) + status.missing
    return InstallOutcome(installed=installed, restart_needed=after.imported_outdated)


def prepare_self_test(
    *,
    environ: Mapping[str, str] | None = None,
    requirements: Sequence[str] = REQUIREMENTS,
    slicer_module=None,
    pytorch_utils=None,
) -> str | None:
    """Make the packages available to the module's self-test, or return why it skips (it never fails on them).

    Slicer installs nothing in testing mode, so on a clean Slicer the packages are missing: the self-test then
    skips with the returned reason, unless ``environ[INSTALL_IN_TESTING_ENV] == "1"`` asks to install them now.

    Returns:
        ``None`` when everything is there (after installing, if asked); else the reason to skip.
    """
    environ = os.environ if environ is None else environ
    status = check_dependencies(requirements)
    if status.satisfied:
        return None
    if status.bundled_unsuitable:
        return str(_bundled_error(status))
    if not status.installable:
        return f"restart Slicer first, these packages were updated after they were loaded: {status.imported_outdated}"
    wanted = ", ".join((("torch",) if status.torch_missing else ()) + status.missing)
    if environ.get(INSTALL_IN_TESTING_ENV, "") != "1":
        return (
            f"the Python packages {wanted} are not installed and Slicer installs nothing in testing mode; "
            f"click 'Segment spine' once to install them, or set {INSTALL_IN_TESTING_ENV}=1 to let the test "
            "install them"
        )
    try:
        outcome = ensure_dependencies(
            confirm=lambda text: True,
            requirements=requirements,
            slicer_module=slicer_module,
            pytorch_utils=pytorch_utils,
            install_in_testing=True,
        )
    except Exception as err:  # a failed download must not look like a failed segmentation
        return f"installing {wanted} for the self-test failed: {err}"
    if outcome.restart_needed:
        return f"packages were installed; restart Slicer and run the test again ({', '.join(outcome.restart_needed)})"
    return None
