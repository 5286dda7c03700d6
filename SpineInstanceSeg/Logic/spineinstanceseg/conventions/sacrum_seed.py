"""The top of the sacrum under a vertebra mask that ends at L5, found in the CT image: labels for the L5-S1 boundary.

VerSe masks label vertebrae only. Below their lowest vertebra :mod:`.derived` marks everything unknown, so a network
trained on them learns what S1 looks like from phantoms alone; on real CT it then calls S1 vertebra, L5 + S1 look like
one tall vertebra and stage 2 cuts L5 in half. Where the lowest labelled vertebra is L5 (or L6) and the level above it
is labelled too, the bone right below it is S1, and the image shows where that bone is:

* the column's direction at its lower end: from the upper neighbour's centroid to the lowest vertebra's;
* along it, a cylinder of the lowest vertebral body's radius (95th percentile of its voxels' distance from the
  axis) that starts ``sacrum_gap_mm`` past the body's caudal end and is ``sacrum_depth_mm`` long;
* in it, CT voxels above ``sacrum_bone_hu``, further than ``sacrum_clearance_mm`` from the labelled vertebra, the
  largest connected component, without those voxels of its outer layer that are not brighter than
  ``sacrum_cortex_hu`` (partial volume with the soft tissue around it; the cortex itself stays).

That is the core of the **sacrum seed**. It then grows (labels version 4) through the CT voxels above
``sacrum_grow_hu`` that are unlabelled and further than ``sacrum_clearance_mm`` from the labelled vertebra, within
``sacrum_radius_mm`` of the axis and no higher than ``sacrum_above_mm`` above the lowest vertebra's centroid: S1's
arch, superior articular processes and alae, the parts that stage 1 called vertebra and stage 2 glued to L5 on the
real CTs (on them the core alone held 0.2-0.6 k voxels, grown 3-8 k; on phantoms the grown seed's precision is
0.99-1.00 and it holds 15-34 % of the sacrum, the core alone 3-11 %). The same outer-layer rule applies. The seed is
a part of S1, not all of it; the rest stays unknown. The **L5-S1 disc** is then derived as :mod:`.derived` derives
discs, between the lowest body and the body core of the filled core. Checked on phantoms, whose sacrum and discs are
known (see the tests).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..levels import L6_CODE, SACRUM_CODE, cranio_caudal_order
from ..volume import Volume
from .arrays import label_centroids_ijk, largest_component
from .derived import DEFAULT_PARAMS, DerivationParams, body_cores, disc_between

__all__ = ["SacrumSeed", "derive_sacrum_seed"]

_L5_CODE = 24


@dataclass(frozen=True)
class SacrumSeed:
    """Voxels of S1 and of the L5-S1 disc found under a mask that ends at L5 (bool arrays on the mask's grid).

    Attributes:
        sacrum: Confident S1 bone voxels (empty when the mask does not end at L5 or no bone lies below it).
        disc: Derived L5-S1 disc voxels (empty when no sacrum was found).
        lowest: VerSe code of the vertebra the sacrum lies under (0 when none).
    """

    sacrum: NDArray[np.bool_]
    disc: NDArray[np.bool_]
    lowest: int


def _bottom_pair(labels: NDArray) -> tuple[int, int] | None:
    """(upper neighbour, lowest vertebra) when the mask ends at L5 or L6 with the level above labelled, else None."""
    values = np.unique(labels)
    present = [int(v) for v in values if 0 < v <= L6_CODE]
    if SACRUM_CODE in values or len(present) < 2:
        return None
    order = sorted(present, key=cranio_caudal_order)
    upper, lowest = order[-2], order[-1]
    if lowest not in (_L5_CODE, L6_CODE) or cranio_caudal_order(lowest) - cranio_caudal_order(upper) != 1:
        return None
    return upper, lowest


def _below_body(
    shape: tuple[int, ...], body_world: NDArray, axis: NDArray, volume: Volume, params
) -> tuple[NDArray, NDArray]:
    """The cylinder under a body (see module docstring) and the wider region S1 may grow into (bool arrays of
    ``shape``)."""
    centre = body_world.mean(axis=0)
    along = (body_world - centre) @ axis
    radius = float(np.percentile(np.linalg.norm(body_world - centre - along[:, None] * axis, axis=1), 95))
    start = float(along.max()) + params.sacrum_gap_mm
    grid = volume.index_to_world(np.indices(shape, dtype=np.float32).reshape(3, -1).T) - centre
    grid_along = grid @ axis
    grid_radial = np.linalg.norm(grid - grid_along[:, None] * axis, axis=1)
    end = start + params.sacrum_depth_mm
    inside = (grid_along > start) & (grid_along < end) & (grid_radial <= radius)
    wider = (grid_along > -params.sacrum_above_mm) & (grid_along < end) & (grid_radial <= params.sacrum_radius_mm)
    return inside.reshape(shape), wider.reshape(shape)


def derive_sacrum_seed(image: Volume, instances: Volume, *, params: DerivationParams = DEFAULT_PARAMS) -> SacrumSeed:
    """Find S1 and the L5-S1 disc under a vertebra-only mask of a CT (see module docstring).

    Args:
        image: The CT in HU, on the grid of ``instances`` (same shape; any spacing and orientation).
        instances: VerSe-coded vertebra label map; other values count as background.
        params: Tuned numbers (:class:`~.derived.DerivationParams`, the ``sacrum_*`` fields and the disc fields).

    Returns:
        :class:`SacrumSeed`; both masks empty when the mask does not end at L5/L6 or labels the sacrum itself.
    """
    labels = np.asarray(instances.array).astype(np.int32)
    empty = np.zeros(labels.shape, bool)
    pair = _bottom_pair(labels)
    if pair is None:
        return SacrumSeed(empty, empty, 0)
    upper, lowest = pair
    spacing = np.asarray(instances.spacing, dtype=float)
    body = body_cores(labels == lowest, spacing, fraction=params.body_opening_fraction)
    centroids = label_centroids_ijk(labels)
    step = instances.index_to_world(centroids[lowest]) - instances.index_to_world(centroids[upper])
    axis = step / np.linalg.norm(step)
    cylinder, wider = _below_body(labels.shape, instances.index_to_world(np.argwhere(body)), axis, instances, params)
    clear = ndimage.distance_transform_edt(labels != lowest, sampling=spacing) > params.sacrum_clearance_mm
    hu = np.asarray(image.array)
    bone = largest_component(cylinder & clear & (labels == 0) & (hu > params.sacrum_bone_hu))
    grown = _grown(bone, wider & clear & (labels == 0) & (hu > params.sacrum_grow_hu))
    sacrum = ndimage.binary_erosion(grown) | (grown & (hu > params.sacrum_cortex_hu))
    if not sacrum.any():
        return SacrumSeed(empty, empty, lowest)
    s1_body = body_cores(ndimage.binary_fill_holes(ndimage.binary_closing(bone, iterations=2) | bone), spacing,
                         fraction=params.body_opening_fraction)  # fmt: skip
    height = min(params.max_disc_height_mm, params.max_disc_height_fraction * float(np.linalg.norm(step)))
    soft = (labels == 0) & (np.asarray(image.array) <= params.sacrum_bone_hu)
    disc = disc_between(body, s1_body, soft, spacing, height, params.between_angle_deg)
    return SacrumSeed(sacrum, disc, lowest)


def _grown(core: NDArray[np.bool_], allowed: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``core`` and the face-connected components of ``allowed`` that touch it."""
    if not core.any():
        return core
    parts, _ = ndimage.label(allowed | core)
    touched = np.unique(parts[core])
    return np.isin(parts, touched[touched > 0])
