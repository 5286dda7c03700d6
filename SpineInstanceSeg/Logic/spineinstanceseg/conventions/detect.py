"""Best-effort guess of a label map's convention from the values it holds (used in error hints; never silently).

Several conventions share values (VerSe 1-28 is a subset of TotalSegmentator's 1-117, SPIDER's 1-25 of VerSe's),
so the guess is only a hint for the user; conversions always use the convention the user names.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from . import tables as T

__all__ = ["detect_convention"]


def detect_convention(labels: NDArray) -> str | None:
    """Most likely convention of ``labels`` (an array or Volume), or ``None`` when the values fit none clearly."""
    array = np.asarray(getattr(labels, "array", labels))
    if array.size == 0 or not np.issubdtype(array.dtype, np.integer) or int(array.min()) < 0:
        return None
    values = set(int(v) for v in np.unique(array)) - {0}
    if not values:
        return None
    if values <= {1, 2, 3, 4}:
        return "semantic"
    if 100 in values and values <= {*range(1, 26), 100, *range(101, 126), *range(201, 226)}:
        return "spider"
    if (
        values & set(range(101, 129))
        and 100 not in values
        and values
        <= {
            *range(1, 29),
            *range(101, 129),
            *range(201, 229),
        }
    ):
        return "spineps"
    if values & set(range(41, 51)) and values <= set(T.SPINEPS_SUBREGIONS):
        return "spineps_subregions"
    tss = {*T.TOTALSPINESEG_VERTEBRAE, T.TOTALSPINESEG_SACRUM, *T.TOTALSPINESEG_CANAL, *T.TOTALSPINESEG_DISCS}
    if values <= tss and values & {*range(63, 68), *range(71, 83), *range(91, 96), 50}:
        return "totalspineseg"
    if values <= set(range(1, 29)):
        return "verse"
    if values <= set(range(1, T.TOTALSEG_TOTAL_N_CLASSES + 1)) and values & set(T.TOTALSEG_TOTAL_VERTEBRAE):
        return "totalseg_total"
    return None
