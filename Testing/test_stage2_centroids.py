"""Centroid finding: one centroid per vertebra, top to bottom, also for touching and vertebra-only masks."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import oblique_direction, require_shared_data
from scipy import ndimage
from stage2_helpers import box_spine

from spineinstanceseg.semantic import VERTEBRA
from spineinstanceseg.stage2.centroids import find_centroids, locate_vertebrae
from spineinstanceseg.volume import Volume

REAL_MASKS = (
    "sub-verse004_seg-vert_msk.nii.gz",
    "sub-verse009_seg-vert_msk.nii.gz",
    "sub-verse010_seg-vert_msk.nii.gz",
    "sub-gl003_dir-ax_seg-vert_msk.nii.gz",
)


def true_centroids(instances: np.ndarray) -> np.ndarray:
    labels = [v for v in np.unique(instances) if v > 0]
    cents = np.asarray(ndimage.center_of_mass(np.ones(instances.shape), instances, labels)).reshape(-1, 3)
    return cents[np.argsort(-cents[:, 2])]


def assert_matches(found: np.ndarray, instances: np.ndarray, *, tol_vox: float) -> None:
    """Same count, and the k-th centroid is nearest the k-th true vertebra (top to bottom) within tol."""
    expected = true_centroids(instances)
    assert len(found) == len(expected), f"found {len(found)} vertebrae, expected {len(expected)}"
    for k, c in enumerate(found):
        dist = np.linalg.norm(expected - c, axis=1)
        assert int(np.argmin(dist)) == k, f"centroid {k} lies nearest true vertebra {int(np.argmin(dist))}"
        assert dist[k] <= tol_vox, f"centroid {k} is {dist[k]:.1f} voxels from the true one"


@pytest.mark.parametrize(
    "options",
    [
        {"discs": True},
        {"discs": False},  # vertebra-only mask, one connected component through the arches
        {"discs": True, "touching": (1,)},  # collapsed disc: two bodies touch, no disc between them
        {"discs": False, "touching": (1,)},  # fused pair in a vertebra-only mask
        {"discs": False, "touching": (1, 4), "n": 7},  # two fused pairs
    ],
    ids=["discs", "vertebra-only", "collapsed-disc", "fused-no-disc", "two-fused-pairs"],
)
def test_touching_boxes_get_one_centroid_each(options):
    sem, inst = box_spine(**{"n": 5, **options})
    assert ndimage.label(sem == VERTEBRA)[1] == 1  # the union is one component: CC would find 1
    layout = locate_vertebrae(sem == VERTEBRA, spacing_mm=2.0, disc=sem == 2)
    assert_matches(layout.centroids, inst, tol_vox=3.0)
    # the provisional regions split the mask and follow the true vertebrae
    assert np.all(layout.regions[sem == VERTEBRA] > 0) and np.all(layout.regions[sem != VERTEBRA] == 0)


def test_vertebra_cut_by_the_field_of_view_still_gets_a_centroid():
    sem, inst = box_spine(5, cut_top=7)  # the top body keeps 5 of its 12 voxels
    layout = locate_vertebrae(sem == VERTEBRA, spacing_mm=2.0, disc=sem == 2)
    assert_matches(layout.centroids, inst, tol_vox=3.0)


def test_expected_height_splits_a_fused_stack_without_disc_spaces():
    # two vertebrae fused into one block and nothing else to compare with: only the expected height can tell
    sem, inst = box_spine(2, touching=(0,), discs=False, arch=False)
    assert len(locate_vertebrae(sem == VERTEBRA, spacing_mm=2.0, expected_height_mm=30.0).centroids) == 2
    assert len(locate_vertebrae(sem == VERTEBRA, spacing_mm=2.0, expected_height_mm=60.0).centroids) == 1


def test_empty_mask_gives_no_centroid():
    assert find_centroids(np.zeros((10, 10, 10), np.uint8), spacing_mm=2.0) == []


def test_volume_input_on_permuted_oblique_anisotropic_grid_gives_physical_centroids():
    sem, inst = box_spine(5, discs=False)
    sem, inst = np.repeat(sem, 2, axis=0), np.repeat(inst, 2, axis=0)  # 1 x 2 x 2 mm voxels
    # store the axes as (S, L, P) with S flipped, and tilt the grid by 5 degrees
    perm = (2, 0, 1)
    arr_s = np.flip(np.transpose(sem, perm), 0)
    arr_i = np.flip(np.transpose(inst, perm), 0)
    axes = np.eye(3)[:, list(perm)]
    axes[:, 0] *= -1
    direction = oblique_direction(5.0, seed=2) @ axes
    spacing = (2.0, 1.0, 2.0)
    sem_v = Volume(np.ascontiguousarray(arr_s), spacing, (10.0, -20.0, 30.0), direction, is_label=True)
    inst_v = sem_v.with_array(np.ascontiguousarray(arr_i))
    found = find_centroids(sem_v)
    labels = [v for v in np.unique(arr_i) if v > 0]
    idx = np.asarray(ndimage.center_of_mass(np.ones(arr_i.shape), arr_i, labels))
    world = inst_v.index_to_world(idx)
    world = world[np.argsort(labels)]  # instances are numbered top (1) to bottom
    assert len(found) == 5
    lps = np.asarray([c.lps for c in found])
    assert np.all(np.linalg.norm(lps - world, axis=1) < 4.0)  # mm
    # top to bottom in physical space: LPS z (superior) decreases
    assert np.all(np.diff(lps[:, 2]) < 0)


@pytest.mark.parametrize("name", REAL_MASKS)
def test_real_vertebra_masks_union_is_split_into_the_right_vertebrae(name):
    from spineinstanceseg.io import read_label_map
    from spineinstanceseg.stage2.working_grid import to_working_grid

    path = require_shared_data("real-vertebra-masks", name)
    truth = read_label_map(path)
    union = truth.with_array((np.asarray(truth.array) > 0).astype(np.uint8))
    found = find_centroids(union)  # the Volume path: reorientation and resampling included
    work = np.asarray(to_working_grid(truth, 2.0).array)
    expected = true_centroids(work)
    assert len(found) == len(expected), f"{name}: {len(found)} centroids for {len(expected)} vertebrae"
    labels = sorted((v for v in np.unique(work) if v > 0), key=lambda v: -np.argwhere(work == v)[:, 2].mean())
    to_world = to_working_grid(union, 2.0).volume.index_to_world
    for k, c in enumerate(found):
        index = np.asarray(c.index)
        dist = np.linalg.norm(expected - index, axis=1) * 2.0  # mm
        assert int(np.argmin(dist)) == k, f"{name}: centroid {k} is nearest true vertebra {int(np.argmin(dist))}"
        # inside the right vertebra or within a few mm of it; a thoracic vertebra's own centroid often lies in
        # the canal, outside its bone, so being close to the true centroid counts too
        gap = np.min(np.linalg.norm(np.argwhere(work == labels[k]) - index, axis=1)) * 2.0
        assert gap <= 6.0 or dist[k] <= 10.0, f"{name}: centroid {k} is {gap:.1f} mm from its vertebra"
        # and its physical position agrees with the working-grid index
        assert np.allclose(c.lps, to_world(index), atol=1e-6)


def test_peak_finding_equals_scipy_find_peaks():
    """The disc spaces are the prominent minima of the column profile: the same peaks as SciPy's find_peaks."""
    from scipy.signal import find_peaks

    from spineinstanceseg.stage2.peaks import find_peaks_by_prominence

    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(0, 80))
        signals = (
            rng.normal(size=n),
            rng.integers(0, 4, size=n).astype(float),  # flat tops and flat valleys
            np.round(np.cumsum(rng.normal(size=n)), 1),
            np.clip(rng.normal(size=n), -0.5, 0.5),
        )
        for x in signals:
            prominence = float(rng.choice([0.0, 0.05, 0.2, 0.5, 1.0]))
            expected = find_peaks(x, prominence=prominence)[0]
            np.testing.assert_array_equal(find_peaks_by_prominence(x, prominence), expected, err_msg=f"trial {trial}")
