"""Output writers of a segmentation result: label maps, Slicer ``.seg.nrrd`` and markups, CSV, STL, PNG, report.

Every writer is a pure function of a :class:`~spineinstanceseg.results.SegmentationResult` that writes
atomically (temporary name, then rename). :func:`write_all` writes a whole case folder all-or-nothing. Nothing
here imports Slicer or VTK (the Slicer adapter is separate); coordinates in files are LPS millimetres unless a
column or field says RAS.
"""

from __future__ import annotations

from .colors import level_color, vertebra_color
from .markups import write_centroids_csv, write_markups
from .preview import save_preview
from .report import collect_versions, write_report
from .seg_nrrd import write_seg_nrrd
from .segments import SegmentSpec, SegmentTable, segment_table
from .stl import write_stl
from .writer import DEFAULT_OUTPUTS, OUTPUT_KINDS, case_paths, write_all

__all__ = [
    "write_all",
    "case_paths",
    "OUTPUT_KINDS",
    "DEFAULT_OUTPUTS",
    "write_seg_nrrd",
    "write_markups",
    "write_centroids_csv",
    "write_stl",
    "save_preview",
    "write_report",
    "collect_versions",
    "segment_table",
    "SegmentSpec",
    "SegmentTable",
    "level_color",
    "vertebra_color",
]
