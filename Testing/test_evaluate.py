"""`spineseg evaluate` and the evaluation library: pairing, conventions, grids, outputs, real masks."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from conftest import require_shared_data

from spineinstanceseg.cli.main import main
from spineinstanceseg.conventions import from_internal
from spineinstanceseg.errors import InputError
from spineinstanceseg.evaluate import case_key, evaluate_case, evaluate_paths, pair_cases
from spineinstanceseg.io import read_label_map, write_volume
from spineinstanceseg.semantic import DISC, VERTEBRA
from spineinstanceseg.volume import Volume


def _spine(shift: int = 0, *, spacing=(1.0, 1.0, 1.5)) -> Volume:
    """Three box vertebrae L3-L5 (VerSe codes, L5 lowest) with gaps; ``shift`` moves them along axis 0."""
    array = np.zeros((30, 24, 40), np.int16)
    for i, code in enumerate((24, 23, 22)):
        z0 = 3 + 12 * i
        array[8 + shift : 22 + shift, 6:18, z0 : z0 + 9] = code
    return Volume(array, spacing, origin=(-10.0, 5.0, 100.0), is_label=True)


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.parametrize(
    "name, key",
    [
        ("case01.nii.gz", "case01"),
        ("case01_seg.nii.gz", "case01"),
        ("case01_instances.nrrd", "case01"),
        ("sub-verse004_seg-vert_msk.nii.gz", "sub-verse004"),
        ("case_seg.mha", "case"),
        ("case07_gt_seg.nii", "case07"),
        ("_seg.nii.gz", "_seg"),  # a role suffix alone is a name, not a role
    ],
)
def test_case_key_strips_extensions_and_role_suffixes(name, key):
    assert case_key(name) == key


def test_folders_pair_by_case_name_and_report_unpaired(tmp_path):
    pred_dir, ref_dir = tmp_path / "pred", tmp_path / "ref"
    for case in ("a", "b"):  # pipeline-style output: OUT/<case>/<case>_instances + <case>_semantic
        write_volume(_spine(), pred_dir / case / f"{case}_instances.nii.gz")
        write_volume(_spine(), pred_dir / case / f"{case}_semantic.nii.gz")
    write_volume(_spine(), ref_dir / "a_seg.nii.gz")
    write_volume(_spine(), ref_dir / "c_seg.nii.gz")
    pairs, lone_pred, lone_ref = pair_cases(pred_dir, ref_dir)
    assert [(case, p.name, r.name) for case, p, r in pairs] == [("a", "a_instances.nii.gz", "a_seg.nii.gz")]
    assert [p.name for p in lone_pred] == ["b_instances.nii.gz"]
    assert [p.name for p in lone_ref] == ["c_seg.nii.gz"]


def test_two_files_for_one_case_is_an_input_error(tmp_path):
    write_volume(_spine(), tmp_path / "pred" / "a.nii.gz")
    write_volume(_spine(), tmp_path / "pred" / "a_seg.nii.gz")
    write_volume(_spine(), tmp_path / "ref" / "a.nii.gz")
    with pytest.raises(InputError, match="several label files"):
        pair_cases(tmp_path / "pred", tmp_path / "ref")


def test_cli_writes_csvs_json_and_prints_a_summary(tmp_path, capsys):
    write_volume(_spine(1), tmp_path / "pred" / "s1.nii.gz")
    write_volume(_spine(0), tmp_path / "ref" / "s1_seg.nii.gz")
    write_volume(_spine(0), tmp_path / "pred" / "s2.nii.gz")
    write_volume(_spine(0), tmp_path / "ref" / "s2_seg.nii.gz")
    out = tmp_path / "out"
    assert main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "2 case(s) evaluated" in printed and "F1 (RQ)" in printed and "+/-" in printed
    cases = {row["case"]: row for row in _read_csv(out / "cases.csv")}
    assert float(cases["s2"]["mean_dice"]) == 1.0 and float(cases["s2"]["mean_assd_mm"]) == 0.0
    # A one-voxel shift of a 14-voxel-wide box: Dice = 2 * 13 / 28.
    assert float(cases["s1"]["mean_dice"]) == pytest.approx(26 / 28, abs=1e-5)
    assert float(cases["s1"]["level_identification_rate"]) == 1.0
    rows = _read_csv(out / "vertebrae.csv")
    assert len(rows) == 6 and {r["ref_name"] for r in rows} == {"L3", "L4", "L5"}
    document = json.loads((out / "evaluation.json").read_text())
    assert document["summary"]["f1"]["mean"] == 1.0 and document["summary"]["f1"]["n"] == 2
    assert document["cases"][0]["semantic_dice_disc"] is None  # nan (no discs on either side) -> null
    assert not [p for p in out.iterdir() if ".partial" in p.name]


def test_different_grids_fail_clearly_unless_resampled(tmp_path, capsys):
    ref = _spine()
    pred = Volume(ref.array, ref.spacing, origin=(-9.0, 5.0, 100.0), is_label=True)  # moved 1 mm
    write_volume(pred, tmp_path / "p.nii.gz")
    write_volume(ref, tmp_path / "r.nii.gz")
    code = main(["evaluate", str(tmp_path / "p.nii.gz"), str(tmp_path / "r.nii.gz"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "p.nii.gz" in err and "r.nii.gz" in err and "origin" in err and "--resample" in err
    results, _, _ = evaluate_paths(tmp_path / "p.nii.gz", tmp_path / "r.nii.gz", resample=True)
    # Resampled onto the reference grid, the prediction is the reference shifted by one voxel along x.
    assert results[0].values["mean_dice"] == pytest.approx(26 / 28, abs=1e-6)


def test_conventions_are_converted_before_scoring(tmp_path):
    ref = _spine()
    semantic = ref.with_array(np.where(ref.array > 0, VERTEBRA, 0).astype(np.uint8))
    as_totalseg = from_internal(ref, semantic, "totalseg_total", levels_known=True)
    result = evaluate_case(as_totalseg, ref, case="x", pred_convention="totalseg_total", ref_convention="verse")
    assert result.values["f1"] == 1.0 and result.values["level_identification_rate"] == 1.0
    as_spider = from_internal(ref, semantic, "spider", levels_known=True)
    result = evaluate_case(as_spider, ref, case="x", pred_convention="spider", ref_convention="verse")
    assert result.values["f1"] == 1.0 and result.values["levels_compared"] is False
    assert math.isnan(result.values["level_identification_rate"])


def test_spider_levels_become_known_when_the_lowest_level_is_given(tmp_path):
    ref = _spine()
    semantic = ref.with_array(np.where(ref.array > 0, VERTEBRA, 0).astype(np.uint8))
    write_volume(from_internal(ref, semantic, "spider", levels_known=True), tmp_path / "p.mha")
    write_volume(ref, tmp_path / "r.nii.gz")
    args = ["evaluate", str(tmp_path / "p.mha"), str(tmp_path / "r.nii.gz"), "--out", str(tmp_path / "o")]
    assert main([*args, "--pred-convention", "spider", "--pred-lowest-level", "L5"]) == 0
    row = _read_csv(tmp_path / "o" / "cases.csv")[0]
    assert row["levels_compared"] == "True" and float(row["level_identification_rate"]) == 1.0
    # Naming label 1 as L4 shifts every level by one: all vertebrae still found, none with the right level.
    assert main([*args, "--pred-convention", "spider", "--pred-lowest-level", "L4"]) == 0
    row = _read_csv(tmp_path / "o" / "cases.csv")[0]
    assert float(row["f1"]) == 1.0 and float(row["level_identification_rate"]) == 0.0


def test_spider_columns_when_asked(tmp_path):
    ref = _spine()
    sem = np.where(ref.array > 0, VERTEBRA, 0).astype(np.uint8)
    sem[8:22, 6:18, 12:15] = DISC  # a disc between L5 and L4
    semantic = ref.with_array(sem)
    spider_ref = from_internal(ref, semantic, "spider", levels_known=True)
    result = evaluate_case(spider_ref, spider_ref, case="x", pred_convention="spider", ref_convention="spider",
                           spider=True)  # fmt: skip
    assert result.values["spider_DiceScoreVertebrae"] == 1.0 and result.values["spider_DiceScoreDiscs"] == 1.0
    assert result.values["semantic_dice_disc"] == 1.0


def test_real_vertebra_mask_against_itself_and_a_shifted_copy(tmp_path):
    path = require_shared_data("real-vertebra-masks", "sub-verse010_seg-vert_msk.nii.gz")
    ref = read_label_map(path)
    same = evaluate_case(ref, ref, case="verse010")
    assert (same.values["f1"], same.values["mean_dice"], same.values["mean_assd_mm"]) == (1.0, 1.0, 0.0)
    assert same.values["level_identification_rate"] == 1.0 and same.values["n_ref"] == 5
    shifted = ref.with_array(np.roll(ref.array, 2, axis=1))  # 2 voxels (2 mm) along the second axis
    result = evaluate_case(shifted, ref, case="verse010")
    expected = []
    for code in range(20, 25):
        a, b = ref.array == code, shifted.array == code
        expected.append(2 * np.count_nonzero(a & b) / (a.sum() + b.sum()))
    assert result.values["f1"] == 1.0
    assert result.values["mean_dice"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert 0.5 < result.values["mean_assd_mm"] < 2.0  # a 2 mm translation: surfaces are at most 2 mm apart


def test_real_oblique_permuted_mask_through_the_cli(tmp_path, capsys):
    path = require_shared_data("real-vertebra-masks", "sub-verse004_seg-vert_msk.nii.gz")
    code = main(["evaluate", str(path), str(path), "--out", str(tmp_path / "o")])
    assert code == 0
    row = _read_csv(tmp_path / "o" / "cases.csv")[0]
    assert row["case"] == "sub-verse004" and row["n_ref"] == "9" and float(row["f1"]) == 1.0
    assert float(row["mean_assd_mm"]) == 0.0
