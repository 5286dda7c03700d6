"""Vertebrae cut by the field of view: detached pieces at the volume's edge beyond the end vertebrae.

Where the edge of the scan cuts through the vertebra beyond the last one in view, what is left of it is a slab a
few millimetres thick (the bottom of its body, the tips of its articular processes), often in several pieces and
not connected to the vertebra next to it. No window can be centred on something that thin, so fusion's
completion step hands the pieces to the nearest vertebra: the end vertebra, which they do not even touch.

This rule gives such pieces a label of their own. A piece of an end vertebra's label becomes part of a new
vertebra when all of these hold:

- it is not connected (through voxel faces) to the largest part of that label: the remains of a cut vertebra
  often touch the end vertebra along voxel edges only, where the disc space between them is thinnest;
- it touches a face of the volume (the field of view cut it);
- it lies beyond the end vertebra, seen from its neighbour: its centroid is further out along that direction
  than the end vertebra's, by at least ``min_beyond`` times the neighbour-to-end centroid distance (the pitch).
  A detached piece of the end vertebra itself sits about level with it; the next vertebra's remains start a
  disc space further out;
- it lies no further out than ``MAX_BEYOND`` pitches: the next vertebra ends about 1.35 pitches out, so a blob
  further away (stage-1 noise in the sacrum, say) is not its remains.

Nothing lies between the last lumbar vertebra and the sacrum: when the mask has a sacrum beyond an end vertebra (the
centroid of its largest piece further out), no cut vertebra is looked for there (the pieces are then stage-1 sacrum
voxels labelled vertebra; on a bundled-model phantom crop such a piece was 85 % sacrum).

The pieces beyond one end form one vertebra when at least one of them is clearly beyond (``min_beyond_strong``
pitches; on the held-out phantoms the largest piece always is, 0.59-1.11, while the tips of the cut vertebra's
articular processes, which reach down behind the end vertebra's, sit from 0.38) and together they hold at least
``min_volume_mm3`` (smaller: stage-1 noise; the smallest remains in the held-out phantoms hold 206 mm^3, while
the bundled stage-1 model's output for the built-in example has a 98 mm^3 piece of a cut vertebra whose other
200 voxels it joined to the end vertebra: a label for that piece alone would be a false vertebra).

Works on the input grid in any orientation: distances are physical (LPS mm).
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..volume import Volume, box_touches_face
from .sacrum import largest_piece

__all__ = ["split_edge_fragments", "MIN_BEYOND", "MIN_BEYOND_STRONG", "MAX_BEYOND", "MIN_FRAGMENT_MM3"]

log = logging.getLogger(__name__)

MIN_BEYOND = 0.3
MIN_BEYOND_STRONG = 0.5
MAX_BEYOND = 1.5
MIN_FRAGMENT_MM3 = 150.0


def _beyond_end(
    labels: NDArray, objects: list, end: int, neighbour: int, geometry: Volume, *, beyond, min_vox, sacrum_lps
):
    """Boolean mask of the detached edge pieces of label ``end`` beyond it as seen from ``neighbour`` (or None).

    ``objects`` is ``ndimage.find_objects(labels)``.
    """
    box_end, box_nb = objects[end - 1], objects[neighbour - 1]
    if box_end is None or box_nb is None:
        return None
    lo = np.array([s.start for s in box_end], dtype=float)
    comp, n = ndimage.label(labels[box_end] == end)
    if n < 2:
        return None
    sizes = np.bincount(comp.ravel())
    sizes[0] = 0
    main = int(np.argmax(sizes))
    centres = np.asarray(ndimage.center_of_mass(np.ones(comp.shape), comp, np.arange(1, n + 1))) + lo
    nb_idx = np.argwhere(labels[box_nb] == neighbour).mean(axis=0) + [s.start for s in box_nb]
    world = geometry.index_to_world(np.vstack([centres, nb_idx]))
    c_end, c_nb = world[main - 1], world[-1]
    pitch = float(np.linalg.norm(c_end - c_nb))
    if pitch <= 0:
        return None
    axis = (c_end - c_nb) / pitch
    if sacrum_lps is not None and float((sacrum_lps - c_end) @ axis) > 0:
        return None  # the sacrum follows this end vertebra: nothing of another vertebra can be beyond it
    pieces, strong = [], False
    for k, box in enumerate(ndimage.find_objects(comp), start=1):
        if k == main or box is None:
            continue
        shifted = tuple(slice(s.start + int(o), s.stop + int(o)) for s, o in zip(box, lo, strict=True))
        out_by = float((world[k - 1] - c_end) @ axis) / pitch
        if box_touches_face(shifted, labels.shape) and beyond[0] <= out_by <= MAX_BEYOND:
            pieces.append(k)
            strong |= out_by >= beyond[1]
    if not strong or sizes[pieces].sum() < min_vox:
        return None
    out = np.zeros(labels.shape, dtype=bool)
    out[box_end] = np.isin(comp, pieces)
    return out


def split_edge_fragments(
    labels: NDArray,
    geometry: Volume,
    *,
    min_beyond: float = MIN_BEYOND,
    min_beyond_strong: float = MIN_BEYOND_STRONG,
    min_volume_mm3: float = MIN_FRAGMENT_MM3,
    sacrum: NDArray[np.bool_] | None = None,
) -> tuple[NDArray, int]:
    """Give the remains of vertebrae cut by the field of view beyond the end vertebrae a label of their own.

    Args:
        labels: Integer (X, Y, Z) instance map on ``geometry``'s grid, vertebrae 1..N top to bottom.
        geometry: Any volume on the labels' grid (only its geometry is used).
        min_beyond: How far beyond the end vertebra a piece must lie, in neighbour-to-end centroid distances.
        min_beyond_strong: How far beyond at least one of the pieces must lie.
        min_volume_mm3: Smallest total volume of the pieces beyond one end that makes a vertebra.
        sacrum: Boolean mask of the sacrum class on the same grid, if the mask has one.

    Returns:
        ``(labels, added)``: a new map where the pieces carry labels N+1, N+2 (not in top-to-bottom order; the
        caller renumbers), and how many vertebrae were added (0, 1 or 2).
    """
    labels = np.asarray(labels)
    n = int(labels.max()) if labels.size else 0
    if n < 2:
        return labels, 0  # no neighbour, no direction: nothing is "beyond"
    min_vox = float(min_volume_mm3) / float(np.prod(geometry.spacing))
    # the largest piece: with all sacrum voxels, stray specks could lift the centroid above L5, and a piece of S1
    # below L5 would then be taken for a cut vertebra
    largest = None if sacrum is None else largest_piece(sacrum, True, geometry)
    sacrum_lps = None if largest is None else largest[0]
    objects = ndimage.find_objects(labels)
    found = []
    for end, neighbour in ((1, 2), (n, n - 1)):
        pieces = _beyond_end(
            labels,
            objects,
            end,
            neighbour,
            geometry,
            beyond=(min_beyond, min_beyond_strong),
            min_vox=min_vox,
            sacrum_lps=sacrum_lps,
        )
        if pieces is not None:
            log.info("stage 2: %d voxels beyond vertebra %d at the edge of the field of view are a cut vertebra",
                     pieces.sum(), end)  # fmt: skip
            found.append(pieces)
    if not found:
        return labels, 0  # no copy: on a CT-sized grid the label map alone is hundreds of MB
    out = labels.copy()
    for k, pieces in enumerate(found, start=1):
        out[pieces] = n + k
    return out, len(found)
