"""Recreate the tiny TotalSegmentator test model in Testing/data/totalsegmentator_home/ (see its README.md).

The test of ``--stage1 totalsegmentator`` runs the real TotalSegmentator code (its API, its nnU-Net call, its
resampling and label handling) against a stand-in for the weights of the ``total --fast`` task (3 mm, dataset
297), laid out where TotalSegmentator looks for them, so that nothing is downloaded. The stand-in is an nnU-Net v2
model trained here for a few minutes on synthetic lumbar CT phantoms, with TotalSegmentator's ``total`` label
values: every vertebra as 29 (vertebrae_L3, see VERTEBRA_LEVEL), the sacrum as 25, the phantom's canal as 79
(spinal_cord). It is no anatomy model and names no levels: it only has to find the phantom's bone well enough for
stage 2 to split it, in TotalSegmentator's label values.

Usage (needs nnunetv2 and TotalSegmentator installed; about 10 minutes on 2 CPU cores)::

    PYTHONPATH=SpineInstanceSeg/Logic python scripts/make_totalseg_fixture.py --work /tmp/totalseg-fixture

Steps: phantoms -> nnU-Net raw dataset -> plan (small 3 mm plans) -> train with the short trainer -> copy
dataset.json, plans.json and a weights-only fold_0/checkpoint_final.pth (float16, no optimiser state, trainer name
set to TotalSegmentator's ``nnUNetTrainer_4000epochs_NoMirroring``, whose network is nnU-Net's standard one) into
``nnunet/results/Dataset297_TotalSegmentator_total_3mm_1559subj/nnUNetTrainer_4000epochs_NoMirroring__nnUNetPlans__3d_fullres/``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "Testing" / "data" / "totalsegmentator_home"

# What TotalSegmentator's `total` task with fast=True loads (totalsegmentator.map_tasks_config / libs).
DATASET_ID = 297
DATASET_NAME = "Dataset297_TotalSegmentator_total_3mm_1559subj"
TRAINER_NAME = "nnUNetTrainer_4000epochs_NoMirroring"
PLANS_NAME = "nnUNetPlans"
CONFIGURATION = "3d_fullres"
N_LABELS = 79  # total: labels up to spinal_cord (79) are enough; nnU-Net needs them consecutive from 0

TRAIN_SEEDS = tuple(range(8))
# The level every phantom vertebra is labelled with (VerSe code 22 = L3 -> TotalSegmentator 29 vertebrae_L3). A
# 32-voxel patch (96 mm) cannot tell which lumbar vertebra it sees, so a model trained for minutes on true levels
# splits each vertebra's probability among five labels and background wins the argmax; one label it learns at once.
VERTEBRA_LEVEL = 22


def model_folder(home: Path) -> Path:
    """Where TotalSegmentator (TOTALSEG_HOME_DIR=home) looks for the total --fast model."""
    return home / "nnunet" / "results" / DATASET_NAME / f"{TRAINER_NAME}__{PLANS_NAME}__{CONFIGURATION}"


def write_raw_dataset(raw: Path) -> None:
    """Lumbar CT phantoms at 3 mm with TotalSegmentator `total` labels, as nnU-Net raw dataset 297."""
    import numpy as np
    from totalsegmentator.map_to_binary import class_map

    from spineinstanceseg.conventions import from_internal
    from spineinstanceseg.io import write_volume
    from spineinstanceseg.levels import SACRUM_CODE
    from spineinstanceseg.phantom import generate_phantom

    folder = raw / DATASET_NAME
    (folder / "imagesTr").mkdir(parents=True, exist_ok=True)
    (folder / "labelsTr").mkdir(parents=True, exist_ok=True)
    for seed in TRAIN_SEEDS:
        case = generate_phantom(seed, modality="ct", region="lumbar", spacing=3.0)
        # every vertebra gets one level's label (see VERTEBRA_LEVEL); the sacrum stays a semantic class (25)
        inst = case.instances.array
        vertebrae = case.instances.with_array(np.where((inst > 0) & (inst != SACRUM_CODE), VERTEBRA_LEVEL, 0))
        labels = from_internal(vertebrae, case.semantic, "totalseg_total", levels_known=True)
        write_volume(case.image, folder / "imagesTr" / f"phantom{seed:03d}_0000.nii.gz")
        write_volume(labels, folder / "labelsTr" / f"phantom{seed:03d}.nii.gz")
    names = class_map["total"]
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, **{names[k]: k for k in range(1, N_LABELS + 1)}},
        "numTraining": len(TRAIN_SEEDS),
        "file_ending": ".nii.gz",
        "name": DATASET_NAME,
        "description": "SpineInstanceSeg test stand-in for TotalSegmentator total --fast: lumbar CT phantoms",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2), encoding="utf-8")


def train(work: Path, *, epochs: int, iterations: int, init: Path | None = None) -> Path:
    """Plan (small 3 mm plans), preprocess and train fold 0 (from ``init``'s weights if given); returns the model
    folder. A rerun in the same ``work`` folder reuses the dataset, plans and preprocessed data."""
    from spineinstanceseg.devices import resolve_device
    from spineinstanceseg.stage1 import nnunet_adapter as adapter
    from spineinstanceseg.stage1.environment import resolve_folders, trainer_variables
    from spineinstanceseg.stage1.training import QUICK_TRAINER, ShortSchedule, small_plans

    folders = resolve_folders(work / "nnunet")
    folders.apply()  # a script: the variables stay for this process
    prepared = (folders.preprocessed / DATASET_NAME / "SpineSegSmallPlans.json").is_file()
    if not prepared:
        write_raw_dataset(folders.raw)
    schedule = ShortSchedule(
        epochs=epochs,
        iterations=iterations,
        val_iterations=1,
        patch_size=(32, 32, 32),
        base_features=8,
        max_features=32,
        stages=3,
        batch_size=2,
        target_spacing=3.0,
        save_every=1000,
    )
    import os

    os.environ.update({**schedule.environment(), **trainer_variables()})
    if prepared:
        plans = "SpineSegSmallPlans"
    else:
        plans = adapter.plan_and_preprocess(DATASET_ID, num_processes=1, edit_plans=lambda p: small_plans(p, schedule))
    return adapter.train_fold(
        DATASET_ID,
        configuration=CONFIGURATION,
        fold=0,
        trainer=QUICK_TRAINER,
        plans_identifier=plans,
        device=resolve_device("cpu").torch_device(),
        resume=False,
        validate=False,
        pretrained_weights=init,
    )


def export(trained: Path, home: Path) -> Path:
    """Copy the model into TotalSegmentator's layout under ``home``: weights only, float16, its trainer name."""
    import torch

    from spineinstanceseg.stage1.start_weights import read_checkpoint

    target = model_folder(home)
    if target.exists():
        shutil.rmtree(target)
    (target / "fold_0").mkdir(parents=True)
    shutil.copy(trained / "dataset.json", target / "dataset.json")
    plans = json.loads((trained / "plans.json").read_text(encoding="utf-8"))
    plans["plans_name"] = PLANS_NAME
    (target / "plans.json").write_text(json.dumps(plans, indent=1), encoding="utf-8")
    checkpoint = read_checkpoint(trained / "fold_0" / "checkpoint_final.pth")
    weights = checkpoint["network_weights"]
    slim = {
        "network_weights": {k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
        "trainer_name": TRAINER_NAME,
        "init_args": {"configuration": CONFIGURATION, "fold": 0},
        "inference_allowed_mirroring_axes": None,
        "current_epoch": int(checkpoint.get("current_epoch", 0)),
    }
    torch.save(slim, target / "fold_0" / "checkpoint_final.pth")
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="scratch folder (nnU-Net raw/preprocessed/results)")
    parser.add_argument("--home", type=Path, default=FIXTURE, help=f"TOTALSEG_HOME_DIR to write (default {FIXTURE})")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=20, help="optimiser steps per epoch")
    parser.add_argument("--init", type=Path, help="start from this nnU-Net checkpoint (a second training phase)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    trained = train(args.work, epochs=args.epochs, iterations=args.iterations, init=args.init)
    target = export(trained, args.home)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"wrote {target} ({size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
