"""Stage 1 model folder checks, model cards, label mapping, plans and nnU-Net environment (no nnunetv2 import)."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading

import numpy as np
import pytest
from stage1_helpers import toy_case

from spineinstanceseg.cli.main import main
from spineinstanceseg.errors import InputError, ModelError
from spineinstanceseg.stage1 import environment
from spineinstanceseg.stage1.model import Stage1Model, check_channels
from spineinstanceseg.stage1.model_card import (
    ModelCard,
    classes_from_label_names,
    read_card,
    verify_checksums,
    write_card,
)
from spineinstanceseg.stage1.training import ShortSchedule, small_plans


def _model_folder(tmp_path, labels=None, *, fold="all"):
    folder = tmp_path / "Dataset001_X" / "nnUNetTrainer__nnUNetPlans__3d_fullres"
    (folder / f"fold_{fold}").mkdir(parents=True)
    labels = labels or {"background": 0, "vertebra": 1, "disc": 2}
    (folder / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": labels}))
    (folder / "plans.json").write_text("{}")
    (folder / f"fold_{fold}" / "checkpoint_final.pth").write_bytes(b"weights")
    return folder


def test_missing_model_files_are_named(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        Stage1Model(tmp_path / "nope")
    folder = _model_folder(tmp_path)
    (folder / "plans.json").unlink()
    with pytest.raises(ModelError, match="missing plans.json"):
        Stage1Model(folder)
    (folder / "plans.json").write_text("{}")
    (folder / "fold_all" / "checkpoint_final.pth").unlink()
    with pytest.raises(ModelError, match=r"no fold_\*/checkpoint_final.pth"):
        Stage1Model(folder)
    with pytest.raises(ModelError, match="missing fold_3/checkpoint_final.pth"):
        Stage1Model(folder, folds=[3])


def test_labels_that_do_not_map_are_rejected_with_their_names(tmp_path):
    folder = _model_folder(tmp_path, {"background": 0, "liver": 1, "vertebra": 2})
    with pytest.raises(ModelError, match="liver"):
        Stage1Model(folder)
    folder = _model_folder(tmp_path / "b", {"background": 0, "disc": 1})
    with pytest.raises(ModelError, match="no vertebra label"):
        Stage1Model(folder)


def test_checksum_mismatch_is_a_model_error(tmp_path):
    folder = _model_folder(tmp_path)
    write_card(
        ModelCard(classes={"vertebra": [1], "disc": [2]}), folder, checksum_files=["fold_all/checkpoint_final.pth"]
    )
    card = read_card(folder)
    assert verify_checksums(card, folder, files=["fold_all/checkpoint_final.pth"]) == []
    (folder / "fold_all" / "checkpoint_final.pth").write_bytes(b"weightz")  # same size, other content
    with pytest.raises(ModelError, match="checksum mismatch"):
        Stage1Model(folder)


def test_card_with_unknown_class_or_foreign_format_is_rejected(tmp_path):
    with pytest.raises(ModelError, match="unknown classes"):
        ModelCard(classes={"rib": [1]})
    (tmp_path / "spineseg_card.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ModelError, match="not a stage-1 model card"):
        read_card(tmp_path)


def test_label_names_map_to_internal_classes():
    labels = {"background": 0, "vertebrae_L5": 1, "vertebrae_S1": 2, "intervertebral_discs": 3, "spinal_cord": 4,
              "T12": 5, "kidney": 6}  # fmt: skip
    classes, unmapped = classes_from_label_names(labels)
    assert classes == {"vertebra": [1, 5], "sacrum": [2], "disc": [3], "canal": [4]}
    assert unmapped == [("kidney", 6)]
    with pytest.raises(ModelError, match="region"):
        classes_from_label_names({"background": 0, "spine": [1, 2]})


def test_wrong_number_of_channels_and_mismatched_channels(oblique_image_volume):
    with pytest.raises(InputError, match=r"expects 2 input channel\(s\) \(T1, T2\) but got 1"):
        check_channels(oblique_image_volume, ["T1", "T2"])
    image, _ = toy_case(0)
    with pytest.raises(InputError, match="another grid"):
        check_channels([image, oblique_image_volume], ["T1", "T2"])
    assert len(check_channels([image, image], ["T1", "T2"])) == 2


def test_small_plans_shrink_the_network_and_keep_preprocessing():
    arch = {"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320], "kernel_sizes": [[3, 3, 3]] * 6,
            "strides": [[1, 1, 1]] + [[2, 2, 2]] * 5, "n_conv_per_stage": [2] * 6,
            "n_conv_per_stage_decoder": [2] * 5}  # fmt: skip
    plans = {"plans_name": "nnUNetPlans", "configurations": {
        "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "patch_size": [128, 128, 128], "batch_size": 2,
                       "spacing": [1.0, 1.0, 1.0], "architecture": {"arch_kwargs": arch}},
        "2d": {}}}  # fmt: skip
    small = small_plans(plans, ShortSchedule(patch_size=(64, 48, 32), base_features=8, max_features=32, stages=4))
    config = small["configurations"]["3d_fullres"]
    assert small["plans_name"] == "SpineSegSmallPlans" and list(small["configurations"]) == ["3d_fullres"]
    assert config["data_identifier"] == "SpineSegSmallPlans_3d_fullres" and config["patch_size"] == [64, 48, 32]
    assert config["architecture"]["arch_kwargs"]["features_per_stage"] == [8, 16, 32, 32]
    assert config["spacing"] == [1.0, 1.0, 1.0] and plans["configurations"]["3d_fullres"]["patch_size"] == [128] * 3
    with pytest.raises(InputError, match="not divisible"):
        small_plans(plans, ShortSchedule(patch_size=(36, 32, 32), stages=4))


def test_nnunet_environment_is_explicit(tmp_path, monkeypatch):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(InputError, match="nnUNet_raw is not set"):
        environment.resolve_folders()
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "env_results"))
    folders = environment.resolve_folders(tmp_path / "base", results=None)
    assert folders.raw == tmp_path / "base" / "nnUNet_raw" and folders.results == tmp_path / "base" / "nnUNet_results"
    monkeypatch.setenv("nnUNet_extTrainer", "/somewhere/else")
    environment.register_trainers()
    environment.register_trainers()
    paths = os.environ["nnUNet_extTrainer"].split(os.pathsep)
    assert paths == ["/somewhere/else", str(environment.TRAINERS_DIR)]
    assert (environment.TRAINERS_DIR / "spineseg_nnunet_trainers.py").is_file()
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    assert environment.ensure_data_workers() == 1


def test_nnunet_variables_are_set_for_the_call_only(monkeypatch):
    monkeypatch.setenv("nnUNet_n_proc_DA", "3")
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    with environment.nnunet_environment({**environment.trainer_variables(), **environment.data_worker_variables()}):
        assert os.environ["nnUNet_extTrainer"] == str(environment.TRAINERS_DIR)
        assert os.environ["nnUNet_n_proc_DA"] == "3"  # the user's choice is kept
    assert "nnUNet_extTrainer" not in os.environ
    monkeypatch.setenv("nnUNet_n_proc_DA", "0")
    with environment.nnunet_environment(environment.data_worker_variables()):
        assert os.environ["nnUNet_n_proc_DA"] == "1"  # never 0: nnU-Net's planning cannot run without workers
        os.environ["nnUNet_extTrainer"] = "/set/by/someone/else"
    assert os.environ["nnUNet_n_proc_DA"] == "0" and os.environ["nnUNet_extTrainer"] == "/set/by/someone/else"


def test_nnunet_prints_go_to_the_log_of_the_calling_thread_only(capsys, caplog):
    """Inside our nnU-Net calls its prints become DEBUG log lines; sys.stdout is never replaced, and a print from
    another thread meanwhile, or from nnU-Net outside our calls, reaches stdout as before."""
    import nnunetv2.inference.predict_from_raw_data as nnunet_module

    from spineinstanceseg.stage1 import nnunet_adapter

    stdout = sys.stdout
    with caplog.at_level(logging.DEBUG, logger=nnunet_adapter.__name__):
        with nnunet_adapter.nnunet_prints_to_log():
            assert sys.stdout is stdout
            nnunet_module.print("inside the call")
            other = threading.Thread(target=nnunet_module.print, args=("from another thread",))
            other.start()
            other.join()
        nnunet_module.print("after the call")
    out = capsys.readouterr().out
    assert "from another thread" in out and "after the call" in out and "inside the call" not in out
    assert "nnU-Net: inside the call" in caplog.text and "another thread" not in caplog.text


def test_train_cli_rejects_schedule_options_without_quick(capsys):
    assert main(["train", "stage1", "--dataset", "1", "--epochs", "3"]) == 2
    assert "--quick" in capsys.readouterr().err


def test_lut_maps_model_values(tmp_path):
    folder = _model_folder(tmp_path, {"background": 0, "vertebra": 1, "sacrum": 2})
    from spineinstanceseg.stage1.model import _label_lut

    lut = _label_lut(None, json.loads((folder / "dataset.json").read_text())["labels"], folder)
    assert lut.tolist() == [0, 1, 4]
    assert np.array_equal(lut[np.array([[0, 2], [1, 1]])], [[0, 4], [1, 1]])


def test_a_model_trained_with_an_ignore_label_loads_with_or_without_a_card(tmp_path):
    """nnU-Net's "ignore" label (unlabelled training voxels) is never predicted: it maps to nothing."""
    from spineinstanceseg.stage1.model import _label_lut

    labels = {"background": 0, "vertebra": 1, "disc": 2, "canal": 3, "sacrum": 4, "ignore": 5}
    folder = _model_folder(tmp_path, labels)
    assert _label_lut(None, labels, folder).tolist()[:5] == [0, 1, 2, 3, 4]
    card = ModelCard(name="m", classes={"vertebra": [1], "disc": [2], "canal": [3], "sacrum": [4]})
    assert _label_lut(card, labels, folder).tolist()[:5] == [0, 1, 2, 3, 4]


def test_small_plans_can_set_an_isotropic_working_spacing():
    plans = {"plans_name": "nnUNetPlans", "configurations": {"3d_fullres": {
        "data_identifier": "x", "patch_size": [64] * 3, "batch_size": 2, "spacing": [0.8, 0.8, 3.0],
        "architecture": {"arch_kwargs": {}}}}}  # fmt: skip
    small = small_plans(plans, ShortSchedule(patch_size=(48, 48, 48), stages=4, target_spacing=2.0))
    assert small["configurations"]["3d_fullres"]["spacing"] == [2.0, 2.0, 2.0]
    assert plans["configurations"]["3d_fullres"]["spacing"] == [0.8, 0.8, 3.0]
    with pytest.raises(InputError, match="not positive"):
        small_plans(plans, ShortSchedule(patch_size=(48, 48, 48), stages=4, target_spacing=0.0))


def test_card_inference_settings_are_checked_and_kept(tmp_path):
    with pytest.raises(ModelError, match="unknown inference settings"):
        ModelCard(inference={"use_mirorring": False})
    write_card(ModelCard(classes={"vertebra": [1]}, inference={"use_mirroring": False}, weights_only=True), tmp_path)
    card = read_card(tmp_path)
    assert card.inference == {"use_mirroring": False} and card.weights_only is True


class _Gadget:
    """Stands for any object whose unpickling imports and runs code."""


def test_weights_only_card_refuses_a_checkpoint_that_holds_code(tmp_path):
    import torch

    folder = _model_folder(tmp_path)
    checkpoint = folder / "fold_all" / "checkpoint_final.pth"
    torch.save({"network_weights": {"w": torch.zeros(2)}, "extra": _Gadget()}, checkpoint)
    write_card(
        ModelCard(classes={"vertebra": [1], "disc": [2]}, weights_only=True),
        folder,
        checksum_files=["fold_all/checkpoint_final.pth"],
    )
    with pytest.raises(ModelError, match="not weights-only"):
        Stage1Model(folder)
