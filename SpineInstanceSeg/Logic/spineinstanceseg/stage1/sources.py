"""Stage-1 sources: what turns an image into the semantic mask that stage 2 splits.

* :class:`Stage1Source`: the protocol the pipeline (:func:`spineinstanceseg.pipeline.segment`) calls;
* :class:`NnUNetSource`: a trained nnU-Net v2 model (:class:`.model.Stage1Model`), e.g. the bundled one;
* :class:`MaskSource`: an existing semantic mask (a file in any supported label convention, or a Volume) used in
  place of stage 1;
* :class:`TotalSegmentatorSource`: TotalSegmentator's CT ``total`` or MR ``total_mr`` task, when the user has
  installed the ``TotalSegmentator`` package (:mod:`.totalseg_adapter`); its output is converted to our classes.

Each source has a one-line ``description`` that the run's log and report show, so a result always says where its
semantic mask came from. :func:`align_mask` puts a given mask on the image grid and checks its labels.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from ..conventions import to_internal
from ..devices import resolve_device
from ..errors import InputError, ModelError
from ..hashing import sha256_file
from ..io import read_label_map, write_volume
from ..progress import Progress
from ..resample import resample_to_grid
from ..semantic import SEMANTIC_NAMES
from ..volume import Volume
from .totalseg_adapter import CT_TASK, MR_TASK, TASK_CONVENTIONS, require_totalsegmentator, run_totalsegmentator
from .totalseg_adapter import device_name as totalseg_device

__all__ = [
    "Stage1Source",
    "NnUNetSource",
    "MaskSource",
    "TotalSegmentatorSource",
    "align_mask",
    "BUNDLED_STAGE1_NAME",
    "bundled_stage1_dir",
    "bundled_stage1_available",
    "bundled_source",
]

log = logging.getLogger(__name__)

BUNDLED_STAGE1_NAME = "stage1_v5"


def bundled_stage1_dir() -> Path:
    """Folder of the stage-1 nnU-Net model shipped with the package (its ``MODEL_CARD.md`` says what it saw)."""
    return Path(__file__).resolve().parent.parent / "models" / BUNDLED_STAGE1_NAME


def bundled_stage1_available() -> bool:
    folder = bundled_stage1_dir()
    return (folder / "plans.json").is_file() and any(folder.glob("fold_*/checkpoint_final.pth"))


class Stage1Source(Protocol):
    """Anything that turns an image into a semantic mask on the image grid."""

    description: str  # one line for logs and the report

    def model_info(self) -> dict: ...

    def predict(self, image: Volume, *, progress: Progress) -> tuple[Volume, list[str]]:
        """Semantic label map on ``image``'s grid, plus warnings for the report."""
        ...


def align_mask(mask: Volume, image: Volume, *, source: str | None = None) -> tuple[Volume, list[str]]:
    """Put a given semantic mask on the image grid (nearest neighbour) and check its labels.

    Returns:
        The mask on the image grid and warnings for the report.

    Raises:
        InputError: the mask holds labels that are not semantic classes, or does not overlap the image.
    """
    warnings: list[str] = []
    values = set(int(v) for v in np.unique(mask.array)) - {0}
    unknown = sorted(values - set(SEMANTIC_NAMES))
    if unknown:
        raise InputError(
            f"the mask holds label values {unknown} that are not semantic classes "
            f"({', '.join(f'{k} {v}' for k, v in SEMANTIC_NAMES.items())})",
            fix="convert it with --mask-convention (e.g. verse, spider, totalseg_total) or relabel it",
            path=source,
        )
    if not mask.same_grid(image):
        differences = "; ".join(mask.geometry_differences(image))
        warnings.append(f"the mask was on another grid ({differences}) and was resampled onto the image grid")
        log.warning(warnings[-1])
        mask = resample_to_grid(mask, image)
        if not np.any(mask.array):
            raise InputError(
                "the mask does not overlap the image in physical space",
                fix="pass the mask that belongs to this image (same patient, same series)",
                path=source,
            )
    return mask, warnings


@dataclass
class MaskSource:
    """A semantic mask given by the user (a file in any supported convention, or a Volume) instead of stage 1.

    Attributes:
        mask: Path of the mask file or a label :class:`Volume`.
        convention: Label convention of the mask ("semantic" = our classes; others are converted).
        from_model: The mask is a stage-1 model's prediction, replayed (benchmarks that run stage 1 once and
            the steps after it several times): the pipeline then treats it as that model's output, with the
            steps it runs only on model output (CT bone boundary by default, dropping slivers at the edge).
    """

    mask: str | os.PathLike[str] | Volume
    convention: str = "semantic"
    from_model: bool = False
    description: str = field(init=False)

    def __post_init__(self) -> None:
        where = "in-memory mask" if isinstance(self.mask, Volume) else str(self.mask)
        if self.from_model:
            self.description = f"a stage-1 model's prediction replayed ({where}, convention {self.convention})"
            return
        self.description = f"existing mask {where} (convention {self.convention}); stage 1 was not run"

    def model_info(self) -> dict:
        if isinstance(self.mask, Volume):
            return {"name": "existing mask", "path": None, "sha256": None}
        return {"name": "existing mask", "path": str(self.mask), "sha256": sha256_file(self.mask)}

    def predict(self, image: Volume, *, progress: Progress) -> tuple[Volume, list[str]]:
        source = None if isinstance(self.mask, Volume) else str(self.mask)
        mask = self.mask if isinstance(self.mask, Volume) else read_label_map(self.mask)
        if self.convention != "semantic":
            mask = to_internal(mask, self.convention).semantic
        progress.update(1.0, "mask read")
        return align_mask(mask, image, source=source)


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
        # lazy: torch and nnU-Net load only when an nnU-Net model is used (not for a given mask)
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


class TotalSegmentatorSource:
    """Stage 1 by TotalSegmentator (installed separately by the user: ``pip install TotalSegmentator``).

    Runs TotalSegmentator's Python API on the image (through :mod:`.totalseg_adapter`) and converts its labels
    to our semantic classes with the task's label convention: ``total`` (CT; 27 L5 ... 50 C1 vertebrae, 25 sacrum
    and 26 S1 as sacrum, 79 spinal cord as canal; no discs) or ``total_mr`` (MRI; one vertebrae class, sacrum,
    discs, cord as canal). Only the semantic classes are kept: stage 2 finds the vertebrae again, and levels are
    named by our rules.

    Args:
        task: "total" (CT) or "total_mr" (MRI); choose it for an image with :func:`.totalseg_adapter.choose_task`.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps" (see :mod:`spineinstanceseg.devices`); passed on in
            TotalSegmentator's spelling ("gpu", "gpu:N", "cpu", "mps").
        fast: TotalSegmentator's 3 mm model (one network instead of several at 1.5 mm: much faster, less exact).

    Raises:
        InputError: an unknown task, or the TotalSegmentator package is not installed (with how to install it).
    """

    def __init__(self, task: str = CT_TASK, *, device: str = "auto", fast: bool = False) -> None:
        if task not in TASK_CONVENTIONS:
            raise InputError(f"unknown TotalSegmentator task {task!r}", fix=f"use {CT_TASK} (CT) or {MR_TASK} (MRI)")
        self.version = require_totalsegmentator()
        self.task, self.fast = task, fast
        resolved = resolve_device(device)
        self.device = totalseg_device(resolved.type, resolved.index)
        self.description = (
            f"TotalSegmentator {self.version} task {task}{' (fast, 3 mm)' if fast else ''} on {self.device}, "
            f"converted from the {TASK_CONVENTIONS[task]} convention"
        )

    def model_info(self) -> dict:
        return {
            "name": f"TotalSegmentator {self.task}{' fast' if self.fast else ''}",
            "path": None,
            "sha256": None,
            "version": self.version,
        }

    def predict(self, image: Volume, *, progress: Progress) -> tuple[Volume, list[str]]:
        progress.update(0.0, f"TotalSegmentator {self.task}")
        with tempfile.TemporaryDirectory(prefix="spineseg-totalseg-") as tmp:
            source = write_volume(image, Path(tmp) / "image.nii.gz")
            output = Path(tmp) / "labels.nii.gz"
            run_totalsegmentator(source, output, task=self.task, fast=self.fast, device=self.device)
            labels = read_label_map(output)
        converted = to_internal(labels, TASK_CONVENTIONS[self.task])
        mask, warnings = align_mask(converted.semantic, image)
        progress.update(1.0, "TotalSegmentator done")
        return mask, [*converted.notes, *warnings]
