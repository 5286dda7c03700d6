"""Reading/writing volumes: formats agree in world coordinates, bad inputs give clear errors, writes are atomic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spineinstanceseg.errors import InputError
from spineinstanceseg.io import read_label_map, read_volume, volume_to_sitk, write_volume
from spineinstanceseg.volume import Volume


def _write_dicom_series(volume: Volume, folder: Path) -> None:
    """Write ``volume`` as a DICOM series (one file per slice along array axis 2) with its geometry."""
    folder.mkdir()
    image = sitk.Cast(volume_to_sitk(volume), sitk.sitkInt16)
    direction = image.GetDirection()
    series_uid = "1.2.826.0.1.3680043.2.1125.1.12345"
    for k in range(image.GetDepth()):
        slice_image = image[:, :, k]
        position = image.TransformIndexToPhysicalPoint((0, 0, k))
        tags = {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1.1",
            "0020|000e": series_uid,
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "\\".join(
                f"{v:.6f}" for v in (direction[0], direction[3], direction[6], direction[1], direction[4], direction[7])
            ),
            "0020|0013": str(k + 1),
            "0018|0050": f"{volume.spacing[2]:.6f}",
        }
        for tag, value in tags.items():
            slice_image.SetMetaData(tag, value)
        writer = sitk.ImageFileWriter()
        writer.KeepOriginalImageUIDOn()
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(slice_image)


def _world_of_brightest(volume: Volume) -> np.ndarray:
    index = np.unravel_index(int(np.argmax(volume.array)), volume.shape)
    return volume.index_to_world(np.asarray(index, dtype=float))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_write_read_keeps_geometry_and_values(tmp_path, oblique_label_volume, suffix):
    path = write_volume(oblique_label_volume, tmp_path / f"labels{suffix}")
    back = read_label_map(path)
    assert back.same_grid(oblique_label_volume, tol=1e-5), back.geometry_differences(oblique_label_volume)
    np.testing.assert_array_equal(back.array, oblique_label_volume.array)
    assert back.is_label


def test_formats_agree_on_world_position_of_the_same_voxel(tmp_path):
    """A marked voxel lands at the same LPS point whether read from NIfTI, NRRD, MHA or a DICOM series."""
    from conftest import oblique_direction

    array = np.zeros((20, 18, 9), dtype=np.int16)
    array[13, 4, 6] = 1000
    volume = Volume(array, (0.8, 0.7, 2.5), (-40.0, 22.0, 310.0), oblique_direction(12.0, seed=5))
    expected = volume.index_to_world([13, 4, 6])
    worlds = {}
    for suffix in (".nii.gz", ".nrrd", ".mha"):
        worlds[suffix] = _world_of_brightest(read_volume(write_volume(volume, tmp_path / f"v{suffix}")))
    _write_dicom_series(volume, tmp_path / "dicom")
    dicom = read_volume(tmp_path / "dicom")
    worlds["dicom"] = _world_of_brightest(dicom)
    for name, world in worlds.items():
        np.testing.assert_allclose(world, expected, atol=1e-3, err_msg=name)
    # Converting NIfTI -> NRRD -> MHA keeps the position too (chained conversions).
    chained = read_volume(write_volume(read_volume(tmp_path / "v.nii.gz"), tmp_path / "c.nrrd"))
    chained = read_volume(write_volume(chained, tmp_path / "c.mha"))
    np.testing.assert_allclose(_world_of_brightest(chained), expected, atol=1e-4)


def test_2d_image_is_rejected_with_a_clear_message(tmp_path):
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.Image(32, 32, sitk.sitkInt16), str(path))
    with pytest.raises(InputError, match=r"slice\.nii\.gz: this is a 2D image.*Fix: pass a 3D volume"):
        read_volume(path)


def test_4d_image_is_rejected_with_a_clear_message(tmp_path):
    path = tmp_path / "series.nii.gz"
    sitk.WriteImage(sitk.Image([8, 8, 8, 3], sitk.sitkInt16), str(path))
    with pytest.raises(InputError, match=r"series\.nii\.gz: this is a 4D image.*split the 4D series"):
        read_volume(path)


def test_single_slice_3d_is_rejected(tmp_path):
    path = tmp_path / "one.nrrd"
    sitk.WriteImage(sitk.Image([16, 16, 1], sitk.sitkInt16), str(path))
    with pytest.raises(InputError, match=r"one\.nrrd: .*single slice"):
        read_volume(path)


def test_unreadable_file_names_the_file(tmp_path):
    path = tmp_path / "broken.nii.gz"
    path.write_bytes(b"this is not an image at all" * 10)
    with pytest.raises(InputError, match=r"broken\.nii\.gz: the file could not be read as an image.*corrupt"):
        read_volume(path)


def test_empty_file_names_the_file(tmp_path):
    path = tmp_path / "zero.mha"
    path.touch()
    with pytest.raises(InputError, match=r"zero\.mha: the file is empty"):
        read_volume(path)


def test_empty_folder_is_rejected(tmp_path):
    folder = tmp_path / "nothing_here"
    folder.mkdir()
    with pytest.raises(InputError, match=r"nothing_here: the folder is empty.*DICOM"):
        read_volume(folder)


def test_folder_without_dicom_is_rejected(tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("hello")
    with pytest.raises(InputError, match=r"notes: the folder holds no DICOM series"):
        read_volume(folder)


def test_missing_path_is_rejected(tmp_path):
    with pytest.raises(InputError, match=r"does_not_exist\.nii\.gz: no such file or folder.*check the path"):
        read_volume(tmp_path / "does_not_exist.nii.gz")


def test_float_label_map_with_fractions_is_rejected(tmp_path, oblique_image_volume):
    path = write_volume(oblique_image_volume, tmp_path / "probabilities.nii.gz")
    with pytest.raises(InputError, match=r"probabilities\.nii\.gz: the label map holds non-integer values"):
        read_label_map(path)


def test_unsupported_output_extension(tmp_path, oblique_label_volume):
    with pytest.raises(InputError, match=r"cannot write files ending in '\.png'"):
        write_volume(oblique_label_volume, tmp_path / "x.png")


def test_failed_write_leaves_no_partial_file(tmp_path, oblique_image_volume, monkeypatch):
    def explode(image, path, compress):
        Path(path).write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", explode)
    with pytest.raises(RuntimeError, match="disk full"):
        write_volume(oblique_image_volume, tmp_path / "out.nii.gz")
    assert list(tmp_path.iterdir()) == []
