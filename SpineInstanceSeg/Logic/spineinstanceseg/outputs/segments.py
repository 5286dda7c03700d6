"""The list of segments of a result (names, label values, colours, terminology) and their label-map layers.

Shared by the ``.seg.nrrd`` writer, the preview and the Slicer adapter so that every output names and colours a
segment the same way.

Segments, in this order:

* one per vertebra (``result.vertebrae``, top to bottom), label value = its value in ``result.instances``;
* with the semantic classes: one per intervertebral disc, named after the two vertebrae it touches
  ("L3-L4 disc"; "disc below L5" / "disc above L1" when only one neighbour is segmented; "Disc k" otherwise),
  label value ``100 + label of the vertebra above`` (SPINEPS-like) when that is free;
  "Spinal canal" (label 200) and "Sacrum" (label 26, unless a vertebra record already is the sacrum).

Disc components touching the same pair of vertebrae are one segment (a disc split by noise stays one disc).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from ..conventions.arrays import label_centroids_ijk
from ..conventions.discs import disc_neighbours
from ..conventions.terminology import canal_terminology, disc_terminology, sacrum_terminology, vertebra_terminology
from ..levels import SACRUM_CODE
from ..results import SegmentationResult
from ..semantic import CANAL, SACRUM
from .colors import CANAL_COLOR, RGB, SACRUM_COLOR, disc_color, vertebra_color

__all__ = ["SegmentSpec", "SegmentTable", "segment_table", "safe_segment_id"]

CANAL_LABEL = 200
_DISC_BASE = 100
_FALLBACK_START = 150
_VALUE_DTYPE = np.uint16  # label values of the layers while they are built (narrowed at the end)


@dataclass(frozen=True)
class SegmentSpec:
    """One segment of the exported segmentation.

    Attributes:
        segment_id: Unique identifier (no spaces), e.g. "L3", "L3-L4_disc", "canal".
        name: Display name, e.g. "L3", "Vertebra 2", "L3-L4 disc", "Spinal canal".
        label_value: Voxel value of the segment in its layer.
        layer: Index of the label-map layer that holds it (0 unless segments overlap).
        color: RGB in [0, 1].
        terminology: Slicer ``TerminologyEntry`` string.
        kind: "vertebra", "disc", "canal" or "sacrum".
        confidence: Stage-2 confidence for vertebrae, ``None`` for the other kinds.
    """

    segment_id: str
    name: str
    label_value: int
    layer: int
    color: RGB
    terminology: str
    kind: str
    confidence: float | None = None


@dataclass(frozen=True)
class SegmentTable:
    """Segments plus the label-map layers that hold them.

    Attributes:
        segments: In display order (vertebrae top to bottom, then discs top to bottom, canal, sacrum).
        layers: One integer array per layer, each of the input grid's shape ``(nx, ny, nz)`` (ITK index order).
    """

    segments: tuple[SegmentSpec, ...]
    layers: tuple[NDArray, ...]


def safe_segment_id(name: str) -> str:
    """A segment name as an identifier / file stem: letters, digits, '-', '_' only."""
    text = "".join(ch if (ch.isalnum() or ch in "-_") else "_" for ch in name.strip())
    return text or "segment"


def _free_value(preferred: int, used: set[int]) -> int:
    if preferred not in used:
        return preferred
    value = _FALLBACK_START
    while value in used:
        value += 1
    return value


def _disc_name(above: str | None, below: str | None, index: int) -> str:
    if above and below:
        return f"{above}-{below} disc"
    if above:
        return f"disc below {above}"
    if below:
        return f"disc above {below}"
    return f"Disc {index}"


def segment_table(result: SegmentationResult, *, include_semantic: bool = True) -> SegmentTable:
    """Segments of ``result`` and the label-map layer(s) holding them (see module docstring)."""
    instances = np.asarray(result.instances.array)
    labels = [int(v.label) for v in result.vertebrae]
    # One pass over the volume: keep the instance values that belong to a record, zero anything else.
    layer0 = np.where(np.isin(instances, labels), instances, 0).astype(_VALUE_DTYPE)
    segments = _vertebra_segments(result)
    if not include_semantic:
        return SegmentTable(tuple(segments), (_narrow(layer0),))
    extra = np.zeros(instances.shape, dtype=_VALUE_DTYPE)
    used: set[int] = set(labels)
    extra_specs = _disc_segments(result, extra, used)
    has_sacrum = any(s.kind == "sacrum" for s in segments)
    extra_specs += _canal_and_sacrum_segments(np.asarray(result.semantic.array), extra, used, has_sacrum=has_sacrum)
    extra_specs = _unique_ids(extra_specs, {s.segment_id for s in segments})
    return _layered(segments, extra_specs, layer0, extra)


def _vertebra_segments(result: SegmentationResult) -> list[SegmentSpec]:
    """One segment per vertebra record, top to bottom, with its value in ``result.instances`` (layer 0)."""
    segments = []
    for index, record in enumerate(result.vertebrae, start=1):
        is_sacrum = record.level_code is not None and int(record.level_code) == SACRUM_CODE
        segments.append(
            SegmentSpec(
                segment_id=safe_segment_id(record.name),
                name=record.name,
                label_value=int(record.label),
                layer=0,
                color=vertebra_color(record.level_code, index),
                terminology=vertebra_terminology(record.level_code),
                kind="sacrum" if is_sacrum else "vertebra",
                confidence=float(record.confidence),
            )
        )
    return segments


def _disc_segments(result: SegmentationResult, extra: NDArray, used: set[int]) -> list[SegmentSpec]:
    """One segment per disc, top to bottom: its components grouped by the pair of vertebrae they touch, painted
    into ``extra`` with a free label value (added to ``used``)."""
    records = {int(v.label): v for v in result.vertebrae}
    components, neighbours = disc_neighbours(result.instances, result.semantic)
    groups: dict[tuple[int | None, int | None], list[int]] = {}
    for item in neighbours:
        above = item.above if item.above in records else None
        below = item.below if item.below in records else None
        key = (above, below) if (above is not None or below is not None) else (None, -item.component)
        groups.setdefault(key, []).append(item.component)
    if not groups:
        return []
    specs = []
    z_world = _component_heights(result, components)
    ordered = sorted(groups.items(), key=lambda kv: -np.mean([z_world[c] for c in kv[1]]))
    for disc_index, ((above, below), comps) in enumerate(ordered, start=1):
        below = below if below is not None and below >= 0 else None
        above_rec = records.get(above) if above is not None else None
        below_rec = records.get(below) if below is not None else None
        name = _disc_name(above_rec.name if above_rec else None, below_rec.name if below_rec else None, disc_index)
        value = _free_value(_DISC_BASE + above if above is not None else _FALLBACK_START, used)
        used.add(value)
        extra[np.isin(components, comps)] = value
        specs.append(
            SegmentSpec(
                segment_id=safe_segment_id(name),
                name=name,
                label_value=value,
                layer=0,
                color=disc_color(disc_index),
                terminology=disc_terminology(
                    above_rec.level_code if above_rec else None, below_rec.level_code if below_rec else None
                ),
                kind="disc",
            )
        )
    return specs


def _canal_and_sacrum_segments(
    semantic: NDArray, extra: NDArray, used: set[int], *, has_sacrum: bool
) -> list[SegmentSpec]:
    """The spinal canal, and the sacrum unless a vertebra record is the sacrum, painted into ``extra``."""
    specs = []
    if np.any(semantic == CANAL):
        value = _free_value(CANAL_LABEL, used)
        used.add(value)
        extra[semantic == CANAL] = value
        specs.append(SegmentSpec("Spinal_canal", "Spinal canal", value, 0, CANAL_COLOR, canal_terminology(), "canal"))
    if not has_sacrum and np.any(semantic == SACRUM):
        value = _free_value(SACRUM_CODE, used)
        used.add(value)
        extra[semantic == SACRUM] = value
        specs.append(SegmentSpec("Sacrum", "Sacrum", value, 0, SACRUM_COLOR, sacrum_terminology(), "sacrum"))
    return specs


def _layered(
    segments: list[SegmentSpec], extra_specs: list[SegmentSpec], layer0: NDArray, extra: NDArray
) -> SegmentTable:
    """The table with the semantic segments in the vertebrae's label map where they do not overlap it, else in
    a second layer."""
    if not extra_specs:
        return SegmentTable(tuple(segments), (_narrow(layer0),))
    overlap = bool(np.any((extra > 0) & (layer0 > 0)))
    if not overlap:
        # The usual case: vertebrae and the semantic classes are disjoint, so one label map holds them all.
        layer0[extra > 0] = extra[extra > 0]
        return SegmentTable(tuple(segments + extra_specs), (_narrow(layer0),))
    # Stage 1 and stage 2 may disagree at a boundary; Slicer stores overlapping segments in a second layer.
    moved = tuple(
        SegmentSpec(s.segment_id, s.name, s.label_value, 1, s.color, s.terminology, s.kind, s.confidence)
        for s in extra_specs
    )
    return SegmentTable(tuple(segments) + moved, (_narrow(layer0), _narrow(extra)))


def _unique_ids(specs: list[SegmentSpec], taken: set[str]) -> list[SegmentSpec]:
    """Segment IDs must be unique within a segmentation; append a counter on a clash."""
    out = []
    for spec in specs:
        sid, n = spec.segment_id, 2
        while sid in taken:
            sid, n = f"{spec.segment_id}_{n}", n + 1
        taken.add(sid)
        out.append(spec if sid == spec.segment_id else SegmentSpec(sid, *_fields_after_id(spec)))
    return out


def _fields_after_id(spec: SegmentSpec) -> tuple:
    return (spec.name, spec.label_value, spec.layer, spec.color, spec.terminology, spec.kind, spec.confidence)


def _component_heights(result: SegmentationResult, components: NDArray) -> dict[int, float]:
    """World superior coordinate (LPS z, mm) of the centroid of every disc component."""
    return {c: float(result.instances.index_to_world(ijk)[2]) for c, ijk in label_centroids_ijk(components).items()}


def _narrow(layer: NDArray) -> NDArray:
    """The smallest unsigned type that holds the layer (uint8 for the usual < 256 labels)."""
    return layer.astype(np.uint8) if int(layer.max(initial=0)) < 256 else layer
