"""Segment one input file (or DICOM folder) and write all outputs of the case: used by CLI, batch and Slicer."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ..devices import resolve_device
from ..errors import InputError
from ..io import is_volume_path, read_volume
from ..outputs.writer import write_all
from ..progress import CancelToken
from .models import load_stage1, load_stage2
from .options import SegmentOptions, case_name_of
from .run import segment
from .validate import check_image

__all__ = ["segment_file", "find_mask_for", "report_path_of"]

log = logging.getLogger(__name__)


def report_path_of(out_dir: str | Path, case_name: str) -> Path:
    """Where the report of a finished case lies (its presence marks the case as complete)."""
    return Path(out_dir) / case_name / f"{case_name}_report.json"


def find_mask_for(input_path: Path, mask: str | None) -> str | None:
    """The mask file for ``input_path``: ``mask`` itself, or the file in folder ``mask`` with the same case name."""
    if mask is None:
        return None
    mask_path = Path(mask)
    if not mask_path.is_dir():
        return str(mask_path)
    case = case_name_of(input_path)
    for candidate in sorted(mask_path.iterdir()):
        if is_volume_path(candidate) and case_name_of(candidate) in (case, f"{case}_seg", f"{case}_semantic"):
            return str(candidate)
    raise InputError(
        f"no mask named like case {case!r} in the mask folder",
        fix=f"add {case}.nii.gz (or {case}_seg.nii.gz) to the mask folder",
        path=mask_path,
    )


def segment_file(
    input_path: str | Path,
    out_dir: str | Path,
    options: SegmentOptions,
    *,
    case_name: str | None = None,
    progress: Callable[[str, float, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Path]:
    """Read ``input_path``, segment it and write the outputs to ``out_dir/<case_name>/``.

    Outputs appear only when complete (written to a temporary folder, then renamed): an exception, a cancel or
    Ctrl-C (KeyboardInterrupt) leaves no case folder and no temporary one behind.

    Returns:
        Paths of the files written, by kind ("instances", "seg.nrrd", "report", ...).

    Raises:
        InputError: unreadable input, or a device this machine cannot use (checked before anything is read).
    """
    input_path = Path(input_path)
    case_name = case_name or case_name_of(input_path)
    device = resolve_device(options.device)  # an unusable device fails first, with or without --mask
    log.info("case %s runs on %s", case_name, device.describe())
    image = read_volume(input_path)
    check_image(image, source=str(input_path))  # before loading models: bad input fails in a moment
    stage1 = load_stage1(options, mask_path=find_mask_for(input_path, options.mask), image=image)
    stage2 = load_stage2(options)
    result = segment(
        image,
        stage1=stage1,
        stage2=stage2,
        device=device.name,
        lowest=options.lowest,
        anchor=options.anchor,
        with_t13=options.with_t13,
        with_l6=options.with_l6,
        bone_boundary=None if options.bone_boundary else False,  # None: not on a given mask
        batch_size=options.batch_size,
        pitch_search=options.pitch_search,
        progress=progress,
        cancel=cancel,
        source=str(input_path),
    )
    if cancel is not None:
        cancel.raise_if_cancelled()
    inputs = {"image": str(input_path), "options": options.to_dict()}
    return write_all(
        result,
        Path(out_dir),
        case_name=case_name,
        image=image,
        exports=options.exports,
        label_format=options.label_format,
        inputs=inputs,
        progress=progress,
        cancel=cancel,
    )
