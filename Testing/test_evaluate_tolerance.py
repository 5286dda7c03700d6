"""`spineseg evaluate` on grids that differ: float jitter is compared as it is (and said so), a real shift is
refused with the numbers, and --resample scores it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from conftest import oblique_direction
from scipy.spatial.transform import Rotation

from spineinstanceseg.cli.main import main
from spineinstanceseg.errors import InputError
from spineinstanceseg.io import write_volume
from spineinstanceseg.metrics import dice
from spineinstanceseg.volume import Volume, compare_grids

SPACING = (0.8, 0.8, 2.0)


@pytest.fixture
def reference() -> Volume:
    """Three blocky 'vertebrae' on an oblique, anisotropic grid."""
    array = np.zeros((40, 36, 24), np.int16)
    for k, label in enumerate((20, 21, 22)):
        array[10:30, 8:28, 2 + 7 * k : 7 + 7 * k] = label
    return Volume(array, SPACING, (-12.25, 40.5, 310.0), oblique_direction(12.0), is_label=True)


def _moved(volume: Volume, *, origin_mm=(0.0, 0.0, 0.0), array=None, direction=None) -> Volume:
    return Volume(
        volume.array if array is None else array,
        volume.spacing,
        tuple(np.asarray(volume.origin) + np.asarray(origin_mm)),
        volume.direction if direction is None else direction,
        is_label=True,
    )


def _evaluate(tmp_path, pred: Volume, ref: Volume, *extra: str) -> int:
    write_volume(pred, tmp_path / "case1_pred.nii.gz")
    write_volume(ref, tmp_path / "case1_gt.nii.gz")
    return main(["evaluate", str(tmp_path / "case1_pred.nii.gz"), str(tmp_path / "case1_gt.nii.gz"),
                 "--out", str(tmp_path / "eval"), "--pred-convention", "verse", "--ref-convention", "verse",
                 *extra])  # fmt: skip


def _cases(tmp_path) -> list[dict]:
    with open(tmp_path / "eval" / "cases.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_jitter_of_0_0006_mm_is_compared_as_the_same_grid_and_said_so(tmp_path, reference, capsys):
    jittered = _moved(reference, origin_mm=(0.0006, 0.0, 0.0))
    assert _evaluate(tmp_path, jittered, reference) == 0
    err = capsys.readouterr().err
    assert "note: case1: the prediction's grid differs from the reference's by at most 0.0006 mm" in err
    assert "compared as the same grid" in err
    row = _cases(tmp_path)[0]
    assert float(row["f1"]) == 1.0 and float(row["mean_dice"]) == 1.0
    assert "grid: " in row["notes"]
    document = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert "0.0006 mm" in document["cases"][0]["notes"]
    # a direction rounded to 6 decimals by another tool is jitter too
    rounded = _moved(reference, direction=np.round(reference.direction, 6))
    assert compare_grids(rounded, reference).within()
    assert dice(jittered.array > 0, reference.array > 0) == 1.0 and dice(jittered, reference) == 1.0


def test_a_one_voxel_shift_is_refused_with_the_numbers(tmp_path, reference, capsys):
    one_voxel = np.asarray(reference.direction)[:, 0] * SPACING[0]
    shifted = _moved(reference, origin_mm=one_voxel)
    assert _evaluate(tmp_path, shifted, reference) == 2
    err = capsys.readouterr().err
    assert "are on different grids: origin (" in err and "(0.8 mm = 1 voxel apart)" in err
    before = ", ".join(f"{v:.6g}" for v in reference.origin)
    after = ", ".join(f"{v:.6g}" for v in shifted.origin)
    assert f"({after}) vs ({before}) mm" in err
    assert "Fix: pass --resample" in err and not (tmp_path / "eval").exists()
    tilted = _moved(reference, direction=Rotation.from_euler("z", 2, degrees=True).as_matrix() @ reference.direction)
    with pytest.raises(InputError, match=r"direction differs by 2 degrees \(moves the far corner"):
        dice(tilted, reference)


def test_resample_scores_a_shifted_prediction(tmp_path, reference, capsys):
    one_voxel = np.asarray(reference.direction)[:, 0] * SPACING[0]
    # the same anatomy written on a grid that starts one voxel later: after resampling it matches exactly
    shifted = _moved(reference, origin_mm=one_voxel, array=np.roll(reference.array, -1, axis=0))
    assert _evaluate(tmp_path, shifted, reference, "--resample") == 0
    assert "note: case1: the prediction was resampled onto the reference grid" in capsys.readouterr().err
    row = _cases(tmp_path)[0]
    assert float(row["f1"]) == 1.0 and float(row["mean_dice"]) == pytest.approx(1.0)
