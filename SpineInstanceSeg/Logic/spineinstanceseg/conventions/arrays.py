"""Fast label-array helpers shared by the converters: present values, look-up tables, centroids, ordering."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from ..errors import ConventionError
from ..volume import Volume

__all__ = ["present_values", "apply_lut", "label_centroids_ijk", "order_top_to_bottom", "largest_component"]

# Above this label value a dense look-up table would waste memory; np.unique is used instead.
_DENSE_LUT_LIMIT = 1 << 20


def present_values(array: NDArray, *, convention: str) -> list[int]:
    """Sorted non-zero label values present in ``array`` (negative values are refused)."""
    if array.size and int(array.min()) < 0:
        negatives = sorted(int(v) for v in np.unique(array[array < 0])[:10])
        raise ConventionError(
            f"the label map holds negative values {negatives}, which no label convention ({convention}) defines",
            fix="check that the file is a label map (not an image) and that its labels are non-negative integers",
        )
    top = int(array.max()) if array.size else 0
    if top == 0:
        return []
    if top < _DENSE_LUT_LIMIT:
        counts = np.bincount(array.ravel())
        return [int(v) for v in np.flatnonzero(counts) if v != 0]
    return [int(v) for v in np.unique(array) if v != 0]


def apply_lut(array: NDArray, lut: dict[int, int], *, dtype: type = np.int32) -> NDArray:
    """Map every value of ``array`` through ``lut`` (values not in the table become 0)."""
    top = int(array.max()) if array.size else 0
    if top < _DENSE_LUT_LIMIT:
        table = np.zeros(top + 1, dtype=dtype)
        for src, dst in lut.items():
            if 0 <= src <= top:
                table[src] = dst
        return table[array]
    values, inverse = np.unique(array, return_inverse=True)
    mapped = np.array([lut.get(int(v), 0) for v in values], dtype=dtype)
    return mapped[inverse].reshape(array.shape)


def label_centroids_ijk(array: NDArray) -> dict[int, NDArray]:
    """Centroid (continuous ITK index, shape (3,)) of every non-zero label of ``array``."""
    coords = np.nonzero(array)
    if coords[0].size == 0:
        return {}
    values = array[coords]
    counts = np.bincount(values)
    present = np.flatnonzero(counts)
    present = present[present != 0]
    sums = [np.bincount(values, weights=axis.astype(np.float64)) for axis in coords]
    return {int(v): np.array([s[v] / counts[v] for s in sums]) for v in present}


def order_top_to_bottom(volume: Volume, labels: NDArray) -> list[int]:
    """Non-zero label values of ``labels`` (on ``volume``'s grid) sorted from head to feet.

    "Up" is the world superior direction (+z of LPS), so the order is right for any direction matrix.
    """
    centroids = label_centroids_ijk(labels)
    if not centroids:
        return []
    values = sorted(centroids)
    world = volume.index_to_world(np.stack([centroids[v] for v in values]))
    return [values[i] for i in np.argsort(-world[:, 2], kind="stable")]


def largest_component(mask: NDArray) -> NDArray:
    """The largest face-connected component of a bool array (all of it when it has at most one)."""
    from scipy import ndimage

    components, count = ndimage.label(mask)
    if count <= 1:
        return components > 0
    return components == int(np.argmax(np.bincount(components.ravel())[1:])) + 1
