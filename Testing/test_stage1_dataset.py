"""Stage 1 dataset conversion: nnU-Net raw layout, labels as the source has them, verification, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import oblique_direction
from stage1_helpers import toy_case, write_phantom_layout

from spineinstanceseg.cli.main import main
from spineinstanceseg.errors import InputError
from spineinstanceseg.io import read_label_map, read_volume, write_volume
from spineinstanceseg.orientation import orientation_code, to_canonical
from spineinstanceseg.stage1.dataset import convert_dataset, verify_raw_dataset
from spineinstanceseg.volume import Volume


def test_phantom_conversion_writes_verified_nnunet_dataset(tmp_path):
    direction = oblique_direction(20.0)[:, [2, 0, 1]] * np.array([1, -1, 1])  # oblique and axes permuted/flipped
    names = write_phantom_layout(tmp_path / "src", 3, modality="t2", direction=direction)
    result = convert_dataset("phantom", tmp_path / "src", dataset_id=7, name="Toy", raw_dir=tmp_path / "raw")
    folder = tmp_path / "raw" / "Dataset007_Toy"
    assert result.folder == folder and result.cases == tuple(names)
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["labels"] == {"background": 0, "vertebra": 1, "disc": 2, "canal": 3, "sacrum": 4}
    assert meta["numTraining"] == 3 and meta["file_ending"] == ".nii.gz"
    assert meta["channel_names"] == {"0": "image"}  # MRI -> z-score normalisation
    for name in names:
        image = read_volume(folder / "imagesTr" / f"{name}_0000.nii.gz")
        labels = read_label_map(folder / "labelsTr" / f"{name}.nii.gz")
        assert labels.same_grid(image) and orientation_code(image.direction) == "LPS"
        # same anatomy in world space as the source: the label count per class is unchanged
        source = read_label_map(tmp_path / "src" / f"{name}_semantic.nii.gz")
        assert np.array_equal(
            np.bincount(labels.array.ravel(), minlength=5), np.bincount(source.array.ravel(), minlength=5)
        )
        centre = source.index_to_world(np.argwhere(source.array == 3).mean(axis=0))
        assert np.allclose(labels.index_to_world(np.argwhere(labels.array == 3).mean(axis=0)), centre, atol=1e-3)
    assert verify_raw_dataset(folder) == 3


def test_verse_layout_derives_discs_and_canal_and_ignores_beyond_the_labelled_span(tmp_path):
    from spineinstanceseg.phantom import generate_phantom

    case = generate_phantom(3, modality="ct", region="lumbar", spacing=(2.0, 2.0, 2.0))
    (tmp_path / "rawdata" / "sub-001").mkdir(parents=True)
    (tmp_path / "derivatives" / "sub-001").mkdir(parents=True)
    write_volume(case.image, tmp_path / "rawdata" / "sub-001" / "sub-001_ct.nii.gz")
    vertebrae_only = np.where(case.instances.array == 26, 0, case.instances.array).astype(np.int16)  # no sacrum
    write_volume(
        case.instances.with_array(vertebrae_only), tmp_path / "derivatives" / "sub-001" / "sub-001_seg-vert_msk.nii.gz"
    )
    result = convert_dataset("verse", tmp_path, dataset_id=8, name="V", raw_dir=tmp_path / "raw")
    # discs and canal are derived from the vertebrae; what the mask cannot tell is nnU-Net's "ignore" (highest value)
    assert result.labels == {"background": 0, "vertebra": 1, "disc": 2, "canal": 3, "sacrum": 4, "ignore": 5}
    labels = np.asarray(read_label_map(result.folder / "labelsTr" / "sub-001.nii.gz").array)
    counts = np.bincount(labels.ravel(), minlength=6)
    assert counts[1] == np.count_nonzero(vertebrae_only) and counts[2] > 0 and counts[3] > 0 and counts[5] > 0
    # the sacrum is not labelled in this mask: the part of S1 that the CT shows below L5 is found, nothing else
    true_instances = np.asarray(to_canonical(case.instances)[0].array)  # the dataset is stored in LPS order
    assert counts[4] > 0 and np.mean(true_instances[labels == 4] == 26) >= 0.98  # measured 287 of 288
    assert json.loads((result.folder / "dataset.json").read_text())["channel_names"] == {"0": "CT"}
    assert verify_raw_dataset(result.folder) == 1


def test_generic_source_turns_unlabelled_voxels_into_the_ignore_label(tmp_path):
    image, semantic = toy_case(0)
    partial = np.array(semantic.array)
    partial[:, 10:, :] = 255  # the posterior part is not labelled in this source
    (tmp_path / "src" / "images").mkdir(parents=True)
    (tmp_path / "src" / "labels").mkdir()
    write_volume(image, tmp_path / "src" / "images" / "a.nii.gz")
    write_volume(semantic.with_array(partial), tmp_path / "src" / "labels" / "a.nii.gz")
    result = convert_dataset("generic", tmp_path / "src", dataset_id=9, name="G", raw_dir=tmp_path / "raw")
    assert result.labels == {"background": 0, "vertebra": 1, "disc": 2, "sacrum": 3, "ignore": 4}
    labels = np.asarray(read_label_map(result.folder / "labelsTr" / "a.nii.gz").array)
    assert np.count_nonzero(labels == 4) == np.count_nonzero(partial == 255)


def test_spider_layout_maps_partial_vertebrae_canal_and_discs(tmp_path):
    image, semantic = toy_case(1)
    spider = np.select(
        [semantic.array == 1, semantic.array == 2, semantic.array == 3, semantic.array == 4], [1, 201, 100, 102], 0
    )  # label 102 = a partly visible vertebra
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    write_volume(image, tmp_path / "images" / "1_t2.mha")
    write_volume(semantic.with_array(spider.astype(np.int16)), tmp_path / "masks" / "1_t2.mha")
    result = convert_dataset("spider", tmp_path, dataset_id=9, name="S", raw_dir=tmp_path / "raw")
    assert result.labels == {"background": 0, "vertebra": 1, "disc": 2, "canal": 3}
    labels = read_label_map(result.folder / "labelsTr" / "spider_1_t2.nii.gz")
    expected_vertebra = np.count_nonzero((semantic.array == 1) | (semantic.array == 4))
    assert np.count_nonzero(labels.array == 1) == expected_vertebra


def test_bad_sources_are_clear_errors(tmp_path):
    with pytest.raises(InputError, match="no phantom cases"):
        convert_dataset("phantom", tmp_path, dataset_id=5, name="X", raw_dir=tmp_path / "raw")
    (tmp_path / "g" / "images").mkdir(parents=True)
    (tmp_path / "g" / "labels").mkdir()
    image, semantic = toy_case(0)
    write_volume(image, tmp_path / "g" / "images" / "a_0000.nii.gz")
    write_volume(semantic.with_array((semantic.array * 10).astype(np.uint8)), tmp_path / "g" / "labels" / "a.nii.gz")
    with pytest.raises(InputError, match="not semantic classes"):
        convert_dataset("generic", tmp_path / "g", dataset_id=5, name="X", raw_dir=tmp_path / "raw")
    assert not (tmp_path / "raw" / "Dataset005_X").exists()  # nothing half-written


def test_generic_source_declares_only_present_classes_and_ids_cannot_clash(tmp_path):
    (tmp_path / "g" / "images").mkdir(parents=True)
    (tmp_path / "g" / "labels").mkdir()
    image, semantic = toy_case(0)
    only_bone = np.where(semantic.array == 1, 1, 0).astype(np.uint8)
    write_volume(image, tmp_path / "g" / "images" / "a_0000.nii.gz")
    write_volume(semantic.with_array(only_bone), tmp_path / "g" / "labels" / "a.nii.gz")
    result = convert_dataset("generic", tmp_path / "g", dataset_id=12, name="G", raw_dir=tmp_path / "raw")
    assert result.labels == {"background": 0, "vertebra": 1}
    with pytest.raises(InputError, match="already used by Dataset012_G"):
        convert_dataset("generic", tmp_path / "g", dataset_id=12, name="Other", raw_dir=tmp_path / "raw")


def test_verification_catches_a_label_on_another_grid(tmp_path):
    write_phantom_layout(tmp_path / "src", 2)
    result = convert_dataset("phantom", tmp_path / "src", dataset_id=3, name="T", raw_dir=tmp_path / "raw")
    path = result.folder / "labelsTr" / "toy1.nii.gz"
    labels = read_label_map(path)
    write_volume(Volume(labels.array, labels.spacing, (0.0, 0.0, 50.0), labels.direction, is_label=True), path)
    with pytest.raises(InputError, match="grids differ"):
        verify_raw_dataset(result.folder)


def test_cli_converts_and_reports_bad_input_with_exit_code_2(tmp_path, capsys):
    write_phantom_layout(tmp_path / "src", 2)
    code = main(["dataset", "nnunet", "--from", "phantom", str(tmp_path / "src"), "--id", "44", "--name", "Cli",
                 "--out", str(tmp_path / "raw")])  # fmt: skip
    assert code == 0 and "wrote 2 cases" in capsys.readouterr().out
    assert (tmp_path / "raw" / "Dataset044_Cli" / "labelsTr" / "toy0.nii.gz").is_file()
    code = main(["dataset", "nnunet", "--from", "spider", str(tmp_path / "nowhere"), "--id", "45", "--name", "X",
                 "--out", str(tmp_path / "raw")])  # fmt: skip
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_spider_folds_keep_both_series_of_a_patient_together(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    image, semantic = toy_case(2, shape=(12, 10, 20))
    spider = np.where(semantic.array == 1, 1, 0).astype(np.int16)
    for patient in range(1, 7):
        for series in ("t1", "t2"):
            write_volume(image, tmp_path / "images" / f"{patient}_{series}.mha")
            write_volume(semantic.with_array(spider), tmp_path / "masks" / f"{patient}_{series}.mha")
    result = convert_dataset("spider", tmp_path, dataset_id=10, name="S", raw_dir=tmp_path / "raw")
    splits = json.loads((result.folder / "splits_final.json").read_text())
    assert len(splits) == 5
    for split in splits:
        assert not set(split["train"]) & set(split["val"])
        for name in split["val"]:
            partner = name.replace("_t1", "_t2") if name.endswith("_t1") else name.replace("_t2", "_t1")
            assert partner in split["val"]
    assert sorted(sum((s["val"] for s in splits), [])) == sorted(result.cases)
