"""On CT, sacral bone that the lowest vertebra holds goes back to the sacrum: the bone reached from the sacrum first.

Stage 1 calls parts of S1 "vertebra" (the superior articular processes that reach up beside L5's, the S1 arch and
alae), and stage 2 glues them to L5. On the real VerSe CTs (leave-one-out stage 1) L5 carried 6-11 mL of them
(Dice 0.70-0.85 against 0.83-0.93 for the vertebrae above). They lie at the height of L5's lower half, not past
the disc under it, so :mod:`.end_discs` does not see them. What separates them from L5 is a joint: the facet
joint between L5's inferior and S1's superior articular processes, a dark gap between two bright cortices, as the
disc separates the bodies.

So the lowest vertebra and the stage-1 sacrum next to it are flooded on the smoothed CT, brightest first
(a marker-based watershed of the negated image): one flood starts from the vertebra's core (its voxels deeper than
``core_depth_mm``, the largest such piece: the body), the other from the stage-1 sacrum voxels further than
``sacrum_clearance_mm`` from the vertebra. Each voxel goes to the flood that reaches it through brighter bone;
the floods meet in the dark joints and the disc. Vertebra voxels reached from the sacrum become sacrum. When that
would take more than ``max_share`` of the vertebra, nothing moves (no joint between them in the image: e.g. a
fused or sacralised L5, or a phantom whose L5 arch touches the sacrum).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage
from skimage.segmentation import watershed

from ..conventions.arrays import largest_component
from ..semantic import SACRUM
from ..volume import Volume, grow_box, label_bounding_box

__all__ = ["DEFAULT_SACRAL_BONE", "SacralBone", "SacralBoneParameters", "give_sacral_bone_to_sacrum"]


@dataclass(frozen=True)
class SacralBoneParameters:
    """The tuned numbers of :func:`give_sacral_bone_to_sacrum`.

    Attributes:
        core_depth_mm: The vertebra's flood starts from its voxels at least this deep inside it (mm): the body
            (the processes are thinner).
        sacrum_clearance_mm: The sacrum's flood starts from stage-1 sacrum voxels at least this far from the
            vertebra (mm), so that it does not start inside a joint.
        smooth_mm: Gaussian sigma of the CT smoothing (mm): noise must not open paths through a joint.
        max_share: A vertebra that would lose more than this share of its voxels keeps them all. On the real CTs
            the S1 parts glued to L5 were 4-6 % of it; on a CT phantom whose L5 arch touches the sacrum with no
            joint between them the flood took 23 % of L5 (its Dice fell from 0.93 to 0.83).
        reach_mm: The sacrum is looked for this far around the vertebra's bounding box (mm).
    """

    core_depth_mm: float = 3.0
    sacrum_clearance_mm: float = 2.0
    smooth_mm: float = 0.5
    max_share: float = 0.12
    reach_mm: float = 10.0


DEFAULT_SACRAL_BONE = SacralBoneParameters()


@dataclass(frozen=True)
class SacralBone:
    """The outcome of :func:`give_sacral_bone_to_sacrum`: the instance and semantic maps (the inputs themselves
    when nothing moved) and the volume that became sacrum (mL)."""

    instances: NDArray
    semantic: Volume
    moved_ml: float

    def message(self) -> str | None:
        if not self.moved_ml:
            return None
        return f"gave {self.moved_ml:.1f} mL of sacral bone that the lowest vertebra held back to the sacrum"


def give_sacral_bone_to_sacrum(
    instances: NDArray,
    semantic: Volume,
    image: Volume,
    lowest_label: int,
    *,
    params: SacralBoneParameters = DEFAULT_SACRAL_BONE,
) -> SacralBone:
    """Give the part of vertebra ``lowest_label`` that the sacrum's flood reaches first to the sacrum (module doc).

    Args:
        instances: (X, Y, Z) integer vertebra map on ``semantic``'s grid. Not modified.
        semantic: Stage-1 semantic map (needs its sacrum); the moved voxels become SACRUM in the returned copy.
        image: The CT (HU) on the same grid (any spacing and orientation).
        lowest_label: The vertebra next to the sacrum.
        params: The tuned numbers.

    Returns:
        :class:`SacralBone`; ``moved_ml`` 0 and the inputs unchanged when no sacrum lies next to the vertebra, no
        voxel is reached from it first, or more than ``max_share`` would be.
    """
    unchanged = SacralBone(instances, semantic, 0.0)
    spacing = np.asarray(semantic.spacing, dtype=float)
    box = grow_box(label_bounding_box(instances, lowest_label), instances.shape, spacing, params.reach_mm)
    if box is None:
        return unchanged
    vertebra = instances[box] == lowest_label
    sacrum = np.asarray(semantic.array)[box] == SACRUM
    if not sacrum.any():
        return unchanged
    markers = np.zeros(vertebra.shape, np.int32)
    # the body: the largest piece of what lies deep inside (processes are thinner)
    markers[largest_component(ndimage.distance_transform_edt(vertebra, sampling=spacing) > params.core_depth_mm)] = 1
    markers[sacrum & (ndimage.distance_transform_edt(~vertebra, sampling=spacing) > params.sacrum_clearance_mm)] = 2
    if not (markers == 2).any() or not (markers == 1).any():
        return unchanged
    smooth = ndimage.gaussian_filter(np.asarray(image.array, dtype=np.float32)[box], sigma=params.smooth_mm / spacing)
    flooded = watershed(-smooth, markers, mask=vertebra | sacrum)
    moved = vertebra & (flooded == 2)
    count = int(np.count_nonzero(moved))
    if not count or count > params.max_share * np.count_nonzero(vertebra):
        return unchanged
    out_instances = np.array(instances, copy=True)
    out_instances[box][moved] = 0
    labels = np.array(semantic.array, copy=True)
    labels[box][moved] = SACRUM
    return SacralBone(out_instances, semantic.with_array(labels), count * semantic.voxel_volume_mm3 / 1000.0)
