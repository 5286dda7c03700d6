"""Peaks of a 1-D signal selected by prominence: ``scipy.signal.find_peaks(x, prominence=p)[0]`` without SciPy.

Importing :mod:`scipy.signal` takes about a second (it loads scipy.stats, scipy.optimize and scipy.interpolate),
more than finding the centroids of a lumbar spine; this function was the only part of it the pipeline used. It
follows SciPy's definitions step by step, so the peaks are the same (``Testing/test_stage2_centroids.py`` compares
the two): a peak is a sample higher than its left neighbour and than the first differing sample to its right (a
flat top counts once, at its middle, rounded down; the first and last samples are never peaks); its prominence is
its height above the higher of the lowest points on either side before the signal rises above the peak again.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

__all__ = ["find_peaks_by_prominence"]


def _local_maxima(x: list[float]) -> list[int]:
    """Indices of the local maxima (a flat top: its middle sample, rounded down), first and last sample excluded."""
    peaks: list[int] = []
    i, last = 1, len(x) - 1
    while i < last:
        if x[i - 1] < x[i]:
            ahead = i + 1
            while ahead < last and x[ahead] == x[i]:
                ahead += 1
            if x[ahead] < x[i]:
                peaks.append((i + ahead - 1) // 2)
                i = ahead
        i += 1
    return peaks


def _prominence(x: list[float], peak: int) -> float:
    """Height of ``x[peak]`` above the higher of the minima on its two sides, each taken up to where the signal
    first rises above the peak (or to the end of the signal)."""
    top = x[peak]
    left_min = top
    i = peak
    while i >= 0 and x[i] <= top:
        left_min = x[i] if x[i] < left_min else left_min
        i -= 1
    right_min = top
    i = peak
    while i < len(x) and x[i] <= top:
        right_min = x[i] if x[i] < right_min else right_min
        i += 1
    return top - max(left_min, right_min)


def find_peaks_by_prominence(x: ArrayLike, prominence: float) -> NDArray[np.intp]:
    """Indices (ascending) of the peaks of the 1-D signal ``x`` whose prominence is at least ``prominence``.

    Equal to ``scipy.signal.find_peaks(x, prominence=prominence)[0]`` (no window length, no other condition).
    """
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"x must be a 1-D signal, got shape {values.shape}")
    samples = values.tolist()
    kept = [p for p in _local_maxima(samples) if _prominence(samples, p) >= prominence]
    return np.asarray(kept, dtype=np.intp)
