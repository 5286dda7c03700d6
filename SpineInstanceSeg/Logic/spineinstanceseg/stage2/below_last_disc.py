"""What the lowest vertebra holds beyond the disc below it, next to the sacrum, is sacrum.

On real CT a stage-1 model at times calls the top of S1 (its body and alae) "vertebra" and predicts the L5-S1 disc
between them. Stage 2 then glues that bone to L5: with leave-one-out models on the VerSe CTs the L5 instance
carried 5-16 mL of S1 (Dice 0.68-0.75 against 0.83-0.91 for the vertebrae above). The disc stage 1 did see fixes
the boundary: the part of the lowest vertebra that lies more than ``beyond_mm`` past the plane of that disc (along
the axis from the vertebra above to the lowest one) and touches the stage-1 sacrum becomes sacrum. Where stage 1
saw no disc below the lowest vertebra, or the cut-off part touches no sacrum (a cut vertebra beyond the end of a
thoracic scan), nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..semantic import DISC, SACRUM
from ..volume import Volume, bounding_box

__all__ = ["BelowLastDisc", "BelowDiscParameters", "give_below_last_disc_to_sacrum"]

_FACES = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class BelowDiscParameters:
    """The tuned numbers of :func:`give_below_last_disc_to_sacrum`.

    Attributes:
        search_mm: How far past the lowest vertebra's centroid (along the axis) the disc below it is looked for, mm.
        column_radius_mm: Disc voxels count only within this distance of the axis line, mm (the disc, not the
            facet joints or the sacroiliac joints beside it).
        min_disc_ml: Fewer disc voxels than this (mL) locate no plane.
        beyond_mm: Margin past the disc's median plane, mm: the endplate of L5 stays with L5.
    """

    search_mm: float = 40.0
    column_radius_mm: float = 25.0
    min_disc_ml: float = 0.3
    beyond_mm: float = 2.0


DEFAULT_BELOW_DISC = BelowDiscParameters()


@dataclass(frozen=True)
class BelowLastDisc:
    """The outcome: the instance map and semantic map (the inputs themselves when nothing moved) and the volume
    that became sacrum (mL)."""

    instances: NDArray
    semantic: Volume
    moved_ml: float

    def message(self) -> str | None:
        if not self.moved_ml:
            return None
        return (
            f"{self.moved_ml:.1f} mL that stage 1 called vertebra below the disc under the lowest vertebra, next to "
            "the sacrum, was made sacrum"
        )


def give_below_last_disc_to_sacrum(
    instances: NDArray,
    semantic: Volume,
    centroids_lps: NDArray,
    *,
    params: BelowDiscParameters = DEFAULT_BELOW_DISC,
) -> BelowLastDisc:
    """Give the part of the lowest vertebra beyond the disc below it to the sacrum (see the module docstring).

    Args:
        instances: (X, Y, Z) vertebra labels 1..N, top to bottom, on the grid of ``semantic``.
        semantic: Stage-1 semantic map.
        centroids_lps: (N, 3) vertebra centroids, LPS mm, in label order.
        params: Distances and sizes.
    """
    unchanged = BelowLastDisc(instances, semantic, 0.0)
    n = len(centroids_lps)
    if n < 2:
        return unchanged
    lowest = np.asarray(centroids_lps[-1], dtype=float)
    axis = lowest - np.asarray(centroids_lps[-2], dtype=float)
    if not np.linalg.norm(axis):
        return unchanged
    axis /= np.linalg.norm(axis)
    box = _search_box(np.asarray(instances) == n, semantic, params.search_mm)
    if box is None:
        return unchanged
    classes = np.asarray(semantic.array[box])
    along, radial = _axis_coordinates(semantic, box, lowest, axis)
    disc = (classes == DISC) & (along > 0) & (along < params.search_mm) & (radial < params.column_radius_mm)
    if np.count_nonzero(disc) * semantic.voxel_volume_mm3 / 1000.0 < params.min_disc_ml:
        return unchanged
    plane = float(np.median(along[disc]))
    labels = np.asarray(instances[box])
    beyond = (labels == n) & (along > plane + params.beyond_mm)
    beyond &= _touching(beyond, classes == SACRUM)
    if not beyond.any():
        return unchanged
    out_instances = np.array(instances, copy=True)
    out_instances[box][beyond] = 0
    out_classes = np.array(semantic.array, copy=True)
    out_classes[box][beyond] = SACRUM
    moved_ml = float(np.count_nonzero(beyond) * semantic.voxel_volume_mm3 / 1000.0)
    return BelowLastDisc(out_instances, semantic.with_array(out_classes), moved_ml)


def _search_box(lowest: NDArray[np.bool_], grid: Volume, margin_mm: float) -> tuple[slice, ...] | None:
    """Index box of the lowest vertebra grown by ``margin_mm`` on every side."""
    box = bounding_box(lowest)
    if box is None:
        return None
    pad = [int(np.ceil(margin_mm / s)) for s in grid.spacing]
    return tuple(slice(max(0, b.start - p), min(k, b.stop + p)) for b, p, k in zip(box, pad, lowest.shape, strict=True))


def _axis_coordinates(
    grid: Volume, box: tuple[slice, ...], origin_lps: NDArray, axis: NDArray
) -> tuple[NDArray, NDArray]:
    """Per voxel of ``box``: the distance along ``axis`` from ``origin_lps`` and the distance from the axis line, mm."""
    index = np.stack(np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij"), axis=-1)
    offset = grid.index_to_world(index) - origin_lps
    along = offset @ axis
    radial = np.linalg.norm(offset - along[..., None] * axis, axis=-1)
    return along, radial


def _touching(pieces: NDArray[np.bool_], other: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The face-connected components of ``pieces`` that share a voxel face with ``other``."""
    components, count = ndimage.label(pieces, structure=_FACES)
    if not count:
        return pieces
    near = ndimage.binary_dilation(other, structure=_FACES) & pieces
    keep = np.zeros(count + 1, bool)
    keep[np.unique(components[near])] = True
    keep[0] = False
    return keep[components]
