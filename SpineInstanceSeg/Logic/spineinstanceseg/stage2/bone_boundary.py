"""On CT, move each vertebra's surface to the bone edge that the image shows at its own resolution.

Stage 1 works on a 2 mm grid, so the vertebra surface it hands back is a 2 mm staircase. On the real VerSe CTs
(1 mm) the instances miss a thin shell of cortex (half of the missed voxels lie within 1-2 mm of the prediction,
median 200-300 HU) and spill over into the soft tissue and discs next to the bone (median 70-160 HU). This step
works on the image grid and touches only a thin band at the surface of the vertebrae:

* an unlabelled voxel (stage-1 background or disc) within ``grow_within_mm`` of a vertebra, at or above
  ``grow_min_hu``, joins the nearest vertebra (cortex the 2 mm grid lost);
* a vertebra voxel within ``trim_within_mm`` of the vertebrae's outer surface and below ``trim_below_hu`` leaves it
  (soft tissue or disc); faces shared by two vertebrae are no outer surface and stay.

Sacrum and canal voxels never join a vertebra. A vertebra that would lose more than ``max_trim_share`` of its
voxels keeps them (bone too faint for the thresholds, e.g. an MR image whose values happen to look like HU).
Measured on the four real CTs, leave-one-out models (``benchmarks/bench_real_scans.py``): see the README.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..semantic import BACKGROUND, DISC, VERTEBRA
from ..volume import Volume, bounding_box, grow_box

__all__ = ["BoundaryParameters", "BoundaryRefinement", "DEFAULT_BOUNDARY", "refine_bone_boundary"]


@dataclass(frozen=True)
class BoundaryParameters:
    """The tuned numbers of :func:`refine_bone_boundary`.

    Attributes:
        grow_min_hu: An unlabelled voxel this bright (HU) or brighter is bone. 200 HU lies above discs and muscle
            (40-100) and below cortex (> 300 after partial volume); on the real CTs 150-300 HU score alike.
        grow_within_mm: How far beyond the stage-1 surface bone may join, mm: one 2 mm stage-1 voxel.
        trim_below_hu: A surface voxel this dark (HU) or darker is not bone (soft tissue, disc, fat).
        trim_within_mm: Depth of the surface band that may be trimmed, mm (below the 2 mm stage-1 voxel, so that
            fatty marrow deeper inside stays).
        max_trim_share: A vertebra that would lose more than this share of its voxels keeps them all.
    """

    grow_min_hu: float = 200.0
    grow_within_mm: float = 2.0
    trim_below_hu: float = 100.0
    trim_within_mm: float = 1.5
    max_trim_share: float = 0.5


DEFAULT_BOUNDARY = BoundaryParameters()


@dataclass(frozen=True)
class BoundaryRefinement:
    """The outcome of :func:`refine_bone_boundary`.

    Attributes:
        instances: (X, Y, Z) vertebra labels after the refinement (same dtype and labels as the input).
        semantic: The semantic map with grown voxels made vertebra and trimmed ones background.
        grown: Voxels that joined a vertebra.
        trimmed: Voxels that left one.
    """

    instances: NDArray
    semantic: Volume
    grown: int
    trimmed: int


def refine_bone_boundary(
    instances: NDArray, semantic: Volume, image: Volume, *, params: BoundaryParameters = DEFAULT_BOUNDARY
) -> BoundaryRefinement:
    """Grow each vertebra into the bright bone at its surface and trim the dark voxels off it (CT only).

    Args:
        instances: (X, Y, Z) integer map, 0 = background, 1..N vertebrae, on the grid of ``semantic``.
        semantic: Stage-1 semantic map (:mod:`spineinstanceseg.semantic` classes).
        image: The CT in HU on the same grid.
        params: The thresholds and distances.

    Returns:
        The refined maps; the inputs are not modified.
    """
    if image.shape != semantic.shape or np.shape(instances) != semantic.shape:
        raise ValueError(
            f"grids differ: image {image.shape}, semantic {semantic.shape}, instances {np.shape(instances)}"
        )
    instances = np.asarray(instances)
    # the vertebrae's box grown by the reach plus a voxel: whole-grid transforms cost seconds
    box = grow_box(
        bounding_box(instances > 0), instances.shape, semantic.spacing, params.grow_within_mm + max(semantic.spacing)
    )
    if box is None:
        return BoundaryRefinement(instances, semantic, 0, 0)
    labels = instances[box].copy()
    hu = np.asarray(image.array[box], dtype=np.float32)
    classes = np.asarray(semantic.array[box])
    grow = _grow(labels, hu, classes, semantic.spacing, params)
    trim = _trim(labels, hu, semantic.spacing, params)
    out_instances = instances.copy()
    out_instances[box] = labels
    out_classes = np.array(semantic.array, copy=True)
    box_classes = out_classes[box]
    box_classes[grow] = VERTEBRA
    box_classes[trim] = BACKGROUND
    return BoundaryRefinement(
        out_instances, semantic.with_array(out_classes), int(np.count_nonzero(grow)), int(np.count_nonzero(trim))
    )


def _grow(
    labels: NDArray, hu: NDArray, classes: NDArray, spacing: tuple[float, ...], params: BoundaryParameters
) -> NDArray[np.bool_]:
    """Give bright unlabelled voxels near a vertebra to the nearest one (``labels`` changes in place)."""
    distance, nearest = ndimage.distance_transform_edt(labels == 0, sampling=spacing, return_indices=True)
    grow = (
        (labels == 0)
        & (distance <= params.grow_within_mm)
        & (hu >= params.grow_min_hu)
        & ((classes == BACKGROUND) | (classes == DISC))
    )
    labels[grow] = labels[tuple(axis[grow] for axis in nearest)]
    return grow


def _trim(labels: NDArray, hu: NDArray, spacing: tuple[float, ...], params: BoundaryParameters) -> NDArray[np.bool_]:
    """Take dark voxels in the outer surface band off the vertebrae (``labels`` changes in place)."""
    depth = ndimage.distance_transform_edt(labels > 0, sampling=spacing)
    trim = (labels > 0) & (depth <= params.trim_within_mm) & (hu < params.trim_below_hu)
    sizes = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    lost = np.bincount(labels[trim], minlength=len(sizes))
    keep_all = lost > params.max_trim_share * np.maximum(sizes, 1)
    trim &= ~keep_all[labels]
    labels[trim] = 0
    return trim
