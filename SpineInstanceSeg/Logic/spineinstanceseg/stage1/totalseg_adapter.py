"""TotalSegmentator as stage 1: the only module that imports the ``totalsegmentator`` package (installed separately).

TotalSegmentator (Wasserthal et al.) segments 117 structures of a CT (task ``total``) or 50 of an MRI (task
``total_mr``), among them the vertebrae, the sacrum and the spinal cord; :class:`.sources.TotalSegmentatorSource`
converts its labels to our semantic classes. Its weights are downloaded on the first run of a task into
``TOTALSEG_HOME_DIR`` (default ``~/.totalsegmentator``) or ``TOTALSEG_WEIGHTS_PATH``; a task whose weights folder is
there is never downloaded again. After every run TotalSegmentator sends anonymous usage statistics unless
``"send_usage_stats": false`` stands in its ``config.json`` in that folder: that is the user's setting, and this
module leaves it alone.

What a call changes, and what this module does about it:

* TotalSegmentator points the ``nnUNet_*`` environment variables at its weights for the rest of the process: they
  are set for the call only and restored (:func:`~.environment.nnunet_environment`).
* Its prints (and nnU-Net's) in the calling thread go to the DEBUG log (:func:`~.nnunet_adapter.prints_to_log`),
  except that it silences stdout itself (swaps ``sys.stdout``) while nnU-Net predicts: that is its own code.
* Importing it patches nnU-Net's predictor in this process (its cropped-logits resampling, off unless asked for).
* Its nnU-Net call preprocesses and exports in worker processes started with ``spawn``, which import the main
  module again: a script that segments with TotalSegmentator must keep its top level under
  ``if __name__ == "__main__":`` (else: "Background workers died"). ``spineseg`` and the Slicer module do.
* On the CPU it sets torch's thread count to every core of the machine for the call (and restores it after).
"""

from __future__ import annotations

import importlib.util
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..errors import InputError

__all__ = [
    "TASK_CONVENTIONS",
    "CT_TASK",
    "MR_TASK",
    "INSTALL_FIX",
    "totalsegmentator_available",
    "require_totalsegmentator",
    "choose_task",
    "device_name",
    "run_totalsegmentator",
]

log = logging.getLogger(__name__)

CT_TASK = "total"
MR_TASK = "total_mr"
# Task -> the label convention of its output (spineinstanceseg.conventions).
TASK_CONVENTIONS = {CT_TASK: "totalseg_total", MR_TASK: "totalseg_total_mr"}
INSTALL_FIX = (
    "install it into this Python: pip install TotalSegmentator (or pip install 'spineinstanceseg[totalsegmentator]'); "
    "its weights download on the first run (mind their licence for commercial use). Or use --stage1 nnunet"
)


def totalsegmentator_available() -> bool:
    """Whether the TotalSegmentator package can be imported (looked up without importing it)."""
    return importlib.util.find_spec("totalsegmentator") is not None


def require_totalsegmentator() -> str:
    """The installed TotalSegmentator version.

    Raises:
        InputError: the package is not installed (with how to install it).
    """
    if not totalsegmentator_available():
        raise InputError("--stage1 totalsegmentator: the TotalSegmentator package is not installed", fix=INSTALL_FIX)
    try:
        return version("TotalSegmentator")
    except PackageNotFoundError:  # importable without metadata (e.g. a source checkout on sys.path)
        return "unknown"


def choose_task(task: str, *, image_is_ct: bool) -> str:
    """TotalSegmentator's task for an image: ``auto`` picks ``total`` for a CT and ``total_mr`` for an MRI.

    Raises:
        InputError: an unknown task, or the CT task ``total`` for an image that is no CT (its values are not
            Hounsfield units). ``total_mr`` runs on either modality.
    """
    if task == "auto":
        return CT_TASK if image_is_ct else MR_TASK
    if task not in TASK_CONVENTIONS:
        raise InputError(f"unknown TotalSegmentator task {task!r}", fix=f"use auto, {CT_TASK} (CT) or {MR_TASK} (MRI)")
    if task == CT_TASK and not image_is_ct:
        raise InputError(
            "TotalSegmentator's task 'total' is for CT, and this image looks like an MRI (its values are not "
            "Hounsfield units: nothing at or below -50)",
            fix=f"use --totalseg-task {MR_TASK} (or auto) for an MRI",
        )
    return task


def device_name(device_type: str, index: int | None) -> str:
    """TotalSegmentator's name of a resolved torch device: "gpu" (or "gpu:N" after the first), "cpu", "mps"."""
    if device_type != "cuda":
        return device_type
    return "gpu" if not index else f"gpu:{index}"


def _weights_dir() -> Path:
    from totalsegmentator.config import get_weights_dir

    return Path(get_weights_dir())


def run_totalsegmentator(image: Path, output: Path, *, task: str, fast: bool, device: str) -> None:
    """Run TotalSegmentator's Python API on a NIfTI file and write its multi-label map to ``output``.

    Args:
        device: TotalSegmentator's spelling (:func:`device_name`).

    Raises:
        InputError: the package is not installed.
    """
    installed = require_totalsegmentator()
    # lazy: TotalSegmentator, torch and nnU-Net load only when this source runs
    from totalsegmentator.python_api import totalsegmentator

    from .environment import nnunet_environment
    from .nnunet_adapter import prints_to_log

    weights = str(_weights_dir())
    # the values TotalSegmentator itself sets (config.setup_nnunet), so that they are restored after the call
    variables = {name: weights for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    with nnunet_environment(variables), prints_to_log("totalsegmentator", "nnunetv2"):
        log.info("TotalSegmentator %s task %s%s on %s", installed, task, " (fast)" if fast else "", device)
        totalsegmentator(image, output, ml=True, task=task, fast=fast, device=device, quiet=True)
