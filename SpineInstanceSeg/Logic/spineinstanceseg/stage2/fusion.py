"""DiceFusion: merge the per-window top/centre/bottom predictions into one vertebra instance map.

Window ``w`` is centred on vertebra ``c_w`` (an index into the top-to-bottom centroid list); the network labels
each voxel of the window background (0), top (1, vertebra ``c_w - 1``), centre (2, ``c_w``) or bottom (3,
``c_w + 1``). So every vertebra is predicted up to three times: as centre of its own window and as bottom/top of
the windows above/below.

The merge, on the working grid:

1. **Agreement.** For every vertebra, the Dice between each pair of its predictions is computed on the overlap
   of the two windows (the only place where both could see it). A prediction's score is its mean Dice with the
   other predictions of the same vertebra; a vertebra's *confidence* is the mean of its pairwise Dice values.
   A vertebra seen by one prediction only gets ``SINGLE_PREDICTION_CONFIDENCE`` (0.5): nothing contradicts it,
   but nothing confirms it either. A vertebra with no prediction gets 0.
2. **Ranking.** Predictions are painted from the highest score to the lowest (centre predictions first on
   ties: the centre vertebra lies wholly inside its window); a voxel keeps the first vertebra that claims it,
   so every voxel belongs to at most one vertebra.
3. **Clean-up.** Each vertebra keeps its largest connected component; other fragments are released. Vertebrae
   that end up much smaller than the median (a duplicate from a spurious centroid, a sliver) are released too.
4. **Completion.** Released and never-claimed vertebra voxels grow from the kept regions inside the stage-1
   vertebra mask (so a fragment goes to the touching neighbour that reaches it first); mask components that
   touch no region take the label of the nearest one. Every stage-1 vertebra voxel ends up labelled; nothing
   outside it is.

5. **Consensus centroids.** Each final vertebra's centroid as all of its window predictions see it (their
   voxel-weighted mean centroid), for the next pass of the window iteration to centre on.

Labels of the result are 1..N top to bottom (by the height of each final region; empty vertebrae dropped).
The top neighbour in the first window and the bottom neighbour in the last window are kept as vertebrae of their
own (when large enough): they are vertebrae that centroid finding missed at the ends of the spine (an atlas
without a body above C2, a vertebra cut by the field of view).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage
from skimage.segmentation import watershed

from ..conventions.arrays import largest_component
from ..errors import InputError
from .windows import window_slices

__all__ = [
    "WindowPrediction",
    "FusionResult",
    "dice_fusion",
    "SINGLE_PREDICTION_CONFIDENCE",
    "TOP",
    "CENTRE",
    "BOTTOM",
]

log = logging.getLogger(__name__)

TOP, CENTRE, BOTTOM = 1, 2, 3
_OFFSET = {TOP: -1, CENTRE: 0, BOTTOM: +1}  # class -> position relative to the window's centre vertebra
SINGLE_PREDICTION_CONFIDENCE = 0.5
MIN_FRACTION = 0.1  # final vertebrae smaller than this x the median are merged into their neighbours


@dataclass(frozen=True)
class WindowPrediction:
    """The network's answer for one window.

    Attributes:
        centre: Index (in the top-to-bottom centroid list) of the window's centre vertebra.
        corner: Working-grid index of the window's first voxel (see :func:`.windows.window_corner`).
        labels: int8 ``(*size)`` classes 0 background, 1 top, 2 centre, 3 bottom.
    """

    centre: int
    corner: tuple[int, int, int]
    labels: NDArray[np.int8]

    @classmethod
    def from_output(cls, centre: int, corner: ArrayLike, output: NDArray) -> WindowPrediction:
        """From probabilities ``(4, *size)`` (argmax taken) or labels ``(*size)``."""
        output = np.asarray(output)
        if output.ndim == 4:
            labels = np.argmax(output, axis=0).astype(np.int8)
        elif output.ndim == 3:
            labels = output.astype(np.int8)
        else:
            raise InputError(
                f"a window prediction must be (4, X, Y, Z) probabilities or (X, Y, Z) labels, got {output.shape}",
                fix="pass one window of the network output",
            )
        corner_t = tuple(int(v) for v in np.asarray(corner).reshape(3))
        return cls(centre=int(centre), corner=corner_t, labels=labels)  # type: ignore[arg-type]


@dataclass(frozen=True)
class FusionResult:
    """Output of :func:`dice_fusion`.

    Attributes:
        labels: int32 (X, Y, Z) on the working grid, vertebrae 1..N top to bottom, 0 elsewhere.
        confidence: (N,) agreement score in [0, 1] per output vertebra.
        source: (N,) index in the input centroid list of each output vertebra; -1 (above the first) or
            ``n_vertebrae`` (below the last) for a vertebra that centroid finding missed at an end of the spine
            but the first/last window saw as its top/bottom neighbour.
        n_predictions: (N,) how many windows predicted each output vertebra.
        consensus_centroids: (N, 3) working-grid index of each output vertebra's centroid as its predictions
            see it together: the voxel-weighted mean of the centroids of all window predictions of that vertebra
            (centre in its own window, top/bottom in the neighbours'). Where one window sits off its vertebra,
            the neighbours' views pull this towards the true centroid, so the next pass can re-centre on it.
    """

    labels: NDArray[np.int32]
    confidence: NDArray[np.float64]
    source: NDArray[np.int64]
    n_predictions: NDArray[np.int64]
    consensus_centroids: NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 3)))


@dataclass
class _Pred:
    vertebra: int
    window: int
    klass: int
    sl: tuple[slice, ...]  # region in the volume
    mask: NDArray[np.bool_]  # prediction inside ``sl``
    score: float = 0.0


def _overlap(a: _Pred, b: _Pred) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Slices into ``a.mask`` and ``b.mask`` of the overlap of their windows (``None`` if disjoint)."""
    ia, ib = [], []
    for sa, sb in zip(a.sl, b.sl, strict=True):
        lo, hi = max(sa.start, sb.start), min(sa.stop, sb.stop)
        if hi <= lo:
            return None
        ia.append(slice(lo - sa.start, hi - sa.start))
        ib.append(slice(lo - sb.start, hi - sb.start))
    return tuple(ia), tuple(ib)


def _pair_dice(a: _Pred, b: _Pred) -> float | None:
    ov = _overlap(a, b)
    if ov is None:
        return None
    ma, mb = a.mask[ov[0]], b.mask[ov[1]]
    total = int(ma.sum()) + int(mb.sum())
    if total == 0:
        return None  # neither sees the vertebra where both could: no evidence either way
    return 2.0 * float(np.logical_and(ma, mb).sum()) / total


def _collect(windows: Sequence[WindowPrediction], n: int, mask: NDArray[np.bool_]) -> list[_Pred]:
    preds = []
    for w, win in enumerate(windows):
        vol_sl, win_sl = window_slices(win.corner, win.labels.shape, mask.shape)
        if any(s.stop <= s.start for s in vol_sl):
            continue
        labels = win.labels[win_sl]
        inside = mask[vol_sl]
        for klass, offset in _OFFSET.items():
            v = win.centre + offset
            if not -1 <= v <= n:
                continue
            pm = (labels == klass) & inside
            if pm.any():  # slot v + 1: slots 0 and n + 1 hold vertebrae above / below the centroid list
                preds.append(_Pred(vertebra=v + 1, window=w, klass=klass, sl=vol_sl, mask=pm))
    return preds


def _score(preds: list[_Pred], n: int) -> tuple[NDArray, NDArray]:
    """Set each prediction's score; return per-vertebra confidence and prediction counts."""
    confidence = np.zeros(n)
    counts = np.zeros(n, dtype=np.int64)
    by_vertebra: dict[int, list[_Pred]] = {}
    for p in preds:
        by_vertebra.setdefault(p.vertebra, []).append(p)
    for v, group in by_vertebra.items():
        counts[v] = len(group)
        own: list[list[float]] = [[] for _ in group]
        pairs: list[float] = []
        for i in range(len(group)):
            for j in range(i + 1, len(group)):
                d = _pair_dice(group[i], group[j])
                if d is not None:
                    own[i].append(d)
                    own[j].append(d)
                    pairs.append(d)
        for p, values in zip(group, own, strict=True):
            p.score = float(np.mean(values)) if values else SINGLE_PREDICTION_CONFIDENCE
        confidence[v] = float(np.mean(pairs)) if pairs else SINGLE_PREDICTION_CONFIDENCE
    return confidence, counts


def _consensus_centroids(preds: list[_Pred], slots: Sequence[int], labels: NDArray[np.int32]) -> NDArray:
    """(len(slots), 3) voxel-weighted mean centroid of the predictions of each slot (bounding-box index).

    A slot's predictions count only where they overlap its final region (a stray prediction elsewhere says
    nothing about where the vertebra is); a slot without such a prediction takes its final region's centroid.
    """
    sums = {v: np.zeros(3) for v in slots}
    weights = dict.fromkeys(slots, 0.0)
    for p in preds:
        v = p.vertebra + 1  # claim value
        if v not in sums or not np.any(labels[p.sl][p.mask] == v):
            continue
        idx = np.argwhere(p.mask)
        sums[v] += idx.sum(axis=0) + len(idx) * np.array([s.start for s in p.sl], dtype=float)
        weights[v] += len(idx)
    out = np.zeros((len(slots), 3))
    for k, v in enumerate(slots):
        if weights[v] > 0:
            out[k] = sums[v] / weights[v]
        else:
            out[k] = np.argwhere(labels == v).mean(axis=0)
    return out


def _complete(labels: NDArray[np.int32], mask: NDArray[np.bool_]) -> NDArray[np.int32]:
    """Grow labels through the mask; components without any label take the nearest label."""
    if not labels.any():
        return labels
    grown = watershed(np.zeros(mask.shape, np.uint8), labels, mask=mask).astype(np.int32)
    left = mask & (grown == 0)
    if left.any():
        nearest = ndimage.distance_transform_edt(grown == 0, return_distances=False, return_indices=True)
        grown[left] = grown[tuple(axis[left] for axis in nearest)]
    return grown


def _crop_to_mask(
    windows: Sequence[WindowPrediction], full: NDArray[np.bool_]
) -> tuple[NDArray, tuple[slice, ...], list[WindowPrediction]]:
    """The mask's bounding box (its low corner and slices) and the windows moved into it.

    Fusion works inside this box: its cost then grows with the spine, not with the field of view.
    """
    idx = np.argwhere(full)
    lo, hi = idx.min(axis=0), idx.max(axis=0) + 1
    bbox = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    shifted = [
        WindowPrediction(w.centre, tuple(int(c) for c in np.asarray(w.corner) - lo), w.labels)  # type: ignore[arg-type]
        for w in windows
    ]
    return lo, bbox, shifted


def _claim_by_rank(preds: list[_Pred], shape: tuple[int, ...]) -> NDArray[np.int32]:
    """Paint the predictions from the highest score down; a voxel keeps the first claim (slot value, 0 = none).

    Centre predictions go first among equal scores, then the order of the windows (a stable sort).
    """
    order = sorted(range(len(preds)), key=lambda i: (-preds[i].score, preds[i].klass != CENTRE, i))
    claim = np.zeros(shape, dtype=np.int32)  # vertebra index + 1
    for i in order:
        p = preds[i]
        region = claim[p.sl]
        free = p.mask & (region == 0)
        region[free] = p.vertebra + 1
    return claim


def _keep_main_parts(claim: NDArray[np.int32], m: int, min_fraction: float) -> NDArray[np.int32]:
    """Each claimed vertebra's largest connected component; fragments and slivers (smaller than
    ``min_fraction`` x the median vertebra) are released (0)."""
    kept = np.zeros_like(claim)
    claimed = np.bincount(claim.ravel(), minlength=m + 1)
    present = [v for v in range(1, m + 1) if claimed[v] > 0]
    objects = ndimage.find_objects(claim, max_label=m)
    sizes: dict[int, int] = {}
    for v in present:
        box = objects[v - 1]
        region = largest_component(claim[box] == v)
        kept[box][region] = v
        sizes[v] = int(region.sum())
    if sizes:
        median = float(np.median(list(sizes.values())))
        for v, size in sizes.items():
            if size < min_fraction * median:
                log.info("fusion: vertebra %d is a %d-voxel sliver; merged into its neighbours", v, size)
                kept[kept == v] = 0
    return kept


def _top_to_bottom(labels: NDArray[np.int32], mask: NDArray[np.bool_], m: int) -> tuple[list[int], NDArray[np.int32]]:
    """The slot values left in ``labels`` ordered top to bottom (by the height, axis 2, of their final regions),
    and the lookup table that relabels them 1..N in that order (empty slots dropped).

    This is the centroid-list order whenever the windows behaved; it keeps the promise when they did not.
    """
    counts_final = np.bincount(labels.ravel(), minlength=m + 1)
    present_final = [v for v in range(1, m + 1) if counts_final[v] > 0]
    centres = ndimage.center_of_mass(mask.astype(np.uint8), labels, present_final) if present_final else []
    heights = [c[2] for c in centres]
    survivors = [v for _, v in sorted(zip((-np.asarray(heights)).tolist(), present_final, strict=True))]
    lut = np.zeros(m + 1, dtype=np.int32)
    for new, v in enumerate(survivors, start=1):
        lut[v] = new
    return survivors, lut


def dice_fusion(
    windows: Sequence[WindowPrediction],
    *,
    n_vertebrae: int,
    vertebra_mask: NDArray[np.bool_],
    min_fraction: float = MIN_FRACTION,
) -> FusionResult:
    """Merge window predictions into one instance map on the working grid.

    Args:
        windows: One prediction per window (any order; windows may be missing).
        n_vertebrae: Length of the centroid list the windows' ``centre`` indices refer to.
        vertebra_mask: Boolean (X, Y, Z) stage-1 vertebra mask on the working grid; exactly these voxels are
            labelled in the result.
        min_fraction: Vertebrae smaller than this fraction of the median vertebra are merged into neighbours.

    Returns:
        :class:`FusionResult` (labels 1..N top to bottom, confidence per vertebra).
    """
    full = np.asarray(vertebra_mask, dtype=bool)
    n = int(n_vertebrae)
    m = n + 2  # slots: one above the first centroid, the n centroids, one below the last
    if not full.any():
        return FusionResult(np.zeros(full.shape, np.int32), np.zeros(0), np.zeros(0, np.int64), np.zeros(0, np.int64))
    lo, bbox, shifted = _crop_to_mask(windows, full)
    mask = full[bbox]
    preds = _collect(shifted, n, mask)  # 1. agreement
    confidence, counts = _score(preds, m)
    claim = _claim_by_rank(preds, mask.shape)  # 2. ranking
    kept = _keep_main_parts(claim, m, min_fraction)  # 3. clean-up
    labels = _complete(kept, mask)  # 4. completion
    survivors, lut = _top_to_bottom(labels, mask, m)
    source = np.asarray([v - 2 for v in survivors], dtype=np.int64)  # claim value v = slot + 1 = index + 2
    out = np.zeros(full.shape, np.int32)
    out[bbox] = lut[labels]
    consensus = _consensus_centroids(preds, survivors, labels) + lo[None, :] if survivors else np.zeros((0, 3))  # 5.
    return FusionResult(
        labels=out,
        confidence=np.clip(confidence[source + 1], 0.0, 1.0) if len(source) else np.zeros(0),
        source=source,
        n_predictions=counts[source + 1] if len(source) else np.zeros(0, dtype=np.int64),
        consensus_centroids=consensus,
    )
