"""Why an instance result is wrong: labelled span, error causes, vertebral-body detection (hand-made label maps)."""

from __future__ import annotations

import numpy as np

from spineinstanceseg.metrics.error_causes import (
    EDGE,
    MERGED,
    MISSED,
    NOT_SPINE,
    SPLIT,
    classify_errors,
    detect_bodies,
    outside_labelled_span,
)
from spineinstanceseg.volume import Volume


def _column(n: int = 4, shape=(20, 20, 60)) -> np.ndarray:
    """n box vertebrae stacked along axis 2 (superior = +z), 10 voxels tall with 4-voxel gaps, top = label 1."""
    labels = np.zeros(shape, np.int32)
    for k in range(n):
        top = shape[2] - 3 - 14 * k
        labels[5:15, 5:15, top - 10 : top] = k + 1
    return labels


def _causes(pred, ref) -> set[tuple[str, int, str]]:
    return {(c.kind, c.label, c.cause) for c in classify_errors(pred, ref)}


def test_a_perfect_result_has_no_errors():
    ref = _column()
    assert classify_errors(ref.copy(), ref) == []


def test_split_and_merged_vertebrae_are_named_as_such():
    ref = _column()
    pred = ref.copy()
    z = np.indices(ref.shape)[2]
    pred[(ref == 1) & (z < 50)] = 7  # vertebra 1 (z 47-56) in three pieces of 30, 30 and 40 %
    pred[(ref == 1) & (z >= 50) & (z < 53)] = 8
    pred[ref == 3] = 2  # vertebrae 2 and 3 in one instance (which still matches 2 at IoU 0.5)
    expected = {("FN", 1, SPLIT), ("FP", 1, SPLIT), ("FP", 7, SPLIT), ("FP", 8, SPLIT), ("FN", 3, MERGED)}
    assert _causes(pred, ref) == expected


def test_bone_away_from_the_spine_and_missed_vertebrae():
    ref = _column()
    pred = ref.copy()
    pred[ref == 4] = 0  # stage 1 missed the lowest vertebra (it does not touch the edge)
    pred[16:19, 16:19, 20:30] = 9  # a rib-like blob
    pred[0:2, 0:2, 0:5] = 8  # something at the edge of the field of view
    causes = _causes(pred, ref)
    assert ("FN", 4, MISSED) in causes and ("FP", 9, NOT_SPINE) in causes and ("FP", 8, EDGE) in causes


def test_predictions_beyond_the_labelled_span_are_not_scored():
    full = _column(4)
    ref = np.where(full <= 2, full, 0)  # only the top two labelled, like a VerSe span
    volume = Volume(ref, (1.0, 1.0, 1.0), is_label=True)
    dropped = outside_labelled_span(volume.with_array(full), volume)
    assert dropped == [3, 4]
    straddling = full.copy()
    straddling[(full == 2) & (np.indices(full.shape)[2] < 40)] = 3  # vertebra 3 takes half of vertebra 2
    assert 3 not in outside_labelled_span(volume.with_array(straddling), volume)


def test_body_detection_counts_a_body_found_when_half_of_it_is_covered():
    bodies = np.zeros((20, 30, 60), np.int32)
    vertebrae = np.zeros_like(bodies)
    for k in range(3):
        top = 57 - 18 * k
        bodies[5:15, 2:12, top - 10 : top] = k + 1  # bodies anterior (low y)
        vertebrae[5:15, 2:25, top - 12 : top + 1] = k + 1  # whole vertebrae with posterior elements
    vertebrae[5:15, 2:12, 11:15] = 5  # the lowest body split: 60 % stays with vertebra 3, 40 % is its own instance
    bodies_v = Volume(bodies, is_label=True)
    found = detect_bodies(bodies_v.with_array(vertebrae), bodies_v)
    assert (found.tp, found.fn, found.fp) == (3, 0, 1) and found.fp_causes[0].cause == SPLIT
    vertebrae[16:19, 26:29, 30:34] = 6  # a blob away from the spine, within the labelled span: a false vertebra
    vertebrae[5:15, 2:12, 0:3] = 7  # below the lowest body (the unlabelled sacrum): not scored
    found = detect_bodies(bodies_v.with_array(vertebrae), bodies_v)
    assert found.ignored == (7,) and {(c.label, c.cause) for c in found.fp_causes} == {(5, SPLIT), (6, NOT_SPINE)}
    assert found.f1 == 6 / 8
