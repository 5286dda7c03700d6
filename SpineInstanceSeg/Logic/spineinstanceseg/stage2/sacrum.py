"""Stage-1 "sacrum" higher up the column is part of a vertebra: it goes back to the vertebra it touches.

The sacrum lies below the lowest mobile vertebra. A stage-1 model at times calls a piece of a vertebral body
"sacrum" higher up (seen on real MRI: a 1.3 mL piece between L3 and L4 with a model fine-tuned on MRI bodies).
Left alone it becomes a "Sacrum" segment in the middle of the lumbar spine, a hole in that vertebra, and one
more false instance for anyone who counts the sacrum. A sacrum piece whose centroid lies higher (LPS z) than the
disc between the two lowest vertebrae (half-way between their centroids) therefore becomes vertebra and joins
the vertebra it shares the most voxel faces with; one that touches no vertebra there becomes background. Pieces
at the level of the lowest vertebra are left alone: there the sacrum's alae and the pelvis reach up beside it.
(On a whole-spine CT phantom the bundled stage 1 leaves 1-3 mL of "sacrum" speckles in the cervical spine; they go
to those vertebrae.)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..semantic import BACKGROUND, SACRUM, VERTEBRA
from ..volume import Volume, label_bounding_box

__all__ = ["StraySacrum", "absorb_stray_sacrum"]

_FACES = ndimage.generate_binary_structure(3, 1)


@dataclass(frozen=True)
class StraySacrum:
    """The outcome of :func:`absorb_stray_sacrum`.

    Attributes:
        semantic: The semantic map with stray sacrum pieces relabelled (the input itself when none was stray).
        instances: (X, Y, Z) instance map with the pieces given to the vertebrae they touch (or the input itself).
        absorbed_ml: Volume given to vertebrae, mL.
        dropped_ml: Volume of stray pieces that touched no vertebra (now background), mL.
    """

    semantic: Volume
    instances: NDArray
    absorbed_ml: float = 0.0
    dropped_ml: float = 0.0

    def message(self) -> str | None:
        """A line for the result's warnings, or ``None`` when nothing was moved."""
        if not self.absorbed_ml and not self.dropped_ml:
            return None
        return (
            f"stage 1 called {self.absorbed_ml + self.dropped_ml:.1f} mL above the lowest vertebra 'sacrum': "
            f"{self.absorbed_ml:.1f} mL given to the vertebrae it touches, {self.dropped_ml:.1f} mL dropped"
        )


def absorb_stray_sacrum(semantic: Volume, instances: NDArray, *, above_z_mm: float) -> StraySacrum:
    """Give sacrum pieces that lie higher up the column back to the vertebrae they belong to.

    Args:
        semantic: Semantic map (:mod:`spineinstanceseg.semantic` classes).
        instances: (X, Y, Z) vertebra labels 1..M on the grid of ``semantic``.
        above_z_mm: Pieces whose centroid lies higher than this LPS z (mm) are stray: the level of the disc
            between the two lowest vertebrae.
    """
    labels = np.asarray(semantic.array)
    tight = label_bounding_box(labels, SACRUM)
    if tight is None:
        return StraySacrum(semantic, instances)
    # Work on the sacrum's bounding box grown by a voxel (the faces it shares with vertebrae): a whole CT grid is
    # hundreds of millions of voxels, the sacrum's box a small part of it.
    box = tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(tight, labels.shape, strict=True))
    pieces, n = ndimage.label(labels[box] == SACRUM, structure=np.ones((3, 3, 3), dtype=bool))
    centroids = np.asarray(ndimage.center_of_mass(pieces > 0, pieces, range(1, n + 1))).reshape(-1, 3)
    offset = np.array([s.start for s in box], dtype=float)
    heights = semantic.index_to_world(centroids + offset)[:, 2]
    stray = [k for k, z in enumerate(heights, start=1) if z > above_z_mm]
    if not stray:
        return StraySacrum(semantic, instances)
    new_labels, new_instances = labels.copy(), np.array(instances, copy=True)
    box_labels, box_instances = new_labels[box], new_instances[box]  # views into the copies
    voxel_ml = semantic.voxel_volume_mm3 / 1000.0
    absorbed = dropped = 0.0
    for k in stray:
        piece = pieces == k
        shell = ndimage.binary_dilation(piece, structure=_FACES) & ~piece
        touched = box_instances[shell]
        touched = touched[touched > 0]
        size_ml = float(piece.sum()) * voxel_ml
        if touched.size:
            box_labels[piece] = VERTEBRA
            box_instances[piece] = np.bincount(touched).argmax()
            absorbed += size_ml
        else:
            box_labels[piece] = BACKGROUND
            dropped += size_ml
    return StraySacrum(semantic.with_array(new_labels), new_instances, absorbed, dropped)
