"""nnU-Net's folders and switches: the one place the library writes ``os.environ`` (no nnunetv2 import here).

nnU-Net v2 reads its configuration only from environment variables (2.8.1 reads them when a path or a setting is
used, so setting them at run time works):

* ``nnUNet_raw``: raw datasets (``DatasetNNN_NAME/imagesTr``, ``labelsTr``, ``dataset.json``);
* ``nnUNet_preprocessed``: plans and preprocessed arrays;
* ``nnUNet_results``: trained models (``DatasetNNN_NAME/TRAINER__PLANS__CONFIG/fold_X``);
* ``nnUNet_extTrainer``: an ``os.pathsep``-separated list of folders that nnU-Net searches when a trainer name is
  not one of its own (modules there are imported as top-level modules). Our short-schedule trainers live in
  :data:`TRAINERS_DIR`; the predictor needs it too, as it looks the trainer up by the name saved in the checkpoint;
* ``nnUNet_n_proc_DA``: data-augmentation worker processes;
* ``SPINESEG_NNUNET_*``: the schedule of our short trainers (nnU-Net builds trainers by name with a fixed
  signature, so they read it from the environment; see ``trainers/``).

Library calls set what they need with :func:`nnunet_environment` for the duration of the call and restore the
previous values afterwards, so a call leaves the process as it found it. Child processes that nnU-Net starts during
the call (preprocessing, data augmentation) inherit the values. :meth:`NnUNetFolders.apply`,
:func:`register_trainers` and :func:`ensure_data_workers` set them for the rest of the process instead: for scripts
that drive nnU-Net themselves.

The CLI takes ``--nnunet-dir BASE`` (meaning ``BASE/nnUNet_raw``, ``BASE/nnUNet_preprocessed``,
``BASE/nnUNet_results``) or the three variables from the environment; explicit flags win over the environment.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = [
    "TRAINERS_DIR",
    "NnUNetFolders",
    "resolve_folders",
    "nnunet_environment",
    "trainer_variables",
    "data_worker_variables",
    "register_trainers",
    "ensure_data_workers",
]

TRAINERS_DIR = Path(__file__).resolve().parent / "trainers"
_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
_LOCK = threading.Lock()


@contextlib.contextmanager
def nnunet_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, then restore what was there before.

    A variable that someone else changed while the block ran keeps that value (it is not ours to restore).
    """
    with _LOCK:
        before = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
    try:
        yield
    finally:
        with _LOCK:
            for name, old in before.items():
                if os.environ.get(name) != values[name]:
                    continue
                if old is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = old


@dataclass(frozen=True)
class NnUNetFolders:
    raw: Path
    preprocessed: Path
    results: Path

    def variables(self) -> dict[str, str]:
        """nnU-Net's three folder variables for these folders."""
        return {var: str(path) for var, path in zip(_VARS, (self.raw, self.preprocessed, self.results), strict=True)}

    def create(self) -> None:
        """Create the three folders (nnU-Net expects them to exist)."""
        for path in (self.raw, self.preprocessed, self.results):
            path.mkdir(parents=True, exist_ok=True)

    def apply(self) -> None:
        """Create the folders and export them for the rest of this process and its children (for scripts)."""
        self.create()
        os.environ.update(self.variables())


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


def trainer_variables() -> dict[str, str]:
    """``nnUNet_extTrainer`` with :data:`TRAINERS_DIR` appended (folders the user set are kept)."""
    current = [p for p in os.environ.get("nnUNet_extTrainer", "").split(os.pathsep) if p.strip()]
    if str(TRAINERS_DIR) not in current:
        current.append(str(TRAINERS_DIR))
    return {"nnUNet_extTrainer": os.pathsep.join(current)}


def data_worker_variables(default: int = 2) -> dict[str, str]:
    """``nnUNet_n_proc_DA``: the user's value when set, else ``min(default, cores)``; never below 1.

    nnU-Net 2.8.1 reads this variable in ``get_allowed_n_proc_DA``; 0 switches to a single-threaded loader that
    the planning/training code paths we use do not expect, so we keep it >= 1.
    """
    value = os.environ.get("nnUNet_n_proc_DA")
    n = int(value) if value and value.strip().lstrip("-").isdigit() else min(default, os.cpu_count() or 1)
    return {"nnUNet_n_proc_DA": str(max(1, n))}


def register_trainers() -> None:
    """Make our trainers findable by nnU-Net for the rest of this process (for scripts; see the module docstring)."""
    os.environ.update(trainer_variables())


def ensure_data_workers(default: int = 2) -> int:
    """Set ``nnUNet_n_proc_DA`` for the rest of this process (for scripts); returns the value."""
    values = data_worker_variables(default)
    os.environ.update(values)
    return int(values["nnUNet_n_proc_DA"])
