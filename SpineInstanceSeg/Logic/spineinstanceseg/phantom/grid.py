"""Voxel grids of the phantom: patient-like orientation per modality, optional oblique tilt, field of view.

The anatomy lives in world LPS mm (spine along +z); the grid is laid over it. ``oblique_deg`` tilts the grid's
direction matrix, not the patient, so the same seed gives the same anatomy in world coordinates for any grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["Grid", "base_direction", "random_rotation", "grid_covering", "DEFAULT_SPACING"]

# Array axes of a typical file per modality, as LPS unit vectors (columns):
# CT: axial slices stored as NIfTI RAS+ (ITK direction diag(-1, -1, 1)); MRI: sagittal slices, in-plane
# axes posterior and inferior, slice axis towards the patient's right ("PIR"; the thick axis is left-right).
_BASE_DIRECTIONS = {
    "ct": np.diag([-1.0, -1.0, 1.0]),
    "mri": np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
}

DEFAULT_SPACING = {"ct": (0.8, 0.8, 1.5), "t1": (0.6, 0.6, 3.5), "t2": (0.6, 0.6, 3.5)}


def base_direction(modality: str) -> NDArray:
    return _BASE_DIRECTIONS["ct" if modality == "ct" else "mri"].copy()


def random_rotation(rng: np.random.Generator, max_deg: float) -> tuple[NDArray, float]:
    """A rotation about a random axis by an angle in ``[max_deg / 2, max_deg]``; returns (matrix, angle)."""
    if max_deg <= 0:
        return np.eye(3), 0.0
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = float(rng.uniform(0.5, 1.0) * max_deg)
    a = np.radians(angle)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rot = np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * (k @ k)
    return rot, angle


@dataclass(frozen=True)
class Grid:
    """A voxel grid: ``world = origin + direction @ (spacing * ijk)`` (see :class:`spineinstanceseg.Volume`)."""

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: NDArray
    direction: NDArray

    @property
    def matrix(self) -> NDArray:
        """3x3 index -> world (mm) linear part."""
        return self.direction * np.asarray(self.spacing)[None, :]

    def refined(self, factors: tuple[int, int, int]) -> Grid:
        """The grid with each voxel split into ``factors`` odd sub-voxels; the middle one keeps the voxel centre."""
        f = np.asarray(factors)
        spacing = tuple(float(s) / int(k) for s, k in zip(self.spacing, factors, strict=True))
        # Sub-voxel j of voxel i sits at continuous index i + (j - (f - 1) / 2) / f.
        origin = self.origin - self.direction @ (np.asarray(self.spacing) * (f - 1) / (2 * f))
        shape = tuple(int(n) * int(k) for n, k in zip(self.shape, factors, strict=True))
        return Grid(shape, spacing, origin, self.direction)  # type: ignore[arg-type]


def grid_covering(lo: NDArray, hi: NDArray, *, spacing: tuple[float, float, float], direction: NDArray) -> Grid:
    """The smallest grid with ``direction`` and ``spacing`` whose voxel centres cover the world box [lo, hi]."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    along = corners @ direction  # coordinates of the corners along each grid axis (mm)
    first, last = along.min(axis=0), along.max(axis=0)
    sp = np.asarray(spacing, dtype=float)
    shape = np.maximum(np.ceil((last - first) / sp).astype(int) + 1, 2)
    origin = direction @ first
    return Grid(tuple(int(n) for n in shape), tuple(float(s) for s in sp), origin, direction)  # type: ignore[arg-type]
