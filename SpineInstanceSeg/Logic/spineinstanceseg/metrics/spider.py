"""The SPIDER challenge's official metrics (DIAGNijmegen/SPIDER-Evaluation ``evaluation.py``), reimplemented.

Both maps must be in the SPIDER convention (1-25 vertebrae, 100 canal, 101-125 partial vertebrae, 201-225 discs;
convert with :func:`spineinstanceseg.conventions.from_internal`). The official rules, reproduced exactly:

* matching is per reference label, to the predicted label with the most overlapping voxels (ties: the smaller
  label); it is *not* one-to-one (two reference vertebrae may map to the same prediction);
* a reference label with no overlapping prediction gets Dice 0 and surface distance ``nan``;
* vertebrae are 0 < label < 100, discs label > 200, the canal label 100; partly visible vertebrae (101-199) enter
  only the "overall" means;
* a vertebra or disc with Dice < 0.1 is *missed*: it counts against the detection rate and is left out of the
  class's mean Dice (but its surface distance still enters the class's mean ASD);
* the surface distance is the pooled symmetric mean (both directions concatenated), with the surface taken by an
  erosion of full connectivity (26-neighbourhood) and the reference image's spacing;
* class means use a plain mean, so one unmatched vertebra makes ``ASDVertebrae`` ``nan`` (as in the official code).

Differences from the official script, on purpose: an absent canal gives ``nan`` instead of the sentinel 999, and a
case without discs gives a ``nan`` detection rate instead of a ZeroDivisionError.

Axis order pitfall: the official script takes arrays from ``SimpleITK.GetArrayFromImage`` (z, y, x) but passes
``image.GetSpacing()`` (x, y, z) to the distance transform, so on anisotropic images its distances use the spacing
of the wrong axes. Here the arrays are :class:`~spineinstanceseg.volume.Volume` arrays (x, y, z) with spacing in
the same order, which measures correctly; ``replicate_axis_order_bug=True`` reverses the spacing to reproduce
the official numbers exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from ..volume import Volume
from ._inputs import as_arrays, as_label_array, resolve_spacing
from .instances import _merge, overlap_table
from .overlap import dice_from_counts
from .surface import _directional

__all__ = ["SpiderLabelRow", "SpiderScores", "spider_evaluate", "DETECTION_THRESHOLD"]

DETECTION_THRESHOLD = 0.1


@dataclass(frozen=True)
class SpiderLabelRow:
    ref_label: int
    pred_label: int | None  # max-overlap prediction, None when nothing overlaps
    dice: float
    asd_mm: float


@dataclass(frozen=True)
class SpiderScores:
    """The per-case numbers of the official evaluation (same names) plus one row per reference label."""

    DiceScoreVertebrae: float
    DiceScoreDiscs: float
    DiceScoreSpinalCanal: float
    OveralDiceScore: float
    DetectionRateVertebrae: float
    DetectionRateDiscs: float
    ASDVertebrae: float
    ASDDiscs: float
    ASDSpinalCanal: float
    OveralASD: float
    rows: tuple[SpiderLabelRow, ...]

    def summary(self) -> dict[str, float]:
        return {k: v for k, v in self.__dict__.items() if k != "rows"}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def spider_evaluate(
    pred: Volume | ArrayLike,
    ref: Volume | ArrayLike,
    spacing: Sequence[float] | None = None,
    *,
    replicate_axis_order_bug: bool = False,
) -> SpiderScores:
    """Score a SPIDER-convention prediction against a SPIDER-convention reference, as the challenge does.

    Args:
        pred, ref: SPIDER label maps of the same shape, or Volumes on the same grid.
        spacing: Voxel size in mm per array axis (required for arrays; Volumes bring their own).
        replicate_axis_order_bug: Use the spacing in reversed axis order, like the official script (see module doc).
    """
    ref_arr, pred_arr = (as_label_array(x) for x in as_arrays(ref, pred))
    sampling = resolve_spacing(pred, ref, spacing, ref_arr.ndim)
    if replicate_axis_order_bug:
        sampling = sampling[::-1].copy()
    structure_rank = ref_arr.ndim  # full connectivity, the official default
    table = overlap_table(pred_arr, ref_arr)
    ref_boxes, pred_boxes = ndimage.find_objects(ref_arr), ndimage.find_objects(pred_arr)
    rows = []
    for i, r in enumerate(table.ref_labels.tolist()):
        overlaps = table.intersection[i]
        if not overlaps.any():
            rows.append(SpiderLabelRow(r, None, 0.0, float("nan")))
            continue
        j = int(np.argmax(overlaps))  # first maximum = smallest label, like np.bincount(...).argmax()
        p = int(table.pred_labels[j])
        box = _merge(ref_boxes[r - 1], pred_boxes[p - 1])
        mask_r, mask_p = ref_arr[box] == r, pred_arr[box] == p
        d_rp, d_pr = _directional(mask_r, mask_p, sampling, structure_rank)
        score = dice_from_counts(int(overlaps[j]), int(table.ref_sizes[i]), int(table.pred_sizes[j]))
        rows.append(SpiderLabelRow(r, p, score, float(np.concatenate((d_rp, d_pr)).mean())))
    vert = [row for row in rows if 0 < row.ref_label < 100]
    discs = [row for row in rows if row.ref_label > 200]
    canal = [row for row in rows if row.ref_label == 100]
    detected_vert = [row.dice for row in vert if row.dice >= DETECTION_THRESHOLD]
    detected_discs = [row.dice for row in discs if row.dice >= DETECTION_THRESHOLD]
    return SpiderScores(
        DiceScoreVertebrae=_mean(detected_vert),
        DiceScoreDiscs=_mean(detected_discs),
        DiceScoreSpinalCanal=canal[0].dice if canal else float("nan"),
        OveralDiceScore=_mean([row.dice for row in rows]),
        DetectionRateVertebrae=len(detected_vert) / len(vert) if vert else float("nan"),
        DetectionRateDiscs=len(detected_discs) / len(discs) if discs else float("nan"),
        ASDVertebrae=_mean([row.asd_mm for row in vert]),
        ASDDiscs=_mean([row.asd_mm for row in discs]),
        ASDSpinalCanal=canal[0].asd_mm if canal else float("nan"),
        OveralASD=_mean([row.asd_mm for row in rows]),
        rows=tuple(rows),
    )
