"""`spineseg segment` on bad input: a clear message, the right exit code, and no output files left behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from spineinstanceseg.cli.main import main
from spineinstanceseg.io import write_volume
from spineinstanceseg.volume import Volume


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(["segment", *map(str, argv), "--device", "cpu"])
    captured = capsys.readouterr()
    return code, captured.err + captured.out


def _no_outputs(out_dir: Path) -> bool:
    return not out_dir.exists() or not any(out_dir.rglob("*"))


@pytest.fixture
def mask_file(tmp_path) -> Path:
    array = np.zeros((20, 20, 20), dtype=np.uint8)
    array[5:15, 5:15, 5:15] = 1
    return write_volume(Volume(array, is_label=True), tmp_path / "mask.nii.gz")


def test_2d_input(tmp_path, capsys, mask_file):
    path = tmp_path / "slice.nii.gz"
    sitk.WriteImage(sitk.Image(20, 20, sitk.sitkInt16), str(path))
    code, text = _run(capsys, path, tmp_path / "out", "--mask", mask_file)
    assert code == 2 and "2D image" in text and "slice.nii.gz" in text
    assert _no_outputs(tmp_path / "out")


def test_4d_input(tmp_path, capsys, mask_file):
    path = tmp_path / "fmri.nii.gz"
    sitk.WriteImage(sitk.Image([10, 10, 10, 2], sitk.sitkInt16), str(path))
    code, text = _run(capsys, path, tmp_path / "out", "--mask", mask_file)
    assert code == 2 and "4D image" in text
    assert _no_outputs(tmp_path / "out")


@pytest.mark.parametrize(
    ("fill", "expected"),
    [(0.0, "empty \\(every voxel is 0\\)"), (300.0, "constant \\(every voxel is 300"), (np.nan, "NaN")],
)
def test_empty_constant_and_nan_images(tmp_path, capsys, mask_file, fill, expected):
    array = np.full((20, 20, 20), fill, dtype=np.float32)
    if np.isnan(fill):
        array[:] = 100.0
        array[3, 4, 5] = np.nan
    # NRRD keeps NaNs as written (ITK's NIfTI reader does not hand them through unchanged).
    path = write_volume(Volume(array), tmp_path / "image.nrrd")
    code, text = _run(capsys, path, tmp_path / "out", "--mask", mask_file)
    assert code == 2
    import re

    assert re.search(expected, text), text
    assert _no_outputs(tmp_path / "out")


def test_corrupt_file(tmp_path, capsys, mask_file):
    path = tmp_path / "broken.nrrd"
    path.write_bytes(b"NRRD0004\nnot really\n")
    code, text = _run(capsys, path, tmp_path / "out", "--mask", mask_file)
    assert code == 2 and "broken.nrrd" in text and "could not be read" in text
    assert _no_outputs(tmp_path / "out")


def test_no_spine_found(tmp_path, capsys):
    rng = np.random.default_rng(0)
    image = write_volume(Volume(rng.normal(0, 1, (20, 20, 20)).astype(np.float32)), tmp_path / "noise.nii.gz")
    empty_mask = write_volume(Volume(np.zeros((20, 20, 20), np.uint8), is_label=True), tmp_path / "empty.nii.gz")
    code, text = _run(capsys, image, tmp_path / "out", "--mask", empty_mask)
    assert code == 1 and "no spine found" in text
    assert _no_outputs(tmp_path / "out")


def test_mask_with_foreign_labels(tmp_path, capsys):
    image = write_volume(
        Volume(np.random.default_rng(1).normal(size=(12, 12, 12)).astype(np.float32)), tmp_path / "i.nii.gz"
    )
    mask = np.zeros((12, 12, 12), np.uint8)
    mask[2:5, 2:5, 2:5] = 20
    mask_path = write_volume(Volume(mask, is_label=True), tmp_path / "m.nii.gz")
    code, text = _run(capsys, image, tmp_path / "out", "--mask", mask_path)
    assert code == 2 and "[20]" in text and "--mask-convention" in text


def test_missing_stage2_model(tmp_path, capsys, mask_file):
    image = write_volume(
        Volume(np.random.default_rng(2).normal(size=(20, 20, 20)).astype(np.float32)), tmp_path / "i.nii.gz"
    )
    code, text = _run(capsys, image, tmp_path / "out", "--mask", mask_file, "--stage2-model", tmp_path / "nope")
    assert code in (1, 2) and "nope" in text
    assert _no_outputs(tmp_path / "out")


def test_tampered_stage2_model(tmp_path, capsys, mask_file):
    from spineinstanceseg.stage2.model import bundled_model_dir

    model = tmp_path / "model"
    shutil.copytree(bundled_model_dir(), model)
    weights = next(model.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    image = write_volume(
        Volume(np.random.default_rng(3).normal(size=(20, 20, 20)).astype(np.float32)), tmp_path / "i.nii.gz"
    )
    code, text = _run(capsys, image, tmp_path / "out", "--mask", mask_file, "--stage2-model", model)
    assert code == 1 and "checksum" in text.lower()
    assert _no_outputs(tmp_path / "out")


def test_tampered_or_incomplete_stage1_model(tmp_path, capsys):
    from spineinstanceseg.stage1.sources import bundled_stage1_dir

    model = tmp_path / "stage1"
    shutil.copytree(bundled_stage1_dir(), model)
    checkpoint = model / "fold_all" / "checkpoint_final.pth"
    data = bytearray(checkpoint.read_bytes())
    data[-100] ^= 0xFF
    checkpoint.write_bytes(bytes(data))
    image = write_volume(
        Volume(np.random.default_rng(4).normal(size=(20, 20, 20)).astype(np.float32)), tmp_path / "i.nii.gz"
    )
    code, text = _run(capsys, image, tmp_path / "out", "--stage1-model", model)
    assert code == 1 and "checksum mismatch" in text and "checkpoint_final.pth" in text
    assert _no_outputs(tmp_path / "out")
    (model / "plans.json").unlink()
    code, text = _run(capsys, image, tmp_path / "out", "--stage1-model", model)
    assert code == 1 and "plans.json" in text
    assert _no_outputs(tmp_path / "out")
