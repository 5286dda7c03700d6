"""Stage-1 training labels from a vertebra-only instance mask: derived discs, canal and the voxels nobody labelled.

Real vertebra masks (VerSe) label vertebrae and nothing else. Used as they are, they teach a semantic network that
discs and the canal are background, and a network that sees no disc cannot tell where one vertebra ends and the
next begins. This module derives, from the geometry of the labelled vertebrae alone:

* **Discs.** Between every pair of adjacent labelled levels, the gap between their *bodies*: background voxels
  whose nearest points on the two bodies lie on opposite sides of them (the angle between the two directions is
  at least ``DerivationParams.between_angle_deg``) and whose distances to the two bodies add up to at most the
  disc height allowed for that pitch. Bodies are the vertebrae opened with a ball whose radius is a fraction of the
  vertebra's largest inscribed radius (pedicles, laminae and processes are thinner and vanish), so the gaps of the
  facet joints between articular processes are not called disc.
* **Canal.** The vertebral foramen: in each slice across the spine axis, the largest hole enclosed by the
  vertebra's arch (at least ``min_foramen_mm2``); between two vertebrae the canal is the overlap of the two
  foramina next to the gap, and only where both vertebrae have one.
* **Unknown.** Voxels the mask cannot classify: beyond the labelled span (past the centroid plane of the top and
  bottom labelled vertebra, where unlabelled vertebrae, the sacrum or a partial vertebra may lie) and a rim around
  the derived canal between vertebrae. Training marks them "ignore" so they count neither way.

Arrays are on the instance map's grid (any orientation and spacing; distances use the voxel spacing in mm). The
canal step works on slices of the array axis closest to the spine axis, which is right up to about 30 degrees of
tilt; tilted further, no canal is derived (and nothing is marked canal wrongly).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..levels import L6_CODE, SACRUM_CODE, T13_CODE, cranio_caudal_order
from ..semantic import CANAL, DISC, VERTEBRA
from ..volume import Volume
from .arrays import label_centroids_ijk, largest_component

__all__ = [
    "DerivationParams",
    "DerivedLabels",
    "derive_training_labels",
    "derive_body_training_labels",
    "body_cores",
    "disc_between",
]


@dataclass(frozen=True)
class DerivationParams:
    """Tuned numbers of the derivation (checked on phantoms, whose true discs are known; see the tests).

    Attributes:
        body_opening_fraction: Body = vertebra opened with a ball of this fraction of its largest inscribed
            radius (lumbar bodies ~13 mm inscribed radius, pedicles and laminae <= 5 mm).
        between_angle_deg: A gap voxel is between two bodies when the directions to their nearest points are at
            least this far apart (180 = exactly opposite); lower values let the disc bulge past the body rims.
        max_disc_height_fraction: Disc height at most this fraction of the distance between the two body
            centroids (lumbar pitch ~38 mm, discs 8-14 mm; cervical pitch ~18 mm, discs 4-6 mm).
        max_disc_height_mm: Absolute cap on the disc height in mm.
        min_foramen_mm2: Smallest hole area (mm^2) that is a vertebral foramen, not a transverse foramen or a gap
            in a manual mask.
        max_canal_tilt_deg: No canal is derived when the spine axis is further than this from an array axis.
        canal_unknown_rim_mm: Rim around the canal between vertebrae that is marked unknown (its edge there is
            a guess).
        posterior_reach_mm: Body-only masks: how far behind the bodies' posterior wall the unlabelled posterior
            elements can reach (lumbar: canal ~18 mm + lamina and spinous process ~45 mm); beyond is soft tissue.
        lateral_reach_mm: Body-only masks: how far sideways from the bodies' centre the posterior elements can
            reach (lumbar transverse processes ~45-50 mm); beyond is soft tissue.
        sacrum_gap_mm: S1 from a CT below a mask that ends at L5 (:mod:`.sacrum_seed`): the S1 bone starts at least
            this far past the caudal end of the L5 body (the L5-S1 disc; collapsed discs ~3 mm).
        sacrum_depth_mm: ... and is looked for over this length along the column (an S1 body is ~30 mm high).
        sacrum_bone_hu: CT voxels above this (HU) are bone; the sacrum's cortex and most of its cancellous bone.
        sacrum_cortex_hu: On the outer layer of the S1 bone only voxels above this (HU) are kept: the cortex, not
            voxels that share their volume with soft tissue (on phantoms, keeping the whole layer lowers the
            precision of the found sacrum to 0.88-0.95; keeping the voxels above 450 HU leaves it at 0.998-1.000).
        sacrum_clearance_mm: S1 voxels are at least this far from the labelled L5 (its osteophytes and endplate
            rim stay out).
        sacrum_grow_hu: From the S1 bone under the body, the sacrum grows through CT voxels above this (HU) into
            S1's arch, superior articular processes and alae (labels version 4): the parts that stage 1 called
            vertebra and stage 2 glued to L5 on the real CTs.
        sacrum_radius_mm: ... no further than this from the column's axis (the alae; the iliac bones beyond the
            sacroiliac joints stay unknown) ...
        sacrum_above_mm: ... and no higher than this above the lowest vertebra's centroid along the column (the
            tips of S1's superior articular processes reach up beside L5's inferior ones).
    """

    body_opening_fraction: float = 0.5
    between_angle_deg: float = 120.0
    max_disc_height_fraction: float = 0.5
    max_disc_height_mm: float = 18.0
    min_foramen_mm2: float = 40.0
    max_canal_tilt_deg: float = 30.0
    canal_unknown_rim_mm: float = 3.0
    posterior_reach_mm: float = 75.0
    lateral_reach_mm: float = 55.0
    sacrum_gap_mm: float = 3.0
    sacrum_depth_mm: float = 35.0
    sacrum_bone_hu: float = 200.0
    sacrum_cortex_hu: float = 450.0
    sacrum_clearance_mm: float = 3.0
    sacrum_grow_hu: float = 150.0
    sacrum_radius_mm: float = 40.0
    sacrum_above_mm: float = 10.0


DEFAULT_PARAMS = DerivationParams()
# Vertebrae (C1-L6, T13) and the sacrum: the sacrum bounds the L5-S1 disc and the labelled span, but is not a vertebra.
_LEVEL_CODES = [*range(1, 27), 28]


@dataclass(frozen=True)
class DerivedLabels:
    """A semantic training label map and the voxels it cannot classify.

    Attributes:
        semantic: uint8 label map on the input grid: VERTEBRA, DISC, CANAL (:mod:`spineinstanceseg.semantic`).
        unknown: bool array, same shape: voxels to ignore in training (beyond the labelled span, canal rims).
        disc_pairs: (upper, lower) instance values of every adjacent pair that got a disc.
    """

    semantic: Volume
    unknown: NDArray[np.bool_]
    disc_pairs: tuple[tuple[int, int], ...]


def _box(mask: NDArray, margin: NDArray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + margin + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def body_cores(vertebra: NDArray, spacing: NDArray, *, fraction: float = DEFAULT_PARAMS.body_opening_fraction):
    """The vertebral body of one vertebra mask: an opening with a ball of ``fraction`` x the largest inscribed
    radius, largest component kept (bool array, same shape; empty when the mask is)."""
    if not vertebra.any():
        return np.zeros_like(vertebra, dtype=bool)
    inside = ndimage.distance_transform_edt(vertebra, sampling=spacing)
    radius = fraction * float(inside.max())
    eroded = inside > radius
    if not eroded.any():
        return vertebra.astype(bool)
    opened = (ndimage.distance_transform_edt(~eroded, sampling=spacing) <= radius) & vertebra
    return largest_component(opened)


def disc_between(upper: NDArray, lower: NDArray, free: NDArray, spacing: NDArray, max_height: float, angle: float):
    """Gap voxels (of ``free``) between two body masks on one crop (see module docstring)."""
    d_up, near_up = ndimage.distance_transform_edt(~upper, sampling=spacing, return_indices=True)
    d_low, near_low = ndimage.distance_transform_edt(~lower, sampling=spacing, return_indices=True)
    candidate = free & (d_up > 0) & (d_low > 0) & (d_up + d_low <= max_height)
    if not candidate.any():
        return candidate
    points = np.argwhere(candidate)
    to_up = (near_up[(slice(None), *points.T)].T - points) * spacing
    to_low = (near_low[(slice(None), *points.T)].T - points) * spacing
    cos = np.einsum("ij,ij->i", to_up, to_low) / (np.linalg.norm(to_up, axis=1) * np.linalg.norm(to_low, axis=1))
    out = np.zeros_like(candidate)
    keep = points[cos <= np.cos(np.deg2rad(angle))]
    out[tuple(keep.T)] = True
    return out


def _adjacent_pairs(values: list[int]) -> list[tuple[int, int]]:
    """(upper, lower) pairs of consecutive levels among VerSe codes; a missing level breaks the chain, except T13
    and L6, which most patients do not have."""
    order = sorted(values, key=cranio_caudal_order)
    optional = {cranio_caudal_order(T13_CODE), cranio_caudal_order(L6_CODE)}
    pairs = []
    for upper, lower in zip(order, order[1:], strict=False):
        skipped = set(range(cranio_caudal_order(upper) + 1, cranio_caudal_order(lower)))
        if skipped <= optional:
            pairs.append((upper, lower))
    return pairs


def _discs(
    labels: NDArray, spacing: NDArray, params: DerivationParams, *, pairs=None, bodies_given: bool = False
) -> tuple[NDArray, list[tuple[int, int]]]:
    """Disc voxels between the given (upper, lower) label pairs (default: adjacent VerSe levels)."""
    disc = np.zeros(labels.shape, bool)
    if pairs is None:
        pairs = _adjacent_pairs([int(v) for v in np.unique(labels) if v])
    centroids = label_centroids_ijk(labels)
    done = []
    for upper, lower in pairs:
        pitch = float(np.linalg.norm((centroids[upper] - centroids[lower]) * spacing))
        height = min(params.max_disc_height_mm, params.max_disc_height_fraction * pitch)
        box = _box((labels == upper) | (labels == lower), np.ceil(height / spacing).astype(int) + 1)
        crop = labels[box]
        if bodies_given:
            core_up, core_low = crop == upper, crop == lower
        else:
            core_up = body_cores(crop == upper, spacing, fraction=params.body_opening_fraction)
            core_low = body_cores(crop == lower, spacing, fraction=params.body_opening_fraction)
        if not core_up.any() or not core_low.any():
            continue
        gap = disc_between(core_up, core_low, crop == 0, spacing, height, params.between_angle_deg)
        if gap.any():
            disc[box] |= gap
            done.append((upper, lower))
    return disc, done


def _slice_axis(volume: Volume, axis_lps: NDArray, max_tilt_deg: float) -> int | None:
    """Array axis closest to the spine axis, or None when the spine is tilted too far from every array axis."""
    cosines = np.abs(np.asarray(volume.direction).T @ axis_lps)
    best = int(np.argmax(cosines))
    return best if cosines[best] >= np.cos(np.deg2rad(max_tilt_deg)) else None


def _foramen(vertebra: NDArray, axis: int, min_pixels: float) -> NDArray:
    """Per slice along ``axis``: the largest hole of the vertebra's cross-section, when big enough."""
    out = np.zeros_like(vertebra, dtype=bool)
    for k in np.nonzero(vertebra.any(axis=tuple(a for a in range(3) if a != axis)))[0]:
        index = (slice(None),) * axis + (int(k),)
        section = vertebra[index]
        holes, count = ndimage.label(ndimage.binary_fill_holes(section) & ~section)
        if count == 0:
            continue
        sizes = np.bincount(holes.ravel())[1:]
        if sizes.max() >= min_pixels:
            out[index] = holes == (int(np.argmax(sizes)) + 1)
    return out


def _canal_bridge(shape, upper, lower, axis: int) -> NDArray:
    """Between two vertebrae's foramina (each ``(box, hole)``): in every slice of their joint range that holds
    neither foramen, the overlap of the two foramina's footprints across the axis."""
    masks = []
    for box, hole in (upper, lower):
        full = np.zeros(shape, bool)
        full[box] = hole
        masks.append(full)
    others = tuple(a for a in range(3) if a != axis)
    present = [m.any(axis=others) for m in masks]
    bridge = np.zeros(shape, bool)
    if not present[0].any() or not present[1].any():
        return bridge
    in_range = np.nonzero(present[0] | present[1])[0]
    footprint = masks[0].any(axis=axis) & masks[1].any(axis=axis)
    for k in range(int(in_range.min()), int(in_range.max()) + 1):
        if not (present[0][k] or present[1][k]):
            index = (slice(None),) * axis + (k,)
            bridge[index] = footprint
    return bridge


def _canal(labels: NDArray, volume: Volume, axis_lps: NDArray, params: DerivationParams):
    """(canal, unknown rim) from the foramina of the labelled vertebrae and their overlaps between vertebrae."""
    canal = np.zeros(labels.shape, bool)
    rim = np.zeros(labels.shape, bool)
    axis = _slice_axis(volume, axis_lps, params.max_canal_tilt_deg)
    if axis is None:
        return canal, rim
    spacing = np.asarray(volume.spacing)
    in_plane = float(np.prod(np.delete(spacing, axis)))
    foramina = {}
    for value in (int(v) for v in np.unique(labels) if v and v != SACRUM_CODE):
        box = _box(labels == value, np.ones(3, int))
        hole = _foramen(labels[box] == value, axis, params.min_foramen_mm2 / in_plane)
        canal[box] |= hole
        foramina[value] = (box, hole)
    for upper, lower in _adjacent_pairs(list(foramina)):
        bridge = _canal_bridge(labels.shape, foramina[upper], foramina[lower], axis) & (labels == 0)
        canal |= bridge
        grown = ndimage.distance_transform_edt(~bridge, sampling=spacing) <= params.canal_unknown_rim_mm
        rim |= grown & ~bridge & (labels == 0)
    return canal, rim & ~canal


def _spine_axis(volume: Volume, centroids: dict[int, NDArray]) -> NDArray:
    world = volume.index_to_world(np.stack([centroids[v] for v in sorted(centroids)]))
    if len(world) < 2:
        return np.array([0.0, 0.0, 1.0])
    axis = np.linalg.svd(world - world.mean(axis=0), full_matrices=False)[2][0]
    return axis if axis[2] >= 0 else -axis


def _beyond_span(labels: NDArray, volume: Volume, centroids: dict[int, NDArray], axis: NDArray) -> NDArray:
    """Unlabelled voxels past the centroid plane of the top and of the bottom labelled vertebra."""
    along_centroids = {v: float(volume.index_to_world(c) @ axis) for v, c in centroids.items()}
    top, bottom = max(along_centroids.values()), min(along_centroids.values())
    grid = np.indices(labels.shape, dtype=np.float32).reshape(3, -1).T
    along = (volume.index_to_world(grid) @ axis).reshape(labels.shape)
    return ((along > top) | (along < bottom)) & (labels == 0)


def derive_training_labels(instances: Volume, *, params: DerivationParams = DEFAULT_PARAMS) -> DerivedLabels:
    """Vertebra, derived disc and derived canal classes, plus the unknown voxels, from a vertebra instance map.

    Args:
        instances: Label map with one VerSe code per vertebra (1-25, 28) and 26 for a labelled sacrum; other values
            count as background. Adjacent levels (T12 and L1, L5 and the sacrum, ...) get a disc between them. The
            sacrum is not marked (the caller gives it its own class).
        params: Tuned numbers (:class:`DerivationParams`).

    Returns:
        :class:`DerivedLabels` on the input grid (the input is not modified).
    """
    labels = np.asarray(instances.array).astype(np.int32)
    labels = np.where(np.isin(labels, _LEVEL_CODES), labels, 0)
    semantic = np.zeros(labels.shape, np.uint8)
    unknown = np.zeros(labels.shape, bool)
    centroids = label_centroids_ijk(labels)
    if not centroids:
        return DerivedLabels(instances.with_array(semantic, is_label=True), unknown, ())
    spacing = np.asarray(instances.spacing, dtype=float)
    disc, pairs = _discs(labels, spacing, params)
    axis = _spine_axis(instances, centroids)
    canal, rim = _canal(labels, instances, axis, params)
    semantic[canal] = CANAL
    semantic[disc] = DISC
    semantic[(labels > 0) & (labels != SACRUM_CODE)] = VERTEBRA
    unknown = (rim | _beyond_span(labels, instances, centroids, axis)) & (semantic == 0)
    return DerivedLabels(instances.with_array(semantic, is_label=True), unknown, tuple(pairs))


def _posterior_to_bodies(known: NDArray, volume: Volume, params: DerivationParams) -> NDArray:
    """Where the posterior elements of labelled bodies and discs (``known``) can be: behind their posterior wall,
    up to ``posterior_reach_mm`` behind it and ``lateral_reach_mm`` sideways from the bodies' centre.

    The wall is found per column (axial position x lateral position, array axes closest to LPS z and x): the most
    posterior known voxel; columns without one take their slice's median wall, slices without one the nearest
    slice's. Per column, so that a body label that takes in a pedicle root does not hide the canal beside it.
    """
    direction = np.asarray(volume.direction)
    axial = int(np.argmax(np.abs(direction[2])))  # array axis closest to LPS z
    ap = int(np.argmax(np.abs(direction[1])))  # array axis closest to LPS y (posterior)
    if ap == axial or not known.any():
        return np.zeros(known.shape, bool)
    lateral = 3 - axial - ap
    moved = np.moveaxis(known, (axial, ap, lateral), (0, 1, 2))  # (axial, ap, lateral)
    rows = np.arange(moved.shape[1])[None, :, None]
    posterior_up = direction[1, ap] > 0  # a higher index is more posterior
    extreme = np.where(moved, rows, -1 if posterior_up else moved.shape[1]).astype(float)
    wall = extreme.max(axis=1) if posterior_up else extreme.min(axis=1)  # (axial, lateral)
    wall[~moved.any(axis=1)] = np.nan
    has_slice = ~np.all(np.isnan(wall), axis=1)
    slice_wall = np.full(wall.shape[0], np.nan)
    slice_wall[has_slice] = np.nanmedian(wall[has_slice], axis=1)
    slice_wall = np.interp(np.arange(len(slice_wall)), np.nonzero(has_slice)[0], slice_wall[has_slice])
    wall = np.where(np.isnan(wall), slice_wall[:, None], wall)
    depth = (rows - wall[:, None, :]) * (1 if posterior_up else -1) * float(volume.spacing[ap])  # mm behind
    cols = np.arange(moved.shape[2], dtype=float)
    centre = np.array([cols[m.any(axis=0)].mean() if m.any() else np.nan for m in moved])
    centre = np.interp(np.arange(len(centre)), np.nonzero(~np.isnan(centre))[0], centre[~np.isnan(centre)])
    sideways = np.abs(cols[None, :] - centre[:, None]) * float(volume.spacing[lateral])  # (axial, lateral) mm
    near = (depth > 0) & (depth <= params.posterior_reach_mm) & (sideways <= params.lateral_reach_mm)[:, None, :]
    return np.moveaxis(near, (0, 1, 2), (axial, ap, lateral)).copy()


def derive_body_training_labels(
    bodies: Volume, *, unlabel_lowest: bool = False, params: DerivationParams = DEFAULT_PARAMS
) -> DerivedLabels:
    """Training labels from a vertebral-BODY-only mask (bodies 1..N from top to bottom, e.g. real MRI sets).

    Bodies become VERTEBRA, the gaps between consecutive bodies DISC (as in :func:`derive_training_labels`, the
    bodies being their own cores). Unknown: where the unlabelled posterior elements and canal can be (behind the
    bodies' posterior wall, within ``posterior_reach_mm`` and ``lateral_reach_mm``: they are unlabelled, not
    background; the soft tissue further back and sideways is background), beyond the centroid planes of the top
    and bottom body, and with
    ``unlabel_lowest`` the lowest body itself (a set whose lowest label may be S1, part of the sacrum).
    """
    labels = np.asarray(bodies.array).astype(np.int32)
    values = [int(v) for v in np.unique(labels) if v]
    semantic = np.zeros(labels.shape, np.uint8)
    if not values:
        return DerivedLabels(bodies.with_array(semantic, is_label=True), np.zeros(labels.shape, bool), ())
    spacing = np.asarray(bodies.spacing, dtype=float)
    centroids = label_centroids_ijk(labels)
    heights = {v: float(bodies.index_to_world(c)[2]) for v, c in centroids.items()}
    order = sorted(values, key=lambda v: -heights[v])
    disc, pairs = _discs(labels, spacing, params, pairs=list(zip(order, order[1:], strict=False)), bodies_given=True)
    semantic[disc] = DISC
    semantic[labels > 0] = VERTEBRA
    axis = _spine_axis(bodies, centroids)
    unknown = _posterior_to_bodies(semantic > 0, bodies, params) | _beyond_span(labels, bodies, centroids, axis)
    if unlabel_lowest:
        unknown |= labels == order[-1]
        semantic[labels == order[-1]] = 0
    unknown &= semantic == 0
    return DerivedLabels(bodies.with_array(semantic, is_label=True), unknown, tuple(pairs))
