"""Checks on the input image and on a given stage-1 mask before any model runs."""

from __future__ import annotations

import logging

import numpy as np

from ..errors import InputError
from ..resample import resample_to_grid
from ..semantic import SEMANTIC_NAMES
from ..volume import Volume

__all__ = ["check_image", "align_mask"]

log = logging.getLogger(__name__)


def check_image(image: Volume, *, source: str | None = None) -> None:
    """Reject images that cannot hold a spine: non-finite values, empty (all zero) or constant images.

    Raises:
        InputError: naming the problem and the fix.
    """
    array = image.array
    if np.issubdtype(array.dtype, np.floating):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        if bad:
            raise InputError(
                f"the image holds {bad} NaN or infinite voxel value(s)",
                fix="replace them with the background value (e.g. -1024 HU for CT) before segmenting",
                path=source,
            )
    lo, hi = array.min(), array.max()
    if lo == hi:
        what = "empty (every voxel is 0)" if lo == 0 else f"constant (every voxel is {lo})"
        raise InputError(
            f"the image is {what}: there is nothing to segment",
            fix="check that the file is the right image and was exported completely",
            path=source,
        )


def align_mask(mask: Volume, image: Volume, *, source: str | None = None) -> tuple[Volume, list[str]]:
    """Put a given semantic mask on the image grid (nearest neighbour) and check its labels.

    Returns:
        The mask on the image grid and warnings for the report.

    Raises:
        InputError: the mask holds labels that are not semantic classes, or does not overlap the image.
    """
    warnings: list[str] = []
    values = set(int(v) for v in np.unique(mask.array)) - {0}
    unknown = sorted(values - set(SEMANTIC_NAMES))
    if unknown:
        raise InputError(
            f"the mask holds label values {unknown} that are not semantic classes "
            f"({', '.join(f'{k} {v}' for k, v in SEMANTIC_NAMES.items())})",
            fix="convert it with --mask-convention (e.g. verse, spider, totalseg_total) or relabel it",
            path=source,
        )
    if not mask.same_grid(image):
        differences = "; ".join(mask.geometry_differences(image))
        warnings.append(f"the mask was on another grid ({differences}) and was resampled onto the image grid")
        log.warning(warnings[-1])
        mask = resample_to_grid(mask, image)
        if not np.any(mask.array):
            raise InputError(
                "the mask does not overlap the image in physical space",
                fix="pass the mask that belongs to this image (same patient, same series)",
                path=source,
            )
    return mask, warnings
