"""Volume type, reorientation and resampling keep geometry exact."""

from __future__ import annotations

import numpy as np
import pytest

from spineinstanceseg.errors import InputError
from spineinstanceseg.io import read_label_map, write_volume
from spineinstanceseg.orientation import from_canonical, orientation_code, to_canonical
from spineinstanceseg.progress import CancelToken, Progress, format_progress_line, parse_progress_line
from spineinstanceseg.resample import resample_to_grid, resample_to_spacing
from spineinstanceseg.volume import Volume


def test_volume_is_immutable_and_validates():
    vol = Volume(np.zeros((4, 5, 6)), (1, 2, 3))
    with pytest.raises(ValueError):
        vol.array[0, 0, 0] = 1
    with pytest.raises(InputError, match="must be 3D"):
        Volume(np.zeros((4, 5)))
    with pytest.raises(InputError, match="spacing must be positive"):
        Volume(np.zeros((2, 2, 2)), (1, 0, 1))
    with pytest.raises(InputError, match="not orthonormal"):
        Volume(np.zeros((2, 2, 2)), direction=np.diag([1.0, 2.0, 1.0]))
    with pytest.raises(InputError, match="label map must hold integers"):
        Volume(np.zeros((2, 2, 2), dtype=np.float32), is_label=True)


def test_index_world_round_trip(oblique_label_volume):
    ijk = np.array([[0, 0, 0], [3.5, 7.25, 2.0], [49, 39, 11]])
    world = oblique_label_volume.index_to_world(ijk)
    np.testing.assert_allclose(oblique_label_volume.world_to_index(world), ijk, atol=1e-9)
    np.testing.assert_allclose(world[0], oblique_label_volume.origin)


def test_resample_oblique_anisotropic_labels_to_1mm_and_back(tmp_path, oblique_label_volume):
    """0.6 x 0.6 x 4 mm oblique label map read from disk -> 1 mm -> original grid: geometry and labels kept."""
    original = read_label_map(write_volume(oblique_label_volume, tmp_path / "labels.nrrd"))
    iso = resample_to_spacing(original, 1.0)
    np.testing.assert_allclose(iso.spacing, (1.0, 1.0, 1.0))
    np.testing.assert_allclose(iso.direction, original.direction, atol=1e-12)
    # The 1 mm grid covers the same physical extent.
    extent_old = np.asarray(original.shape) * np.asarray(original.spacing)
    extent_new = np.asarray(iso.shape) * np.asarray(iso.spacing)
    assert np.all(np.abs(extent_new - extent_old) <= 1.0)
    back = resample_to_grid(iso, original)
    assert back.shape == original.shape
    np.testing.assert_allclose(back.spacing, original.spacing, atol=1e-5)
    np.testing.assert_allclose(back.origin, original.origin, atol=1e-5)
    np.testing.assert_allclose(back.direction, original.direction, atol=1e-5)
    assert back.dtype == original.dtype and back.is_label
    assert set(np.unique(back.array)) == set(np.unique(original.array))  # no interpolated label values
    assert np.mean(back.array == original.array) > 0.97


def test_label_resample_by_integer_factor_round_trips_exactly(oblique_label_volume):
    fine = resample_to_spacing(oblique_label_volume, (0.3, 0.3, 2.0))
    back = resample_to_grid(fine, oblique_label_volume)
    np.testing.assert_array_equal(back.array, oblique_label_volume.array)


def test_image_resample_uses_interpolation(oblique_image_volume):
    iso = resample_to_spacing(oblique_image_volume, 1.0, interpolation="bspline")
    assert iso.array.dtype == np.float32
    lin = resample_to_spacing(oblique_image_volume, 1.0)
    assert not np.array_equal(np.unique(lin.array)[:50], np.unique(oblique_image_volume.array)[:50])
    with pytest.raises(InputError, match="nearest neighbour"):
        resample_to_spacing(oblique_image_volume.as_label(), 1.0, interpolation="linear")


@pytest.mark.parametrize(
    "code_direction", [np.eye(3), np.diag([-1.0, -1.0, 1.0]), np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0.0]])]
)
def test_canonical_reorientation_is_exact_and_reversible(code_direction):
    from scipy.spatial.transform import Rotation

    direction = Rotation.from_euler("z", 10, degrees=True).as_matrix() @ code_direction
    rng = np.random.default_rng(0)
    vol = Volume(rng.integers(0, 5, (7, 9, 11)).astype(np.int16), (0.5, 1.5, 3.0), (3, -2, 9), direction, True)
    canon, how = to_canonical(vol)
    assert orientation_code(canon.direction) == "LPS"
    # Every voxel keeps its physical position: compare world coordinates of matching values.
    for ijk in [(0, 0, 0), (6, 8, 10), (3, 4, 5)]:
        world = vol.index_to_world(ijk)
        cijk = np.round(canon.world_to_index(world)).astype(int)
        assert canon.array[tuple(cijk)] == vol.array[ijk]
    back = from_canonical(canon, how)
    assert back.same_grid(vol)
    np.testing.assert_array_equal(back.array, vol.array)


def test_progress_maps_subranges_and_cancels():
    seen = []
    token = CancelToken()
    progress = Progress(lambda s, f, m: seen.append((s, round(f, 3), m)), token, step="job")
    stage = progress.sub(0.5, 1.0, step="stage2")
    stage.update(0.5, "window 3/6")
    assert seen[-1] == ("stage2", 0.75, "window 3/6")
    token.cancel()
    from spineinstanceseg.errors import CancelledError

    with pytest.raises(CancelledError):
        stage.update(0.6)


def test_progress_line_round_trip():
    line = format_progress_line("stage1", 0.25, "patch 3\tof 12")
    parsed = parse_progress_line(line + "\n")
    assert parsed is not None and parsed.step == "stage1" and parsed.fraction == 0.25
    assert parse_progress_line("some log line") is None


def test_crop_keeps_every_voxel_where_it_was(oblique_label_volume):
    volume = oblique_label_volume
    box = np.s_[2:9, 1:, 3:7]
    cropped = volume.crop(box)
    assert cropped.shape == volume.array[box].shape and cropped.is_label == volume.is_label
    np.testing.assert_array_equal(cropped.array, volume.array[box])
    np.testing.assert_allclose(cropped.spacing, volume.spacing)
    np.testing.assert_allclose(cropped.direction, volume.direction)
    for ijk in ([0, 0, 0], [3, 2, 1], np.asarray(cropped.shape) - 1):
        np.testing.assert_allclose(
            cropped.index_to_world(ijk), volume.index_to_world(np.asarray(ijk) + [2, 1, 3]), atol=1e-9
        )
    with pytest.raises(InputError, match="unit-step"):
        volume.crop(np.s_[::2, :, :])
    with pytest.raises(InputError, match="no voxels"):
        volume.crop(np.s_[5:5, :, :])


def test_bounding_boxes_of_a_mask_and_of_a_label_agree():
    from spineinstanceseg.volume import bounding_box, label_bounding_box

    labels = np.zeros((7, 8, 9), dtype=np.uint8)
    labels[2:4, 5, 1:8] = 4
    labels[6, 0, 3] = 4
    labels[1, 1, 1] = 1
    expected = (slice(2, 7), slice(0, 6), slice(1, 8))
    assert bounding_box(labels == 4) == expected
    assert label_bounding_box(labels, 4) == expected
    assert label_bounding_box(labels, 2) is None and bounding_box(labels == 2) is None
