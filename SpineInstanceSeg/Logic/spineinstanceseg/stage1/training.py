"""The stage-1 training recipe: nnU-Net v2 planning, preprocessing and training, then a model card.

Paper setting (``quick=False``): nnU-Net's default plans (``nnUNetPlans``), ``3d_fullres``, the standard
``nnUNetTrainer`` (1000 epochs x 250 iterations), nnU-Net's final validation. Nothing is changed.

Short setting (``quick=True`` or an explicit :class:`ShortSchedule`): the same plans *derived smaller*
(:func:`small_plans`: a given patch size, fewer feature maps) and the ``nnUNetTrainer_SpineSegQuick`` trainer from
``trainers/`` with a short schedule; for smoke tests, CPU-only machines and the bundled model.

After training, ``spineseg_card.json`` is written into the model folder: label meaning (from dataset.json),
input orientation, training description, nnU-Net's validation Dice when it ran, and SHA-256 checksums of the
checkpoints.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from ..devices import resolve_device
from ..errors import InputError
from .environment import NnUNetFolders, nnunet_environment
from .model_card import ModelCard, classes_from_label_names, write_card

__all__ = [
    "STANDARD_TRAINER",
    "QUICK_TRAINER",
    "ShortSchedule",
    "QUICK_SCHEDULE",
    "small_plans",
    "TrainResult",
    "train_stage1",
    "build_model_card",
    "write_model_card",
    "write_fold_card",
]

log = logging.getLogger(__name__)

STANDARD_TRAINER = "nnUNetTrainer"
QUICK_TRAINER = "nnUNetTrainer_SpineSegQuick"
CONFIGURATION = "3d_fullres"


@dataclass(frozen=True)
class ShortSchedule:
    """A short schedule for ``nnUNetTrainer_SpineSegQuick`` and the reduced plans it trains with.

    Attributes:
        epochs / iterations / val_iterations: nnU-Net epochs, optimiser steps per epoch, validation steps per epoch.
        patch_size: Patch size in voxels in nnU-Net's (transposed) axis order; each a multiple of 2**(stages-1).
        base_features / max_features: Feature maps of the first stage and the cap (nnU-Net: 32 / 320).
        stages: Resolution stages of the U-Net.
        batch_size: Patches per step.
        target_spacing: Isotropic working spacing in mm, or ``None`` to keep nnU-Net's planned spacing. A coarser
            spacing makes a small CPU-trained model see more anatomy per patch and predict faster.
    """

    epochs: int = 5
    iterations: int = 10
    val_iterations: int = 2
    patch_size: tuple[int, int, int] = (32, 32, 32)
    base_features: int = 8
    max_features: int = 64
    stages: int = 3
    batch_size: int = 2
    save_every: int = 10
    target_spacing: float | None = None

    def environment(self) -> dict[str, str]:
        return {
            "SPINESEG_NNUNET_EPOCHS": str(self.epochs),
            "SPINESEG_NNUNET_ITERATIONS": str(self.iterations),
            "SPINESEG_NNUNET_VAL_ITERATIONS": str(self.val_iterations),
            "SPINESEG_NNUNET_SAVE_EVERY": str(self.save_every),
        }


QUICK_SCHEDULE = ShortSchedule()


def small_plans(plans: dict, schedule: ShortSchedule, *, plans_name: str = "SpineSegSmallPlans") -> dict:
    """A copy of nnU-Net's plans whose ``3d_fullres`` network is smaller (for short schedules and the bundled model).

    Only the patch size, the number of stages, the feature maps and the batch size change; normalisation, target
    spacing, resampling and transposition stay as nnU-Net planned them.
    """
    stages = int(schedule.stages)
    factor = 2 ** (stages - 1)
    if stages < 2 or any(int(p) % factor for p in schedule.patch_size):
        raise InputError(
            f"patch size {schedule.patch_size} is not divisible by 2**(stages-1) = {factor}",
            fix="use multiples of 8 for 4 stages, of 4 for 3 stages",
        )
    new = copy.deepcopy(plans)
    new["plans_name"] = plans_name
    config = copy.deepcopy(plans["configurations"][CONFIGURATION])
    config["data_identifier"] = f"{plans_name}_{CONFIGURATION}"
    config["patch_size"] = [int(p) for p in schedule.patch_size]
    config["batch_size"] = int(schedule.batch_size)
    if schedule.target_spacing is not None:
        if not float(schedule.target_spacing) > 0:
            raise InputError(
                f"target spacing {schedule.target_spacing} mm is not positive", fix="give a spacing such as 2.0"
            )
        config["spacing"] = [float(schedule.target_spacing)] * 3
    arch = config["architecture"]["arch_kwargs"]
    arch["n_stages"] = stages
    arch["features_per_stage"] = [min(schedule.max_features, schedule.base_features * 2**i) for i in range(stages)]
    arch["kernel_sizes"] = [[3, 3, 3]] * stages
    arch["strides"] = [[1, 1, 1]] + [[2, 2, 2]] * (stages - 1)
    arch["n_conv_per_stage"] = [2] * stages
    arch["n_conv_per_stage_decoder"] = [2] * (stages - 1)
    new["configurations"] = {CONFIGURATION: config}
    return new


@dataclass(frozen=True)
class TrainResult:
    model_folder: Path
    plans: str
    trainer: str
    card: Path


def _dataset_folder(root: Path, dataset_id: int) -> Path:
    matches = sorted(p for p in root.glob(f"Dataset{int(dataset_id):03d}_*") if p.is_dir())
    if not matches:
        raise InputError(
            f"no dataset with id {int(dataset_id):03d}",
            fix="convert one first: spineseg dataset nnunet --from ... --id NNN --name NAME",
            path=root,
        )
    return matches[0]


def write_model_card(
    model_folder: Path, *, name: str, training_data: str, trainer: str, plans: str, notes: list[str] | None = None
) -> Path:
    """Write ``spineseg_card.json`` for a model trained on a dataset converted by :mod:`.dataset`."""
    card, checkpoints = build_model_card(model_folder, name=name, training_data=training_data, trainer=trainer,
                                         plans=plans, notes=notes)  # fmt: skip
    return write_card(card, model_folder, checksum_files=checkpoints)


def build_model_card(
    model_folder: Path, *, name: str, training_data: str, trainer: str, plans: str, notes: list[str] | None = None
) -> tuple[ModelCard, list[str]]:
    """The card of a trained model folder, and its checkpoints (paths relative to the folder) to checksum."""
    dataset_json = json.loads((model_folder / "dataset.json").read_text(encoding="utf-8"))
    classes, unmapped = classes_from_label_names(dataset_json["labels"])
    if unmapped:
        raise InputError(f"dataset labels {unmapped} are not spine classes", fix="convert the dataset with our tool")
    orientation = dataset_json.get("spineinstanceseg", {}).get("orientation", "as_is")
    scores: dict = {}
    checkpoints = []
    for fold_dir in sorted(model_folder.glob("fold_*")):
        checkpoints += [str(p.relative_to(model_folder)) for p in sorted(fold_dir.glob("checkpoint_*.pth"))]
        summary = fold_dir / "validation" / "summary.json"
        if summary.is_file():
            data = json.loads(summary.read_text(encoding="utf-8"))
            scores[fold_dir.name] = {
                "nnunet_validation_foreground_dice": data.get("foreground_mean", {}).get("Dice"),
                "per_label_dice": {k: v.get("Dice") for k, v in data.get("mean", {}).items()},
                "note": "nnU-Net's own validation (fold_all validates on its training cases)",
            }
    card = ModelCard(
        name=name,
        classes=classes,
        input_orientation=orientation,
        training_data=training_data,
        scores=scores,
        trainer=trainer,
        plans=plans,
        configuration=CONFIGURATION,
        notes=notes or [],
    )
    return card, checkpoints


def train_stage1(
    dataset_id: int,
    *,
    folders: NnUNetFolders,
    fold: int | str = "all",
    quick: bool = False,
    schedule: ShortSchedule | None = None,
    device: str = "auto",
    resume: bool = False,
    skip_preprocessing: bool = False,
    num_processes: int = 1,
    validate: bool | None = None,
    model_name: str | None = None,
    pretrained_weights: Path | None = None,
    carry_output_layers: bool = True,
) -> TrainResult:
    """Plan, preprocess and train one fold of stage 1 on a converted dataset, then write the model card.

    Args:
        fold: ``"all"`` (train on every case, what the bundled model uses) or 0-4 (nnU-Net's 5-fold split).
        quick: Use :data:`QUICK_SCHEDULE` unless ``schedule`` is given; ``False`` and no schedule = paper setting.
        device: "auto" (CUDA if available), "cpu", "cuda", "cuda:N" or "mps" (:mod:`spineinstanceseg.devices`);
            checked before anything is written; the CPU is passed to nnU-Net explicitly.
        resume: Continue from the fold's latest checkpoint.
        skip_preprocessing: Reuse existing plans and preprocessed data.
        validate: Run nnU-Net's final validation (default: only for the paper setting).
        pretrained_weights: An nnU-Net checkpoint of the same architecture to start from (fine-tuning); not with
            ``resume``.
        carry_output_layers: Start from the checkpoint's output layers too when it has the same classes
            (:mod:`.start_weights`); ``False`` starts them afresh, as nnU-Net's own fine-tuning does.
    """
    # lazy: torch and nnU-Net load when a training runs; the recipe (plans, schedules) imports without them
    from . import nnunet_adapter as adapter
    from .start_weights import read_start_record

    resolved = resolve_device(device)
    _check_start(resume, pretrained_weights)
    folders.create()
    dataset_folder = _dataset_folder(folders.raw, dataset_id)
    short = schedule or (QUICK_SCHEDULE if quick else None)
    trainer = QUICK_TRAINER if short is not None else STANDARD_TRAINER
    fold_value: int | str = fold if fold == "all" else int(fold)
    # nnU-Net reads its folders, and our short trainer its schedule, from the environment: set for this call only
    with nnunet_environment({**folders.variables(), **(short.environment() if short is not None else {})}):
        if skip_preprocessing:
            plans = "SpineSegSmallPlans" if short is not None else "nnUNetPlans"
        else:
            log.info("planning and preprocessing %s", dataset_folder.name)
            edit = (lambda p: small_plans(p, short)) if short is not None else None
            plans = adapter.plan_and_preprocess(dataset_id, num_processes=num_processes, edit_plans=edit)
        log.info("training %s fold %s with %s (%s) on %s", dataset_folder.name, fold_value, trainer, plans,
                 resolved.describe())  # fmt: skip
        model_folder = adapter.train_fold(
            dataset_id,
            configuration=CONFIGURATION,
            fold=fold_value,
            trainer=trainer,
            plans_identifier=plans,
            device=resolved.torch_device(),
            resume=resume,
            validate=(short is None) if validate is None else validate,
            pretrained_weights=pretrained_weights,
            output_layers=carry_output_layers,
        )
    start = read_start_record(model_folder / f"fold_{fold_value}") if (pretrained_weights or resume) else None
    notes = [
        f"fold {fold_value}",
        _schedule_text(short),
        f"device {resolved.name}",
        f"nnunetv2 {adapter.NNUNET_VERSION}",
        *([_start_note(*start)] if start else []),
    ]
    dataset_json = json.loads((dataset_folder / "dataset.json").read_text(encoding="utf-8"))
    card, checkpoints = build_model_card(
        model_folder,
        name=model_name or f"{dataset_folder.name}_{trainer}",
        training_data=f"{dataset_json.get('numTraining')} cases of {dataset_folder.name}: "
        f"{dataset_json.get('description', '')}",
        trainer=trainer,
        plans=plans,
        notes=notes,
    )
    card_path = write_card(card, model_folder, checksum_files=checkpoints)
    write_fold_card(card, model_folder, fold_value)
    return TrainResult(model_folder, plans, trainer, card_path)


def write_fold_card(card: ModelCard, model_folder: Path, fold: int | str) -> Path:
    """Keep a fold's card in ``fold_<fold>/`` (without checksums) beside its weights.

    Every fold trained in one nnU-Net model folder rewrites that folder's card, so after several folds it describes
    only the last one; the fold's own copy keeps what each fold was (its name, schedule, start weights) for a later
    export.
    """
    return write_card(card, model_folder / f"fold_{fold}", checksum_files=[])


def _start_note(start_weights: str, output_layers_kept: bool) -> str:
    """The card note on a fine-tune's start (also after a resume): which checkpoint, and whether its output layers
    were kept."""
    layers = "its output layers kept" if output_layers_kept else "output layers started afresh"
    return f"fine-tuned from {start_weights} ({layers})"


def _check_start(resume: bool, pretrained_weights: Path | None) -> None:
    """A training either resumes or starts from given weights, and those weights exist."""
    if resume and pretrained_weights is not None:
        raise InputError(
            "cannot both resume a training and start from pretrained weights",
            fix="drop resume to fine-tune from the weights, or drop the weights to continue the training",
        )
    if pretrained_weights is not None and not Path(pretrained_weights).is_file():
        raise InputError("the pretrained weights file does not exist", fix="pass a checkpoint_*.pth file",
                         path=pretrained_weights)  # fmt: skip


def _schedule_text(short: ShortSchedule | None) -> str:
    if short is None:
        return "nnU-Net default schedule (1000 epochs x 250 iterations)"
    return f"{short.epochs} epochs x {short.iterations} iterations, patch {list(short.patch_size)}"
