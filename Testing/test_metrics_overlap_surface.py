"""Dice/IoU and surface distances in mm: empty-case policy, analytic shapes with anisotropic spacing, axis order."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from spineinstanceseg.errors import InputError
from spineinstanceseg.metrics import assd, dice, hausdorff, hd95, iou, surface_distances, surface_mask
from spineinstanceseg.volume import Volume

SPACING = (0.5, 0.8, 2.0)


def _box(shape=(40, 30, 20), lo=(10, 8, 5), hi=(25, 20, 12)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return mask


EMPTY = np.zeros((40, 30, 20), bool)


@pytest.mark.parametrize(
    "pred, ref, expected_overlap, expected_distance",
    [
        (EMPTY, EMPTY, "nan", "nan"),  # both empty
        (EMPTY, _box(), 0.0, math.inf),  # prediction empty
        (_box(), EMPTY, 0.0, math.inf),  # reference empty
        (_box(), _box(), 1.0, 0.0),  # both non-empty (identical)
    ],
    ids=["both-empty", "pred-empty", "ref-empty", "both-present"],
)
def test_empty_case_policy(pred, ref, expected_overlap, expected_distance):
    for metric in (dice, iou):
        value = metric(pred, ref)
        assert math.isnan(value) if expected_overlap == "nan" else value == expected_overlap
    for metric in (assd, hd95, hausdorff):
        value = metric(pred, ref, SPACING)
        assert math.isnan(value) if expected_distance == "nan" else value == expected_distance


def test_dice_and_iou_values():
    a = _box(lo=(10, 8, 5), hi=(20, 20, 12))
    b = _box(lo=(15, 8, 5), hi=(25, 20, 12))  # half overlap along axis 0
    assert dice(a, b) == pytest.approx(0.5)
    assert iou(a, b) == pytest.approx(1 / 3)


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_parallel_planes_distance_is_shift_times_spacing_of_that_axis(axis):
    # One-voxel-thick planes are all surface; each voxel's nearest partner is straight across: exactly s * spacing.
    shape = (24, 24, 24)
    a, b = np.zeros(shape, bool), np.zeros(shape, bool)
    index_a = [slice(4, 20)] * 3
    index_b = list(index_a)
    index_a[axis], index_b[axis] = 8, 11
    a[tuple(index_a)], b[tuple(index_b)] = True, True
    expected = 3 * SPACING[axis]
    assert assd(a, b, SPACING) == pytest.approx(expected)
    assert hd95(a, b, SPACING) == pytest.approx(expected)
    assert hausdorff(a, b, SPACING) == pytest.approx(expected)


def test_volumes_use_their_own_spacing_in_array_axis_order():
    a = _box()
    b = np.roll(a, 2, axis=2)  # shift along the 2 mm axis
    va = Volume(a.astype(np.uint8), SPACING, is_label=True)
    vb = va.with_array(b.astype(np.uint8))
    assert assd(va, vb) == pytest.approx(assd(a, b, SPACING))
    assert assd(va, vb) != pytest.approx(assd(a, b, SPACING[::-1]))
    with pytest.raises(InputError, match="contradicts"):
        assd(va, vb, SPACING[::-1])


def test_distance_metrics_require_spacing_for_plain_arrays():
    with pytest.raises(InputError, match="spacing"):
        assd(_box(), _box())


def test_volumes_on_different_grids_are_refused():
    va = Volume(_box().astype(np.uint8), SPACING, is_label=True)
    vb = Volume(_box().astype(np.uint8), SPACING, origin=(1.0, 0.0, 0.0), is_label=True)
    with pytest.raises(InputError, match="different grids"):
        dice(va, vb)


def _sphere(radius: float, shape, spacing) -> np.ndarray:
    axes = [np.arange(n) * s for n, s in zip(shape, spacing, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    centre = [(n - 1) * s / 2 for n, s in zip(shape, spacing, strict=True)]
    return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2


def test_concentric_spheres_assd_is_radius_difference_within_a_voxel():
    shape = (120, 80, 34)  # 60 x 64 x 68 mm
    small, large = _sphere(15.0, shape, SPACING), _sphere(20.0, shape, SPACING)
    tolerance = max(SPACING) / 2
    assert assd(small, large, SPACING) == pytest.approx(5.0, abs=tolerance)
    assert assd(large, small, SPACING) == pytest.approx(assd(small, large, SPACING))
    assert hd95(small, large, SPACING) == pytest.approx(5.0, abs=max(SPACING))


def test_box_against_shifted_box_matches_brute_force_point_distances():
    a = _box(lo=(10, 8, 5), hi=(22, 18, 11))
    b = _box(lo=(13, 9, 6), hi=(25, 20, 12))
    pa = np.argwhere(surface_mask(a)) * SPACING
    pb = np.argwhere(surface_mask(b)) * SPACING
    distances = cdist(pa, pb)
    d_ab, d_ba = distances.min(axis=1), distances.min(axis=0)
    pooled = np.concatenate((d_ab, d_ba))
    ours_ab, ours_ba = surface_distances(a, b, SPACING)
    np.testing.assert_allclose(np.sort(ours_ab), np.sort(d_ab), atol=1e-9)
    np.testing.assert_allclose(np.sort(ours_ba), np.sort(d_ba), atol=1e-9)
    assert assd(a, b, SPACING) == pytest.approx(pooled.mean())
    assert assd(a, b, SPACING, pooled=False) == pytest.approx((d_ab.mean() + d_ba.mean()) / 2)
    assert hd95(a, b, SPACING) == pytest.approx(np.percentile(pooled, 95))
    assert hausdorff(a, b, SPACING) == pytest.approx(pooled.max())


def test_surface_is_a_one_voxel_shell_and_connectivity_matters_on_curved_shapes():
    box = _box()
    inner = _box(lo=(11, 9, 6), hi=(24, 19, 11))
    for connectivity in (1, 3):  # a box has the same one-voxel shell either way
        assert surface_mask(box, connectivity=connectivity).sum() == box.sum() - inner.sum()
    ball = _sphere(8.0, (40, 40, 40), (1.0, 1.0, 1.0))
    assert surface_mask(ball, connectivity=1).sum() < surface_mask(ball, connectivity=3).sum()


def test_matches_panoptica_where_definitions_coincide():
    pytest.importorskip("panoptica")
    from panoptica.metrics.assd import _average_symmetric_surface_distance
    from panoptica.metrics.hausdorff_distance import _compute_hausdorff_distance95

    a = _sphere(9.0, (60, 40, 16), SPACING)
    b = np.roll(_sphere(8.0, (60, 40, 16), SPACING), 3, axis=0)
    # panoptica: 6-connectivity surface, mean of the two directional means, pooled 95th percentile.
    ref_assd = _average_symmetric_surface_distance(a, b, voxelspacing=SPACING, connectivity=1)
    ref_hd95 = _compute_hausdorff_distance95(a, b, voxelspacing=SPACING, connectivity=1)
    assert assd(a, b, SPACING, pooled=False, connectivity=1) == pytest.approx(ref_assd, abs=1e-6)
    assert hd95(a, b, SPACING, connectivity=1) == pytest.approx(ref_hd95, abs=1e-6)
    # Without spacing panoptica measures in voxels: a different number, as DESIGN.md warns.
    assert _average_symmetric_surface_distance(a, b) != pytest.approx(ref_assd)
