"""Stage 1 end to end on the CPU: phantoms -> nnU-Net raw dataset -> plan/preprocess -> a few training iterations
with the project's quick trainer -> prediction with the adapter on an oblique, anisotropic volume."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from spineinstanceseg.errors import InputError, ModelError
from spineinstanceseg.phantom import generate_phantom, write_phantom_case
from spineinstanceseg.progress import Progress
from spineinstanceseg.stage1.dataset import convert_dataset
from spineinstanceseg.stage1.environment import resolve_folders
from spineinstanceseg.stage1.model import Stage1Model
from spineinstanceseg.stage1.model_card import CARD_FILE
from spineinstanceseg.stage1.sources import NnUNetSource
from spineinstanceseg.stage1.training import QUICK_TRAINER, ShortSchedule, train_stage1

_ENV = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer", "nnUNet_n_proc_DA",
        "SPINESEG_NNUNET_EPOCHS", "SPINESEG_NNUNET_ITERATIONS", "SPINESEG_NNUNET_VAL_ITERATIONS",
        "SPINESEG_NNUNET_SAVE_EVERY")  # fmt: skip


@pytest.mark.slow
def test_convert_train_predict_on_cpu(tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    for var in _ENV:  # everything train_stage1 exports is restored after the test
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setenv("nnUNet_n_proc_DA", "1")
    start = time.perf_counter()
    for seed, modality in ((0, "ct"), (1, "t2"), (2, "ct")):
        case = generate_phantom(seed, modality=modality, region="lumbar", spacing=(4.0, 4.0, 4.0))
        write_phantom_case(case, tmp_path / "phantoms", f"case{seed}")
    folders = resolve_folders(tmp_path / "nnunet")
    converted = convert_dataset("phantom", tmp_path / "phantoms", dataset_id=990, name="Tiny", raw_dir=folders.raw)
    assert converted.labels == {"background": 0, "vertebra": 1, "disc": 2, "canal": 3, "sacrum": 4}

    schedule = ShortSchedule(epochs=1, iterations=2, val_iterations=1, patch_size=(32, 32, 32), base_features=4,
                             max_features=16, stages=3)  # fmt: skip
    result = train_stage1(990, folders=folders, fold="all", schedule=schedule, device="cpu")
    assert result.trainer == QUICK_TRAINER and (result.model_folder / "fold_all" / "checkpoint_final.pth").is_file()
    card = json.loads(result.card.read_text())
    assert card["input_orientation"] == "lps" and "fold_all/checkpoint_final.pth" in card["checksums"]
    trained = time.perf_counter()

    # fine-tuning from those weights (how the bundled model adds the real CTs); not together with resume
    start_from = tmp_path / "start.pth"
    shutil.copy2(result.model_folder / "fold_all" / "checkpoint_final.pth", start_from)
    with pytest.raises(InputError, match="cannot both resume"):
        train_stage1(990, folders=folders, schedule=schedule, device="cpu", resume=True, pretrained_weights=start_from)
    tuned = train_stage1(
        990, folders=folders, schedule=schedule, device="cpu", skip_preprocessing=True, pretrained_weights=start_from
    )
    # same classes: the start's output layers are kept (nnU-Net's own fine-tuning would start them afresh)
    notes = json.loads(tuned.card.read_text())["notes"]
    assert f"fine-tuned from {tmp_path.name}/start.pth (its output layers kept)" in notes
    fold_card = json.loads((tuned.model_folder / "fold_all" / CARD_FILE).read_text())  # the fold keeps its own
    assert fold_card["notes"] == json.loads(tuned.card.read_text())["notes"] and fold_card["checksums"] == {}

    # oblique, anisotropic, MRI-like input on a grid the model never saw
    case = generate_phantom(7, modality="t1", region="lumbar", spacing=(3.0, 3.5, 5.0), oblique_deg=15.0)
    image = case.image
    assert not np.allclose(image.direction, np.eye(3), atol=0.05)
    reports: list[tuple[float, str]] = []
    model = Stage1Model(result.model_folder, device="cpu", use_mirroring=False)
    semantic = model.predict(image, progress=Progress(lambda step, f, msg: reports.append((f, msg))))
    assert semantic.same_grid(image) and semantic.is_label
    assert set(np.unique(semantic.array)) <= {0, 1, 2, 3, 4}
    assert model.label_names() == {1: "vertebra", 2: "disc", 3: "canal", 4: "sacrum"}
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("patch 1/" in msg for _, msg in reports) and any("fold all" in msg for _, msg in reports)

    with pytest.raises(InputError, match="expects 1 input channel"):
        model.predict([image, image])

    # the same model through the pipeline's stage-1 source protocol
    source = NnUNetSource(result.model_folder, device="cpu")
    mask, warnings = source.predict(image, progress=Progress())
    assert mask.same_grid(image) and warnings == [] and set(np.unique(mask.array)) <= {0, 1, 2, 3, 4}
    assert "nnU-Net v2 model" in source.description and source.model_info()["folds"] == ["all"]

    # CUDA out of memory -> the same prediction again on the CPU, with a warning
    from spineinstanceseg.stage1 import nnunet_adapter

    real_predict, calls = nnunet_adapter.predict_array, []

    def oom_once(*args, **kwargs):
        calls.append(model._predictor.device.type)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_predict(*args, **kwargs)

    monkeypatch.setattr(nnunet_adapter, "predict_array", oom_once)
    model._predictor.device = torch.device("cuda")  # pretend the model runs on a GPU
    retried = model.predict(image)
    assert calls == ["cuda", "cpu"] and np.array_equal(retried.array, semantic.array)
    assert any("out of memory" in w for w in model.warnings)
    monkeypatch.setattr(nnunet_adapter, "predict_array", real_predict)

    # a tampered checkpoint is refused
    copy = tmp_path / "copy"
    shutil.copytree(result.model_folder, copy)
    with open(copy / "fold_all" / "checkpoint_final.pth", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelError, match="checksum mismatch"):
        Stage1Model(copy, device="cpu")
    print(
        f"\nstage-1 integration: convert+plan+train {trained - start:.1f} s, total {time.perf_counter() - start:.1f} s"
    )
