"""Stage-1 sources for the pipeline (the ``Stage1Source`` protocol of :mod:`spineinstanceseg.pipeline.sources`).

* :class:`NnUNetSource`: a trained nnU-Net v2 model (:class:`.model.Stage1Model`), e.g. the bundled one;
* :class:`~spineinstanceseg.pipeline.sources.MaskSource`: an existing semantic mask file (any tool or manual, any
  supported label convention) used in place of stage 1 (re-exported here);
* :class:`TotalSegmentatorSource`: TotalSegmentator's CT ``total`` or MR ``total_mr`` task, when the user has
  installed the ``TotalSegmentator`` package; its output is converted to our classes.

Each source has a one-line ``description`` that the run's log and report show, so a result always says where its
semantic mask came from.
"""

from __future__ import annotations

import importlib.util
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..devices import ResolvedDevice, resolve_device
from ..errors import InputError, ModelError
from ..io import read_label_map, write_volume
from ..pipeline.sources import MaskSource
from ..pipeline.validate import align_mask
from ..progress import Progress
from ..volume import Volume

__all__ = [
    "NnUNetSource",
    "MaskSource",
    "TotalSegmentatorSource",
    "BUNDLED_STAGE1_NAME",
    "bundled_stage1_dir",
    "bundled_stage1_available",
    "bundled_source",
]

log = logging.getLogger(__name__)

BUNDLED_STAGE1_NAME = "stage1_phantom_v1"


def bundled_stage1_dir() -> Path:
    """Folder of the stage-1 nnU-Net model shipped with the package (trained on phantoms + 2 real CTs)."""
    return Path(__file__).resolve().parent.parent / "models" / BUNDLED_STAGE1_NAME


def bundled_stage1_available() -> bool:
    folder = bundled_stage1_dir()
    return (folder / "plans.json").is_file() and any(folder.glob("fold_*/checkpoint_final.pth"))


class NnUNetSource:
    """Stage 1 by a trained nnU-Net v2 model, loaded once (see :class:`.model.Stage1Model` for the arguments)."""

    def __init__(
        self,
        folder: str | Path,
        *,
        folds: Sequence[int | str] | None = None,
        checkpoint: str = "checkpoint_final.pth",
        device: str = "auto",
        use_mirroring: bool | None = None,
    ) -> None:
        from .model import Stage1Model

        self.model = Stage1Model(folder, folds=folds, checkpoint=checkpoint, device=device, use_mirroring=use_mirroring)
        folds_text = ",".join(str(f) for f in self.model.folds)
        mirroring = "on" if self.model.info()["use_mirroring"] else "off"
        self.description = (
            f"nnU-Net v2 model {self.model.name} ({self.model.folder}; folds {folds_text}; "
            f"{self.model.checkpoint}; device {self.model.device}; mirroring {mirroring})"
        )

    def model_info(self) -> dict:
        return self.model.info()

    def predict(self, image: Volume, *, progress: Progress) -> tuple[Volume, list[str]]:
        before = len(self.model.warnings)
        mask = self.model.predict(image, progress=progress)
        return mask, list(self.model.warnings[before:])


def bundled_source(*, device: str = "auto", use_mirroring: bool | None = None) -> NnUNetSource:
    """The bundled stage-1 model (checksums verified); ``use_mirroring=None`` follows its card (on)."""
    if not bundled_stage1_available():
        raise ModelError(
            "the bundled stage-1 model is missing from this installation",
            fix="reinstall spineinstanceseg, pass --stage1-model DIR, or give an existing mask with --mask",
            path=bundled_stage1_dir(),
        )
    return NnUNetSource(bundled_stage1_dir(), folds=("all",), device=device, use_mirroring=use_mirroring)


_TOTALSEG_TASKS = {"total": "totalseg_total", "total_mr": "totalseg_total_mr"}


def _totalseg_device(device: ResolvedDevice) -> str:
    """TotalSegmentator's name of a device: "gpu" (or "gpu:N" for another than the first), "cpu", "mps"."""
    if device.type != "cuda":
        return device.type
    return "gpu" if not device.index else f"gpu:{device.index}"


class TotalSegmentatorSource:
    """Stage 1 by TotalSegmentator (installed separately by the user: ``pip install TotalSegmentator``).

    Args:
        task: "total" (CT) or "total_mr" (MRI). Output labels are converted with the ``totalseg_total`` or
            ``totalseg_total_mr`` convention (vertebrae, sacrum, discs where the task has them, cord as canal).
        device: "auto", "cpu", "cuda", "cuda:N" or "mps" (see :mod:`spineinstanceseg.devices`); passed on in
            TotalSegmentator's spelling ("gpu", "gpu:N", "cpu", "mps").
        fast: TotalSegmentator's 3 mm model.
    """

    def __init__(self, task: str = "total", *, device: str = "auto", fast: bool = False) -> None:
        if task not in _TOTALSEG_TASKS:
            raise InputError(f"unsupported TotalSegmentator task {task!r}", fix="use total (CT) or total_mr (MRI)")
        if importlib.util.find_spec("totalsegmentator") is None:
            raise InputError(
                "the TotalSegmentator package is not installed",
                fix="install it (pip install TotalSegmentator; mind its licence for commercial use) or use another "
                "stage-1 source",
            )
        self.task, self.fast = task, fast
        self.device = _totalseg_device(resolve_device(device))
        self.description = f"TotalSegmentator task {task}{' (fast)' if fast else ''} on {self.device}, converted"

    def model_info(self) -> dict:
        from importlib.metadata import version

        return {
            "name": f"TotalSegmentator {self.task}",
            "path": None,
            "sha256": None,
            "version": version("TotalSegmentator"),
        }

    def predict(self, image: Volume, *, progress: Progress) -> tuple[Volume, list[str]]:
        from totalsegmentator.python_api import totalsegmentator

        from ..conventions import to_internal

        progress.update(0.0, f"TotalSegmentator {self.task}")
        with tempfile.TemporaryDirectory(prefix="spineseg-totalseg-") as tmp:
            source = write_volume(image, Path(tmp) / "image.nii.gz")
            output = Path(tmp) / "labels.nii.gz"
            totalsegmentator(source, output, ml=True, task=self.task, fast=self.fast, device=self.device, quiet=True)
            labels = read_label_map(output)
        converted = to_internal(labels, _TOTALSEG_TASKS[self.task])
        mask, warnings = align_mask(converted.semantic, image)
        progress.update(1.0, "TotalSegmentator done")
        return mask, [*converted.notes, *warnings]
