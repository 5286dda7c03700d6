"""Exact (interpolation-free) reorientation of volumes by permuting and flipping array axes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from .volume import Volume, orientation_code

__all__ = ["orientation_code", "Reorientation", "to_canonical", "from_canonical"]


@dataclass(frozen=True)
class Reorientation:
    """How a volume was permuted and flipped to reach canonical orientation (to undo it exactly)."""

    permutation: tuple[int, int, int]  # canonical axis a came from original axis permutation[a]
    flips: tuple[bool, bool, bool]  # canonical axis a was flipped
    original: Volume  # geometry reference (shape, spacing, origin, direction) of the input


def _closest_permutation(direction: NDArray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """For each LPS world axis, the array axis pointing closest to it (a permutation) and its sign."""
    absd = np.abs(direction)
    perm: list[int] = [-1, -1, -1]
    used: set[int] = set()
    # Greedy on the largest component first keeps oblique volumes stable.
    for flat in np.argsort(-absd, axis=None):
        world, axis = divmod(int(flat), 3)
        if perm[world] == -1 and axis not in used:
            perm[world] = axis
            used.add(axis)
    flips = tuple(bool(direction[w, perm[w]] < 0) for w in range(3))
    return (perm[0], perm[1], perm[2]), flips  # type: ignore[return-value]


def to_canonical(volume: Volume) -> tuple[Volume, Reorientation]:
    """Permute/flip array axes so that axis 0, 1, 2 point as close as possible to L, P, S.

    No voxel value is interpolated; the physical position of every voxel is unchanged. Oblique volumes keep
    their residual rotation in the direction matrix.

    Returns:
        The reoriented volume and the :class:`Reorientation` that :func:`from_canonical` needs.
    """
    perm, flips = _closest_permutation(volume.direction)
    array = np.transpose(volume.array, perm)
    spacing = tuple(volume.spacing[p] for p in perm)
    direction = volume.direction[:, list(perm)].copy()
    shape = array.shape
    origin_index = np.zeros(3)
    for axis, flip in enumerate(flips):
        if flip:
            array = np.flip(array, axis)
            direction[:, axis] *= -1
            origin_index[axis] = shape[axis] - 1
    # The new voxel (0,0,0) is the old voxel at the far end of each flipped axis.
    old_index = np.zeros(3)
    for axis in range(3):
        old_index[perm[axis]] = origin_index[axis]
    origin = volume.index_to_world(old_index)
    out = Volume(np.ascontiguousarray(array), spacing, origin, direction, is_label=volume.is_label)  # type: ignore[arg-type]
    return out, Reorientation(perm, flips, volume)


def from_canonical(volume: Volume, how: Reorientation) -> Volume:
    """Undo :func:`to_canonical` on a volume on the canonical grid (e.g. a prediction)."""
    array = volume.array
    for axis, flip in enumerate(how.flips):
        if flip:
            array = np.flip(array, axis)
    inverse = np.argsort(how.permutation)
    array = np.ascontiguousarray(np.transpose(array, inverse))
    return how.original.with_array(array, is_label=volume.is_label)
