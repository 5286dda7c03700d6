"""scripts/install_stage1.py: an exported fold becomes a bundled model folder whose card carries the scores."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from spineinstanceseg.errors import ModelError
from spineinstanceseg.stage1.model_card import ModelCard, read_card, verify_checksums, write_card

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "install_stage1.py"


@pytest.fixture()
def script(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("install_stage1_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "PACKAGE_MODELS", tmp_path / "models")
    return module


def _export(folder: Path, checkpoint: dict) -> Path:
    (folder / "fold_all").mkdir(parents=True)
    torch.save(checkpoint, folder / "fold_all" / "checkpoint_final.pth")
    for name in ("dataset.json", "plans.json"):
        (folder / name).write_text("{}\n")
    card = ModelCard(name="stage1_fold_all", training_data="phantoms and four real CTs", weights_only=True,
                     notes=["nnU-Net fold all of dataset 503"])  # fmt: skip
    write_card(card, folder, checksum_files=["fold_all/checkpoint_final.pth"])
    return folder


def test_install_writes_card_scores_and_tables(script, tmp_path):
    export = _export(tmp_path / "export", {"network_weights": {"w": torch.ones(2)}, "current_epoch": 40})
    ct = tmp_path / "ct.json"
    ct.write_text(json.dumps({"ct": [{"case": "a"}], "ct_total": {"f1": 0.9}, "mri_total": {"f1": 0.95}}))
    phantoms = tmp_path / "ph.json"
    phantoms.write_text(json.dumps({"accuracy": [{"f1": 1.0, "dice": 0.8, "vertebrae": 6, "whole": 5,
                                                  "whole_found": 5, "cut": 1, "cut_found": 0}]}))  # fmt: skip
    table = tmp_path / "ct.md"
    table.write_text("| case | F1 |\n|---|---|\n| a | 0.900 |\n")

    code = script.main([str(export), "--name", "stage1_test", "--mirroring", "off", "--scores", f"real_ct={ct}",
                        "--scores", f"phantoms={phantoms}", "--table", f"Real CT={table}"])  # fmt: skip

    assert code == 0
    target = tmp_path / "models" / "stage1_test"
    card = read_card(target)
    assert card.name == "stage1_test" and card.inference["use_mirroring"] is False
    assert card.scores["real_ct"] == {"ct_total": {"f1": 0.9}, "mri_total": {"f1": 0.95}}  # totals, not rows
    assert card.scores["phantoms"]["mean_f1"] == 1.0 and card.scores["phantoms"]["cut_found"] == 0
    assert verify_checksums(card, target, files=["fold_all/checkpoint_final.pth"]) == []
    text = (target / "MODEL_CARD.md").read_text()
    assert "### Real CT" in text and "| a | 0.900 |" in text and "phantoms and four real CTs" in text
    assert [p.name for p in (tmp_path / "models").iterdir()] == ["stage1_test"]  # nothing half-written beside it


def test_install_refuses_a_checkpoint_that_is_not_weights_only(script, tmp_path):
    export = _export(tmp_path / "export", {"network_weights": {"w": torch.ones(2)}, "trainer": ModelCard()})
    with pytest.raises(ModelError, match="not weights-only"):
        script.main([str(export), "--name", "stage1_test", "--mirroring", "on"])
    assert not (tmp_path / "models" / "stage1_test").exists()
