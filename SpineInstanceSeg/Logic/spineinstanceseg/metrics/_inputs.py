"""Turning metric inputs (arrays or Volumes) into boolean/label arrays plus a spacing in array axis order."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError
from ..volume import Volume, compare_grids

__all__ = ["as_arrays", "as_label_array", "resolve_spacing", "union_box"]


def as_arrays(a: Volume | ArrayLike, b: Volume | ArrayLike) -> tuple[NDArray, NDArray]:
    """The two arrays (unchanged dtype); Volumes must share a grid, arrays a shape.

    Volumes whose grids differ by float jitter only (below :data:`~spineinstanceseg.volume.GRID_JITTER_VOXELS` of
    a voxel anywhere) share a grid; larger differences are refused with the numbers.
    """
    if isinstance(a, Volume) and isinstance(b, Volume) and not a.same_grid(b):
        grids = compare_grids(a, b)
        if not grids.within():
            raise InputError(
                f"the two volumes are on different grids: {grids.describe()}",
                fix="resample the prediction onto the reference grid (resample_to_grid) before computing metrics",
            )
    arr_a = np.asarray(a.array if isinstance(a, Volume) else a)
    arr_b = np.asarray(b.array if isinstance(b, Volume) else b)
    if arr_a.shape != arr_b.shape:
        raise InputError(
            f"the two masks have different shapes {arr_a.shape} and {arr_b.shape}",
            fix="compare masks on the same voxel grid",
        )
    return arr_a, arr_b


def as_label_array(array: NDArray) -> NDArray:
    """``array`` as non-negative integer labels (booleans become 0/1)."""
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        if array.dtype != bool and not np.all(np.mod(array, 1) == 0):
            raise InputError("an instance map must hold integer labels", fix="pass a label map, not an image")
        array = array.astype(np.int32)
    if array.size and int(array.min()) < 0:
        raise InputError("an instance map cannot hold negative labels", fix="relabel it with values >= 0")
    return array


def resolve_spacing(
    a: Volume | ArrayLike, b: Volume | ArrayLike, spacing: Sequence[float] | None, ndim: int
) -> NDArray:
    """Voxel spacing in mm per array axis: from the Volumes, or ``spacing`` (required for plain arrays)."""
    volume = a if isinstance(a, Volume) else b if isinstance(b, Volume) else None
    if volume is not None:
        own = np.asarray(volume.spacing, dtype=float)
        if spacing is not None and not np.allclose(own, np.asarray(spacing, dtype=float)):
            raise InputError(
                f"spacing {tuple(spacing)} contradicts the volume's own spacing {tuple(own)}",
                fix="leave spacing out when passing Volumes (their spacing is used, in array axis order)",
            )
        return own
    if spacing is None:
        raise InputError(
            "a distance metric needs the voxel spacing in mm",
            fix="pass spacing=(sx, sy, sz) in the order of the array axes, or pass Volumes",
        )
    values = np.broadcast_to(np.asarray(spacing, dtype=float), (ndim,)).copy()
    if np.any(values <= 0) or not np.all(np.isfinite(values)):
        raise InputError(f"spacing must be positive numbers, got {tuple(spacing)}", fix="pass the spacing in mm")
    return values


def union_box(*masks: NDArray, margin: int = 1) -> tuple[slice, ...] | None:
    """Bounding box (slices, grown by ``margin``) of the union of ``masks``; ``None`` when all are empty."""
    union = np.zeros(masks[0].shape, dtype=bool)
    for mask in masks:
        union |= mask
    if not union.any():
        return None
    box = []
    for axis in range(union.ndim):
        other = tuple(i for i in range(union.ndim) if i != axis)
        hits = np.flatnonzero(union.any(axis=other))
        box.append(slice(max(0, hits[0] - margin), min(union.shape[axis], hits[-1] + 1 + margin)))
    return tuple(box)
