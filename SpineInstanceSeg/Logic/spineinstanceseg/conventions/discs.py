"""Which vertebra lies above each intervertebral disc (needed to number discs as SPIDER, SPINEPS, TotalSpineSeg do).

The internal semantic map has one disc class; conventions that number discs name each disc after a vertebra
(usually the one above it). Each 26-connected disc component is given the nearest vertebra instance whose
centroid lies above the disc centroid (world superior, +z LPS) and the nearest below, among the vertebrae with
voxels within ``search_mm`` of the disc's bounding box.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..semantic import DISC
from ..volume import Volume
from .arrays import label_centroids_ijk

__all__ = ["DiscNeighbours", "disc_neighbours"]


@dataclass(frozen=True)
class DiscNeighbours:
    """One disc component: its voxels are ``components == component``; ``above``/``below`` are instance values."""

    component: int
    above: int | None
    below: int | None


def disc_neighbours(
    instances: Volume, semantic: Volume, *, search_mm: float = 6.0
) -> tuple[NDArray, list[DiscNeighbours]]:
    """Label the disc components of ``semantic`` and find the vertebrae above and below each.

    Returns:
        ``(components, neighbours)``: an int32 array (same shape) numbering the disc components 1..M, and one
        :class:`DiscNeighbours` per component.
    """
    components, count = ndimage.label(np.asarray(semantic.array) == DISC, structure=np.ones((3, 3, 3), bool))
    if count == 0:
        return components.astype(np.int32), []
    inst = np.asarray(instances.array)
    vert_world = {
        v: instances.index_to_world(c)[2] for v, c in label_centroids_ijk(inst).items()
    }  # world z (superior) of every vertebra centroid
    disc_centroids = label_centroids_ijk(components)
    margin = np.ceil(search_mm / np.asarray(instances.spacing)).astype(int)
    out = []
    for index, box in enumerate(ndimage.find_objects(components), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(box, margin, inst.shape, strict=True)
        )
        nearby = [int(v) for v in np.unique(inst[grown]) if v != 0]
        disc_z = instances.index_to_world(disc_centroids[index])[2]
        above = [v for v in nearby if vert_world[v] > disc_z]
        below = [v for v in nearby if vert_world[v] <= disc_z]
        out.append(
            DiscNeighbours(
                component=index,
                above=min(above, key=lambda v: vert_world[v] - disc_z) if above else None,
                below=min(below, key=lambda v: disc_z - vert_world[v]) if below else None,
            )
        )
    return components.astype(np.int32), out
