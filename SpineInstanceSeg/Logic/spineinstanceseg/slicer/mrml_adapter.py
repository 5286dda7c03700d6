"""Results into the MRML scene: segmentation node, centroid markups and a confidence table.

The functions take plain inputs (a label :class:`~spineinstanceseg.volume.Volume` and :class:`SegmentInfo`
records), so they work for any source of labels; :func:`segment_infos_from_result` and :func:`add_result_to_scene`
connect them to a pipeline result, naming and colouring segments exactly like the file writers
(:mod:`spineinstanceseg.outputs.segments`).

Coordinates: the label volumes are on the input grid in world LPS (as :func:`.volume_nodes.volume_from_node`
gives it). With a reference volume node the segmentation uses that node's *local* voxel geometry and both new
nodes are placed under the node's parent transform, so everything lines up in world coordinates.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..volume import Volume
from .volume_nodes import (
    RAS_FROM_LPS,
    ijk_to_ras_matrix,
    node_geometry,
    numpy_to_vtk_matrix,
    parent_to_world_matrix,
)

__all__ = [
    "SegmentInfo",
    "ResultNodes",
    "CONFIDENCE_TAG",
    "LABEL_VALUE_TAG",
    "KIND_TAG",
    "vertebra_segment_ids",
    "segment_infos_from_result",
    "segmentation_from_labels",
    "markups_from_centroids",
    "confidence_table",
    "add_result_to_scene",
]

# Segment tags (also written by the .seg.nrrd writer), so confidence and label value survive save/load.
CONFIDENCE_TAG = "SpineInstanceSeg.confidence"
LABEL_VALUE_TAG = "SpineInstanceSeg.labelValue"
KIND_TAG = "SpineInstanceSeg.kind"


@dataclass(frozen=True)
class SegmentInfo:
    """One segment to create.

    Attributes:
        label: Voxel value of the segment in its layer (``layers[layer]``).
        name: Display name ("L5", "Vertebra 3", "L4-L5 disc").
        color_rgb: Colour, three floats in [0, 1].
        confidence: Stage-2 confidence in [0, 1] (vertebrae), else ``None``.
        centroid_lps: Centroid in world LPS mm (vertebrae get a markups point), else ``None``.
        terminology: Slicer ``TerminologyEntry`` string, or ``None``.
        layer: Index of the label volume that holds the segment (0 = the instance map).
        kind: "vertebra", "disc", "canal" or "sacrum".
    """

    label: int
    name: str
    color_rgb: tuple[float, float, float]
    confidence: float | None = None
    centroid_lps: tuple[float, float, float] | None = None
    terminology: str | None = None
    layer: int = 0
    kind: str = "vertebra"


@dataclass(frozen=True)
class ResultNodes:
    """The nodes made or updated by :func:`add_result_to_scene`."""

    segmentation: object
    markups: object | None
    table: object | None


def segment_infos_from_result(result, *, include_semantic: bool = True) -> tuple[list[Volume], list[SegmentInfo]]:
    """Label layers and segment records of a pipeline result (names/colours/codes as in the ``.seg.nrrd``).

    Returns:
        ``(layers, segments)``: layers are label volumes on the result's grid; vertebrae carry their centroid
        and confidence.
    """
    # lazy: the output writers (pynrrd) load when a result is shown, not when the module imports this adapter
    from ..outputs.segments import segment_table

    table = segment_table(result, include_semantic=include_semantic)
    grid = result.instances
    layers = [grid.with_array(np.asarray(layer), is_label=True) for layer in table.layers]
    by_label = {int(v.label): v for v in result.vertebrae}
    infos = []
    for spec in table.segments:
        record = by_label.get(int(spec.label_value)) if spec.layer == 0 and spec.confidence is not None else None
        infos.append(
            SegmentInfo(
                label=int(spec.label_value),
                name=spec.name,
                color_rgb=tuple(float(c) for c in spec.color),  # type: ignore[arg-type]
                confidence=spec.confidence,
                centroid_lps=tuple(float(c) for c in record.centroid_lps) if record else None,  # type: ignore[arg-type]
                terminology=spec.terminology,
                layer=int(spec.layer),
                kind=spec.kind,
            )
        )
    return layers, infos


def _check_grid(layer: Volume, reference_node) -> None:
    """The labels must be on the reference volume's (world) grid: same shape and geometry."""
    image = reference_node.GetImageData()
    dims = tuple(image.GetDimensions()) if image is not None else None
    if dims != tuple(layer.shape):
        raise InputError(
            f"the labels ({layer.shape}) are not on the grid of volume {reference_node.GetName()!r} ({dims})",
            fix="segment this volume again, or pass the volume the labels were made from",
        )
    spacing, origin, direction = node_geometry(reference_node, world=True)
    grid = Volume(np.zeros((1, 1, 1), np.uint8), spacing, origin, direction, is_label=True)
    differences = [
        what
        for what, a, b in (
            ("spacing", grid.spacing, layer.spacing),
            ("origin", grid.origin, layer.origin),
            ("direction", grid.direction, layer.direction),
        )
        if not np.allclose(a, b, atol=1e-3)
    ]
    if differences:
        raise InputError(
            f"the labels are not on the grid of volume {reference_node.GetName()!r} (different "
            f"{', '.join(differences)})",
            fix="segment this volume again (was its transform or geometry changed after segmenting?)",
        )


def _segment_id(name: str) -> str:
    """Segment IDs as in the ``.seg.nrrd`` writer: letters, digits, '-' and '_' only."""
    return "".join(ch if (ch.isalnum() or ch in "-_") else "_" for ch in name.strip()) or "segment"


def _oriented_image(layer: Volume, ijk_to_ras: np.ndarray):
    import slicer
    from vtk.util.numpy_support import get_vtk_array_type, numpy_to_vtk

    values = np.asarray(layer.array)
    values = values.astype(np.uint8) if int(values.max(initial=0)) < 256 else values.astype(np.int32)
    image = slicer.vtkOrientedImageData()
    image.SetDimensions(*layer.shape)
    data = np.ascontiguousarray(values.transpose(2, 1, 0)).reshape(-1)
    scalars = numpy_to_vtk(data, deep=True, array_type=get_vtk_array_type(data.dtype))
    image.GetPointData().SetScalars(scalars)
    image.SetImageToWorldMatrix(numpy_to_vtk_matrix(ijk_to_ras))
    return image


def segmentation_from_labels(
    scene,
    *,
    layers: Sequence[Volume],
    segments: Sequence[SegmentInfo],
    reference_volume_node=None,
    node=None,
    name: str = "Spine segmentation",
):
    """Create (or replace the segments of) a segmentation node with one segment per :class:`SegmentInfo`.

    Args:
        scene: The MRML scene.
        layers: Label volumes on one grid (the input grid); ``segments[i].layer`` indexes them.
        segments: Segments in display order; a segment whose label is absent from its layer is still created
            (empty) so that names stay predictable.
        reference_volume_node: Input volume: becomes the reference geometry, and the node goes under its parent
            transform. ``None``: geometry from ``layers[0]`` in world coordinates.
        node: Existing ``vtkMRMLSegmentationNode`` to reuse (its segments are removed first).

    Returns:
        The segmentation node. Segment IDs are the names made file-safe ("L3-L4_disc"); each segment has its
        label value, colour, terminology and the tags :data:`LABEL_VALUE_TAG`, :data:`KIND_TAG` and (vertebrae)
        :data:`CONFIDENCE_TAG`.
    """
    import slicer

    if not layers:
        raise InputError("no label layers were given", fix="pass at least the instance label map")
    if reference_volume_node is not None:
        for layer in layers:
            _check_grid(layer, reference_volume_node)
        ijk_to_ras = ijk_to_ras_matrix(reference_volume_node, world=False)
    else:
        ijk_to_ras = RAS_FROM_LPS @ layers[0].affine
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    segmentation = node.GetSegmentation()
    segmentation.RemoveAllSegments()
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    if reference_volume_node is not None:
        # Transform first: the reference geometry is computed in the segmentation's frame, and with the same
        # parent transform it is exactly the volume's voxel grid (else Slicer resamples the segments).
        node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
        node.SetReferenceImageGeometryParameterFromVolumeNode(reference_volume_node)

    binary = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    images = {}
    for info in segments:
        if info.layer not in images:
            if not 0 <= info.layer < len(layers):
                raise InputError(f"segment {info.name!r} names layer {info.layer}", fix="check the segment list")
            layer = layers[info.layer]
            values = np.asarray(layer.array)
            in_layer = [int(s.label) for s in segments if s.layer == info.layer]
            # Values that no SegmentInfo names are dropped, so they cannot hide inside a segment.
            images[info.layer] = _oriented_image(
                layer.with_array(np.where(np.isin(values, in_layer), values, 0), is_label=True), ijk_to_ras
            )
        segment = slicer.vtkSegment()
        segment.SetName(info.name)
        segment.SetNameAutoGenerated(False)
        segment.SetColor(*info.color_rgb)
        segment.SetColorAutoGenerated(False)
        # All segments of a layer share one image; each is the set of voxels with its label value.
        segment.AddRepresentation(binary, images[info.layer])
        segment.SetLabelValue(int(info.label))
        segment.SetTag(LABEL_VALUE_TAG, str(int(info.label)))
        segment.SetTag(KIND_TAG, info.kind)
        if info.terminology:
            segment.SetTag(segment.GetTerminologyEntryTagName(), info.terminology)
        if info.confidence is not None:
            segment.SetTag(CONFIDENCE_TAG, f"{float(info.confidence):.4f}")
        segment_id = _segment_id(info.name)
        if segmentation.GetSegment(segment_id) is not None:
            segment_id = segmentation.GenerateUniqueSegmentID(segment_id)
        segmentation.AddSegment(segment, segment_id)
    return node


def vertebra_segment_ids(segmentation_node) -> list[str]:
    """IDs of the segments this module made for vertebrae (not discs, canal or sacrum), in display order."""
    import vtk

    segmentation = segmentation_node.GetSegmentation()
    ids = []
    for segment_id in segmentation.GetSegmentIDs():
        kind = vtk.reference("")
        if segmentation.GetSegment(segment_id).GetTag(KIND_TAG, kind) and str(kind) == "vertebra":
            ids.append(segment_id)
    return ids


def _local_from_world(reference_volume_node) -> np.ndarray:
    return np.linalg.inv(parent_to_world_matrix(reference_volume_node)) if reference_volume_node else np.eye(4)


def markups_from_centroids(
    scene,
    *,
    segments: Sequence[SegmentInfo],
    reference_volume_node=None,
    node=None,
    name: str = "Vertebra centroids",
):
    """A fiducial markups node with one control point per segment that has a centroid (label = segment name).

    Points are placed at ``centroid_lps`` converted to RAS; under the reference volume's parent transform they
    are stored in its local coordinates so that they appear at the world centroid. The point description holds
    the confidence.
    """
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsFiducialNode", name)
    node.RemoveAllControlPoints()
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    local_from_world = np.eye(4)
    if reference_volume_node is not None:
        node.SetAndObserveTransformNodeID(reference_volume_node.GetTransformNodeID())
        local_from_world = _local_from_world(reference_volume_node)
    for info in segments:
        if info.centroid_lps is None:
            continue
        ras = RAS_FROM_LPS @ np.array([*info.centroid_lps, 1.0])
        local = local_from_world @ ras
        index = node.AddControlPoint(float(local[0]), float(local[1]), float(local[2]), info.name)
        node.SetNthControlPointLabel(index, info.name)
        if info.confidence is not None:
            node.SetNthControlPointDescription(index, f"confidence {float(info.confidence):.3f}")
        node.SetNthControlPointLocked(index, True)  # centroids are results, not handles to drag around
    return node


def confidence_table(scene, *, segments: Sequence[SegmentInfo], node=None, name: str = "Vertebra confidence"):
    """A table node with one row per vertebra: name, label value, confidence, centroid (RAS mm)."""
    if node is None:
        node = scene.AddNewNodeByClass("vtkMRMLTableNode", name)
    table = node.GetTable()
    table.Initialize()
    import vtk

    columns = [("Segment", vtk.vtkStringArray), ("Label value", vtk.vtkIntArray), ("Confidence", vtk.vtkDoubleArray)]
    columns += [(f"{axis} (RAS mm)", vtk.vtkDoubleArray) for axis in ("R", "A", "S")]
    for title, cls in columns:
        column = cls()
        column.SetName(title)
        table.AddColumn(column)
    rows = [s for s in segments if s.confidence is not None]
    table.SetNumberOfRows(len(rows))
    for r, info in enumerate(rows):
        ras = RAS_FROM_LPS[:3, :3] @ np.asarray(info.centroid_lps if info.centroid_lps else (np.nan,) * 3)
        table.GetColumn(0).SetValue(r, info.name)
        table.GetColumn(1).SetValue(r, int(info.label))
        table.GetColumn(2).SetValue(r, round(float(info.confidence), 4))
        for c in range(3):
            table.GetColumn(3 + c).SetValue(r, round(float(ras[c]), 3))
    table.Modified()
    node.Modified()
    return node


def add_result_to_scene(
    result,
    volume_node,
    *,
    segmentation_node=None,
    markups_node=None,
    table_node=None,
    include_semantic: bool = True,
    with_markups: bool = True,
    with_table: bool = True,
) -> ResultNodes:
    """Put a pipeline result computed from ``volume_node`` into its scene (segments, centroids, confidences).

    The result must be on the grid of ``volume_from_node(volume_node, world=True)``; existing output nodes
    are overwritten, else new ones are named after the volume.
    """
    scene = volume_node.GetScene()
    layers, infos = segment_infos_from_result(result, include_semantic=include_semantic)
    base = volume_node.GetName()
    segmentation = segmentation_from_labels(
        scene,
        layers=layers,
        segments=infos,
        reference_volume_node=volume_node,
        node=segmentation_node,
        name=f"{base} spine",
    )
    markups = None
    if with_markups:
        markups = markups_from_centroids(
            scene, segments=infos, reference_volume_node=volume_node, node=markups_node, name=f"{base} centroids"
        )
    table = None
    if with_table:
        table = confidence_table(scene, segments=infos, node=table_node, name=f"{base} vertebra confidence")
    return ResultNodes(segmentation=segmentation, markups=markups, table=table)
