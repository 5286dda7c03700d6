"""SPIDER challenge mode: max-overlap matching, Dice < 0.1 = missed, pooled ASD, and the spacing axis order."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spineinstanceseg.metrics import assd, spider_evaluate
from spineinstanceseg.volume import Volume

SPACING = (3.0, 0.6, 0.6)  # sagittal MRI-like: thick along the first axis


def _spider_reference() -> np.ndarray:
    ref = np.zeros((12, 40, 60), np.int32)
    for k in range(1, 4):  # vertebrae from the bottom (low z)
        z0 = 4 + (k - 1) * 18
        ref[2:10, 5:25, z0 : z0 + 12] = k
        ref[2:10, 5:25, z0 - 4 : z0] = 200 + k  # SPIDER: disc 200+k lies below vertebra k
    ref[2:10, 28:34, :] = 100
    return ref


def test_perfect_prediction_scores_one_and_zero_distance():
    ref = _spider_reference()
    s = spider_evaluate(ref, ref, SPACING)
    assert s.DiceScoreVertebrae == 1.0 and s.DiceScoreDiscs == 1.0 and s.DiceScoreSpinalCanal == 1.0
    assert s.DetectionRateVertebrae == 1.0 and s.DetectionRateDiscs == 1.0
    assert s.ASDVertebrae == 0.0 and s.OveralASD == 0.0


def test_max_overlap_matching_is_not_one_to_one():
    ref = _spider_reference()
    pred = ref.copy()
    pred[(ref == 1) | (ref == 2)] = 7  # two vertebrae merged into one prediction
    s = spider_evaluate(pred, ref, SPACING)
    rows = {row.ref_label: row for row in s.rows}
    assert rows[1].pred_label == 7 and rows[2].pred_label == 7
    assert rows[1].dice == pytest.approx(2 * 1 / 3)  # |A| = n, |B| = 2n, overlap n -> 2/3
    assert s.DetectionRateVertebrae == 1.0


def test_low_dice_counts_as_missed_but_keeps_its_distance():
    ref = _spider_reference()
    pred = ref.copy()
    pred[ref == 3] = 0
    pred[2:3, 5:7, 40:41] = 3  # a sliver: Dice well below 0.1
    s = spider_evaluate(pred, ref, SPACING)
    rows = {row.ref_label: row for row in s.rows}
    assert rows[3].dice < 0.1
    assert s.DetectionRateVertebrae == pytest.approx(2 / 3)
    assert s.DiceScoreVertebrae == 1.0  # the missed vertebra is left out of the class Dice
    assert math.isfinite(s.ASDVertebrae) and s.ASDVertebrae > 0  # but its distance enters the class ASD


def test_unmatched_reference_label_makes_class_asd_nan_like_the_official_mean():
    ref = _spider_reference()
    pred = ref.copy()
    pred[ref == 2] = 0
    s = spider_evaluate(pred, ref, SPACING)
    assert {row.ref_label: row.pred_label for row in s.rows}[2] is None
    assert math.isnan(s.ASDVertebrae) and math.isnan(s.OveralASD)
    assert s.DetectionRateVertebrae == pytest.approx(2 / 3)


def test_partial_vertebrae_enter_only_the_overall_scores_and_missing_canal_is_nan():
    ref = _spider_reference()
    ref[ref == 3] = 103
    ref[ref == 100] = 0
    pred = ref.copy()
    pred[ref == 103] = 0
    s = spider_evaluate(pred, ref, SPACING)
    assert s.DetectionRateVertebrae == 1.0 and s.DiceScoreVertebrae == 1.0  # only 1 and 2 are "vertebrae"
    assert s.OveralDiceScore == pytest.approx(5 / 6)  # 1, 2, 201, 202, 203 perfect; 103 scores 0
    assert math.isnan(s.DiceScoreSpinalCanal)  # the official script reports the sentinel 999 here


def test_surface_distance_uses_full_connectivity_and_pooled_mean():
    ref = _spider_reference()
    pred = np.roll(ref, 1, axis=2)
    s = spider_evaluate(pred, ref, SPACING)
    for row in s.rows:
        expected = assd(ref == row.ref_label, pred == row.pred_label, SPACING, connectivity=3, pooled=True)
        assert row.asd_mm == pytest.approx(expected, abs=1e-9)


def test_spacing_axis_order_is_right_and_the_official_mistake_can_be_reproduced():
    # Two-voxel-thick plates (all surface) shifted by one voxel along the thick first axis: half the surface
    # voxels are 3.0 mm from the other surface, half 0 mm -> ASD 1.5 mm.
    ref = np.zeros((10, 20, 20), np.int32)
    ref[4:6, 2:18, 2:18] = 1
    pred = np.zeros_like(ref)
    pred[5:7, 2:18, 2:18] = 1
    volume = Volume(ref, SPACING, is_label=True)
    correct = spider_evaluate(volume.with_array(pred), volume)
    assert correct.ASDVertebrae == pytest.approx(1.5)
    # The official script pairs (z, y, x) arrays with (x, y, z) spacing, i.e. uses 0.6 mm for this axis.
    official = spider_evaluate(volume.with_array(pred), volume, replicate_axis_order_bug=True)
    assert official.ASDVertebrae == pytest.approx(0.3)
