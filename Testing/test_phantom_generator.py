"""Synthetic spine phantom: determinism, shared geometry, level codes and order, discs, hard cases, oblique grids."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from spineinstanceseg.errors import InputError
from spineinstanceseg.levels import SACRUM_CODE, cranio_caudal_order
from spineinstanceseg.orientation import to_canonical
from spineinstanceseg.phantom import SteepLordosis, generate_phantom
from spineinstanceseg.semantic import CANAL, DISC, SACRUM, VERTEBRA

SPACING = (2.0, 2.0, 2.0)


def _contacts(labels: np.ndarray) -> dict[tuple[int, int], int]:
    """Number of 6-connected voxel faces shared by each pair of different non-zero labels."""
    out: dict[tuple[int, int], int] = {}
    for axis in range(3):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1], a[1:]
        touching = (lo != hi) & (lo > 0) & (hi > 0)
        pairs = np.stack([np.minimum(lo[touching], hi[touching]), np.maximum(lo[touching], hi[touching])], 1)
        for p, n in zip(*np.unique(pairs, axis=0, return_counts=True), strict=True):
            key = (int(p[0]), int(p[1]))
            out[key] = out.get(key, 0) + int(n)
    return out


@pytest.fixture(scope="module")
def ct_case():
    return generate_phantom(11, spacing=SPACING)


def test_same_seed_same_arrays_other_seed_differs():
    a = generate_phantom(5, modality="t1", spacing=SPACING)
    b = generate_phantom(5, modality="t1", spacing=SPACING)
    c = generate_phantom(6, modality="t1", spacing=SPACING)
    for name in ("image", "instances", "semantic"):
        assert np.array_equal(getattr(a, name).array, getattr(b, name).array)
        assert getattr(a, name).same_grid(getattr(b, name))
    assert a.centroids == b.centroids and a.meta == b.meta
    assert not (a.image.shape == c.image.shape and np.array_equal(a.instances.array, c.instances.array))


def test_four_outputs_share_one_grid_and_types(ct_case):
    case = ct_case
    assert case.image.same_grid(case.instances) and case.image.same_grid(case.semantic)
    assert case.image.dtype == np.float32 and not case.image.is_label
    assert case.instances.is_label and case.instances.dtype == np.int16
    assert case.semantic.is_label and case.semantic.dtype == np.uint8
    assert case.image.spacing == SPACING
    # Semantic classes agree with the instance map voxel by voxel.
    inst, sem = case.instances.array, case.semantic.array
    assert np.array_equal(sem == VERTEBRA, (inst > 0) & (inst != SACRUM_CODE))
    assert np.array_equal(sem == SACRUM, inst == SACRUM_CODE)
    assert (sem == DISC).sum() > 1000 and (sem == CANAL).sum() > 1000
    # Every labelled piece is substantial (slivers of cut neighbours are left unlabelled).
    counts = np.bincount(inst.ravel())
    assert all(counts[c] * case.instances.voxel_volume_mm3 >= 200 for c in np.flatnonzero(counts) if c)
    # Centroids are the mean world position of each label's voxels, for every label present.
    assert set(case.centroids) == {int(v) for v in np.unique(inst) if v}
    for code, pos in case.centroids.items():
        ijk = np.array(ndimage.center_of_mass(inst == code))
        np.testing.assert_allclose(pos, case.instances.index_to_world(ijk), atol=1e-6)


@pytest.mark.parametrize(
    ("region", "extra", "expected"),
    [
        ("lumbar", None, [20, 21, 22, 23, 24, 26]),
        ("lumbar", "L6", [20, 21, 22, 23, 24, 25, 26]),
        ("lumbar", "T13", [28, 20, 21, 22, 23, 24, 26]),
        ("thoracolumbar", None, [16, 17, 18, 19, 20, 21, 22, 23, 24, 26]),
        ("cervical", None, [1, 2, 3, 4, 5, 6, 7]),
    ],
)
def test_requested_levels_present_with_verse_codes_top_to_bottom(region, extra, expected):
    case = generate_phantom(3, region=region, extra_level=extra, spacing=SPACING if region != "cervical" else 1.5)
    inst = case.instances.array
    counts = np.bincount(inst.ravel(), minlength=30)
    for code in expected:
        assert counts[code] * case.instances.voxel_volume_mm3 > 2000, f"level {code} missing or tiny"
    # Ordered head to feet along world +z (superior) ...
    z = [case.centroids[c][2] for c in expected]
    assert all(a > b for a, b in zip(z, z[1:], strict=False)), z
    # ... and along axis 2 after canonical reorientation.
    canon, _ = to_canonical(case.instances)
    k = [ndimage.center_of_mass(canon.array == c)[2] for c in expected]
    assert all(a > b for a, b in zip(k, k[1:], strict=False)), k
    assert sorted(case.centroids, key=cranio_caudal_order) == case.levels
    if extra is None:
        assert counts[25] == 0 and counts[28] == 0


def test_discs_lie_between_consecutive_vertebrae(ct_case):
    case = ct_case
    inst, sem = case.instances.array, case.semantic.array
    discs, n = ndimage.label(sem == DISC, structure=np.ones((3, 3, 3)))
    neighbours = {}
    for comp in range(1, n + 1):
        ring = ndimage.binary_dilation(discs == comp, iterations=2)
        neighbours[comp] = set(np.unique(inst[ring])) - {0}
    core = [20, 21, 22, 23, 24, SACRUM_CODE]
    for upper, lower in zip(core, core[1:], strict=False):
        between = [c for c in neighbours if {upper, lower} <= neighbours[c]]
        assert between, f"no disc between {upper} and {lower}"
        comp = max(between, key=lambda i: int((discs == i).sum()))
        assert (discs == comp).sum() * 8.0 > 3000  # mm^3: a real disc, not a sliver
        z = case.instances.index_to_world(np.array(ndimage.center_of_mass(discs == comp)))[2]
        assert case.centroids[lower][2] < z < case.centroids[upper][2]
    # A normal spine has no two vertebrae touching face to face.
    assert _contacts(inst) == {}


@pytest.mark.parametrize("hard_case", ["collapsed_disc", "fused"])
def test_hard_cases_make_two_vertebrae_touch(hard_case):
    normal = generate_phantom(8, spacing=SPACING)
    case = generate_phantom(8, spacing=SPACING, hard_case=hard_case)
    upper, lower = case.meta["hard_case_levels"]
    assert cranio_caudal_order(lower) == cranio_caudal_order(upper) + 1
    contacts = _contacts(case.instances.array)
    assert set(contacts) == {(min(upper, lower), max(upper, lower))}
    assert _contacts(normal.instances.array) == {}
    # Still two instances, each of normal size.
    for code in (upper, lower):
        assert (case.instances.array == code).sum() > 0.8 * (normal.instances.array == code).sum()
    body_faces = np.pi * 20 * 15 / 4.0  # rough body cross-section in 2 mm voxel faces
    if hard_case == "fused":  # bony bridge over the whole disc area
        assert contacts[(min(upper, lower), max(upper, lower))] > 0.8 * body_faces
        disc_between = (case.semantic.array == DISC).sum() < (normal.semantic.array == DISC).sum()
        assert disc_between


def test_wedge_fracture_lowers_the_front_of_one_body():
    normal = generate_phantom(4, spacing=1.5)
    case = generate_phantom(4, spacing=1.5, hard_case="wedge_fracture")
    (code,) = case.meta["hard_case_levels"]
    before = (normal.instances.array == code).sum()
    after = (case.instances.array == code).sum()
    assert after < 0.9 * before
    for other in (20, 21, 22, 23, 24):
        if other != code:
            n0, n1 = (normal.instances.array == other).sum(), (case.instances.array == other).sum()
            assert abs(int(n1) - int(n0)) < 0.1 * n0


def test_oblique_grid_is_orthonormal_and_world_anatomy_unchanged():
    straight = generate_phantom(9, spacing=SPACING)
    tilted = generate_phantom(9, spacing=SPACING, oblique_deg=25.0)
    d = tilted.image.direction
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-9)
    assert abs(abs(np.linalg.det(d)) - 1) < 1e-9
    assert tilted.meta["oblique_deg"] >= 12.5
    assert not np.allclose(np.abs(d), np.abs(straight.image.direction), atol=0.05)
    for code in (20, 21, 22, 23, 24):
        # Same vertebra in world coordinates whatever the grid (within a voxel).
        np.testing.assert_allclose(tilted.centroids[code], straight.centroids[code], atol=2.0)
    canon, _ = to_canonical(tilted.instances)
    k = [ndimage.center_of_mass(canon.array == c)[2] for c in (20, 21, 22, 23, 24)]
    assert all(a > b for a, b in zip(k, k[1:], strict=False))


def test_ct_values_are_plausible_per_tissue(ct_case):
    img, inst, sem = ct_case.image.array, ct_case.instances.array, ct_case.semantic.array
    body = ndimage.binary_erosion((inst >= 20) & (inst <= 24), iterations=2)
    assert 100 < np.median(img[body]) < 450  # trabecular bone
    assert np.percentile(img[inst > 0], 99) > 450  # cortical shell
    disc = ndimage.binary_erosion(sem == DISC)
    assert 30 < np.median(img[disc]) < 150
    assert -60 < np.median(img[sem == CANAL]) < 80  # CSF (+ a little epidural fat)
    soft = (inst == 0) & (sem == 0)
    assert np.percentile(img[soft], 5) < -50  # fat
    assert -1100 < img.min() and img.max() < 2500


def test_mri_contrast_follows_the_sequence():
    t1 = generate_phantom(2, modality="t1", spacing=SPACING)
    t2 = generate_phantom(2, modality="t2", spacing=SPACING)
    for case in (t1, t2):
        assert case.image.array.min() >= 0  # magnitude images
        assert case.meta["units"] == "arbitrary"
    ratio = []
    for case in (t1, t2):
        img, sem = case.image.array, case.semantic.array
        ratio.append(np.median(img[sem == CANAL]) / np.median(img[sem == VERTEBRA]))
    assert ratio[0] < 0.7 < 1.0 < ratio[1]  # CSF dark on T1, bright on T2


def test_default_mri_grid_is_sagittal_with_thick_left_right_axis():
    case = generate_phantom(1, modality="t2", spacing=None, region="lumbar")
    assert case.image.spacing == (0.6, 0.6, 3.5)
    thick_axis_world = case.image.direction[:, 2]
    assert abs(thick_axis_world[0]) > 0.99  # left-right


def test_field_of_view_cuts_the_neighbour_above_and_the_sacrum(ct_case):
    canon, _ = to_canonical(ct_case.instances)
    arr = canon.array
    above = [c for c in ct_case.levels if cranio_caudal_order(c) < cranio_caudal_order(20)]
    assert above, "the vertebra above L1 should be partly in view"
    top = above[-1]
    assert (arr[:, :, -1] == top).any()  # cut by the top face of the volume
    assert (arr == top).sum() < 0.8 * (arr == 20).sum()
    assert (arr[:, :, 0] == SACRUM_CODE).any()  # the sacrum runs out of the bottom face
    assert not (arr[:, :, -1] == 20).any()  # core levels are whole along the spine


def test_straight_spine_runs_along_z():
    case = generate_phantom(7, spacing=SPACING, curvature=False)
    xy = np.array([case.centroids[c][:2] for c in (20, 21, 22, 23, 24)])
    assert np.ptp(xy, axis=0).max() < 3.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"modality": "pet"},
        {"region": "neck"},
        {"hard_case": "broken"},
        {"extra_level": "L7"},
        {"region": "cervical", "extra_level": "L6"},
        {"spacing": (1.0, 0.0, 1.0)},
        {"oblique_deg": -5.0},
    ],
)
def test_bad_options_raise_input_error_with_fix(kwargs):
    with pytest.raises(InputError, match="Fix:"):
        generate_phantom(0, **kwargs)


def _l5_to_l4_tilt_deg(case) -> float:
    """Angle between the L5 -> L4 centroid step and the superior axis, degrees (LPS: +z is superior)."""
    step = np.subtract(case.centroids[23], case.centroids[24])
    return float(np.degrees(np.arccos(step[2] / np.linalg.norm(step))))


def test_steep_lordosis_leans_the_low_lumbar_spine_forwards_and_leaves_other_regions_alone():
    steep = SteepLordosis(share=1.0, lordosis_deg=(85.0, 90.0))
    default = generate_phantom(3, region="lumbar", spacing=SPACING)
    tilted = generate_phantom(3, region="lumbar", spacing=SPACING, steep_lordosis=steep)
    assert 85.0 <= tilted.meta["lordosis_deg"] <= 90.0 and default.meta["lordosis_deg"] <= 60.0
    assert _l5_to_l4_tilt_deg(tilted) > _l5_to_l4_tilt_deg(default) + 8.0
    cervical = [generate_phantom(3, region="cervical", spacing=SPACING, steep_lordosis=s) for s in (None, steep)]
    assert np.array_equal(cervical[0].instances.array, cervical[1].instances.array)
    straight = [generate_phantom(3, region="lumbar", spacing=SPACING, curvature=False, steep_lordosis=s)
                for s in (None, steep)]  # fmt: skip
    assert np.array_equal(straight[0].instances.array, straight[1].instances.array)
