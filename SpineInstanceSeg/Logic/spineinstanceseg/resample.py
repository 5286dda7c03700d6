"""Resampling volumes to a target spacing and back onto a reference grid.

Label maps are always resampled with nearest neighbour (values are never mixed); images default to linear
interpolation, with B-spline available. The physical position of the grid is kept: the resampled grid has the
same origin and direction, and covers the same physical extent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import SimpleITK as sitk

from .errors import InputError
from .io import volume_from_sitk, volume_to_sitk
from .volume import Volume

__all__ = ["Interpolation", "resample_to_spacing", "resample_to_grid"]

Interpolation = Literal["nearest", "linear", "bspline"]

_SITK_INTERPOLATORS = {
    "nearest": sitk.sitkNearestNeighbor,
    "linear": sitk.sitkLinear,
    "bspline": sitk.sitkBSpline,
}


def _interpolator(volume: Volume, interpolation: Interpolation | None) -> int:
    if volume.is_label:
        if interpolation not in (None, "nearest"):
            raise InputError(
                f"label maps can only be resampled with nearest neighbour, not {interpolation!r}",
                fix="drop the interpolation option or convert the label map to an image first",
            )
        return sitk.sitkNearestNeighbor
    name = interpolation or "linear"
    if name not in _SITK_INTERPOLATORS:
        raise InputError(f"unknown interpolation {name!r}", fix=f"use one of {sorted(_SITK_INTERPOLATORS)}")
    return _SITK_INTERPOLATORS[name]


def _resample(volume: Volume, *, size, spacing, origin, direction, interpolation: Interpolation | None) -> Volume:
    image = volume_to_sitk(volume)
    if not volume.is_label and image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        image = sitk.Cast(image, sitk.sitkFloat32)
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(s) for s in size])
    resampler.SetOutputSpacing([float(s) for s in spacing])
    resampler.SetOutputOrigin([float(o) for o in origin])
    resampler.SetOutputDirection([float(v) for v in np.asarray(direction).reshape(-1)])
    resampler.SetInterpolator(_interpolator(volume, interpolation))
    resampler.SetDefaultPixelValue(0 if volume.is_label else float(volume.array.min()))
    resampler.SetOutputPixelType(image.GetPixelID())
    out = volume_from_sitk(resampler.Execute(image), is_label=volume.is_label)
    if volume.is_label and out.dtype != volume.dtype:
        out = out.with_array(out.array.astype(volume.dtype))
    return out


def resample_to_spacing(
    volume: Volume,
    spacing: float | Sequence[float],
    *,
    interpolation: Interpolation | None = None,
) -> Volume:
    """Resample ``volume`` to voxels of ``spacing`` mm on the same origin and direction.

    The new grid covers the same physical extent: ``n_new = max(1, round(n_old * s_old / s_new))`` voxels
    per axis, with voxel (0, 0, 0) shifted so the extents' edges line up.

    Args:
        volume: Image or label map.
        spacing: Target spacing in mm, one number or three (array axis order).
        interpolation: ``"nearest"``, ``"linear"`` (image default) or ``"bspline"``; label maps: nearest only.
    """
    target = np.broadcast_to(np.asarray(spacing, dtype=float), (3,)).copy()
    if np.any(target <= 0) or not np.all(np.isfinite(target)):
        raise InputError(f"target spacing must be positive, got {spacing}", fix="pass a spacing in mm > 0")
    old_spacing = np.asarray(volume.spacing)
    extent = np.asarray(volume.shape) * old_spacing
    size = np.maximum(1, np.round(extent / target)).astype(int)
    # Keep the outer edge of the grid where it was: first voxel centre moves by half the spacing change.
    shift_index = (target - old_spacing) / 2.0 / old_spacing
    origin = volume.index_to_world(shift_index)
    return _resample(
        volume, size=size, spacing=target, origin=origin, direction=volume.direction, interpolation=interpolation
    )


def resample_to_grid(
    volume: Volume,
    reference: Volume,
    *,
    interpolation: Interpolation | None = None,
) -> Volume:
    """Resample ``volume`` onto exactly the grid of ``reference`` (shape, spacing, origin, direction).

    Voxels of the reference grid outside ``volume`` get 0 (label maps) or the minimum of ``volume`` (images).
    """
    if volume.same_grid(reference, tol=1e-9):
        return volume
    return _resample(
        volume,
        size=reference.shape,
        spacing=reference.spacing,
        origin=reference.origin,
        direction=reference.direction,
        interpolation=interpolation,
    )
