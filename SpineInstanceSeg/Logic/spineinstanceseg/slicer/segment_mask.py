"""A segmentation node as a stage-1 mask: each segment read by what it *is*, never by its position.

A segmentation node has no label values of its own convention: a TotalSegmentator result loaded in Slicer holds
segments such as ``vertebrae_L1`` ("L1 vertebra"), ``sacrum``, ``spinal_cord`` with SNOMED-CT terminology, a
segmentation made by this module holds "L3", "L3-L4 disc", "Spinal canal" with its own tags. Every segment is
mapped (:func:`map_segments`), in this order:

1. this module's own kind tag (:data:`~.mrml_adapter.KIND_TAG`, written on every segment it creates);
2. the segment's terminology (SNOMED-CT type code), then its name, then its ID
   (:func:`spineinstanceseg.conventions.segment_names.classify_segment`).

Segments whose terminology names another anatomical structure (organs of TotalSegmentator's ``total`` task) are
ignored and listed; a segment that nothing identifies stops the run with an error that names it and says how to
fix it. :func:`mask_from_segmentation` then writes the mapped segments into a semantic label map (and a map of the
VerSe level codes where the segments name their level) on the input volume's grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..conventions.segment_names import NOT_SPINE, SegmentClass, classify_segment
from ..errors import InputError
from ..levels import level_name
from ..semantic import CANAL, DISC, SACRUM, SEMANTIC_LABELS, SEMANTIC_NAMES, VERTEBRA
from ..volume import Volume
from .exports import iter_segment_masks
from .mrml_adapter import KIND_TAG
from .volume_nodes import volume_from_node

__all__ = ["MappedSegment", "SegmentationMask", "map_segments", "mask_from_segmentation"]

# Voxel order when segments overlap: later kinds win, so a vertebra keeps voxels a coarse canal or disc claims.
_PAINT_ORDER = {CANAL: 0, DISC: 1, SACRUM: 2, VERTEBRA: 3}


@dataclass(frozen=True)
class MappedSegment:
    """One segment and what it was read as."""

    segment_id: str
    name: str
    semantic: int
    level_code: int | None
    reason: str

    def describe(self) -> str:
        """E.g. ``"'L1 vertebra' -> vertebra L1 (terminology 'L1 vertebra')"``."""
        if self.semantic == NOT_SPINE:
            return f"{self.name!r} ignored ({self.reason})"
        what = SEMANTIC_NAMES[self.semantic]
        if self.level_code is not None:
            what += f" {level_name(self.level_code)}"
        return f"{self.name!r} -> {what} ({self.reason})"


@dataclass(frozen=True)
class SegmentationMask:
    """A segmentation node read as a stage-1 mask.

    Attributes:
        semantic: Semantic classes (:mod:`spineinstanceseg.semantic`) on the reference volume's grid.
        levels: VerSe code of each vertebra voxel whose segment names its level, else 0 (same grid).
        segments: The spine segments used, in segmentation order.
        ignored: Segments of other structures that were left out.
    """

    semantic: Volume
    levels: Volume
    segments: tuple[MappedSegment, ...]
    ignored: tuple[MappedSegment, ...]

    @property
    def levels_known(self) -> bool:
        """Every vertebra segment named its level."""
        vertebrae = [s for s in self.segments if s.semantic == VERTEBRA]
        return bool(vertebrae) and all(s.level_code is not None for s in vertebrae)


def _tag(segment, name: str) -> str | None:
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def _classify(segment_id: str, segment) -> SegmentClass | None:
    name = segment.GetName() or segment_id
    terminology = _tag(segment, segment.GetTerminologyEntryTagName())
    kind = _tag(segment, KIND_TAG)
    if kind in SEMANTIC_LABELS:  # made by this module: the kind is certain, the level comes from the name
        found = classify_segment(name=name, segment_id=segment_id, terminology=terminology)
        level = found.level_code if found is not None and found.semantic == SEMANTIC_LABELS[kind] else None
        return SegmentClass(SEMANTIC_LABELS[kind], level, f"SpineInstanceSeg segment ({kind})")
    return classify_segment(name=name, segment_id=segment_id, terminology=terminology)


def _refusal(node_name: str, unknown: list[str]) -> InputError:
    shown = ", ".join(repr(n) for n in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
    return InputError(
        f"segment(s) {shown} of segmentation {node_name!r} cannot be read as spine structures (neither their "
        "terminology nor their name says what they are)",
        fix="rename each to what it is - a level such as 'L1' or 'vertebrae_L1', or 'vertebra', 'intervertebral "
        "disc', 'spinal canal', 'sacrum' - or set its terminology in the Segment Editor, or delete segments that "
        "are not spine; a labelmap volume with its label convention works too",
    )


def map_segments(segmentation_node) -> tuple[list[MappedSegment], list[MappedSegment]]:
    """``(spine segments, ignored segments)`` of a segmentation node (see module docstring).

    Raises:
        InputError: a segment nothing identifies (all such segments are named), or no vertebra segment at all.
    """
    segmentation = segmentation_node.GetSegmentation()
    used: list[MappedSegment] = []
    ignored: list[MappedSegment] = []
    unknown: list[str] = []
    for segment_id in segmentation.GetSegmentIDs():
        segment = segmentation.GetSegment(segment_id)
        name = segment.GetName() or segment_id
        found = _classify(segment_id, segment)
        if found is None:
            unknown.append(name)
            continue
        mapped = MappedSegment(segment_id, name, found.semantic, found.level_code, found.reason)
        (ignored if found.semantic == NOT_SPINE else used).append(mapped)
    if unknown:
        raise _refusal(segmentation_node.GetName(), unknown)
    if not any(s.semantic == VERTEBRA for s in used):
        raise InputError(
            f"segmentation {segmentation_node.GetName()!r} has no vertebra segment",
            fix="select a segmentation with vertebrae (e.g. TotalSegmentator's 'total' task), or run stage 1",
        )
    return used, ignored


def mask_from_segmentation(segmentation_node, *, reference_volume_node, world: bool = True) -> SegmentationMask:
    """The spine segments of ``segmentation_node`` as semantic and level maps on the reference volume's grid.

    Args:
        reference_volume_node: The input volume; its voxel grid is the grid of the maps.
        world: Geometry with the volume's parent transform composed in (as the pipeline sees the input).

    Raises:
        InputError: see :func:`map_segments`.
    """
    used, ignored = map_segments(segmentation_node)
    reference = volume_from_node(reference_volume_node, world=world)
    semantic = np.zeros(reference.shape, dtype=np.uint8)
    levels = np.zeros(reference.shape, dtype=np.uint8)
    by_id = {s.segment_id: s for s in used}
    order = sorted(used, key=lambda s: _PAINT_ORDER[s.semantic])
    masks = iter_segment_masks(
        segmentation_node, [s.segment_id for s in order], reference_volume_node=reference_volume_node
    )
    for segment_id, mask in masks:
        mapped = by_id[segment_id]
        semantic[mask] = mapped.semantic
        levels[mask] = mapped.level_code or 0
    return SegmentationMask(
        semantic=reference.with_array(semantic, is_label=True),
        levels=reference.with_array(levels, is_label=True),
        segments=tuple(used),
        ignored=tuple(ignored),
    )
