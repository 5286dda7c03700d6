"""Instance metrics: IoU >= 0.5 greedy matching, F1/SQ/PQ, instance Dice with misses, level rate, panoptica."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spineinstanceseg.metrics import assd, evaluate_instances, hd95, match_instances, overlap_table
from spineinstanceseg.volume import Volume

SPACING = (0.5, 0.8, 2.0)


def _stack(n: int = 4, shape=(30, 30, 44)) -> np.ndarray:
    """n box vertebrae along axis 2, labelled with VerSe codes 20, 21, ... from the top (high z) down."""
    out = np.zeros(shape, np.int32)
    for k in range(n):
        z0 = 40 - (k + 1) * 10
        out[5:25, 5:25, z0 : z0 + 8] = 20 + k
    return out


def _prediction() -> np.ndarray:
    """Relative to _stack(): 20 shrunk slightly, 21 mislabelled 22, 22 split in three parts (each IoU < 0.5),
    23 missed, and one false positive blob."""
    ref = _stack()
    pred = np.zeros_like(ref)
    pred[6:25, 5:25, 30:38] = 20  # IoU 19/20 with ref 20
    pred[ref == 21] = 22  # same shape, wrong level
    x = np.arange(30)[:, None, None]
    for label, (lo, hi) in zip((30, 31, 32), ((0, 11), (11, 18), (18, 30)), strict=True):
        pred[(ref == 22) & (x >= lo) & (x < hi)] = label
    pred[0:3, 0:3, 0:3] = 40  # false positive
    return pred


def test_matching_is_greedy_one_to_one_by_iou():
    ref, pred = _stack(), _prediction()
    matches = match_instances(overlap_table(pred, ref))
    assert {(m.ref_label, m.pred_label) for m in matches} == {(20, 20), (21, 22)}
    assert [m.iou for m in matches] == sorted((m.iou for m in matches), reverse=True)


def test_counts_rates_and_instance_dice():
    scores = evaluate_instances(_prediction(), _stack(), SPACING, levels_known=True)
    assert (scores.tp, scores.fp, scores.fn) == (2, 4, 2)
    assert scores.precision == pytest.approx(2 / 6) and scores.recall == pytest.approx(2 / 4)
    assert scores.f1 == pytest.approx(2 / (2 + 0.5 * 4 + 0.5 * 2)) and scores.rq == scores.f1
    iou_20 = 19 / 20
    assert scores.sq == pytest.approx((iou_20 + 1.0) / 2)
    assert scores.pq == pytest.approx(scores.sq * scores.f1)
    dice_20 = 2 * 19 / 39
    assert scores.mean_dice_matched == pytest.approx((dice_20 + 1.0) / 2)
    assert scores.mean_dice == pytest.approx((dice_20 + 1.0 + 0 + 0) / 4)  # misses count as 0
    assert scores.level_identification_rate == pytest.approx(0.5)  # 20 right, 21 called 22
    by_ref = {row.ref_label: row for row in scores.rows if row.ref_label is not None}
    assert by_ref[21].status == "TP" and by_ref[21].level_correct is False and by_ref[21].pred_name == "L3"
    assert by_ref[23].status == "FN" and by_ref[23].dice == 0.0 and math.isnan(by_ref[23].assd_mm)
    assert sorted(row.pred_label for row in scores.rows if row.status == "FP") == [30, 31, 32, 40]


def test_iou_of_exactly_one_half_is_a_match():
    ref = _stack(1)
    pred = np.where((ref > 0) & (np.arange(30)[:, None, None] < 15), 5, 0)  # half the vertebra: IoU = 0.5
    scores = evaluate_instances(pred, ref, SPACING)
    assert scores.tp == 1 and scores.sq == pytest.approx(0.5)
    assert evaluate_instances(pred, ref, SPACING, iou_threshold=0.51).tp == 0


def test_perfect_prediction_and_level_rate_needs_levels():
    ref = _stack()
    scores = evaluate_instances(ref, ref, SPACING)
    assert (scores.tp, scores.fp, scores.fn, scores.f1, scores.pq, scores.mean_dice) == (4, 0, 0, 1.0, 1.0, 1.0)
    assert scores.mean_assd_mm == 0.0 and scores.mean_hd95_mm == 0.0
    assert math.isnan(scores.level_identification_rate)  # levels_known=False: not computed


@pytest.mark.parametrize("case", ["both-empty", "pred-empty", "ref-empty"])
def test_instance_empty_cases(case):
    ref, empty = _stack(), np.zeros_like(_stack())
    pred, reference = {"both-empty": (empty, empty), "pred-empty": (empty, ref), "ref-empty": (ref, empty)}[case]
    s = evaluate_instances(pred, reference, SPACING)
    if case == "both-empty":
        assert (s.tp, s.fp, s.fn) == (0, 0, 0) and math.isnan(s.f1) and math.isnan(s.mean_dice)
    elif case == "pred-empty":
        assert (s.fn, s.f1, s.recall, s.mean_dice, s.pq) == (4, 0.0, 0.0, 0.0, 0.0) and math.isnan(s.precision)
    else:
        assert (s.fp, s.f1, s.precision, s.pq) == (4, 0.0, 0.0, 0.0) and math.isnan(s.recall)


def test_volume_input_uses_volume_spacing():
    ref, pred = _stack(), np.roll(_stack(), 1, axis=2)
    volume = Volume(ref, SPACING, is_label=True)
    from_volumes = evaluate_instances(volume.with_array(pred), volume)
    from_arrays = evaluate_instances(pred, ref, SPACING)
    assert from_volumes.mean_assd_mm == pytest.approx(from_arrays.mean_assd_mm)
    assert from_volumes.mean_assd_mm != pytest.approx(evaluate_instances(pred, ref, SPACING[::-1]).mean_assd_mm)


def test_per_instance_distances_equal_whole_array_computation():
    ref, pred = _stack(), np.roll(_stack(), 2, axis=0)
    scores = evaluate_instances(pred, ref, SPACING)
    for row in scores.rows:
        assert row.assd_mm == pytest.approx(assd(ref == row.ref_label, pred == row.pred_label, SPACING), abs=1e-9)
        assert row.hd95_mm == pytest.approx(hd95(ref == row.ref_label, pred == row.pred_label, SPACING), abs=1e-9)


def test_agrees_with_panoptica_on_matching_dice_and_assd():
    panoptica = pytest.importorskip("panoptica")
    from panoptica import InputType, Metric, NaiveThresholdMatching, Panoptica_Evaluator

    rng = np.random.default_rng(0)
    ref = _stack(5, shape=(30, 30, 54))
    pred = np.zeros_like(ref)
    for code in range(20, 25):
        shift = rng.integers(-2, 3, size=3)
        pred[np.roll(ref == code, tuple(shift), axis=(0, 1, 2))] = code + 50
    pred[0:4, 0:4, 0:4] = 99
    evaluator = Panoptica_Evaluator(
        expected_input=InputType.UNMATCHED_INSTANCE,
        instance_matcher=NaiveThresholdMatching(),
        instance_metrics=[Metric.DSC, Metric.IOU, Metric.ASSD, Metric.HD95],
        global_metrics=[Metric.DSC],
        verbose=False,
    )
    theirs = evaluator.evaluate(pred, ref, voxelspacing=SPACING)["ungrouped"]
    ours = evaluate_instances(pred, ref, SPACING)
    assert panoptica is not None
    assert (ours.tp, ours.fp, ours.fn) == (theirs.tp, theirs.fp, theirs.fn)
    assert ours.sq == pytest.approx(theirs.sq, abs=1e-6)
    assert ours.pq == pytest.approx(theirs.pq, abs=1e-6)
    assert ours.mean_dice_matched == pytest.approx(theirs.sq_dsc, abs=1e-6)
    assert ours.mean_hd95_mm == pytest.approx(theirs.sq_hd95, abs=1e-6)
    # Our ASSD is pooled; panoptica's is the mean of the two directional means. Same surfaces (6-connectivity):
    tp = [row for row in ours.rows if row.status == "TP"]
    mean_of_means = np.mean([assd(ref == r.ref_label, pred == r.pred_label, SPACING, pooled=False) for r in tp])
    assert mean_of_means == pytest.approx(theirs.sq_assd, abs=1e-6)
