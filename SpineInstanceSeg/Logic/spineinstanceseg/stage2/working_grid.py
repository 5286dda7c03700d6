"""The stage-2 working grid: input grid <-> canonical isotropic grid, and back.

Stage 2 works on one kind of grid whatever the input looked like: the input is reoriented to canonical axes
(:func:`spineinstanceseg.orientation.to_canonical`: array axes point roughly L, P, S, so axis 2 runs feet to head
and "top" means a higher axis-2 index) and resampled with nearest neighbour to an isotropic spacing (the window
spec's ``spacing_mm``). Results computed there are brought back with :func:`labels_to_input_grid`, which
guarantees the contract of stage 2 on the *input* grid: every input vertebra voxel gets an instance label and
no other voxel does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..orientation import Reorientation, from_canonical, to_canonical
from ..resample import resample_to_grid, resample_to_spacing
from ..volume import Volume, bounding_box

__all__ = ["WorkingGrid", "to_working_grid", "labels_to_input_grid", "fill_from_nearest"]


@dataclass(frozen=True)
class WorkingGrid:
    """A label map brought onto the working grid, with what is needed to go back.

    Attributes:
        volume: Label map on the working grid (canonical orientation, isotropic ``spacing_mm``).
        canonical: The input label map reoriented to canonical axes, still at its native spacing.
        how: The reorientation that :func:`spineinstanceseg.orientation.from_canonical` undoes.
        spacing_mm: Isotropic voxel size of ``volume`` in mm.
    """

    volume: Volume
    canonical: Volume
    how: Reorientation
    spacing_mm: float

    @property
    def array(self) -> NDArray:
        return self.volume.array


def to_working_grid(labels: Volume, spacing_mm: float) -> WorkingGrid:
    """Reorient ``labels`` to canonical axes and resample it (nearest neighbour) to ``spacing_mm`` isotropic."""
    labels = labels if labels.is_label else labels.as_label()
    canonical, how = to_canonical(labels)
    if np.allclose(canonical.spacing, spacing_mm, rtol=0, atol=1e-6):
        working = canonical
    else:
        working = resample_to_spacing(canonical, float(spacing_mm))
    return WorkingGrid(volume=working, canonical=canonical, how=how, spacing_mm=float(spacing_mm))


def fill_from_nearest(labels: NDArray, region: NDArray[np.bool_], *, sampling=None) -> NDArray:
    """Labels restricted to ``region``, where unlabelled ``region`` voxels take the nearest labelled voxel's label.

    Args:
        labels: Integer array (X, Y, Z); 0 = unlabelled.
        region: Boolean array of the same shape: the voxels that must be labelled.
        sampling: Voxel size per axis for the distance (mm); ``None`` = isotropic.

    Returns:
        New array: ``labels`` inside ``region`` (gaps filled), 0 outside. Unchanged (all 0 in ``region``) when
        there is no labelled voxel at all.
    """
    out = np.where(region, labels, 0).astype(labels.dtype, copy=False)
    missing = region & (out == 0)
    if not missing.any() or not out.any():
        return out
    # Work in the bounding box of the region only: the full input grid can be tens of millions of voxels.
    idx = np.argwhere(region)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    sub = out[box]
    sub_missing = missing[box]
    nearest = ndimage.distance_transform_edt(sub == 0, sampling=sampling, return_distances=False, return_indices=True)
    sub[sub_missing] = sub[tuple(axis[sub_missing] for axis in nearest)]
    return out


def labels_to_input_grid(
    labels: NDArray, grid: WorkingGrid, vertebra: NDArray[np.bool_] | None = None, *, dtype=np.int32
) -> Volume:
    """Instance labels on the working grid -> label map on the original input grid.

    Nearest-neighbour upsampling onto the canonical native grid, then every ``vertebra`` voxel still unlabelled
    takes the label of the nearest labelled voxel, and every voxel outside ``vertebra`` is cleared; finally the
    axes are put back as in the input (exactly the input geometry). With ``vertebra`` given, the work is done in
    its bounding box only, so a fine input grid (tens of millions of voxels) costs little time and memory.

    Args:
        labels: Integer (X, Y, Z) array on ``grid.volume``'s grid.
        grid: From :func:`to_working_grid`.
        vertebra: Boolean mask on ``grid.canonical``'s grid of the voxels that must carry a label (the stage-1
            vertebra voxels); ``None`` keeps the upsampled labels as they are.
        dtype: Output integer type.
    """
    working = grid.volume.with_array(np.asarray(labels).astype(dtype), is_label=True)
    canonical = grid.canonical
    if vertebra is None:
        native = np.asarray(resample_to_grid(working, canonical).array).astype(dtype)
        return from_canonical(canonical.with_array(native, is_label=True), grid.how)
    vertebra = np.asarray(vertebra, dtype=bool)
    native = np.zeros(canonical.shape, dtype=dtype)
    box = bounding_box(vertebra)
    if box is not None:
        lo = np.array([b.start for b in box], dtype=float)
        shape = tuple(b.stop - b.start for b in box)
        reference = Volume(
            np.zeros(shape, np.uint8),
            canonical.spacing,
            canonical.index_to_world(lo),
            canonical.direction,
            is_label=True,
        )
        sub = np.asarray(resample_to_grid(working, reference).array).astype(dtype)
        native[box] = fill_from_nearest(sub, vertebra[box], sampling=canonical.spacing)
    return from_canonical(canonical.with_array(native, is_label=True), grid.how)
