"""The sacrum set right where stage 1 and stage 2 disagree with the anatomy around it.

**Stage-1 "sacrum" higher up the column is part of a vertebra: it goes back to the vertebra it touches.**

The sacrum lies below the lowest mobile vertebra. A stage-1 model at times calls a piece of a vertebral body
"sacrum" higher up (seen on real MRI: a 1.3 mL piece between L3 and L4 with a model fine-tuned on MRI bodies).
Left alone it becomes a "Sacrum" segment in the middle of the lumbar spine, a hole in that vertebra, and one
more false instance for anyone who counts the sacrum. A sacrum piece whose centroid lies higher (LPS z) than the
disc between the two lowest vertebrae (half-way between their centroids) therefore becomes vertebra and joins
the vertebra it shares the most voxel faces with; one that touches no vertebra there becomes background. Pieces
at the level of the lowest vertebra are left alone: there the sacrum's alae and the pelvis reach up beside it.
(On a whole-spine CT phantom the bundled stage 1 leaves 1-3 mL of "sacrum" speckles in the cervical spine; they go
to those vertebrae.)

**A "vertebra" inside the sacrum is sacrum.** Stage 1 at times calls a lower part of the sacrum vertebra (on an
unseen lumbar CT phantom, 28 mL of S2-S4 below a 127 mL sacrum); stage 2 makes it the lowest vertebra, a false
instance that also hides the sacrum from level naming. No mobile vertebra lies lower than the middle of the
sacrum, so a vertebra at the bottom of the column becomes sacrum when its centroid lies below the centroid of the
largest sacrum piece, it is smaller than that piece (a large sacrum in view, not a stray speck) and it touches the
sacrum or a vertebra that became sacrum before it (stage 2 may cut the lower sacrum in two). The sacrum's top half
reaches beside L5's lower end, so its centroid is the bound, not its top. A piece of S1 higher up stays a vertebra
here (its centroid lies above the sacrum's); a small lowest vertebra keeps levels from being counted from the
sacrum (:mod:`spineinstanceseg.pipeline.run`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..conventions.arrays import largest_component
from ..semantic import BACKGROUND, SACRUM, VERTEBRA
from ..volume import Volume, label_bounding_box

__all__ = [
    "StraySacrum",
    "absorb_stray_sacrum",
    "VertebraeInSacrum",
    "largest_piece",
    "vertebrae_in_sacrum_to_sacrum",
]

_FACES = ndimage.generate_binary_structure(3, 1)


def _grown_box(box: tuple[slice, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` grown by one voxel on every side (clipped to ``shape``): room for the faces it shares."""
    return tuple(slice(max(s.start - 1, 0), min(s.stop + 1, n)) for s, n in zip(box, shape, strict=True))


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
    box = _grown_box(tight, labels.shape)
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


@dataclass(frozen=True)
class VertebraeInSacrum:
    """The outcome of :func:`vertebrae_in_sacrum_to_sacrum`.

    Attributes:
        semantic: The semantic map with those vertebrae made sacrum (the input itself when none was).
        instances: (X, Y, Z) vertebra labels 1..K, top to bottom (K = N minus the vertebrae made sacrum).
        confidence: (K,) the stage-2 agreement of the vertebrae left.
        volume_ml: Volume made sacrum, mL.
    """

    semantic: Volume
    instances: NDArray
    confidence: NDArray
    volume_ml: float = 0.0

    def message(self, n_before: int) -> str | None:
        """A line for the result's warnings (``n_before``: vertebrae before the step), or ``None``."""
        made = n_before - len(self.confidence)
        if not made:
            return None
        return (
            f"{made} 'vertebra(e)' of {self.volume_ml:.1f} mL in all lay below the middle of the sacrum, inside it: "
            "labelled sacrum"
        )


def largest_piece(labels: NDArray, value: int | bool, geometry: Volume) -> tuple[NDArray, float] | None:
    """LPS centroid (3,) in mm and volume in mL of the largest face-connected piece of ``labels == value`` on
    ``geometry``'s grid, or ``None`` when there is none.

    The largest piece, not all voxels: stage 1 leaves stray "sacrum" specks higher up the column (a few mL, at
    the 12th rib ends on phantoms) that would pull a centroid of all sacrum voxels above L5. Works inside the
    bounding box: a whole-grid mask of a CT costs hundreds of MB.
    """
    box = label_bounding_box(labels, value)
    if box is None:
        return None
    piece = largest_component(labels[box] == value)
    centre = np.argwhere(piece).mean(axis=0) + [s.start for s in box]
    return geometry.index_to_world(centre), float(piece.sum()) * geometry.voxel_volume_mm3 / 1000.0


def _pieces_below(instances: NDArray, geometry: Volume, below_z: float, max_ml: float) -> dict[int, tuple]:
    """Grown bounding boxes of the vertebrae (labels 1..N top to bottom) whose centroid lies below LPS z
    ``below_z`` and that hold less than ``max_ml``, from the lowest up."""
    found = {}
    voxel_ml = geometry.voxel_volume_mm3 / 1000.0
    for label in range(int(instances.max()) if instances.size else 0, 0, -1):
        tight = label_bounding_box(instances, label)
        if tight is None:
            continue
        box = _grown_box(tight, instances.shape)
        idx = np.argwhere(instances[box] == label)
        if geometry.index_to_world(idx.mean(axis=0) + [s.start for s in box])[2] >= below_z:
            break  # labels run top to bottom: the ones above lie higher still
        if len(idx) * voxel_ml < max_ml:
            found[label] = box
    return found


def _absorb_touching(instances: NDArray, labels: NDArray, candidates: dict[int, tuple]) -> dict[int, int]:
    """In place: the candidates (label -> grown box) that touch the sacrum, or one made sacrum before them, become
    sacrum in ``labels`` and background in ``instances``, until none left touches; returns label -> voxels."""
    made: dict[int, int] = {}
    changed = True
    while changed:
        changed = False
        for label, box in list(candidates.items()):
            piece = instances[box] == label
            shell = ndimage.binary_dilation(piece, structure=_FACES) & ~piece
            if not np.any(labels[box][shell] == SACRUM):
                continue
            labels[box][piece] = SACRUM  # boxes are basic slices: views into the arrays
            instances[box][piece] = 0
            made[label] = int(piece.sum())
            del candidates[label]
            changed = True
    return made


def vertebrae_in_sacrum_to_sacrum(semantic: Volume, instances: NDArray, confidence: NDArray) -> VertebraeInSacrum:
    """Make the lowest vertebrae that lie inside the sacrum sacrum (module docstring, second rule).

    A candidate (centroid below the largest sacrum piece's, smaller than that piece) becomes sacrum when it
    touches the sacrum or a candidate that already became sacrum (stage 2 may cut the lower sacrum in two).

    Args:
        semantic: Semantic map (:mod:`spineinstanceseg.semantic` classes).
        instances: (X, Y, Z) vertebra labels 1..N from top to bottom on the grid of ``semantic``; not modified.
        confidence: (N,) stage-2 agreement per vertebra.
    """
    confidence = np.asarray(confidence, dtype=float).reshape(-1)
    unchanged = VertebraeInSacrum(semantic, instances, confidence)
    sacrum = largest_piece(np.asarray(semantic.array), SACRUM, semantic)
    if sacrum is None:
        return unchanged
    centre_lps, sacrum_ml = sacrum
    candidates = _pieces_below(np.asarray(instances), semantic, below_z=centre_lps[2], max_ml=sacrum_ml)
    if not candidates:
        return unchanged
    new_instances, new_labels = np.array(instances, copy=True), np.array(semantic.array, copy=True)
    made = _absorb_touching(new_instances, new_labels, candidates)
    if not made:
        return unchanged
    kept = [k for k in range(1, len(confidence) + 1) if k not in made]
    lut = np.zeros(max(int(new_instances.max()), len(confidence)) + 1, dtype=new_instances.dtype)
    lut[kept] = np.arange(1, len(kept) + 1)
    made_ml = sum(made.values()) * semantic.voxel_volume_mm3 / 1000.0
    return VertebraeInSacrum(
        semantic.with_array(new_labels), lut[new_instances], confidence[np.asarray(kept, dtype=int) - 1], made_ml
    )
