"""nnU-Net's folders and switches, set in one documented way (no nnunetv2 import here).

nnU-Net v2 finds its data through three environment variables, read when a path is used (2.8.1 reads them
lazily, so setting them at run time works):

* ``nnUNet_raw``: raw datasets (``DatasetNNN_NAME/imagesTr``, ``labelsTr``, ``dataset.json``);
* ``nnUNet_preprocessed``: plans and preprocessed arrays;
* ``nnUNet_results``: trained models (``DatasetNNN_NAME/TRAINER__PLANS__CONFIG/fold_X``).

The CLI takes ``--nnunet-dir BASE`` (meaning ``BASE/nnUNet_raw``, ``BASE/nnUNet_preprocessed``,
``BASE/nnUNet_results``) or the three variables from the environment; explicit flags win over the environment.

Our short-schedule trainers live in :data:`TRAINERS_DIR` and reach nnU-Net through its ``nnUNet_extTrainer``
variable (an ``os.pathsep``-separated list of folders that nnU-Net searches when a trainer name is not one of its
own; modules there are imported as top-level modules). :func:`register_trainers` appends our folder, keeping any
folders the user set. The predictor needs this too: it looks the trainer up by the name saved in the checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = ["TRAINERS_DIR", "NnUNetFolders", "resolve_folders", "register_trainers", "ensure_data_workers"]

TRAINERS_DIR = Path(__file__).resolve().parent / "trainers"
_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")


@dataclass(frozen=True)
class NnUNetFolders:
    raw: Path
    preprocessed: Path
    results: Path

    def apply(self) -> None:
        """Create the folders and export them as nnU-Net's environment variables (for this process and children)."""
        for var, path in zip(_VARS, (self.raw, self.preprocessed, self.results), strict=True):
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)


def resolve_folders(
    base: str | Path | None = None,
    *,
    raw: str | Path | None = None,
    preprocessed: str | Path | None = None,
    results: str | Path | None = None,
) -> NnUNetFolders:
    """Folders from explicit arguments, else ``base/<variable name>``, else the environment.

    Raises:
        InputError: a folder is given nowhere (names the variable to set).
    """
    chosen = []
    for var, given in zip(_VARS, (raw, preprocessed, results), strict=True):
        if given is not None:
            chosen.append(Path(given))
        elif base is not None:
            chosen.append(Path(base) / var)
        elif os.environ.get(var):
            chosen.append(Path(os.environ[var]))
        else:
            raise InputError(
                f"the nnU-Net folder {var} is not set",
                fix=f"pass --nnunet-dir BASE (uses BASE/{var}) or export {var}=/path",
            )
    return NnUNetFolders(*chosen)


def register_trainers() -> None:
    """Make our trainer classes findable by nnU-Net (appends :data:`TRAINERS_DIR` to ``nnUNet_extTrainer``)."""
    current = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p.strip()]
    if str(TRAINERS_DIR) not in current:
        os.environ["nnUNet_extTrainer"] = os.pathsep.join([*current, str(TRAINERS_DIR)])


def ensure_data_workers(default: int = 2) -> int:
    """Set ``nnUNet_n_proc_DA`` (data-augmentation worker processes) when the user did not; never below 1.

    nnU-Net 2.8.1 reads this variable in ``get_allowed_n_proc_DA``; 0 switches to a single-threaded loader that
    the planning/training code paths we use do not expect, so we keep it >= 1.
    """
    value = os.environ.get("nnUNet_n_proc_DA")
    n = int(value) if value and value.strip().lstrip("-").isdigit() else min(default, os.cpu_count() or 1)
    n = max(1, n)
    os.environ["nnUNet_n_proc_DA"] = str(n)
    return n
