"""Stage-1 training moves between sessions through a saved state (scripts/train_bundled_stage1.py).

A session can end at any moment; the next one starts on a fresh machine with only what the repository holds. These
tests play that: checkpoints are saved as plain data, put back where nnU-Net resumes from, and a fold that finished
in an earlier session can still be exported (its model folder lacks the files a training run writes at its start).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from spineinstanceseg.stage1.start_weights import read_checkpoint, read_start_record, write_start_record

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "train_bundled_stage1.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("train_bundled_stage1_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _checkpoint(epoch: int, *, finished: bool) -> dict:
    return {
        "network_weights": {"conv.weight": torch.full((2, 2), float(epoch))},
        "optimizer_state": None if finished else {"state": {0: {"momentum_buffer": torch.ones(2)}}, "param_groups": []},
        "trainer_name": "nnUNetTrainer_SpineSegQuick",
        "init_args": {"configuration": "3d_fullres", "fold": 0},
        "inference_allowed_mirroring_axes": (0, 1, 2),
        "current_epoch": epoch,
        "logging": {"train_losses": [np.float32(0.5)] * epoch},  # nnU-Net logs numpy numbers
    }


def _session_one(model_folder: Path) -> None:
    (model_folder / "fold_4").mkdir(parents=True)
    (model_folder / "fold_0").mkdir()
    torch.save(_checkpoint(30, finished=True), model_folder / "fold_4" / "checkpoint_final.pth")
    torch.save(_checkpoint(20, finished=False), model_folder / "fold_0" / "checkpoint_latest.pth")


_GROUPS = {"phantom": ["phantom_000"], "sub-verse005": ["realct_sub-verse005"]}


def _write_dataset_files(script, model_folder: Path) -> None:
    """What preprocessing leaves and a training copies into the model folder (an export needs them)."""
    preprocessed = model_folder.parent / f"{model_folder.name}_preprocessed"
    preprocessed.mkdir(exist_ok=True)
    labels = {"background": 0, "vertebra": 1, "disc": 2, "canal": 3}
    (preprocessed / "dataset.json").write_text(json.dumps({"labels": labels, "numTraining": 1}))
    (preprocessed / f"{script.PLANS}.json").write_text(json.dumps({"plans_name": script.PLANS}))
    script.complete_model_folder(model_folder, preprocessed)


def test_saved_state_resumes_where_training_stopped(script, tmp_path):
    first, state, second = tmp_path / "session1", tmp_path / "state", tmp_path / "session2"
    _session_one(first)
    base = first / "fold_4" / "checkpoint_final.pth"
    write_start_record(first / "fold_0", base, output_layers_kept=True)  # fold 0 is a fine-tune of the base
    script.save_state(first, state)

    saved = torch.load(state / "fold_0" / "checkpoint_latest.pth", weights_only=True)  # plain data only
    assert saved["current_epoch"] == 20 and saved["optimizer_state"] is not None
    assert torch.load(state / "fold_4" / "checkpoint_final.pth", weights_only=True)["optimizer_state"] is None

    script.restore_state(state, second)
    assert (second / "fold_4" / "checkpoint_final.pth").is_file()
    resumed = torch.load(second / "fold_0" / "checkpoint_latest.pth", weights_only=True)
    assert resumed["current_epoch"] == 20
    assert torch.equal(resumed["network_weights"]["conv.weight"], torch.full((2, 2), 20.0))
    # the resumed fine-tune's card can still say where it started
    assert read_start_record(second / "fold_0") == ("fold_4/checkpoint_final.pth", True)
    assert read_start_record(second / "fold_4") is None


def test_restore_keeps_newer_work(script, tmp_path):
    first, state = tmp_path / "session1", tmp_path / "state"
    _session_one(first)
    script.save_state(first, state)
    torch.save(_checkpoint(25, finished=False), first / "fold_0" / "checkpoint_latest.pth")

    script.restore_state(state, first)

    assert read_checkpoint(first / "fold_0" / "checkpoint_latest.pth")["current_epoch"] == 25


def test_fold_finished_in_an_earlier_session_exports(script, tmp_path):
    first, state, second = tmp_path / "session1", tmp_path / "state", tmp_path / "session2"
    _session_one(first)
    script.save_state(first, state)  # no model card: as the states saved before the card was kept
    script.restore_state(state, second)
    _write_dataset_files(script, second)
    exported = script.export_fold(second, "4", _GROUPS, tmp_path / "export" / "fold_4")

    assert json.loads((exported / "plans.json").read_text())["plans_name"] == script.PLANS
    weights = torch.load(exported / "fold_all" / "checkpoint_final.pth", weights_only=True)
    assert weights["current_epoch"] == 30 and "optimizer_state" not in weights
    card = json.loads((exported / script.CARD_FILE).read_text())
    assert card["training_data"].startswith("1 synthetic phantoms") and "real VerSe CTs (none;" in card["training_data"]
    assert any("30 epochs" in note for note in card["notes"])
    assert not (tmp_path / "export" / "fold_4.partial").exists()


def _fake_train(script, monkeypatch) -> list:
    calls = []
    monkeypatch.setattr(script, "train", lambda fold, args, mf, folders, *, start_from, epochs: calls.append(
        (fold, start_from, epochs)))  # fmt: skip
    return calls


def test_extend_continues_a_finished_fold_from_its_own_weights(script, tmp_path, monkeypatch):
    """--extend-to TOTAL: the finished weights move aside and the fold trains the missing epochs from them; a rerun
    after an interruption resumes the extension instead of extending the extension."""
    model_folder = tmp_path / "results"
    _session_one(model_folder)
    torch.save(_checkpoint(30, finished=True), model_folder / "fold_0" / "checkpoint_final.pth")
    calls = _fake_train(script, monkeypatch)
    args = type("Args", (), {"extend_to": 70})()

    script.extend("0", args, model_folder, folders=None)
    before = model_folder / "fold_0_at_30" / "checkpoint_final.pth"
    assert calls == [("0", before, 40)]
    assert read_checkpoint(before)["current_epoch"] == 30
    assert not (model_folder / "fold_0").exists()  # the extension trains into a fresh fold folder

    (model_folder / "fold_0").mkdir()  # interrupted: the extension left a latest checkpoint
    torch.save(_checkpoint(10, finished=False), model_folder / "fold_0" / "checkpoint_latest.pth")
    script.extend("0", args, model_folder, folders=None)
    assert calls[-1] == ("0", before, 40)
    assert read_checkpoint(before)["current_epoch"] == 30  # not replaced by the partial extension

    with pytest.raises(SystemExit, match="fold 1 has not finished"):
        script.extend("1", args, model_folder, folders=None)


def test_extend_again_to_a_larger_total_and_the_export_says_so(script, tmp_path, monkeypatch):
    """A fold at 30 + 40 epochs extends again to 110 from its 70-epoch weights; a rerun at 110 trains nothing; the
    exported card counts every stage."""
    model_folder = tmp_path / "results"
    _session_one(model_folder)
    (model_folder / "fold_0_at_30").mkdir()
    torch.save(_checkpoint(30, finished=True), model_folder / "fold_0_at_30" / "checkpoint_final.pth")
    torch.save(_checkpoint(40, finished=True), model_folder / "fold_0" / "checkpoint_final.pth")
    calls = _fake_train(script, monkeypatch)

    script.extend("0", type("Args", (), {"extend_to": 70})(), model_folder, folders=None)
    assert calls == []  # already 70 epochs in all
    script.extend("0", type("Args", (), {"extend_to": 110})(), model_folder, folders=None)
    assert calls == [("0", model_folder / "fold_0_at_70" / "checkpoint_final.pth", 40)]

    (model_folder / "fold_0").mkdir()  # the extension finished
    torch.save(_checkpoint(40, finished=True), model_folder / "fold_0" / "checkpoint_final.pth")
    assert script.epochs_in_all(model_folder, "0") == 110
    _write_dataset_files(script, model_folder)
    card = json.loads(
        (script.export_fold(model_folder, "0", _GROUPS, tmp_path / "fold_0") / script.CARD_FILE).read_text()
    )
    assert "extended: 110 epochs in all (30 + 40 + 40)" in card["notes"]


def test_each_fold_exports_its_own_card(script, tmp_path):
    """The model folder's card describes the fold trained last; an export of an earlier fold uses that fold's card
    (kept beside its weights and carried through a saved state)."""
    from spineinstanceseg.stage1.model_card import read_card, write_card
    from spineinstanceseg.stage1.training import build_model_card, write_fold_card

    first, state, second = tmp_path / "session1", tmp_path / "state", tmp_path / "session2"
    _session_one(first)
    torch.save(_checkpoint(30, finished=True), first / "fold_0" / "checkpoint_final.pth")
    _write_dataset_files(script, first)
    for fold in ("0", "4"):  # fold 4 trains last and leaves its card in the model folder
        card, _ = build_model_card(first, name=f"stage1_fold_{fold}", training_data="", trainer="t", plans="p")
        write_card(card, first)
        write_fold_card(card, first, fold)
    script.save_state(first, state)
    script.restore_state(state, second)
    _write_dataset_files(script, second)

    exported = script.export_fold(second, "0", _GROUPS, tmp_path / "export" / "fold_0")
    assert read_card(exported).name == "stage1_fold_0"
    assert read_card(second).name == "stage1_fold_4"


def test_an_export_says_which_real_ct_labels_its_fold_trained_on(script, tmp_path):
    """Folds trained before S1 was derived under L5 (labels version 2, no note) must not claim it; later ones do, and
    say how long the base they started from had trained."""
    from spineinstanceseg.stage1.model_card import read_card, write_card
    from spineinstanceseg.stage1.training import build_model_card

    model_folder = tmp_path / "model"
    _session_one(model_folder)
    _write_dataset_files(script, model_folder)
    for fold in ("0", "4"):
        torch.save(_checkpoint(30, finished=True), model_folder / f"fold_{fold}" / "checkpoint_final.pth")
        card, _ = build_model_card(model_folder, name=f"stage1_fold_{fold}", training_data="", trainer="t", plans="p")
        write_card(card, model_folder / f"fold_{fold}", checksum_files=[])
    base = model_folder / "fold_4" / "checkpoint_final.pth"
    script._note_fold_facts(model_folder / "fold_0", base, model_folder)  # what a run does when a fold finishes

    new = read_card(script.export_fold(model_folder, "0", _GROUPS, tmp_path / "fold_0"))
    old = read_card(script.export_fold(model_folder, "4", _GROUPS, tmp_path / "fold_4"))
    assert f"{script.LABELS_NOTE}{script.LABELS_VERSION}" in new.notes
    assert "start weights fold_4: 30 epochs in all" in new.notes
    assert "S1 bone and the L5-S1 disc" in new.training_data
    assert "S1" not in old.training_data and script.labels_version_of(old) == 2


def test_a_fold_card_says_how_long_its_start_weights_trained(script, tmp_path):
    """A fine-tune from the base counts every stage of the base; an extension's start folder names its epochs."""
    model_folder = tmp_path / "results"
    (model_folder / "fold_4_at_150").mkdir(parents=True)
    torch.save(_checkpoint(150, finished=True), model_folder / "fold_4_at_150" / "checkpoint_final.pth")
    (model_folder / "fold_4").mkdir()
    torch.save(_checkpoint(150, finished=True), model_folder / "fold_4" / "checkpoint_final.pth")
    assert script.start_epochs(model_folder / "fold_4" / "checkpoint_final.pth", model_folder) == 300
    assert script.start_epochs(model_folder / "fold_4_at_150" / "checkpoint_final.pth", model_folder) == 150
