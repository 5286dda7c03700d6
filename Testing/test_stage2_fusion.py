"""DiceFusion on hand-made windows: agreeing, conflicting, missing, fragments."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spineinstanceseg.stage2.fusion import (
    BOTTOM,
    CENTRE,
    SINGLE_PREDICTION_CONFIDENCE,
    TOP,
    WindowPrediction,
    dice_fusion,
)

SHAPE = (8, 8, 40)
# three vertebrae, index 0 = top (highest axis 2)
Z = {0: (28, 36), 1: (16, 24), 2: (4, 12)}


def truth() -> np.ndarray:
    out = np.zeros(SHAPE, np.int32)
    for v, (a, b) in Z.items():
        out[1:7, 1:7, a:b] = v + 1
    return out


def window(centre: int, *, override: dict | None = None) -> WindowPrediction:
    """A whole-volume window centred on ``centre`` labelling the true neighbours (plus edits)."""
    t = truth()
    labels = np.zeros(SHAPE, np.int8)
    for offset, klass in ((-1, TOP), (0, CENTRE), (1, BOTTOM)):
        v = centre + offset
        if 0 <= v < 3:
            labels[t == v + 1] = klass
    for zs, klass in (override or {}).items():
        labels[1:7, 1:7, zs[0] : zs[1]] = klass
    return WindowPrediction(centre=centre, corner=(0, 0, 0), labels=labels)


def fuse(windows):
    return dice_fusion(windows, n_vertebrae=3, vertebra_mask=truth() > 0)


def test_agreeing_windows_give_the_true_map_with_full_confidence():
    result = fuse([window(0), window(1), window(2)])
    np.testing.assert_array_equal(result.labels, truth())
    np.testing.assert_allclose(result.confidence, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(result.n_predictions, [2, 3, 2])


def test_conflicting_window_is_outranked_by_the_agreeing_ones():
    # window 1 wrongly calls the top part of vertebra 2 "centre" (vertebra 1); windows 0 and 2 disagree with it
    bad = window(1, override={(9, 12): CENTRE})
    result = fuse([window(0), bad, window(2)])
    np.testing.assert_array_equal(result.labels, truth())
    assert result.confidence[1] < 1.0 and result.confidence[2] < 1.0
    assert result.confidence[0] == pytest.approx(1.0)


def test_missing_window_is_covered_by_the_neighbours_predictions():
    result = fuse([window(0), window(2)])  # the window of the middle vertebra is absent
    np.testing.assert_array_equal(result.labels, truth())
    # vertebra 1 is still seen twice (bottom of window 0, top of window 2) and they agree
    assert result.confidence[1] == pytest.approx(1.0)
    # vertebrae 0 and 2 are each seen by one window only
    assert result.confidence[0] == pytest.approx(SINGLE_PREDICTION_CONFIDENCE)
    assert result.confidence[2] == pytest.approx(SINGLE_PREDICTION_CONFIDENCE)


def test_unpredicted_vertebra_voxels_are_still_assigned_and_nothing_outside():
    # one small window that sees only the top vertebra: the rest of the mask must still be labelled
    small = np.zeros((8, 8, 16), np.int8)
    small[1:7, 1:7, 4:12] = CENTRE  # vertebra 0 (z 28-36) with the window corner at z=24
    result = fuse([WindowPrediction(centre=0, corner=(0, 0, 24), labels=small)])
    mask = truth() > 0
    assert np.all(result.labels[mask] > 0)
    assert np.all(result.labels[~mask] == 0)
    assert result.labels.max() == 1  # only one vertebra was ever predicted
    assert (result.labels == 1).sum() == mask.sum()


def test_orphan_fragment_goes_to_the_neighbour_that_surrounds_it():
    # window 0 claims a little island inside vertebra 1 as "centre" (vertebra 0), ranked first
    w0 = window(0, override={(19, 21): CENTRE})
    result = fuse([w0, window(1), window(2)])
    np.testing.assert_array_equal(result.labels, truth())
    for v in (1, 2, 3):  # each vertebra is one connected piece
        assert ndimage.label(result.labels == v)[1] == 1


def test_empty_vertebra_is_dropped_and_labels_stay_dense_top_to_bottom():
    mask = truth() > 0
    # four centroids but the windows only ever see three vertebrae (index 1 is a spurious centroid)
    t = truth()
    labels = np.zeros(SHAPE, np.int8)
    labels[t == 1] = TOP
    labels[t == 2] = BOTTOM  # window centred on spurious index 1: bottom = index 2
    w = WindowPrediction(centre=1, corner=(0, 0, 0), labels=labels)
    labels2 = np.zeros(SHAPE, np.int8)
    labels2[t == 3] = BOTTOM
    labels2[t == 2] = CENTRE
    w2 = WindowPrediction(centre=2, corner=(0, 0, 0), labels=labels2)
    result = dice_fusion([w, w2], n_vertebrae=4, vertebra_mask=mask)
    np.testing.assert_array_equal(result.labels, truth())
    np.testing.assert_array_equal(result.source, [0, 2, 3])


def test_probabilities_and_labels_give_the_same_prediction():
    labels = window(1).labels
    probs = np.moveaxis(np.eye(4, dtype=np.float32)[labels] * 0.7 + 0.075, -1, 0)
    a = WindowPrediction.from_output(1, (0, 0, 0), probs)
    np.testing.assert_array_equal(a.labels, labels)
    with pytest.raises(Exception, match="window prediction"):
        WindowPrediction.from_output(1, (0, 0, 0), np.zeros((2, 3)))


def test_neighbour_above_the_first_centroid_becomes_a_vertebra_of_its_own():
    # centroid finding missed the top vertebra: the list has only vertebrae 1 and 2 (indices 0, 1), but the
    # window of index 0 sees the missed one as its "top" neighbour
    t = truth()
    w0 = np.zeros(SHAPE, np.int8)
    w0[t == 1], w0[t == 2], w0[t == 3] = TOP, CENTRE, BOTTOM
    w1 = np.zeros(SHAPE, np.int8)
    w1[t == 2], w1[t == 3] = TOP, CENTRE
    windows = [WindowPrediction(0, (0, 0, 0), w0), WindowPrediction(1, (0, 0, 0), w1)]
    result = dice_fusion(windows, n_vertebrae=2, vertebra_mask=t > 0)
    np.testing.assert_array_equal(result.labels, t)
    np.testing.assert_array_equal(result.source, [-1, 0, 1])
    assert result.confidence[0] == pytest.approx(SINGLE_PREDICTION_CONFIDENCE)


def test_two_centroids_on_one_vertebra_give_no_duplicate():
    # centroid list: [v1, v2, v2 again (spurious), v3]; every window labels the true neighbours of its centre
    t = truth()

    def win(centre: int, top: int | None, mid: int, bottom: int | None) -> WindowPrediction:
        labels = np.zeros(SHAPE, np.int8)
        for value, klass in ((top, TOP), (mid, CENTRE), (bottom, BOTTOM)):
            if value is not None:
                labels[t == value] = klass
        return WindowPrediction(centre, (0, 0, 0), labels)

    windows = [win(0, None, 1, 2), win(1, 1, 2, 3), win(2, 1, 2, 3), win(3, 2, 3, None)]
    result = dice_fusion(windows, n_vertebrae=4, vertebra_mask=t > 0)
    np.testing.assert_array_equal(result.labels, t)  # three vertebrae, each exactly once
    assert result.confidence[1] < 0.5  # the duplicated vertebra's predictions disagree: flagged


def test_consensus_centroids_pull_an_off_centre_window_towards_its_neighbours_view():
    agreeing = fuse([window(0), window(1), window(2)])
    t = truth()
    true_centroids = np.asarray(ndimage.center_of_mass(np.ones(SHAPE), t, [1, 2, 3]))
    np.testing.assert_allclose(agreeing.consensus_centroids, true_centroids)
    # window 0 sits too high and sees only the upper half of its vertebra (z 32-36, 144 voxels); window 1 sees
    # all of it as its top neighbour (z 28-36, 288 voxels): the voxel-weighted mean lies between the two views
    result = fuse([window(0, override={(28, 32): 0}), window(1), window(2)])
    expected_z = (33.5 * 144 + 31.5 * 288) / 432
    np.testing.assert_allclose(result.consensus_centroids[0], [3.5, 3.5, expected_z])
    np.testing.assert_allclose(result.consensus_centroids[1:], true_centroids[1:])
