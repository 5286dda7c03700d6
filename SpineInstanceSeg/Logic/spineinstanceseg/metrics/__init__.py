"""Segmentation metrics: overlap, surface distances in mm, per-vertebra instance metrics, SPIDER's official mode.

Conventions shared by every function:

* inputs are arrays of the same shape or :class:`~spineinstanceseg.volume.Volume` objects on the same grid;
  non-zero = foreground for binary metrics, label values = instances for instance metrics;
* distances are in millimetres; ``spacing`` is the voxel size per *array axis* and is required for plain
  arrays (a Volume's own spacing is used, in the same axis order as its array);
* empty-case policy (tested for all four combinations):

  ===================  ===========  ==========  ==========  =================
  metric               both empty   pred empty  ref empty   both non-empty
  ===================  ===========  ==========  ==========  =================
  Dice, IoU            nan          0.0         0.0         value
  ASSD, HD95, HD       nan          inf         inf         value (mm)
  ===================  ===========  ==========  ==========  =================

  ``nan`` means "undefined, leave out of means" (summaries use nan-aware means and say how many cases counted).
"""

from __future__ import annotations

from .instances import (
    InstanceMatch,
    InstanceScores,
    OverlapTable,
    VertebraRow,
    evaluate_instances,
    match_instances,
    overlap_table,
)
from .overlap import dice, iou
from .spider import SpiderScores, spider_evaluate
from .surface import assd, hausdorff, hd95, surface_distances, surface_mask

__all__ = [
    "dice",
    "iou",
    "assd",
    "hd95",
    "hausdorff",
    "surface_distances",
    "surface_mask",
    "overlap_table",
    "OverlapTable",
    "match_instances",
    "InstanceMatch",
    "evaluate_instances",
    "InstanceScores",
    "VertebraRow",
    "spider_evaluate",
    "SpiderScores",
]
