"""Python packages of the pipeline inside Slicer's Python: check, ask, install; never at import time.

* torch (and torchvision) come from Slicer's PyTorch extension (``PyTorchUtils``), which picks the build that
  matches the GPU driver;
* everything else goes through ``slicer.packaging.pip_ensure`` (Slicer >= 5.12), or ``slicer.util.pip_install``
  on older Slicer versions, with torch kept out of pip's hands (a plain ``pip install nnunetv2`` would replace
  Slicer's torch by a multi-GB CUDA build);
* a package that is already imported in this Slicer session at a version that does not satisfy the requirement
  cannot be replaced in memory: the outcome says a restart is needed.

:func:`ensure_dependencies` is called by the module's "Segment spine" button, after the user confirmed; the
``slicer_module`` and ``pytorch_utils`` arguments exist so that the flow can be checked without the application.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = [
    "TORCH_REQUIREMENT",
    "REQUIREMENTS",
    "IMPORT_NAMES",
    "DependencyStatus",
    "InstallOutcome",
    "check_dependencies",
    "confirmation_text",
    "ensure_dependencies",
]

log = logging.getLogger(__name__)

TORCH_REQUIREMENT = "torch>=2.4"
# Same as the library's pyproject dependencies minus torch/torchvision (PyTorch extension), plus psutil for Cancel.
REQUIREMENTS: tuple[str, ...] = (
    "nnunetv2>=2.5",
    "SimpleITK>=2.3",
    "numpy>=1.24,<2.3",
    "scipy>=1.10",
    "scikit-image>=0.22",
    "matplotlib>=3.7",
    "safetensors>=0.4",
    "tqdm>=4.60",
    "dask[distributed]>=2024.1",
    "pynrrd>=1.0",
    "slicerio>=1.0",
    "psutil>=5.9",
)
# Distribution name -> top-level import name, where they differ.
IMPORT_NAMES = {"scikit-image": "skimage", "pynrrd": "nrrd", "dask": "dask", "nnunetv2": "nnunetv2"}
# Packages pip must never touch when installing the others (provided by Slicer or by the PyTorch extension).
SKIP_PACKAGES = ("torch", "torchvision", "SimpleITK")


@dataclass(frozen=True)
class DependencyStatus:
    """What is missing.

    Attributes:
        missing: Requirements not satisfied by the installed packages (torch excluded).
        torch_missing: torch is absent or too old.
        imported_outdated: ``"name (imported x.y, needs spec)"`` for packages already imported in this session at
            an unsuitable version: installing cannot fix them before a restart.
    """

    missing: tuple[str, ...] = ()
    torch_missing: bool = False
    imported_outdated: tuple[str, ...] = ()

    @property
    def satisfied(self) -> bool:
        return not self.missing and not self.torch_missing and not self.imported_outdated


@dataclass(frozen=True)
class InstallOutcome:
    installed: tuple[str, ...] = ()
    restart_needed: tuple[str, ...] = field(default=())
    declined: bool = False

    @property
    def ready(self) -> bool:
        return not self.declined and not self.restart_needed


def _import_name(distribution: str) -> str:
    return IMPORT_NAMES.get(distribution, distribution.replace("-", "_"))


def _name(requirement: str) -> str:
    from packaging.requirements import Requirement

    return Requirement(requirement).name


def _imported_version(distribution: str) -> str | None:
    """Version of the module already in memory (``None`` if not imported)."""
    module = sys.modules.get(_import_name(distribution))
    if module is None:
        return None
    return str(getattr(module, "__version__", "")) or None


def _unsatisfied(requirement: str) -> tuple[bool, bool, str | None]:
    """``(installed version satisfies, imported version in memory satisfies, imported version)``."""
    from packaging.requirements import Requirement

    req = Requirement(requirement)
    try:
        installed = importlib.metadata.version(req.name)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    ok_installed = installed is not None and req.specifier.contains(installed, prereleases=True)
    imported = _imported_version(req.name)
    ok_imported = imported is None or req.specifier.contains(imported.split("+")[0], prereleases=True)
    return ok_installed, ok_imported, imported


def check_dependencies(
    requirements: Sequence[str] = REQUIREMENTS, *, torch_requirement: str = TORCH_REQUIREMENT
) -> DependencyStatus:
    """Compare installed and imported packages with the requirements (reads metadata, installs nothing)."""
    missing, outdated = [], []
    for requirement in requirements:
        ok_installed, ok_imported, imported = _unsatisfied(requirement)
        if not ok_installed:
            missing.append(requirement)
        if not ok_imported:
            outdated.append(f"{_name(requirement)} (imported {imported}, needs {requirement})")
    torch_ok, torch_imported_ok, torch_imported = _unsatisfied(torch_requirement)
    if not torch_imported_ok:
        outdated.append(f"torch (imported {torch_imported}, needs {torch_requirement})")
    return DependencyStatus(tuple(missing), not torch_ok, tuple(outdated))


def confirmation_text(status: DependencyStatus) -> str:
    """The question shown before installing anything (English; the module translates its own dialog frame)."""
    lines = ["SpineInstanceSeg needs Python packages that are not installed in Slicer yet:"]
    if status.torch_missing:
        lines.append(f"  - PyTorch ({TORCH_REQUIREMENT}) through the PyTorch extension")
    lines += [f"  - {req}" for req in status.missing]
    lines.append("This downloads several hundred MB and can take minutes. Install now?")
    return "\n".join(lines)


def _install_torch(pytorch_utils) -> None:
    if pytorch_utils is None:
        try:
            import PyTorchUtils  # the PyTorch extension's module (a declared extension dependency)
        except ImportError as err:
            from ..errors import SpineSegError

            raise SpineSegError(
                "the PyTorch extension is not installed",
                fix="install the 'PyTorch' extension from the Extensions Manager, restart Slicer, and try again",
            ) from err
        pytorch_utils = PyTorchUtils
    logic = pytorch_utils.PyTorchUtilsLogic()
    if not logic.torchInstalled():
        torch = logic.installTorch(askConfirmation=False, torchVersionRequirement=TORCH_REQUIREMENT[len("torch") :])
        if torch is None:
            from ..errors import SpineSegError

            raise SpineSegError("PyTorch was not installed", fix="install it in the PyTorch Utils module")


def ensure_dependencies(
    *,
    confirm: Callable[[str], bool],
    requirements: Sequence[str] = REQUIREMENTS,
    requester: str = "SpineInstanceSeg",
    slicer_module=None,
    pytorch_utils=None,
) -> InstallOutcome:
    """Install what :func:`check_dependencies` finds missing, after ``confirm(question)`` returned True.

    Args:
        confirm: Shows the question, returns the answer (the module uses a Yes/No dialog).
        slicer_module: The ``slicer`` package (default: imported here; only inside Slicer).
        pytorch_utils: The ``PyTorchUtils`` module (default: imported here).

    Returns:
        What was installed, and which packages need a Slicer restart before they can be used.
    """
    status = check_dependencies(requirements)
    if status.satisfied:
        return InstallOutcome()
    if not status.missing and not status.torch_missing:
        return InstallOutcome(restart_needed=status.imported_outdated)
    if not confirm(confirmation_text(status)):
        return InstallOutcome(declined=True)
    if slicer_module is None:
        import slicer as slicer_module
    if status.torch_missing:
        _install_torch(pytorch_utils)
    if status.missing:
        packaging = getattr(slicer_module, "packaging", None)
        if packaging is not None and hasattr(packaging, "pip_ensure"):
            # Already confirmed above: no second dialog; Slicer's own restart check still runs.
            packaging.pip_ensure(
                list(status.missing), skip_packages=list(SKIP_PACKAGES), prompt_install=False, requester=requester
            )
        else:  # Slicer < 5.12
            slicer_module.util.pip_install(list(status.missing))
    importlib.invalidate_caches()
    after = check_dependencies(requirements)
    still = tuple(r for r in after.missing)
    if still:
        from ..errors import SpineSegError

        raise SpineSegError(
            f"installing did not provide {', '.join(still)}", fix="see the Python console for pip's log"
        )
    installed = (("torch",) if status.torch_missing else ()) + status.missing
    return InstallOutcome(installed=installed, restart_needed=after.imported_outdated)
