"""Where the body is in a scan, so that stage 1 can skip the air around it.

A CT is often 512 x 512 voxels per slice with the body in the middle and air around it. Stage 1 does not need that
air, and a model trained on tightly framed images can misread it: with z-score normalisation, a large air
fraction shifts every intensity the network sees (measured: a whole-spine phantom padded with air to 256 x 256
voxels went from 24 found vertebrae to 52, with false vertebra voxels in the air). nnU-Net itself crops to the
non-zero region for the same reason, which catches MRI's zero background but not CT's -1000 HU. Cropping to the
body box first, then pasting the prediction back, makes stage 1 independent of how much air was scanned, and
faster.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..volume import Volume
from .air import padding_filled

__all__ = ["body_box"]

_COARSE_MM = 4.0  # the body is found on a grid this coarse: fast, and specks of noise vanish
_THRESHOLD_FRACTION = 0.15  # of the way from the darkest (air) to the brightest percentile: air vs. anything else
_KEEP_COMPONENT_FRACTION = 0.05  # components smaller than this part of the largest are noise or clutter


def _body_mask(coarse: NDArray) -> NDArray:
    low, high = np.percentile(coarse, [1.0, 99.9])
    if not high > low:
        return np.ones(coarse.shape, bool)
    mask = ndimage.binary_opening(coarse > low + _THRESHOLD_FRACTION * (high - low))
    labels, n = ndimage.label(mask)
    if n == 0:
        return np.ones(coarse.shape, bool)
    sizes = np.bincount(labels.ravel())[1:]
    keep = np.flatnonzero(sizes >= _KEEP_COMPONENT_FRACTION * sizes.max()) + 1
    return np.isin(labels, keep)


def body_box(image: Volume, *, margin_mm: float = 4.0, min_saving: float = 0.2) -> tuple[slice, slice, slice] | None:
    """Index box around the body in ``image``, grown by ``margin_mm`` on every side.

    The body is every sizeable region brighter than the air: above 15 % of the way from the 1st to the 99.9th
    intensity percentile (CT: about -730 HU; MRI: above the background noise), found at 4 mm. A CT scanner's
    padding (below -1500) counts as air (:func:`.air.fill_padding_with_air`).

    Args:
        image: The scan (any modality; shape ``(nx, ny, nz)``).
        margin_mm: Air kept around the body, in mm. Small on purpose: every voxel of air in the box shifts a
            z-score normalisation (a 20 mm margin around a lumbar phantom moved its vertebra mask by 12 % Dice),
            and the network's padding beyond the box stands for air anyway.
        min_saving: Return ``None`` unless the box leaves out at least this fraction of the voxels, so a scan that
            is already framed on the body goes to stage 1 untouched.

    Returns:
        Three slices into ``image.array``, or ``None`` (no crop worth making, or no body found).
    """
    spacing = np.asarray(image.spacing, dtype=float)
    stride = np.maximum(1, np.floor(_COARSE_MM / spacing)).astype(int)
    coarse = np.asarray(image.array[:: stride[0], :: stride[1], :: stride[2]], dtype=np.float32)
    # a CT's padding outside the reconstruction circle (-3024 HU) would otherwise set the "air" end of the scale
    coarse = padding_filled(coarse)
    mask = _body_mask(coarse)
    if not mask.any():
        return None
    shape = np.asarray(image.shape)
    margin = np.ceil(margin_mm / spacing).astype(int)
    box = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        lo = int(hit[0]) * stride[axis] - margin[axis]
        hi = (int(hit[-1]) + 1) * stride[axis] + margin[axis]
        box.append(slice(max(lo, 0), min(hi, int(shape[axis]))))
    kept = float(np.prod([s.stop - s.start for s in box]))
    if kept > (1.0 - min_saving) * float(np.prod(shape)):
        return None
    return (box[0], box[1], box[2])
