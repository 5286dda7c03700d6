"""Volume overlap: Dice and IoU of two binary masks (non-zero = foreground).

Empty cases: both empty -> ``nan`` (nothing to compare; nan-aware means skip it); exactly one empty -> ``0.0``.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from ..volume import Volume
from ._inputs import as_arrays

__all__ = ["dice", "iou", "dice_from_counts"]


def dice_from_counts(intersection: float, size_a: float, size_b: float) -> float:
    """2|A∩B| / (|A| + |B|); ``nan`` when both are empty."""
    total = size_a + size_b
    return float(2.0 * intersection / total) if total > 0 else float("nan")


def _counts(a: Volume | ArrayLike, b: Volume | ArrayLike) -> tuple[int, int, int]:
    arr_a, arr_b = as_arrays(a, b)
    mask_a, mask_b = arr_a != 0, arr_b != 0
    return int(np.count_nonzero(mask_a & mask_b)), int(np.count_nonzero(mask_a)), int(np.count_nonzero(mask_b))


def dice(a: Volume | ArrayLike, b: Volume | ArrayLike) -> float:
    """Dice similarity coefficient of the non-zero voxels of ``a`` and ``b`` (same grid)."""
    return dice_from_counts(*_counts(a, b))


def iou(a: Volume | ArrayLike, b: Volume | ArrayLike) -> float:
    """Intersection over union (Jaccard) of the non-zero voxels; ``nan`` when both are empty."""
    inter, size_a, size_b = _counts(a, b)
    union = size_a + size_b - inter
    return float(inter / union) if union > 0 else float("nan")
