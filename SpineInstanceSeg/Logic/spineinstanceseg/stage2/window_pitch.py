"""Windows turned about the left-right axis for vertebrae that lean further than the network saw in training.

The stage-2 network sorts a window's bone into top / centre / bottom vertebra. Trained on phantoms whose lumbar
vertebrae lean at most about 30 degrees from the superior axis (plus 15 degrees of rotation augmentation),
``stage2_phantom_v1`` gave the posterior arch of a vertebra that leans further in the lordosis (on the real CT
sub-verse006 L5's body leans about 49 degrees) to the vertebra above, because the arch sits at that vertebra's
height. Turned back by 15-25 degrees, the same mask split right. ``stage2_phantom_v2`` saw such spines in training
(:class:`spineinstanceseg.phantom.SteepLordosis`) and splits them upright: with it the search changes nothing on
the four real CTs' leave-one-out stage-1 masks (2026-12-06: sub-verse006 0.855 with the search, 0.856 without). It
stays on for the windows the network is unsure of.

So a window whose upright prediction is less certain than :attr:`PitchSearch.search_below` (mean top-class
probability over the window's vertebra voxels) is also sent through the network turned by each of
:attr:`PitchSearch.angles_deg` about the left-right axis through the window centre; the most certain turn replaces
the upright window when it is more certain by at least :attr:`PitchSearch.min_gain`, and its probabilities are
turned back onto the grid. The upright window keeps the
voxels exactly; turned ones are sampled nearest-neighbour (mask) and linearly (probabilities back onto the grid).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

__all__ = [
    "PitchSearch",
    "DEFAULT_PITCH_SEARCH",
    "UPRIGHT_ONLY",
    "certainty",
    "pitched_inputs",
    "pick_pitch",
    "wants_search",
]


@dataclass(frozen=True)
class PitchSearch:
    """The tuned numbers of the pitch search (module docstring).

    Tuned on (2026-12-05): stage 2 from the manual masks of the four real CTs and the four real VerSe masks, the
    held-out phantoms 900000-900015, and the real CTs' stage-1 masks from leave-one-out stage-1 folds. These
    certainty gains are small against their noise: an upright window that is right already scores within about
    0.015 of its turns, so a lower ``min_gain`` moves windows that need no turn (it cost sub-verse005 up to 0.02
    Dice at 0.005), and sub-verse006's L5 windows gain 0.009-0.04.

    Attributes:
        angles_deg: Turns tried besides upright, degrees about the working grid's left-right axis. A positive turn
            samples the window with its superior axis tilted towards anterior, so a vertebra whose top leans
            forwards (the lower lumbar lordosis) stands upright in it. Empty: the search is off. Turns the other
            way (-10, -20) found nothing to fix on the real scans and lost the atlas of a whole-spine phantom;
            10 was never the winning turn where it mattered. Each angle is one more network call per searched
            window (on a lumbar CT phantom, 2 CPU threads, searching every window: stage 2 1.7 s upright, 3.1 s
            with 20 and 30, 4.6 s with 10, 20 and 30; the whole pipeline about 13 s).
        min_gain: How much more certain (mean top-class probability over the vertebra voxels, 0-1) a turned
            window must be than the upright one to replace it.
        search_below: Only windows whose upright certainty is below this are tried turned (1.0: every window).
            Of 455 windows on the real CTs' stage-1 masks (turns -20 to 30 degrees), every one that a turn
            replaced had an upright certainty of 0.976 or less, and 17 % of all windows were below 0.98; the
            windows above it keep their upright answer (the same lumbar CT phantom: stage 2 1.69 s upright,
            1.90 s with the search below 0.98, whole pipeline x1.02 instead of x1.12).
    """

    angles_deg: tuple[float, ...] = (20.0, 30.0)
    min_gain: float = 0.01
    search_below: float = 0.98


DEFAULT_PITCH_SEARCH = PitchSearch()
UPRIGHT_ONLY = PitchSearch(angles_deg=())  # the search off: every window upright, as before the search existed


def _turn(angle_deg: float) -> NDArray[np.float64]:
    a = np.deg2rad(angle_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _offsets(size: tuple[int, int, int]) -> tuple[NDArray, NDArray]:
    """(3, V) voxel offsets of a window from its centre, and the centre ((size - 1) / 2)."""
    half = (np.asarray(size, dtype=float) - 1.0) / 2.0
    return np.indices(size).reshape(3, -1).astype(float) - half[:, None], half


def pitched_inputs(
    array: NDArray, corner: tuple[int, ...], size: tuple[int, int, int], angles_deg: tuple[float, ...], *, order: int
) -> NDArray:
    """``(len(angles_deg), *size)`` windows of ``array`` turned about the window centre (0 = nearest neighbour for
    masks, 1 = linear for images); outside the array reads 0."""
    offsets, half = _offsets(size)
    centre = np.asarray(corner, dtype=float) + half
    out = [
        ndimage.map_coordinates(array, _turn(a) @ offsets + centre[:, None], order=order, mode="constant", cval=0)
        for a in angles_deg
    ]
    return np.stack(out).reshape(len(angles_deg), *size).astype(array.dtype, copy=False)


def certainty(vertebra: NDArray[np.bool_], probabilities: NDArray) -> float:
    """Mean top-class probability of ``probabilities`` (4, *size) over ``vertebra`` voxels; 0 without any."""
    return float(probabilities.max(axis=0)[vertebra].mean()) if vertebra.any() else 0.0


def wants_search(vertebra: NDArray[np.bool_], upright: NDArray, search: PitchSearch) -> bool:
    """Whether a window whose upright prediction is ``upright`` (4, *size) is tried turned too."""
    return bool(search.angles_deg) and certainty(vertebra, upright) < search.search_below


def pick_pitch(
    probabilities: NDArray, vertebra: NDArray[np.bool_], angles_deg: tuple[float, ...], search: PitchSearch
) -> tuple[NDArray[np.int8], float]:
    """The window's labels (top / centre / bottom, 0 background) from the upright window or its most certain turn
    (:attr:`PitchSearch.search_below` is the caller's to apply: here every window given is compared).

    Args:
        probabilities: (K, 4, *size) class probabilities of the windows turned by ``angles_deg``.
        vertebra: (K, *size) vertebra voxels of each window's input.
        angles_deg: (K,) the turns, degrees; the first is 0 (upright).
        search: Whose ``min_gain`` decides.

    Returns:
        ``(labels (*size) int8 on the grid, the chosen angle in degrees (0 = upright))``.
    """
    scores = [certainty(v, p) for v, p in zip(vertebra, probabilities, strict=True)]
    best = int(np.argmax(scores))
    if angles_deg[best] == 0 or scores[best] - scores[0] < search.min_gain:
        return np.argmax(probabilities[0], axis=0).astype(np.int8), 0.0
    size = probabilities.shape[2:]
    offsets, half = _offsets(size)
    back = _turn(angles_deg[best]).T @ offsets + half[:, None]
    n_classes = probabilities.shape[1]
    resampled = [
        ndimage.map_coordinates(probabilities[best][k], back, order=1, mode="constant", cval=1.0 if k == 0 else 0.0)
        for k in range(n_classes)
    ]
    labels = np.argmax(np.stack(resampled).reshape(n_classes, *size), axis=0).astype(np.int8)
    return labels, float(angles_deg[best])
