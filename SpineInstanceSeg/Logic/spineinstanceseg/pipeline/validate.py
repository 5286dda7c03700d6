"""Checks on the input image before any model runs (a given mask: :mod:`spineinstanceseg.stage1.sources`)."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..volume import Volume

__all__ = ["check_image"]


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
