"""Why an instance result is wrong: labelled-span filtering, per-error causes, and vertebral-body detection.

Real reference masks rarely label every vertebra in view (VerSe labels a span, a partial vertebra at the edge is
often left out; MRI body masks leave out the sacrum and the posterior elements). A prediction of a visible but
unlabelled vertebra is not a false instance, so scoring first drops predicted instances outside the labelled span
(:func:`outside_labelled_span`). What is left is classified (:func:`classify_errors`) so that a benchmark can say
whether the misses come from stage 1 (nothing there), from splitting (one vertebra in two), from merging (two in one,
or an instance straddling a disc: the "phase-shifted" error) or from bone that is not spine.

All functions take label maps on one grid (``Volume`` for the physical span, plain arrays elsewhere).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from ..volume import Volume
from .instances import OverlapTable, greedy_one_to_one, match_instances, overlap_table

__all__ = [
    "ErrorCause",
    "SPLIT",
    "MERGED",
    "NOT_SPINE",
    "EDGE",
    "MISSED",
    "POOR_OVERLAP",
    "spine_axis",
    "outside_labelled_span",
    "drop_labels",
    "classify_errors",
    "BodyDetection",
    "detect_bodies",
]

SPLIT = "split vertebra"  # one reference vertebra shared by two or more predictions
MERGED = "merged pair"  # one prediction covering two reference vertebrae (also a disc-straddling instance)
NOT_SPINE = "bone that is not spine"  # a prediction away from every reference vertebra, inside the labelled span
EDGE = "cut at the edge"  # an error at a vertebra or prediction touching the field-of-view boundary
MISSED = "missed by stage 1"  # less than half of the reference vertebra is in any prediction
POOR_OVERLAP = "poor overlap"  # one-to-one but IoU < 0.5 (boundaries far off)

# Share of a vertebra's voxels that makes an overlap count when telling splits from merges.
_SHARE = 0.2


@dataclass(frozen=True)
class ErrorCause:
    """One false negative (``kind`` "FN", ``label`` of the reference) or false positive ("FP", predicted label)."""

    kind: str
    label: int
    cause: str


def spine_axis(reference: Volume) -> NDArray[np.float64]:
    """Unit LPS vector along the labelled spine: the main axis of the reference vertebrae's centroids (the
    superior axis when fewer than two are labelled), pointing superior."""
    labels = np.asarray(reference.array)
    present = [int(v) for v in np.unique(labels) if v]
    axis = np.array([0.0, 0.0, 1.0])
    if len(present) >= 2:
        idx = np.asarray(ndimage.center_of_mass(np.ones(labels.shape), labels, present)).reshape(-1, 3)
        world = reference.index_to_world(idx)
        centred = world - world.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    return axis if axis[2] >= 0 else -axis


def outside_labelled_span(prediction: Volume, reference: Volume, *, min_overlap: float = 0.2) -> list[int]:
    """Predicted labels that belong to visible but unlabelled anatomy beyond the labelled span of ``reference``.

    A predicted instance is outside when its centroid, projected on :func:`spine_axis`, lies beyond the centroid of
    the top or bottom reference vertebra, and less than ``min_overlap`` of its voxels are reference foreground. An
    instance that takes in half of the end vertebra (a split shifted by half a vertebra) therefore still counts.
    """
    pred, ref = np.asarray(prediction.array), np.asarray(reference.array)
    if not ref.any():
        return []
    axis = spine_axis(reference)
    ref_labels = [int(v) for v in np.unique(ref) if v]
    ref_centroids = np.asarray(ndimage.center_of_mass(np.ones(ref.shape), ref, ref_labels)).reshape(-1, 3)
    ref_along = reference.index_to_world(ref_centroids) @ axis
    low, high = float(ref_along.min()), float(ref_along.max())
    labels = [int(v) for v in np.unique(pred) if v]
    if not labels:
        return []
    centroids = np.asarray(ndimage.center_of_mass(np.ones(pred.shape), pred, labels)).reshape(-1, 3)
    along = prediction.index_to_world(centroids) @ axis
    sizes = ndimage.sum_labels(np.ones(pred.shape), pred, labels)
    inside_ref = ndimage.sum_labels(ref > 0, pred, labels)
    return [
        label
        for label, position, size, overlap in zip(labels, along, sizes, inside_ref, strict=True)
        if (position < low or position > high) and overlap < min_overlap * size
    ]


def drop_labels(labels: NDArray, drop: list[int]) -> NDArray:
    """``labels`` with the given values set to 0 (a copy)."""
    out = np.array(labels, copy=True)
    if drop:
        out[np.isin(out, drop)] = 0
    return out


def _touches_edge(mask: NDArray) -> bool:
    return any(
        mask[(slice(None),) * axis + (index,)].any() for axis in range(mask.ndim) for index in (0, mask.shape[axis] - 1)
    )


def _fn_cause(i: int, table: OverlapTable, ref: NDArray, pred_fg_share: float) -> str:
    share_of_ref = table.intersection[i] / max(int(table.ref_sizes[i]), 1)
    if pred_fg_share < 0.5:
        return EDGE if _touches_edge(ref == table.ref_labels[i]) else MISSED
    if np.count_nonzero(share_of_ref >= _SHARE) >= 2:
        return SPLIT
    main = int(np.argmax(table.intersection[i]))
    share_of_other_refs = table.intersection[:, main] / np.maximum(table.ref_sizes, 1)
    if np.count_nonzero(share_of_other_refs >= _SHARE) >= 2:
        return MERGED
    return EDGE if _touches_edge(ref == table.ref_labels[i]) else POOR_OVERLAP


def _fp_cause(j: int, table: OverlapTable, pred: NDArray) -> str:
    share_of_pred = table.intersection[:, j] / max(int(table.pred_sizes[j]), 1)
    if share_of_pred.sum() < _SHARE:
        return EDGE if _touches_edge(pred == table.pred_labels[j]) else NOT_SPINE
    share_of_refs = table.intersection[:, j] / np.maximum(table.ref_sizes, 1)
    if np.count_nonzero(share_of_refs >= _SHARE) >= 2:
        return MERGED
    main = int(np.argmax(table.intersection[:, j]))
    if np.count_nonzero(table.intersection[main] / max(int(table.ref_sizes[main]), 1) >= _SHARE) >= 2:
        return SPLIT
    return EDGE if _touches_edge(pred == table.pred_labels[j]) else POOR_OVERLAP


def classify_errors(prediction: NDArray, reference: NDArray, *, iou_threshold: float = 0.5) -> list[ErrorCause]:
    """Every false negative and false positive of the IoU matching, with its most likely cause.

    Args:
        prediction, reference: Instance label maps (0 = background) of the same shape.
        iou_threshold: The matching threshold of :func:`.instances.match_instances`.

    Returns:
        One :class:`ErrorCause` per unmatched reference (FN) and unmatched prediction (FP), references first.
        Causes are the module constants (``SPLIT``, ``MERGED``, ``NOT_SPINE``, ``EDGE``, ``MISSED``,
        ``POOR_OVERLAP``).
    """
    pred, ref = np.asarray(prediction), np.asarray(reference)
    table = overlap_table(pred, ref)
    matches = match_instances(table, iou_threshold=iou_threshold)
    matched_ref = {m.ref_label for m in matches}
    matched_pred = {m.pred_label for m in matches}
    covered = ndimage.sum_labels(pred > 0, ref, table.ref_labels) if table.ref_labels.size else np.zeros(0)
    out: list[ErrorCause] = []
    for i, label in enumerate(table.ref_labels.tolist()):
        if label not in matched_ref:
            share = float(covered[i]) / max(int(table.ref_sizes[i]), 1)
            out.append(ErrorCause("FN", label, _fn_cause(i, table, ref, share)))
    for j, label in enumerate(table.pred_labels.tolist()):
        if label not in matched_pred:
            out.append(ErrorCause("FP", label, _fp_cause(j, table, pred)))
    return out


@dataclass(frozen=True)
class BodyDetection:
    """Vertebral-body detection on a body-only reference (see :func:`detect_bodies`).

    Attributes:
        tp, fp, fn: Found bodies, predicted instances inside the labelled span that found no body, missed bodies.
        f1: ``2 tp / (2 tp + fp + fn)`` (nan when all three are 0).
        matches: (body label, predicted label, share of the body covered) per found body.
        fp_causes: Cause per false instance (``SPLIT``, ``MERGED`` or ``NOT_SPINE``).
        ignored: Predicted labels outside the labelled span (not scored).
    """

    tp: int
    fp: int
    fn: int
    f1: float
    matches: tuple[tuple[int, int, float], ...]
    fp_causes: tuple[ErrorCause, ...]
    ignored: tuple[int, ...]


def detect_bodies(prediction: Volume, bodies: Volume, *, min_cover: float = 0.5) -> BodyDetection:
    """Score vertebra instances against a vertebral-BODY-only reference (posterior elements unlabelled).

    A body is found when one predicted instance covers at least ``min_cover`` of its voxels; matching is one to
    one (highest cover first). Predictions outside the labelled span are ignored (:func:`outside_labelled_span`);
    the others that find no body are false instances, whatever they cover of the unlabelled posterior elements.
    """
    ignored = outside_labelled_span(prediction, bodies, min_overlap=0.05)
    pred = drop_labels(np.asarray(prediction.array), ignored)
    ref = np.asarray(bodies.array)
    table = overlap_table(pred, ref)
    cover = table.intersection / np.maximum(table.ref_sizes[:, None], 1)
    pairs = sorted(zip(*np.nonzero(cover >= min_cover), strict=True), key=lambda ij: -cover[ij])
    kept = greedy_one_to_one(pairs)
    matches = [(int(table.ref_labels[i]), int(table.pred_labels[j]), float(cover[i, j])) for i, j in kept]
    used_pred = {j for _, j in kept}
    causes = []
    for j, label in enumerate(table.pred_labels.tolist()):
        if j in used_pred:
            continue
        shares = cover[:, j]
        cause = (
            MERGED if np.count_nonzero(shares >= _SHARE) >= 2 else SPLIT if shares.max(initial=0) >= _SHARE else None
        )
        causes.append(ErrorCause("FP", label, cause or NOT_SPINE))
    tp, fp, fn = len(matches), len(causes), int(table.ref_labels.size) - len(matches)
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return BodyDetection(tp, fp, fn, f1, tuple(matches), tuple(causes), tuple(ignored))
