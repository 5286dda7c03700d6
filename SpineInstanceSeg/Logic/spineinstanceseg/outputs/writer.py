"""Write every output of one case into ``out_dir/<case_name>/``, all or nothing.

Files (``{case}`` = case name)::

    {case}_instances{label_format}   instance label map ("nifti" export; the chosen label format)
    {case}_semantic{label_format}    semantic label map (vertebra 1, disc 2, canal 3, sacrum 4)
    {case}_instances.nrrd            ... the same as NRRD ("nrrd" export, when the label format is not NRRD)
    {case}_semantic.nrrd
    {case}.seg.nrrd                  Slicer segmentation ("seg.nrrd")
    {case}_centroids.mrk.json        Slicer markups, one point per vertebra ("markups")
    {case}_centroids.csv             centroid table ("csv")
    {case}_preview.png               sagittal + coronal preview ("preview")
    stl/<vertebra>.stl               one surface per vertebra, LPS ("stl")
    {case}_report.json               written last; marks the case as complete ("report")

Everything is written into a hidden temporary sibling folder that is renamed to ``out_dir/<case_name>`` only when
complete, so a crash or a cancel leaves no partial case (an earlier complete case folder is replaced only then).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ..atomic import atomic_directory
from ..errors import InputError
from ..io import write_volume
from ..output_kinds import DEFAULT_OUTPUTS, LABEL_FORMATS, OUTPUT_KINDS
from ..progress import CancelToken, Progress
from ..results import SegmentationResult
from ..volume import Volume
from .markups import write_centroids_csv, write_markups
from .preview import save_preview
from .report import write_report
from .seg_nrrd import write_seg_nrrd
from .segments import segment_table
from .stl import write_stl

__all__ = ["OUTPUT_KINDS", "DEFAULT_OUTPUTS", "LABEL_FORMATS", "write_all", "case_paths"]

log = logging.getLogger(__name__)


def case_paths(folder: str | os.PathLike[str], case_name: str, *, label_format: str = ".nii.gz") -> dict[str, Path]:
    """Where each output of a case lies inside ``folder`` (the case folder), by kind."""
    folder = Path(folder)
    return {
        "instances": folder / f"{case_name}_instances{label_format}",
        "semantic": folder / f"{case_name}_semantic{label_format}",
        "instances_nrrd": folder / f"{case_name}_instances.nrrd",
        "semantic_nrrd": folder / f"{case_name}_semantic.nrrd",
        "seg.nrrd": folder / f"{case_name}.seg.nrrd",
        "markups": folder / f"{case_name}_centroids.mrk.json",
        "csv": folder / f"{case_name}_centroids.csv",
        "preview": folder / f"{case_name}_preview.png",
        "stl": folder / "stl",
        "report": folder / f"{case_name}_report.json",
    }


def _check_options(exports: Iterable[str], label_format: str, case_name: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(e.strip().lower() for e in exports))
    unknown = [k for k in kinds if k not in OUTPUT_KINDS]
    if unknown:
        raise InputError(f"unknown output kind(s) {unknown}", fix=f"choose from {', '.join(OUTPUT_KINDS)}")
    if label_format not in LABEL_FORMATS:
        raise InputError(f"unsupported label map format {label_format!r}", fix=f"use one of {', '.join(LABEL_FORMATS)}")
    if not case_name or case_name in (".", "..") or any(sep in case_name for sep in ("/", "\\", os.sep)):
        raise InputError(f"invalid case name {case_name!r}", fix="use a plain file-name-like case name")
    return kinds


def write_all(
    result: SegmentationResult,
    out_dir: str | os.PathLike[str],
    *,
    case_name: str,
    image: Volume | None = None,
    exports: Iterable[str] = DEFAULT_OUTPUTS,
    label_format: str = ".nii.gz",
    inputs: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    stl_smooth: float = 0.5,
    progress: Callable[[str, float, str], None] | None = None,
    cancel: CancelToken | None = None,
) -> dict[str, Path]:
    """Write the chosen outputs of one case to ``out_dir/<case_name>/`` atomically (see module docstring).

    Args:
        result: Segmentation result (volumes on the input grid).
        out_dir: Parent folder of the case folder.
        case_name: Case folder name and file-name prefix.
        image: Input image for the preview background (optional).
        exports: Output kinds from :data:`OUTPUT_KINDS`.
        label_format: Extension of the label maps of the "nifti" export (".nii.gz", ".nii", ".nrrd", ".mha").
        inputs: Stored in the report (input path, options ...).
        versions: Package versions for the report (default: detected).
        stl_smooth: Gaussian sigma in mm for the STL surfaces (0 = exact voxel surface).
        progress: ``callback(step, fraction, message)``.
        cancel: Polled between files; a cancel leaves nothing behind.

    Returns:
        ``{kind: final path}``: "instances", "semantic" (label maps; with only the "nrrd" export these are the
        NRRD files), "instances_nrrd", "semantic_nrrd", "seg.nrrd", "markups", "csv", "preview", "stl" (folder),
        "stl:<name>" (each surface), "report" — only the kinds written.
    """
    kinds = _check_options(exports, label_format, case_name)
    reporter = Progress(progress, cancel, step="writing outputs")
    final_dir = Path(out_dir) / case_name
    steps = [k for k in OUTPUT_KINDS if k in kinds and k != "report"]
    written: dict[str, Path] = {}
    # The segment list (disc naming needs a connected-component pass) is shared by the .seg.nrrd and the preview.
    table = segment_table(result, include_semantic=True) if {"seg.nrrd", "preview"} & set(kinds) else None
    with atomic_directory(final_dir) as tmp:
        where = case_paths(tmp, case_name, label_format=label_format)
        for n, kind in enumerate(steps):
            reporter.update(n / (len(steps) + 1), f"writing {kind}")
            if kind == "nifti":
                written["instances"] = write_volume(result.instances, where["instances"])
                written["semantic"] = write_volume(result.semantic, where["semantic"])
            elif kind == "nrrd":
                if label_format == ".nrrd" and "nifti" in kinds:
                    continue  # the label maps are NRRD already
                written["instances_nrrd"] = write_volume(result.instances, where["instances_nrrd"])
                written["semantic_nrrd"] = write_volume(result.semantic, where["semantic_nrrd"])
                written.setdefault("instances", written["instances_nrrd"])
                written.setdefault("semantic", written["semantic_nrrd"])
            elif kind == "seg.nrrd":
                written["seg.nrrd"] = write_seg_nrrd(result, where["seg.nrrd"], table=table)
            elif kind == "markups":
                written["markups"] = write_markups(result, where["markups"], name=f"{case_name} vertebrae")
            elif kind == "csv":
                written["csv"] = write_centroids_csv(result, where["csv"])
            elif kind == "preview":
                written["preview"] = save_preview(
                    result, where["preview"], image=image, title=_title(case_name, result), table=table
                )
            elif kind == "stl":
                surfaces = write_stl(result, where["stl"], smooth=stl_smooth)
                written["stl"] = where["stl"]
                written.update({f"stl:{name}": p for name, p in surfaces.items()})
        reporter.check()
        if "report" in kinds:
            reporter.update(len(steps) / (len(steps) + 1), "writing report")
            written["report"] = write_report(
                result, where["report"], inputs=inputs, versions=versions, outputs=written, case_name=case_name
            )
        reporter.check()  # a cancel up to here discards the temporary folder
    reporter.update(1.0, f"outputs in {final_dir}")
    log.info("wrote %d outputs of case %s to %s", len(written), case_name, final_dir)
    return {kind: final_dir / path.relative_to(tmp) for kind, path in written.items()}


def _title(case_name: str, result: SegmentationResult) -> str:
    return f"{case_name}: {len(result.vertebrae)} vertebrae - {result.naming_rule}"
