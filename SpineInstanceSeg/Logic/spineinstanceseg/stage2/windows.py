"""Fixed-size windows (the paper's SSplit) around vertebra centroids on the stage-2 working grid.

The working grid is the canonical orientation (:func:`spineinstanceseg.orientation.to_canonical`: array axes
point roughly L, P, S, so axis 2 runs from feet to head) resampled to an isotropic ``WindowSpec.spacing_mm``.
Windows are axis-aligned boxes of ``WindowSpec.size`` voxels in that grid; parts outside the volume are padded
with zeros (background), so a vertebra at the edge of the field of view still gets a full window.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from ..errors import InputError

__all__ = ["WindowSpec", "window_corner", "window_slices", "crop_window"]


@dataclass(frozen=True)
class WindowSpec:
    """Window geometry.

    Attributes:
        size: Window size in voxels along the working-grid axes (L, P, S). Each must be divisible by 8
            (three 2x poolings of the network).
        spacing_mm: Isotropic voxel size of the working grid in mm.
    """

    size: tuple[int, int, int] = (64, 64, 64)
    spacing_mm: float = 2.0

    def __post_init__(self) -> None:
        if len(self.size) != 3 or any(int(s) <= 0 or int(s) % 8 for s in self.size):
            raise InputError(
                f"window size must be three positive multiples of 8 voxels, got {self.size}",
                fix="choose e.g. (64, 64, 64)",
            )
        if not self.spacing_mm > 0:
            raise InputError(f"working spacing must be > 0 mm, got {self.spacing_mm}", fix="use e.g. 2.0")
        object.__setattr__(self, "size", tuple(int(s) for s in self.size))

    def to_dict(self) -> dict:
        return {"size": list(self.size), "spacing_mm": self.spacing_mm}

    @classmethod
    def from_dict(cls, data: dict) -> WindowSpec:
        return cls(size=tuple(data["size"]), spacing_mm=float(data["spacing_mm"]))


def window_corner(center_index: ArrayLike, size: tuple[int, int, int]) -> NDArray[np.int64]:
    """Integer index of the window's first voxel so that ``center_index`` lies at the window centre."""
    center = np.asarray(center_index, dtype=float)
    return np.round(center).astype(np.int64) - np.asarray(size, dtype=np.int64) // 2


def window_slices(
    corner: ArrayLike, size: tuple[int, int, int], shape: tuple[int, ...]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices ``(in_volume, in_window)`` of the overlap between a window and a volume of ``shape``.

    ``volume[in_volume]`` and ``window[in_window]`` address the same voxels. Either may be empty when the
    window lies entirely outside the volume.
    """
    corner = np.asarray(corner, dtype=np.int64)
    vol_sl, win_sl = [], []
    for axis in range(3):
        start = int(corner[axis])
        stop = start + int(size[axis])
        lo, hi = max(start, 0), min(stop, int(shape[axis]))
        hi = max(hi, lo)
        vol_sl.append(slice(lo, hi))
        win_sl.append(slice(lo - start, hi - start))
    return tuple(vol_sl), tuple(win_sl)


def crop_window(array: NDArray, corner: ArrayLike, size: tuple[int, int, int], *, fill: float = 0) -> NDArray:
    """Crop a window from the last three axes of ``array`` (shape ``(..., X, Y, Z)``), padding with ``fill``.

    Returns:
        Array of shape ``(..., *size)`` and the dtype of ``array``.
    """
    array = np.asarray(array)
    lead = array.shape[:-3]
    out = np.full((*lead, *size), fill, dtype=array.dtype)
    vol_sl, win_sl = window_slices(corner, size, array.shape[-3:])
    ell = (Ellipsis,)
    out[ell + win_sl] = array[ell + vol_sl]
    return out
