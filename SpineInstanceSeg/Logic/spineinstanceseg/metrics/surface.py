"""Surface distances in millimetres: ASSD, HD95 and the Hausdorff distance.

Definitions (all distances in mm, spacing per array axis, so anisotropic voxels are measured correctly):

* surface of a mask = the mask minus its binary erosion; the erosion's structuring element has the given
  ``connectivity`` (1 = 6-neighbourhood, the default and panoptica's choice; 3 = 26-neighbourhood, SPIDER's);
  voxels on the array border count as surface (outside the array is background);
* d(x, S) = Euclidean distance (``scipy.ndimage.distance_transform_edt`` with ``sampling=spacing``) from a
  surface voxel centre x to the nearest surface voxel centre of the other mask;
* ASSD (pooled, default) = mean of d over both surfaces together = (sum_A d(a, S_B) + sum_B d(b, S_A)) /
  (|S_A| + |S_B|); ``pooled=False`` gives the mean of the two directional means (panoptica's definition);
* HD95 = 95th percentile of the pooled distances (MedPy and panoptica); HD = the maximum.

Empty cases: both masks empty -> ``nan``; exactly one empty -> ``inf``.

Distances are computed on the bounding box of the two masks (plus one voxel), which gives exactly the values
of the full arrays because every surface voxel lies in that box.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..volume import Volume
from ._inputs import as_arrays, resolve_spacing, union_box

__all__ = ["surface_mask", "surface_distances", "assd", "hd95", "hausdorff"]


def surface_mask(mask: ArrayLike, *, connectivity: int = 1) -> NDArray:
    """Boolean surface of ``mask``: the voxels removed by one erosion with the given connectivity."""
    mask = np.asarray(mask) != 0
    structure = ndimage.generate_binary_structure(mask.ndim, connectivity)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _directional(a: NDArray, b: NDArray, spacing: NDArray, connectivity: int) -> tuple[NDArray, NDArray]:
    box = union_box(a, b)
    a, b = a[box], b[box]
    surf_a = surface_mask(a, connectivity=connectivity)
    surf_b = surface_mask(b, connectivity=connectivity)
    to_b = ndimage.distance_transform_edt(~surf_b, sampling=spacing)
    to_a = ndimage.distance_transform_edt(~surf_a, sampling=spacing)
    return to_b[surf_a], to_a[surf_b]


def surface_distances(
    a: Volume | ArrayLike,
    b: Volume | ArrayLike,
    spacing: Sequence[float] | None = None,
    *,
    connectivity: int = 1,
) -> tuple[NDArray, NDArray] | None:
    """Distances (mm) from every surface voxel of ``a`` to the surface of ``b``, and from ``b`` to ``a``.

    Args:
        a, b: Masks (non-zero = foreground) of the same shape, or Volumes on the same grid.
        spacing: Voxel size in mm per array axis; required for arrays, taken from Volumes otherwise.
        connectivity: Connectivity of the erosion that defines the surface (1 = 6-, 2 = 18-, 3 = 26-neighbourhood).

    Returns:
        ``(d_a_to_b, d_b_to_a)``, or ``None`` when either mask is empty.
    """
    arr_a, arr_b = as_arrays(a, b)
    sampling = resolve_spacing(a, b, spacing, arr_a.ndim)
    mask_a, mask_b = arr_a != 0, arr_b != 0
    if not mask_a.any() or not mask_b.any():
        return None
    return _directional(mask_a, mask_b, sampling, connectivity)


def _empty_value(a: Volume | ArrayLike, b: Volume | ArrayLike) -> float:
    arr_a, arr_b = as_arrays(a, b)
    return float("nan") if not arr_a.any() and not arr_b.any() else float("inf")


def assd(
    a: Volume | ArrayLike,
    b: Volume | ArrayLike,
    spacing: Sequence[float] | None = None,
    *,
    connectivity: int = 1,
    pooled: bool = True,
) -> float:
    """Average symmetric surface distance in mm (see module docstring for the definition and empty cases)."""
    distances = surface_distances(a, b, spacing, connectivity=connectivity)
    if distances is None:
        return _empty_value(a, b)
    d_ab, d_ba = distances
    if pooled:
        return float((d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size))
    return float((d_ab.mean() + d_ba.mean()) / 2.0)


def hd95(
    a: Volume | ArrayLike,
    b: Volume | ArrayLike,
    spacing: Sequence[float] | None = None,
    *,
    connectivity: int = 1,
    percentile: float = 95.0,
) -> float:
    """95th-percentile Hausdorff distance in mm of the pooled surface distances."""
    distances = surface_distances(a, b, spacing, connectivity=connectivity)
    if distances is None:
        return _empty_value(a, b)
    return float(np.percentile(np.concatenate(distances), percentile))


def hausdorff(
    a: Volume | ArrayLike, b: Volume | ArrayLike, spacing: Sequence[float] | None = None, *, connectivity: int = 1
) -> float:
    """Hausdorff distance in mm (the largest surface distance in either direction)."""
    distances = surface_distances(a, b, spacing, connectivity=connectivity)
    if distances is None:
        return _empty_value(a, b)
    return float(max(distances[0].max(), distances[1].max()))
