"""Exports of a segmentation node: one STL surface per segment, a labelmap NRRD, a ``.seg.nrrd``.

Every export writes atomically (temporary name, then rename) and checks what it wrote: Slicer's STL export
returns success and writes nothing when the segmentation logic has no scene, so the files are verified here
(non-empty, closed surfaces) rather than trusting a return value.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import SpineSegError
from ..io import write_volume
from .mrml_adapter import LABEL_VALUE_TAG
from .volume_nodes import volume_from_node

log = logging.getLogger(__name__)

__all__ = [
    "export_stl",
    "export_labelmap_nrrd",
    "labelmap_from_segmentation",
    "iter_segment_masks",
    "export_seg_nrrd",
    "surface_edges",
    "surface_is_closed",
    "segment_label_values",
]


class ExportError(SpineSegError):
    """Slicer did not write an export as asked."""


def _segments_logic(scene):
    import slicer

    logic = slicer.vtkSlicerSegmentationsModuleLogic()
    logic.SetMRMLScene(scene)  # without a scene the STL export silently writes nothing
    return logic


def _string_array(values: Sequence[str]):
    import vtk

    array = vtk.vtkStringArray()
    for value in values:
        array.InsertNextValue(value)
    return array


def _tag(segment, name: str) -> str | None:
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def segment_label_values(segmentation_node) -> dict[str, int]:
    """``{segment_id: label value}``: the value stored by the adapter (tag), else the position 1..N."""
    segmentation = segmentation_node.GetSegmentation()
    values: dict[str, int] = {}
    for position, segment_id in enumerate(segmentation.GetSegmentIDs(), start=1):
        tag = _tag(segmentation.GetSegment(segment_id), LABEL_VALUE_TAG)
        values[segment_id] = int(tag) if tag and tag.lstrip("-").isdigit() else position
    return values


def surface_edges(path: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(triangles, boundary edges, non-manifold edges)`` of an STL file.

    A surface without boundary edges is closed (watertight). Non-manifold edges (shared by more than two
    triangles) are a different matter: Slicer's smoothed closed surfaces of real-shaped vertebrae have a few
    where voxels touch only along an edge, and printing and CAD tools repair them.
    """
    import vtk

    reader = vtk.vtkSTLReader()
    reader.SetFileName(str(path))
    reader.Update()
    cells = int(reader.GetOutput().GetNumberOfCells())
    if cells == 0:
        return 0, 0, 0
    clean = vtk.vtkCleanPolyData()  # STL repeats vertices per triangle: merge them before looking at edges
    clean.SetInputData(reader.GetOutput())
    counts = []
    for kind in ("Boundary", "NonManifold"):
        edges = vtk.vtkFeatureEdges()
        edges.SetInputConnection(clean.GetOutputPort())
        for other in ("Boundary", "NonManifold", "Feature", "Manifold"):
            getattr(edges, f"{other}EdgesOff")()
        getattr(edges, f"{kind}EdgesOn")()
        edges.Update()
        counts.append(int(edges.GetOutput().GetNumberOfCells()))
    return cells, counts[0], counts[1]


def surface_is_closed(path: str | os.PathLike[str]) -> tuple[int, bool]:
    """``(number of triangles, closed)`` of an STL file (closed = no boundary edges, i.e. no hole)."""
    cells, boundary, _ = surface_edges(path)
    return cells, cells > 0 and boundary == 0


def export_stl(
    segmentation_node,
    folder: str | os.PathLike[str],
    *,
    segment_ids: Sequence[str] | None = None,
    lps: bool = True,
) -> dict[str, Path]:
    """Write one closed-surface STL per segment into ``folder`` (file name = segment name).

    Surfaces are in world coordinates: Slicer applies the segmentation's parent transform, so the models sit
    where the patient is shown (unlike :func:`export_labelmap_nrrd`, which keeps the input file's grid).

    Args:
        segment_ids: Segments to export (default: all non-empty segments).
        lps: Write LPS coordinates (what most 3D printing and CAD tools expect from medical data); ``False``: RAS.

    Returns:
        ``{segment name: path}``.

    Raises:
        ExportError: Slicer wrote no file, an empty file, or an open surface for a segment.
    """
    scene = segmentation_node.GetScene()
    logic = _segments_logic(scene)
    segmentation = segmentation_node.GetSegmentation()
    ids = list(segment_ids) if segment_ids is not None else _non_empty_segments(segmentation_node)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".stl-partial-") as tmp:
        for segment_id in ids:  # one call per segment so that each file is known by its segment
            name = segmentation.GetSegment(segment_id).GetName()
            sub = Path(tmp) / segment_id
            sub.mkdir()
            logic.ExportSegmentsClosedSurfaceRepresentationToFiles(
                str(sub), segmentation_node, _string_array([segment_id]), "STL", lps, 1.0, False
            )
            files = sorted(sub.glob("*.stl"))
            if len(files) != 1:
                raise ExportError(
                    f"Slicer wrote {len(files)} STL files for segment {name!r} instead of one",
                    fix="check that the segment is not empty and that the segmentation node is in a scene",
                    path=folder,
                )
            cells, holes, non_manifold = surface_edges(files[0])
            if cells == 0 or holes:
                raise ExportError(
                    f"the STL surface of segment {name!r} is {'empty' if cells == 0 else 'not closed'}",
                    fix="check the segment in the Segment Editor (it may be empty or touch the volume border)",
                    path=files[0],
                )
            if non_manifold:
                log.warning("STL of %s: closed, with %d non-manifold edges (most printing tools repair these)",
                            name, non_manifold)  # fmt: skip
            written[name] = files[0]
        final: dict[str, Path] = {}
        for name, path in written.items():
            target = folder / f"{_file_stem(name)}.stl"
            shutil.move(str(path), target)
            final[name] = target
    return final


def _file_stem(name: str) -> str:
    return "".join(ch if (ch.isalnum() or ch in "-_ ") else "_" for ch in name).strip() or "segment"


def _non_empty_segments(segmentation_node) -> list[str]:
    import slicer

    segmentation = segmentation_node.GetSegmentation()
    ids = []
    for segment_id in segmentation.GetSegmentIDs():
        image = slicer.vtkOrientedImageData()
        slicer.vtkSlicerSegmentationsModuleLogic.GetSegmentBinaryLabelmapRepresentation(
            segmentation_node, segment_id, image
        )
        extent = image.GetExtent()
        if extent[1] >= extent[0] and extent[3] >= extent[2] and extent[5] >= extent[4]:
            ids.append(segment_id)
    return ids


def iter_segment_masks(segmentation_node, segment_ids: Sequence[str], *, reference_volume_node):
    """Yield ``(segment_id, boolean mask)`` for each segment, on the reference volume's voxel grid.

    Each segment is exported on its own (Slicer resamples it onto the volume's grid, parent transforms included),
    so overlapping segments keep all their voxels.

    Raises:
        ExportError: Slicer could not export a segment, or exported it on another grid.
    """
    import slicer

    scene = segmentation_node.GetScene()
    _segments_logic(scene)
    image = reference_volume_node.GetImageData()
    shape = tuple(image.GetDimensions()) if image is not None else None
    temp = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "__spineinstanceseg_export__")
    try:
        for segment_id in segment_ids:
            ok = slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                segmentation_node, _string_array([segment_id]), temp, reference_volume_node
            )
            if not ok:
                raise ExportError(f"Slicer could not export segment {segment_id!r}", fix="check the segment")
            mask = np.asarray(volume_from_node(temp, world=False).array) > 0
            if mask.shape != shape:
                raise ExportError(f"segment {segment_id!r} exported on a different grid", fix="check the volume")
            yield segment_id, mask
    finally:
        scene.RemoveNode(temp)


def labelmap_from_segmentation(segmentation_node, *, reference_volume_node, world: bool = False):
    """All segments as one label :class:`~spineinstanceseg.volume.Volume` on the reference volume's grid.

    Label values are those stored by the adapter (tag :data:`~.mrml_adapter.LABEL_VALUE_TAG`), else the
    segment's position 1..N in the segmentation (a file export; to use a segmentation as a stage-1 mask, read
    it by segment name and terminology with :func:`.segment_mask.mask_from_segmentation` instead). Where
    segments overlap, the later segment in the list wins.

    Args:
        world: Geometry with the reference volume's parent transform composed in (as the pipeline sees the
            input), else the volume's own local grid (as its file has it).
    """
    reference = volume_from_node(reference_volume_node, world=world)
    out = np.zeros(reference.shape, dtype=np.int32)
    values = segment_label_values(segmentation_node)
    for segment_id, mask in iter_segment_masks(
        segmentation_node, list(values), reference_volume_node=reference_volume_node
    ):
        out[mask] = values[segment_id]
    dtype = np.uint8 if out.max(initial=0) < 256 and out.min(initial=0) >= 0 else np.int16
    return reference.with_array(out.astype(dtype), is_label=True)


def export_labelmap_nrrd(
    segmentation_node,
    path: str | os.PathLike[str],
    *,
    reference_volume_node,
) -> Path:
    """Write all segments as one label map NRRD with the reference volume's exact voxel grid.

    The grid is the volume's own (local) one, as in the volume's own file, so the two overlay in any viewer;
    label values as in :func:`labelmap_from_segmentation` (VerSe codes or 1..N, disc and canal values).
    """
    labels = labelmap_from_segmentation(segmentation_node, reference_volume_node=reference_volume_node)
    return write_volume(labels, path)  # atomic


def export_seg_nrrd(segmentation_node, path: str | os.PathLike[str]) -> Path:
    """Write the segmentation node as a Slicer ``.seg.nrrd`` (names, colours, terminology, label values)."""
    import slicer

    scene = segmentation_node.GetScene()
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    try:
        with atomic_path(path) as tmp:
            storage.SetFileName(str(tmp))
            if not storage.WriteData(segmentation_node) or not Path(tmp).is_file():
                raise ExportError("Slicer could not write the .seg.nrrd file", fix="check the folder", path=path)
    finally:
        scene.RemoveNode(storage)
    return Path(path)
