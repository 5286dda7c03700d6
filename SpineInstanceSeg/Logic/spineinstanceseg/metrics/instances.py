"""Instance (per-vertebra) metrics as in the paper: IoU >= 0.5 matching, F1/RQ, SQ, PQ, instance Dice, ASSD.

Matching: every (reference, prediction) pair that overlaps gets its IoU; pairs are taken greedily from the highest
IoU down, each instance at most once, while IoU >= ``iou_threshold`` (0.5, inclusive, like panoptica's
NaiveThresholdMatching). With a threshold >= 0.5 a match is unique anyway.

* TP = matched pairs, FN = unmatched reference instances, FP = unmatched predicted instances;
* precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = RQ = TP/(TP + FP/2 + FN/2);
* SQ = mean IoU of the matched pairs; PQ = SQ * RQ;
* ``mean_dice`` = mean Dice over all *reference* vertebrae, a missed one counting 0 (false positives do not
  enter it); ``mean_dice_matched`` = mean over matched pairs only (labelled as such everywhere);
* ``mean_assd_mm`` / ``mean_hd95_mm`` = means over matched pairs (a missed vertebra has no surface distance);
* level identification rate = fraction of matched reference vertebrae whose predicted label is the same VerSe
  code, computed only when both maps carry levels (``levels_known=True``); else ``nan``.

Empty cases: no instance on either side -> counts 0 and every rate ``nan``; reference empty but prediction not ->
F1/precision 0, recall ``nan``; prediction empty but reference not -> F1/recall 0, mean_dice 0, precision ``nan``.

Per-instance Dice and distances are computed on the bounding box of each pair, so a 24-vertebra case at 1 mm
takes a few seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from ..levels import CODE_TO_LEVEL
from ..volume import Volume
from ._inputs import as_arrays, as_label_array, resolve_spacing
from .overlap import dice_from_counts
from .surface import _directional

__all__ = ["OverlapTable", "overlap_table", "InstanceMatch", "match_instances", "greedy_one_to_one", "VertebraRow",
           "InstanceScores", "evaluate_instances"]  # fmt: skip


def _nan_div(num: float, den: float) -> float:
    return float(num / den) if den > 0 else float("nan")


@dataclass(frozen=True)
class OverlapTable:
    """Voxel counts of every reference and predicted label and of every overlapping pair."""

    ref_labels: NDArray  # sorted non-zero labels, shape (R,)
    pred_labels: NDArray  # shape (P,)
    ref_sizes: NDArray  # voxels per reference label, (R,)
    pred_sizes: NDArray  # (P,)
    intersection: NDArray  # (R, P) voxel counts

    def iou(self) -> NDArray:
        union = self.ref_sizes[:, None] + self.pred_sizes[None, :] - self.intersection
        return np.where(union > 0, self.intersection / np.maximum(union, 1), 0.0)


def overlap_table(pred: NDArray, ref: NDArray) -> OverlapTable:
    """Count voxels per label and per overlapping (reference, prediction) pair in one pass."""
    fg = (pred != 0) | (ref != 0)
    r, p = ref[fg].astype(np.int64), pred[fg].astype(np.int64)
    ref_labels, r_idx = np.unique(r, return_inverse=True)
    pred_labels, p_idx = np.unique(p, return_inverse=True)
    joint = np.bincount(r_idx * pred_labels.size + p_idx, minlength=ref_labels.size * pred_labels.size)
    joint = joint.reshape(ref_labels.size, pred_labels.size)
    keep_r, keep_p = ref_labels != 0, pred_labels != 0
    return OverlapTable(
        ref_labels=ref_labels[keep_r],
        pred_labels=pred_labels[keep_p],
        ref_sizes=joint[keep_r].sum(axis=1),
        pred_sizes=joint[:, keep_p].sum(axis=0),
        intersection=joint[np.ix_(keep_r, keep_p)],
    )


@dataclass(frozen=True)
class InstanceMatch:
    ref_label: int
    pred_label: int
    iou: float


def greedy_one_to_one(candidates: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """The pairs ``(reference row, prediction column)`` taken from ``candidates`` best first: a pair is kept
    unless its row or its column was taken by a pair before it (``candidates`` come sorted best first)."""
    used_r, used_p, kept = set(), set(), []
    for i, j in candidates:
        if i in used_r or j in used_p:
            continue
        used_r.add(i)
        used_p.add(j)
        kept.append((i, j))
    return kept


def match_instances(table: OverlapTable, *, iou_threshold: float = 0.5) -> list[InstanceMatch]:
    """Greedy one-to-one matching by IoU, highest first, keeping pairs with IoU >= ``iou_threshold``."""
    ious = table.iou()
    rows, cols = np.nonzero((table.intersection > 0) & (ious >= iou_threshold))
    order = sorted(zip(rows, cols, strict=True), key=lambda rc: (-ious[rc], rc[0], rc[1]))
    return [
        InstanceMatch(int(table.ref_labels[i]), int(table.pred_labels[j]), float(ious[i, j]))
        for i, j in greedy_one_to_one(order)
    ]


@dataclass(frozen=True)
class VertebraRow:
    """One reference vertebra (TP or FN) or one unmatched predicted vertebra (FP)."""

    status: str  # "TP", "FN" or "FP"
    ref_label: int | None
    pred_label: int | None
    ref_name: str
    pred_name: str
    iou: float
    dice: float
    assd_mm: float
    hd95_mm: float
    level_correct: bool | None
    ref_voxels: int
    pred_voxels: int


@dataclass(frozen=True)
class InstanceScores:
    """Case-level instance metrics and one row per vertebra (see module docstring for definitions)."""

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    sq: float
    pq: float
    mean_dice: float
    mean_dice_matched: float
    mean_assd_mm: float
    mean_hd95_mm: float
    level_identification_rate: float
    iou_threshold: float
    rows: tuple[VertebraRow, ...]

    @property
    def rq(self) -> float:
        return self.f1

    def summary(self) -> dict[str, float | int]:
        """The case-level numbers as a flat dict (no rows)."""
        out = {k: v for k, v in asdict(self).items() if k != "rows"}
        out["rq"] = self.rq
        return out


def _name(label: int | None, levels_known: bool) -> str:
    if label is None:
        return ""
    return CODE_TO_LEVEL.get(label, f"label {label}") if levels_known else f"Vertebra {label}"


def _merge(a: tuple[slice, ...], b: tuple[slice, ...]) -> tuple[slice, ...]:
    return tuple(slice(min(x.start, y.start), max(x.stop, y.stop)) for x, y in zip(a, b, strict=True))


def evaluate_instances(
    pred: Volume | ArrayLike,
    ref: Volume | ArrayLike,
    spacing: Sequence[float] | None = None,
    *,
    iou_threshold: float = 0.5,
    levels_known: bool = False,
    connectivity: int = 1,
) -> InstanceScores:
    """Match predicted to reference vertebrae and compute the paper's instance metrics.

    Args:
        pred, ref: Instance label maps (0 = background) of the same shape, or Volumes on the same grid.
        spacing: Voxel size in mm per array axis (required for arrays; Volumes bring their own).
        iou_threshold: A pair is a match when IoU >= this.
        levels_known: Both maps hold VerSe codes: names rows by level and computes the level identification rate.
        connectivity: Surface definition for ASSD/HD95 (see :mod:`.surface`).
    """
    ref_arr, pred_arr = (as_label_array(x) for x in as_arrays(ref, pred))
    sampling = resolve_spacing(pred, ref, spacing, ref_arr.ndim)
    table = overlap_table(pred_arr, ref_arr)
    matches = match_instances(table, iou_threshold=iou_threshold)
    ref_size = dict(zip(table.ref_labels.tolist(), table.ref_sizes.tolist(), strict=True))
    pred_size = dict(zip(table.pred_labels.tolist(), table.pred_sizes.tolist(), strict=True))
    ref_boxes, pred_boxes = ndimage.find_objects(ref_arr), ndimage.find_objects(pred_arr)
    rows: list[VertebraRow] = []
    matched_ref = {m.ref_label: m for m in matches}
    matched_pred = {m.pred_label for m in matches}
    for r in table.ref_labels.tolist():
        m = matched_ref.get(r)
        if m is None:
            rows.append(VertebraRow("FN", r, None, _name(r, levels_known), "", 0.0, 0.0, float("nan"),
                                    float("nan"), None, ref_size[r], 0))  # fmt: skip
            continue
        box = _merge(ref_boxes[r - 1], pred_boxes[m.pred_label - 1])
        mask_r, mask_p = ref_arr[box] == r, pred_arr[box] == m.pred_label
        inter = int(np.count_nonzero(mask_r & mask_p))
        d_rp, d_pr = _directional(mask_r, mask_p, sampling, connectivity)
        pooled = np.concatenate((d_rp, d_pr))
        rows.append(
            VertebraRow(
                "TP", r, m.pred_label, _name(r, levels_known), _name(m.pred_label, levels_known), m.iou,
                dice_from_counts(inter, ref_size[r], pred_size[m.pred_label]), float(pooled.mean()),
                float(np.percentile(pooled, 95)), (m.pred_label == r) if levels_known else None,
                ref_size[r], pred_size[m.pred_label],
            )
        )  # fmt: skip
    for p in table.pred_labels.tolist():
        if p not in matched_pred:
            rows.append(VertebraRow("FP", None, p, "", _name(p, levels_known), 0.0, 0.0, float("nan"),
                                    float("nan"), None, 0, pred_size[p]))  # fmt: skip
    tp, fn = len(matches), table.ref_labels.size - len(matches)
    fp = table.pred_labels.size - len(matches)
    tp_rows = [row for row in rows if row.status == "TP"]
    ref_rows = [row for row in rows if row.status in ("TP", "FN")]
    f1 = _nan_div(tp, tp + 0.5 * fp + 0.5 * fn)
    sq = float(np.mean([m.iou for m in matches])) if matches else float("nan")
    pq = sq * f1 if matches else (0.0 if tp + fp + fn else float("nan"))
    return InstanceScores(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_nan_div(tp, tp + fp),
        recall=_nan_div(tp, tp + fn),
        f1=f1,
        sq=sq,
        pq=pq,
        mean_dice=float(np.mean([row.dice for row in ref_rows])) if ref_rows else float("nan"),
        mean_dice_matched=float(np.mean([row.dice for row in tp_rows])) if tp_rows else float("nan"),
        mean_assd_mm=float(np.mean([row.assd_mm for row in tp_rows])) if tp_rows else float("nan"),
        mean_hd95_mm=float(np.mean([row.hd95_mm for row in tp_rows])) if tp_rows else float("nan"),
        level_identification_rate=(
            float(np.mean([bool(row.level_correct) for row in tp_rows])) if levels_known and tp_rows else float("nan")
        ),
        iou_threshold=iou_threshold,
        rows=tuple(rows),
    )
