"""Options of one segmentation run, shared by the CLI, the batch runner and the Slicer module."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..atomic import full_suffix
from ..devices import parse_device
from ..errors import InputError
from ..output_kinds import DEFAULT_OUTPUTS, LABEL_FORMATS, OUTPUT_KINDS
from ..stage1_names import STAGE1_SOURCES, TOTALSEG_TASKS

__all__ = ["SegmentOptions", "STAGE1_SOURCES", "TOTALSEG_TASKS", "parse_exports", "case_name_of"]

# Where stage 1 comes from (--stage1, STAGE1_SOURCES): an nnU-Net model (the bundled one or --stage1-model), or the
# TotalSegmentator package. A given mask (--mask) replaces stage 1 whichever is chosen; it is no stage-1 source of
# its own here.


def parse_exports(text: str | None) -> tuple[str, ...]:
    """ "stl,nrrd" -> the default outputs plus those; unknown names are an error (see :mod:`..output_kinds`)."""
    if not text:
        return DEFAULT_OUTPUTS
    asked = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [a for a in asked if a not in OUTPUT_KINDS]
    if unknown:
        raise InputError(f"unknown export(s) {unknown}", fix=f"choose from {', '.join(OUTPUT_KINDS)}")
    merged = list(DEFAULT_OUTPUTS)
    merged += [a for a in asked if a not in merged]
    return tuple(merged)


def case_name_of(path: str | Path) -> str:
    """Case name of an input: file name without its image extension (and nnU-Net's _0000), or folder name."""
    path = Path(path)
    if path.is_dir():
        return path.name
    suffix = full_suffix(path)
    name = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return name[:-5] if name.endswith("_0000") else name


@dataclass(frozen=True)
class SegmentOptions:
    """Everything that decides how one case is segmented and what is written.

    Attributes:
        stage1_model: nnU-Net v2 model folder; ``None`` uses the bundled stage-1 model.
        folds: nnU-Net folds to use (``None``: all folds found in the model folder).
        checkpoint: nnU-Net checkpoint file name.
        stage1_mirroring: nnU-Net's test-time mirroring in stage 1 (8x the network calls for a little accuracy);
            ``None`` follows the model's card (nnU-Net's default, on, for models without one).
        mask: Existing semantic mask to use instead of stage 1 (a file, or a folder of masks named like the inputs).
        mask_convention: Label convention of ``mask``.
        stage1: Stage-1 source (:data:`STAGE1_SOURCES`): "nnunet" or "totalsegmentator" (the TotalSegmentator
            package, installed separately; not with ``stage1_model`` or ``mask``).
        totalseg_task / totalseg_fast: TotalSegmentator's task (:data:`TOTALSEG_TASKS`) and its 3 mm model.
        stage2_model: Stage-2 model folder; ``None`` uses the bundled one.
        device: "auto", "cpu", "cuda", "cuda:N" or "mps" (see :mod:`spineinstanceseg.devices`).
        lowest / anchor / with_t13 / with_l6: Level naming.
        bone_boundary: On CT, move the vertebra surfaces of a stage-1 model to the bone edge seen in the image
            (:mod:`spineinstanceseg.stage2.bone_boundary`); a given ``mask`` is never changed.
        pitch_search: Also try the stage-2 windows the network is unsure of turned about the left-right axis
            (:mod:`spineinstanceseg.stage2.window_pitch`); off saves about 2 % of the CPU time.
        exports: Outputs to write (:data:`~spineinstanceseg.output_kinds.OUTPUT_KINDS`).
        label_format: File extension of the label maps (:data:`~spineinstanceseg.output_kinds.LABEL_FORMATS`).
    """

    stage1_model: str | None = None
    folds: tuple[int | str, ...] | None = None
    checkpoint: str = "checkpoint_final.pth"
    stage1_mirroring: bool | None = None
    mask: str | None = None
    mask_convention: str = "semantic"
    stage1: str = "nnunet"
    totalseg_task: str = "auto"
    totalseg_fast: bool = False
    stage2_model: str | None = None
    device: str = "auto"
    lowest: str | None = None
    anchor: str | None = None
    with_t13: bool = False
    with_l6: bool = False
    bone_boundary: bool = True
    pitch_search: bool = True
    exports: tuple[str, ...] = field(default=DEFAULT_OUTPUTS)
    label_format: str = ".nii.gz"
    batch_size: int = 4

    def __post_init__(self) -> None:
        parse_device(self.device)  # the spelling only; whether it is usable is checked where the models load
        if self.label_format not in LABEL_FORMATS:
            raise InputError(f"unsupported label format {self.label_format!r}", fix=f"use {', '.join(LABEL_FORMATS)}")
        if self.mask and self.stage1_model:
            raise InputError("both --mask and --stage1-model were given", fix="give only one stage-1 source")
        self._check_stage1_source()

    def _check_stage1_source(self) -> None:
        """The stage-1 source and TotalSegmentator's options are known, and TotalSegmentator is alone."""
        if self.stage1 not in STAGE1_SOURCES:
            raise InputError(f"unknown stage-1 source {self.stage1!r}", fix=f"use {' or '.join(STAGE1_SOURCES)}")
        if self.totalseg_task not in TOTALSEG_TASKS:
            raise InputError(
                f"unknown TotalSegmentator task {self.totalseg_task!r}", fix=f"use {', '.join(TOTALSEG_TASKS)}"
            )
        if self.stage1 != "totalsegmentator":
            if self.totalseg_fast or self.totalseg_task != "auto":
                raise InputError(
                    "--totalseg-task and --totalseg-fast apply only to TotalSegmentator as stage 1",
                    fix="add --stage1 totalsegmentator, or drop them",
                )
            return
        other = "--stage1-model" if self.stage1_model else "--mask" if self.mask else None
        if other:
            raise InputError(
                f"both --stage1 totalsegmentator and {other} were given", fix="give only one stage-1 source"
            )

    def to_dict(self) -> dict:
        return asdict(self)
