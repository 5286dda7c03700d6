"""The geometry-carrying volume type used everywhere in the library.

Axis order (the one convention of this package)
-----------------------------------------------
``Volume.array[i, j, k]`` is the voxel with ITK index ``(i, j, k)``: the first array axis runs along ITK's x
(image columns), the second along y, the third along z (slices). ``spacing``, ``origin`` and the columns of
``direction`` follow the same order. Physical coordinates are ITK's LPS millimetres::

    world = origin + direction @ (spacing * [i, j, k])

This is the transpose of ``SimpleITK.GetArrayFromImage`` (which gives ``[k, j, i]``); the only place that
converts between the two is :mod:`spineinstanceseg.io`. Slicer's RAS is handled only by the MRML adapter.

A volume is immutable by convention: its array is made read-only and every operation returns a new volume.
A *label map* (``is_label=True``) holds integers and is resampled with nearest neighbour.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .errors import InputError

__all__ = [
    "Volume",
    "GRID_JITTER_VOXELS",
    "GridDifference",
    "GridComparison",
    "bounding_box",
    "box_touches_face",
    "grow_box",
    "label_bounding_box",
    "compare_grids",
    "orientation_code",
]

_GEOMETRY_TOL = 1e-5

# Two grids whose voxel centres lie at most this fraction of the smallest voxel spacing apart, anywhere in the grid,
# are the same grid when label maps are compared (float jitter between tools that wrote the same geometry, e.g. an
# origin 0.0006 mm off). 1 % of a voxel cannot move a voxel centre into its neighbour. See :func:`compare_grids`.
GRID_JITTER_VOXELS = 0.01
# Differences smaller than this (mm) are not listed at all (printing precision).
_NEGLIGIBLE_MM = 1e-9


_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))  # positive / negative direction of LPS x, y, z


def orientation_code(direction: ArrayLike) -> str:
    """Three LPS letters naming the world direction closest to each array axis (e.g. "LPS", "RAS")."""
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    code = []
    for axis in range(3):
        col = direction[:, axis]
        world = int(np.argmax(np.abs(col)))
        code.append(_LETTERS[world][0 if col[world] > 0 else 1])
    return "".join(code)


def _as_triplet(values: ArrayLike, name: str) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.shape != (3,) or not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must be three finite numbers, got {values!r}", fix=f"pass a 3-element {name}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D scalar image or label map with its physical geometry.

    Attributes:
        array: Voxel values, shape ``(nx, ny, nz)`` in ITK index order (see module docstring). Read-only.
        spacing: Voxel size in mm along the array axes, ``(sx, sy, sz)``, all > 0.
        origin: LPS position in mm of the centre of voxel ``(0, 0, 0)``.
        direction: 3x3 orthonormal matrix; column ``a`` is the LPS unit vector of array axis ``a``.
        is_label: True for label maps (integer values, nearest-neighbour resampling).
    """

    array: NDArray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: NDArray = field(default_factory=lambda: np.eye(3))
    is_label: bool = False

    def __post_init__(self) -> None:
        array = np.asarray(self.array)
        if array.ndim != 3:
            raise InputError(
                f"a volume must be 3D, got an array with {array.ndim} dimension(s) and shape {array.shape}",
                fix="pass a 3D image (a single 2D slice or a 4D series cannot be segmented)",
            )
        if min(array.shape) < 1:
            raise InputError(f"the volume has no voxels (shape {array.shape})", fix="pass a non-empty image")
        if self.is_label and not np.issubdtype(array.dtype, np.integer):
            if array.dtype == bool:
                array = array.astype(np.uint8)
            else:
                raise InputError(
                    f"a label map must hold integers, got dtype {array.dtype}",
                    fix="round the labels and cast them to an integer type, or load the file as an image",
                )
        spacing = _as_triplet(self.spacing, "spacing")
        if min(spacing) <= 0:
            raise InputError(f"spacing must be positive, got {spacing}", fix="check the image header")
        origin = _as_triplet(self.origin, "origin")
        direction = np.array(self.direction, dtype=float).reshape(3, 3)
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise InputError(
                f"direction matrix is not orthonormal: {direction.tolist()}",
                fix="fix the image header (sheared or scaled direction cosines are not supported)",
            )
        if array.flags.writeable:
            array = array.view()
            array.flags.writeable = False
        direction.flags.writeable = False
        object.__setattr__(self, "array", array)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    # ----------------------------------------------------------------- basic properties
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.array.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    @property
    def affine(self) -> NDArray:
        """4x4 matrix mapping homogeneous ITK indices ``(i, j, k, 1)`` to LPS mm."""
        aff = np.eye(4)
        aff[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        aff[:3, 3] = self.origin
        return aff

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    # ----------------------------------------------------------------- coordinates
    def index_to_world(self, ijk: ArrayLike) -> NDArray:
        """Continuous indices ``(..., 3)`` -> LPS mm ``(..., 3)``."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ (self.direction * np.asarray(self.spacing)[None, :]).T + np.asarray(self.origin)

    def world_to_index(self, xyz: ArrayLike) -> NDArray:
        """LPS mm ``(..., 3)`` -> continuous indices ``(..., 3)``."""
        xyz = np.asarray(xyz, dtype=float) - np.asarray(self.origin)
        return (xyz @ self.direction) / np.asarray(self.spacing)

    # ----------------------------------------------------------------- derived volumes
    def with_array(self, array: ArrayLike, *, is_label: bool | None = None) -> Volume:
        """A new volume on the same grid holding ``array`` (which must have the same shape)."""
        array = np.asarray(array)
        if array.shape != self.array.shape:
            raise InputError(
                f"array shape {array.shape} does not match the volume grid {self.array.shape}",
                fix="resample the array onto the grid first",
            )
        return Volume(
            array,
            self.spacing,
            self.origin,
            self.direction,
            is_label=self.is_label if is_label is None else is_label,
        )

    def crop(self, box: tuple[slice, slice, slice]) -> Volume:
        """The sub-volume ``array[box]`` with its own origin, so every kept voxel stays where it was in the world.

        Args:
            box: One slice per array axis with step 1 (``None`` bounds allowed), e.g. from ``np.s_[10:90, :, 5:]``.
        """
        if len(box) != 3 or any(s.step not in (None, 1) for s in box):
            raise InputError(f"crop box {box!r} is not three unit-step slices", fix="pass e.g. np.s_[a:b, c:d, e:f]")
        starts = np.array([s.indices(n)[0] for s, n in zip(box, self.shape, strict=True)], dtype=float)
        array = self.array[box]
        if min(array.shape) < 1:
            raise InputError(f"crop box {box!r} leaves no voxels of {self.shape}", fix="pass a box inside the grid")
        origin = self.index_to_world(starts)
        return Volume(array, self.spacing, tuple(origin), self.direction, is_label=self.is_label)

    def as_label(self, dtype: type | np.dtype | None = None) -> Volume:
        """This grid as a label map; non-integer arrays are rounded."""
        array = self.array
        if not np.issubdtype(array.dtype, np.integer) or dtype is not None:
            target = np.dtype(dtype) if dtype is not None else np.dtype(np.int32)
            if not np.issubdtype(array.dtype, np.integer):
                array = np.rint(array)
            array = array.astype(target)
        return self.with_array(array, is_label=True)

    def as_image(self, dtype: type | np.dtype = np.float32) -> Volume:
        return self.with_array(self.array.astype(dtype), is_label=False)

    def same_grid(self, other: Volume, *, tol: float = _GEOMETRY_TOL) -> bool:
        """True when both volumes have the same shape, spacing, origin and direction (within ``tol``)."""
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, atol=tol, rtol=0)
            and np.allclose(self.origin, other.origin, atol=tol, rtol=0)
            and np.allclose(self.direction, other.direction, atol=tol, rtol=0)
        )

    def geometry_differences(self, other: Volume, *, tol: float = _GEOMETRY_TOL) -> list[str]:
        """Human-readable list of how the grids differ (empty when :meth:`same_grid`)."""
        out = []
        if self.shape != other.shape:
            out.append(f"shape {self.shape} vs {other.shape}")
        for name in ("spacing", "origin", "direction"):
            a, b = np.asarray(getattr(self, name)), np.asarray(getattr(other, name))
            if not np.allclose(a, b, atol=tol, rtol=0):
                out.append(f"{name} {np.round(a, 6).tolist()} vs {np.round(b, 6).tolist()}")
        return out

    def describe(self) -> str:
        """A multi-line human-readable summary (size, spacing, orientation, value range)."""
        lo, hi = (float(self.array.min()), float(self.array.max()))
        extent = np.asarray(self.shape) * np.asarray(self.spacing)
        lines = [
            f"kind:        {'label map' if self.is_label else 'image'} ({self.dtype})",
            f"size:        {self.shape[0]} x {self.shape[1]} x {self.shape[2]} voxels",
            f"spacing:     {self.spacing[0]:.4g} x {self.spacing[1]:.4g} x {self.spacing[2]:.4g} mm",
            f"extent:      {extent[0]:.1f} x {extent[1]:.1f} x {extent[2]:.1f} mm",
            f"origin:      ({self.origin[0]:.3f}, {self.origin[1]:.3f}, {self.origin[2]:.3f}) mm LPS",
            f"orientation: {orientation_code(self.direction)} (closest axes, LPS letters)",
            f"values:      {lo:.6g} .. {hi:.6g}",
        ]
        if self.is_label:
            labels = np.unique(self.array)
            shown = ", ".join(str(int(v)) for v in labels[:30]) + (" ..." if labels.size > 30 else "")
            lines.append(f"labels:      {shown}")
        return "\n".join(lines)


@dataclass(frozen=True)
class GridDifference:
    """How one geometry field of two grids differs, and how far that moves voxel centres.

    Attributes:
        name: "origin", "spacing" or "direction".
        first / second: The field in the first and the second grid (direction: flattened row by row).
        shift_mm: The largest distance (mm) this field alone puts between corresponding voxel centres.
        shift_voxels: ``shift_mm`` in units of the smallest voxel spacing of the two grids.
        angle_deg: Direction only: the largest angle between corresponding axes.
    """

    name: str
    first: tuple[float, ...]
    second: tuple[float, ...]
    shift_mm: float
    shift_voxels: float
    angle_deg: float = 0.0

    def describe(self) -> str:
        moved = f"{self.shift_mm:.3g} mm = {self.shift_voxels:.3g} voxel"
        if self.name == "direction":
            return f"direction differs by {self.angle_deg:.3g} degrees (moves the far corner {moved})"
        values = f"{_triplet(self.first)} vs {_triplet(self.second)} mm"
        if self.name == "spacing":
            return f"spacing {values} (moves the far corner {moved})"
        return f"origin {values} ({moved} apart)"


@dataclass(frozen=True)
class GridComparison:
    """The result of :func:`compare_grids`: shapes, the fields that differ, and the largest voxel displacement."""

    shapes: tuple[tuple[int, ...], tuple[int, ...]]
    differences: tuple[GridDifference, ...]
    max_shift_mm: float
    max_shift_voxels: float

    @property
    def same_shape(self) -> bool:
        return self.shapes[0] == self.shapes[1]

    def within(self, voxels: float = GRID_JITTER_VOXELS) -> bool:
        """Same shape, and no voxel centre moves by more than ``voxels`` (a fraction of the smallest spacing)."""
        return self.same_shape and self.max_shift_voxels <= voxels

    def describe(self) -> str:
        """E.g. "origin (0, 0, 0) vs (1, 0, 0) mm (1 mm = 1 voxel apart)"; every field that differs."""
        parts = [] if self.same_shape else [f"shape {self.shapes[0]} vs {self.shapes[1]}"]
        return "; ".join(parts + [d.describe() for d in self.differences]) or "identical grids"


def _triplet(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def compare_grids(first: Volume, second: Volume) -> GridComparison:
    """How far apart the voxel centres of two grids are, in mm and in voxels, and which fields cause it.

    Distances are measured at the grid's corners (the farthest voxels from the origin), where a spacing or
    direction difference moves voxels most; one voxel is the smallest spacing of the two grids.
    """
    voxel = min(min(first.spacing), min(second.spacing))
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in first.shape])), dtype=float)
    d1, d2 = np.asarray(first.direction), np.asarray(second.direction)
    s1, s2 = np.asarray(first.spacing), np.asarray(second.spacing)
    o1, o2 = np.asarray(first.origin), np.asarray(second.origin)
    total = float(np.max(np.linalg.norm((corners * s1) @ d1.T + o1 - (corners * s2) @ d2.T - o2, axis=1)))
    cosines = np.clip(np.sum(d1 * d2, axis=0), -1.0, 1.0)
    shifts = {
        "origin": float(np.linalg.norm(o1 - o2)),
        "spacing": float(np.max(np.linalg.norm((corners * (s1 - s2)) @ d1.T, axis=1))),
        "direction": float(np.max(np.linalg.norm((corners * s2) @ (d1 - d2).T, axis=1))),
    }
    values = {"origin": (o1, o2), "spacing": (s1, s2), "direction": (d1.reshape(-1), d2.reshape(-1))}
    differences = tuple(
        GridDifference(name, tuple(values[name][0].tolist()), tuple(values[name][1].tolist()), shift,
                       shift / voxel, float(np.degrees(np.max(np.arccos(cosines)))) if name == "direction" else 0.0)
        for name, shift in shifts.items()
        if shift > _NEGLIGIBLE_MM
    )  # fmt: skip
    return GridComparison((first.shape, second.shape), differences, total, total / voxel)


def bounding_box(mask: NDArray[np.bool_]) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every True voxel (``None`` when there is none)."""
    slices = []
    for axis in range(mask.ndim):
        hit = np.nonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))[0]
        if not len(hit):
            return None
        slices.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(slices)


def grow_box(
    box: Sequence[slice] | None, shape: Sequence[int], spacing: Sequence[float], margin_mm: float
) -> tuple[slice, ...] | None:
    """An index box (as :func:`bounding_box` or :func:`label_bounding_box` give) grown by ``margin_mm`` (rounded
    up to whole voxels per axis of ``spacing``) and clipped to a grid of ``shape``; ``None`` stays ``None``."""
    if box is None:
        return None
    pad = [int(np.ceil(margin_mm / s)) for s in spacing]
    return tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(box, pad, shape, strict=True))


def box_touches_face(box: Sequence[slice], shape: Sequence[int]) -> bool:
    """Whether a box of index slices (as :func:`bounding_box` gives) reaches a face of a grid of ``shape``: what
    it bounds was cut by the field of view."""
    return any(s.start == 0 or s.stop == n for s, n in zip(box, shape, strict=True))


def label_bounding_box(labels: NDArray, value: int) -> tuple[slice, ...] | None:
    """:func:`bounding_box` of ``labels == value`` for a 3-D map, without a whole-grid mask (slab by slab along the
    first axis): on a CT-sized grid that mask alone is hundreds of MB."""
    hits = [np.zeros(n, dtype=bool) for n in labels.shape]
    for i in range(labels.shape[0]):
        slab = labels[i] == value
        if slab.any():
            hits[0][i] = True
            hits[1] |= slab.any(axis=1)
            hits[2] |= slab.any(axis=0)
    if not hits[0].any():
        return None
    return tuple(slice(int(np.flatnonzero(h)[0]), int(np.flatnonzero(h)[-1]) + 1) for h in hits)
