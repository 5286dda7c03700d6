"""Train the bundled stage-1 nnU-Net model and its leave-one-out siblings on the CPU; rerunnable and resumable.

Usage:
    python scripts/train_bundled_stage1.py --work /tmp/stage1 [--phantoms 48] [--base-epochs 30]
        [--finetune-epochs 30] [--iterations 50] [--folds 0,1,2,3,all] [--threads 2] [--device cpu]

One nnU-Net dataset (503 ``SpineRealDiscs``), preprocessed once:

* synthetic phantoms (seeds 0..N-1; CT, T1 and T2 in turn; lumbar and thoracolumbar; anisotropic; tilted);
* the four real CTs of ``../shared/data/real-ct``, each as is and in two variants (intensity/noise change; a crop
  that cuts the end vertebrae), with **derived** training labels: vertebrae, the discs and canal derived from the
  vertebrae's geometry, S1 and the L5-S1 disc found in the image below a mask that ends at L5
  (``spineinstanceseg.conventions.sacrum_seed``), and "ignore" elsewhere beyond the labelled span
  (``spineinstanceseg.conventions.derived``); each fold's card records the version of these labels it saw;
* the real sagittal MRI of ``../shared/data/real-mri-bodies`` with vertebral-body labels: bodies, derived discs,
  and "ignore" behind the bodies' posterior wall (unlabelled posterior elements) and beyond the labelled span; the
  lowest VB1 body (probably S1) is ignored too.

Folds (``splits_final.json``; the validation set of a fold is what it never trains on):

====  ===============================================  =========================================================
fold  held out                                         used for
====  ===============================================  =========================================================
0-3   real CT k (with its variants) + half of the MRI  leave-one-out scores of real CT k and of that MRI half
4     every real case                                  the phantom-only base model the others fine-tune from
all   nothing                                          the shipped model
====  ===============================================  =========================================================

Each fold is exported as a standalone weights-only model folder (``WORK/export/fold_<f>``) whose card lists the
real cases it trained on, and ``WORK/loo/<case>`` points every real case at a model that did not see it: pass
``--stage1-loo WORK/loo`` to ``benchmarks/bench_real_scans.py``.

Training longer: ``--extend-to TOTAL`` trains every finished fold of --folds on from its own weights (a fresh
learning-rate schedule of the missing epochs) until it has trained TOTAL epochs in all; the weights each extension
started from stay in ``fold_<f>_at_<epochs so far>``. Rerun with the same TOTAL to resume an interrupted extension;
a larger TOTAL extends again.

Fine-tunes and extensions start from the start checkpoint's output layers too (same classes;
``spineinstanceseg.stage1.start_weights``); nnU-Net's own fine-tuning starts them afresh, as every fold started
before 2026-12-05 12:30 UTC did (the extension of fold 4 to 300 epochs included). Each fold's card says which, and
how many epochs its start weights had trained.

Resuming: rerun with the same --work. Finished steps are skipped (marker files, final checkpoints); an interrupted
fold continues from its ``checkpoint_latest.pth`` (saved every 5 epochs). To move training to another session,
keep WORK/nnunet/nnUNet_results, or save the checkpoints with ``--save-state DIR`` (committed in the repo under
``training-state/stage1``) and pass ``--state DIR`` in the next session: they are copied back where nnU-Net resumes
from. Everything else is rebuilt deterministically. Saved states hold tensors and plain data only and are read with
``torch.load(weights_only=True)``; a finished fold keeps its weights only (no optimiser state).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from spineinstanceseg.stage1.model_card import CARD_FILE  # light: no torch or nnU-Net

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
REAL_CT = SHARED / "real-ct"
REAL_MRI = SHARED / "real-mri-bodies"
DATASET_ID, DATASET_NAME = 503, "SpineRealDiscs"
BASE_FOLD = 4
CT_CASES = ("sub-verse005", "sub-verse006", "sub-verse008", "sub-verse012")
# The MRI set split in two halves (VB1 and VB2 in both); folds 0 and 2 hold out half A, 1 and 3 half B.
MRI_HALF_A = ("vb1_03", "vb1_10", "vb1_15", "vb1_17", "vb2_02", "vb2_05", "vb2_07", "vb2_09", "vb2_12", "vb2_14")
PLANS = "SpineSegSmallPlans"
# Version of the real cases' derived labels; a change rewrites them and preprocesses again (models are kept).
# 1: first run; 2: body-only masks leave the soft tissue beyond the posterior elements' reach as background;
# 3: real CTs whose mask ends at L5 get S1 and the L5-S1 disc found in the image (conventions.sacrum_seed);
# 4: that S1 grows from under the body into S1's arch, superior articular processes and alae.
LABELS_VERSION = 4
LABELS_NOTE = "real-case labels version "


def _say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def phantom_case(seed: int, *, held_out: bool = False):
    """One phantom; modality, region, spacing and tilt vary with the seed."""
    from spineinstanceseg.phantom import generate_phantom

    rng = np.random.default_rng([seed, 11])
    modality = ("ct", "t1", "t2")[seed % 3]
    region = ("lumbar", "thoracolumbar")[(seed // 3) % 2]
    if modality == "ct":
        spacing = (float(rng.uniform(1.4, 2.0)),) * 2 + (float(rng.uniform(2.0, 3.0)),)
    else:  # sagittal MRI: thick left-right slices
        spacing = (float(rng.uniform(3.0, 4.0)), float(rng.uniform(1.2, 1.8)), float(rng.uniform(1.2, 1.8)))
    tilt = float(rng.uniform(5, 15)) if held_out else float(rng.uniform(0, 12))
    return generate_phantom(seed, modality=modality, region=region, spacing=spacing, oblique_deg=tilt), modality


def mri_cases() -> list[str]:
    return sorted(p.name[: -len("_img.nii.gz")] for p in REAL_MRI.glob("*_img.nii.gz"))


def _crop_ends(image, labels, rng):
    """Image and labels cut along the array axis closest to superior, 10-25 % off each end (partial vertebrae)."""
    axis = int(np.argmax(np.abs(np.asarray(image.direction)[2])))
    n = image.shape[axis]
    lo, hi = int(n * rng.uniform(0.1, 0.25)), n - int(n * rng.uniform(0.1, 0.25))
    box = tuple(slice(lo, hi) if a == axis else slice(None) for a in range(3))
    return image.crop(box), labels.crop(box)


def _write_real_ct(folder: Path, case: str, rng) -> list[str]:
    from spineinstanceseg.io import read_label_map, read_volume, write_volume
    from spineinstanceseg.stage1.dataset_sources import verse_training_labels

    image = read_volume(REAL_CT / f"{case}_ct.nii.gz")
    labels = verse_training_labels(read_label_map(REAL_CT / f"{case}_seg-vert_msk.nii.gz"), ct=image)
    versions = {f"realct_{case}": (image, labels)}
    varied = image.array * rng.uniform(0.9, 1.1) + rng.uniform(-40, 40) + rng.normal(0, 20, image.shape)
    versions[f"realct_{case}_v1"] = (image.with_array(varied.astype(np.float32)), labels)
    versions[f"realct_{case}_v2"] = _crop_ends(image.with_array(image.array * rng.uniform(0.95, 1.05)), labels, rng)
    for name, (img, lab) in versions.items():
        write_volume(img.as_image(np.float32), folder / "images" / f"{name}.nii.gz")
        write_volume(lab, folder / "labels" / f"{name}.nii.gz")
    return list(versions)


def _write_real_mri(folder: Path, case: str) -> str:
    from spineinstanceseg.conventions.derived import derive_body_training_labels
    from spineinstanceseg.io import read_label_map, read_volume, write_volume
    from spineinstanceseg.semantic import UNLABELLED

    image = read_volume(REAL_MRI / f"{case}_img.nii.gz")
    derived = derive_body_training_labels(
        read_label_map(REAL_MRI / f"{case}_bodies.nii.gz"), unlabel_lowest=case.startswith("vb1")
    )
    semantic = np.array(derived.semantic.array, dtype=np.uint8)
    semantic[derived.unknown] = UNLABELLED
    name = f"realmri_{case}"
    write_volume(image.as_image(np.float32), folder / "images" / f"{name}.nii.gz")
    write_volume(derived.semantic.with_array(semantic), folder / "labels" / f"{name}.nii.gz")
    return name


def _write_real_cases(folder: Path, groups: dict[str, list[str]]) -> None:
    rng = np.random.default_rng(5)
    for case in CT_CASES:
        groups[case] = _write_real_ct(folder, case, rng)
        _say(f"  real CT {case}: {groups[case]}")
    for case in mri_cases():
        groups[case] = [_write_real_mri(folder, case)]


def build_source(folder: Path, n_phantoms: int) -> tuple[dict[str, list[str]], bool]:
    """The generic-layout source folder: ({"phantom": [...], "<real case>": [its case names]}, relabelled).

    ``relabelled``: the real cases' labels were rewritten because their derivation changed (``LABELS_VERSION``);
    the phantoms, the models trained so far and everything else stay.
    """
    from spineinstanceseg.io import write_volume

    index_file = folder / "cases.json"
    if index_file.is_file():
        index = json.loads(index_file.read_text())
        version = index.pop("labels_version", 1)
        if version == LABELS_VERSION:
            return index, False
        _say(f"== real-case labels version {version} -> {LABELS_VERSION}: rewriting them")
        _write_real_cases(folder, index)
        index_file.write_text(json.dumps({**index, "labels_version": LABELS_VERSION}, indent=1) + "\n")
        return index, True
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "labels").mkdir()
    groups: dict[str, list[str]] = {"phantom": []}
    for seed in range(n_phantoms):
        case, modality = phantom_case(seed)
        name = f"phantom{seed:03d}_{modality}"
        write_volume(case.image, folder / "images" / f"{name}.nii.gz")
        write_volume(case.semantic, folder / "labels" / f"{name}.nii.gz")
        groups["phantom"].append(name)
    _write_real_cases(folder, groups)
    index_file.write_text(json.dumps({**groups, "labels_version": LABELS_VERSION}, indent=1) + "\n")
    return groups, False


def held_out(fold: int | str, groups: dict[str, list[str]]) -> list[str]:
    """Real cases (group names) a fold does not train on."""
    if fold == "all":
        return []
    if int(fold) == BASE_FOLD:
        return [g for g in groups if g != "phantom"]
    half = set(MRI_HALF_A) if int(fold) % 2 == 0 else {c for c in groups if c.startswith("vb") and c not in MRI_HALF_A}
    return [CT_CASES[int(fold)], *sorted(c for c in groups if c in half)]


def write_splits(preprocessed: Path, groups: dict[str, list[str]]) -> None:
    everything = sorted(name for names in groups.values() for name in names)
    splits = []
    for fold in range(BASE_FOLD + 1):
        val = sorted(name for g in held_out(fold, groups) for name in groups[g])
        splits.append({"train": [n for n in everything if n not in val], "val": val})
    (preprocessed / "splits_final.json").write_text(json.dumps(splits, indent=1) + "\n")


def export_fold(model_folder: Path, fold: str, groups: dict[str, list[str]], target: Path) -> Path:
    """A standalone weights-only model folder of one fold, its card naming the real cases it trained on."""
    from spineinstanceseg.atomic import atomic_directory

    with atomic_directory(target) as tmp:
        _write_export(model_folder, fold, groups, tmp)
    return target


def _write_export(model_folder: Path, fold: str, groups: dict[str, list[str]], tmp: Path) -> None:
    import torch

    from spineinstanceseg.stage1.model_card import read_card, write_card
    from spineinstanceseg.stage1.nnunet_adapter import check_weights_only
    from spineinstanceseg.stage1.start_weights import read_checkpoint

    (tmp / "fold_all").mkdir()
    for name in ("dataset.json", "plans.json"):
        shutil.copy2(model_folder / name, tmp / name)
    # read as plain data; what is exported holds only tensors and plain data (what nnU-Net's predictor reads), so
    # it loads with weights_only=True
    checkpoint = read_checkpoint(model_folder / f"fold_{fold}" / "checkpoint_final.pth")
    axes = checkpoint.get("inference_allowed_mirroring_axes")
    shipped = {
        "network_weights": dict(checkpoint["network_weights"]),
        "trainer_name": str(checkpoint["trainer_name"]),
        "init_args": {"configuration": str(checkpoint["init_args"]["configuration"]), "fold": "all"},
        "inference_allowed_mirroring_axes": None if axes is None else tuple(int(a) for a in axes),
        "current_epoch": int(checkpoint.get("current_epoch", -1)),
    }
    torch.save(shipped, tmp / "fold_all" / "checkpoint_final.pth")
    check_weights_only(tmp / "fold_all" / "checkpoint_final.pth")
    card = read_card(model_folder / f"fold_{fold}") or _card_of_restored_fold(model_folder, fold, checkpoint)
    excluded = set(held_out(fold if fold == "all" else int(fold), groups))
    trained_ct = [c for c in CT_CASES if c in groups and c not in excluded]
    trained_mri = [c for c in groups if c.startswith("vb") and c not in excluded]
    card.training_data = training_data_text(len(groups["phantom"]), trained_ct, trained_mri,
                                            sacrum_below_l5=labels_version_of(card) >= 3)  # fmt: skip
    card.weights_only = True
    card.notes = [n for n in card.notes if not n.startswith("fold ")] + [f"nnU-Net fold {fold} of dataset 503"]
    stages = earlier_stages(model_folder, fold)
    if stages:
        steps = np.diff([0, *stages, stages[-1] + int(checkpoint.get("current_epoch", -1))])
        card.notes.append(f"extended: {sum(steps)} epochs in all ({' + '.join(str(int(n)) for n in steps)})")
    write_card(card, tmp, checksum_files=["fold_all/checkpoint_final.pth"])


def _card_of_restored_fold(model_folder: Path, fold: str, checkpoint: dict):
    """The card of a fold trained before folds kept their own card (or restored from a state saved without one)."""
    from spineinstanceseg.stage1.training import QUICK_TRAINER, build_model_card

    epochs = int(checkpoint.get("current_epoch", -1))
    notes = [f"fold {fold}", f"{epochs} epochs (card rebuilt at export)"]
    card, _ = build_model_card(model_folder, name=f"stage1_fold_{fold}", training_data="", trainer=QUICK_TRAINER,
                               plans=PLANS, notes=notes)  # fmt: skip
    return card


def training_data_text(n_phantoms: int, ct: list[str], mri: list[str], *, sacrum_below_l5: bool) -> str:
    """What a fold trained on, for its card; ``sacrum_below_l5``: its real CT labels had S1 and the L5-S1 disc
    found in the image under masks that end at L5 (labels version 3)."""
    ct_text = ", ".join(ct) if ct else "none"
    mri_text = ", ".join(mri) if mri else "none"
    sacrum = ", S1 bone and the L5-S1 disc found in the image below masks that end at L5," if sacrum_below_l5 else ""
    # the card's notes say which labels version (4: S1 grown into its arch and alae)
    return (
        f"{n_phantoms} synthetic phantoms (CT/T1/T2, lumbar/thoracolumbar, tilted, anisotropic); real VerSe CTs "
        f"({ct_text}; CC BY-SA 4.0; each as is, with an intensity/noise change and cropped at the ends) with "
        f"derived disc and canal labels{sacrum} and 'ignore' beyond the labelled span; real sagittal MRI with "
        f"vertebral-body labels ({mri_text}; VB1/VB2 sets), 'ignore' behind the bodies and beyond the labelled span"
    )


def link_loo(export: Path, groups: dict[str, list[str]]) -> Path:
    """WORK/loo/<case> -> the exported fold that held <case> out (the first such fold 0-3)."""
    loo = export.parent / "loo"
    loo.mkdir(exist_ok=True)
    for case in (g for g in groups if g != "phantom"):
        folds = [f for f in range(BASE_FOLD) if case in held_out(f, groups) and (export / f"fold_{f}").is_dir()]
        link = loo / case
        if folds and not link.exists():
            link.symlink_to(export / f"fold_{folds[0]}", target_is_directory=True)
    return loo


STATE_FILES = ("checkpoint_final.pth", "checkpoint_latest.pth")


def _plain(value):
    """``value`` with numpy scalars/arrays, devices and tuples-of-those made plain (loadable with weights_only)."""
    if isinstance(value, dict):
        return type(value)((k, _plain(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if type(value).__name__ == "device":
        return str(value)
    return value


def save_state(model_folder: Path, state: Path) -> None:
    """Copy each fold's newest checkpoint (final, else latest) into ``state/fold_<f>/`` as plain data, with the
    fold's card and the record of the weights it started from."""
    import torch

    from spineinstanceseg.stage1.start_weights import START_RECORD, read_checkpoint

    for fold_dir in sorted(model_folder.glob("fold_*")):
        name = next((n for n in STATE_FILES if (fold_dir / n).is_file()), None)
        if name is None:
            continue
        checkpoint = _plain(read_checkpoint(fold_dir / name))  # numpy log values become plain numbers
        if name == "checkpoint_final.pth":
            checkpoint["optimizer_state"] = None  # a finished fold is only a starting point or an export
        target = state / fold_dir.name
        target.mkdir(parents=True, exist_ok=True)
        for old in (*STATE_FILES, CARD_FILE, START_RECORD):
            (target / old).unlink(missing_ok=True)
        torch.save(checkpoint, target / (name + ".partial"))
        os.replace(target / (name + ".partial"), target / name)
        for kept in (CARD_FILE, START_RECORD):  # the fold's own card; where an unfinished fine-tune started
            if (fold_dir / kept).is_file():
                shutil.copy2(fold_dir / kept, target / kept)
        _say(f"saved {fold_dir.name}/{name} (epoch {checkpoint.get('current_epoch')}) to {target}")
    if (model_folder / CARD_FILE).is_file():
        shutil.copy2(model_folder / CARD_FILE, state / CARD_FILE)


def restore_state(state: Path, model_folder: Path) -> None:
    """Put the saved checkpoints back where nnU-Net resumes from, unless the work folder already has newer ones."""
    import torch

    from spineinstanceseg.stage1.start_weights import START_RECORD, read_checkpoint

    for saved in sorted(state.glob("fold_*/checkpoint_*.pth")):
        fold_dir = model_folder / saved.parent.name
        if (fold_dir / "checkpoint_final.pth").is_file():
            continue
        checkpoint = torch.load(saved, map_location="cpu", weights_only=True)
        latest = fold_dir / "checkpoint_latest.pth"
        if saved.name == "checkpoint_latest.pth" and latest.is_file():
            have = read_checkpoint(latest).get("current_epoch", -1)
            if have >= checkpoint.get("current_epoch", -1):
                continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy2(saved, fold_dir / saved.name)
        for kept in (CARD_FILE, START_RECORD):
            if (saved.parent / kept).is_file():
                shutil.copy2(saved.parent / kept, fold_dir / kept)
        _say(f"restored {saved.parent.name}/{saved.name} (epoch {checkpoint.get('current_epoch')})")
    if (state / CARD_FILE).is_file() and not (model_folder / CARD_FILE).is_file():
        model_folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(state / CARD_FILE, model_folder / CARD_FILE)


def complete_model_folder(model_folder: Path, preprocessed: Path) -> None:
    """Give a model folder restored from a saved state the files nnU-Net writes when a training starts.

    A fold that finished in an earlier session is never trained again, so nothing else would write them, and
    exporting it needs them.
    """
    model_folder.mkdir(parents=True, exist_ok=True)
    wanted = {"dataset.json": "dataset.json", "plans.json": f"{PLANS}.json",
              "dataset_fingerprint.json": "dataset_fingerprint.json"}  # fmt: skip
    for name, source in wanted.items():
        if not (model_folder / name).is_file() and (preprocessed / source).is_file():
            shutil.copy2(preprocessed / source, model_folder / name)


def _schedule(epochs: int, args):
    from spineinstanceseg.stage1.training import ShortSchedule

    return ShortSchedule(epochs=epochs, iterations=args.iterations, val_iterations=3, patch_size=(args.patch,) * 3,
                         base_features=16, max_features=128, stages=4, batch_size=2, save_every=5,
                         target_spacing=args.spacing)  # fmt: skip


def train(fold: str, args, model_folder: Path, folders, *, start_from: Path | None, epochs: int) -> None:
    from spineinstanceseg.stage1.training import train_stage1

    fold_dir = model_folder / f"fold_{fold}"
    if (fold_dir / "checkpoint_final.pth").is_file():
        return
    resume = (fold_dir / "checkpoint_latest.pth").is_file()
    _say(f"== fold {fold}: {'resuming' if resume else 'training'} ({epochs} epochs)")
    t = time.perf_counter()
    train_stage1(DATASET_ID, folders=folders, fold=fold if fold == "all" else int(fold),
                 schedule=_schedule(epochs, args), device=args.device, resume=resume, skip_preprocessing=True,
                 model_name=f"stage1_fold_{fold}", pretrained_weights=None if resume else start_from)  # fmt: skip
    _note_fold_facts(fold_dir, start_from, model_folder)
    _say(f"   fold {fold} done in {time.perf_counter() - t:.0f} s")


def _note_fold_facts(fold_dir: Path, start_from: Path | None, model_folder: Path) -> None:
    """Record in the fold's card which derivation of the real cases' labels it trained on, and how long its start
    weights had trained (exports describe both)."""
    from spineinstanceseg.stage1.model_card import read_card, write_card

    card = read_card(fold_dir)
    if card is None:
        return
    card.notes.append(f"{LABELS_NOTE}{LABELS_VERSION}")
    if start_from is not None:
        card.notes.append(
            f"start weights {start_from.parent.name}: {start_epochs(start_from, model_folder)} epochs in all"
        )
    write_card(card, fold_dir, checksum_files=[])


def start_epochs(start_from: Path, model_folder: Path) -> int:
    """Epochs in all behind a start checkpoint: ``fold_<f>_at_<E>`` says E; a finished fold counts its stages."""
    name = start_from.parent.name
    prefix, _, at = name.rpartition("_at_")
    if prefix and at.isdigit():
        return int(at)
    return epochs_in_all(model_folder, name.removeprefix("fold_")) or 0


def labels_version_of(card) -> int:
    """The real-case labels version a fold's card records; 2 for folds trained before cards recorded it."""
    found = [n[len(LABELS_NOTE) :] for n in card.notes if n.startswith(LABELS_NOTE)]
    return int(found[-1]) if found and found[-1].isdigit() else 2


def earlier_stages(model_folder: Path, fold: str) -> list[int]:
    """Epochs in all at which fold ``fold`` was extended (its ``fold_<f>_at_<E>`` folders), ascending."""
    prefix = f"fold_{fold}_at_"
    found = [p.name[len(prefix) :] for p in model_folder.glob(f"{prefix}*") if (p / "checkpoint_final.pth").is_file()]
    return sorted(int(e) for e in found if e.isdigit())


def epochs_in_all(model_folder: Path, fold: str) -> int | None:
    """Epochs fold ``fold``'s finished weights trained in all (earlier stages included); None while unfinished."""
    from spineinstanceseg.stage1.start_weights import read_checkpoint

    final = model_folder / f"fold_{fold}" / "checkpoint_final.pth"
    if not final.is_file():
        return None
    own = int(read_checkpoint(final).get("current_epoch", -1))
    return max(earlier_stages(model_folder, fold), default=0) + own


def extend(fold: str, args, model_folder: Path, folders) -> None:
    """Train a finished fold on from its own weights (fresh schedule) until ``args.extend_to`` epochs in all."""
    total = epochs_in_all(model_folder, fold)
    if total is None:  # an extension was interrupted (or the first schedule never finished)
        stages = earlier_stages(model_folder, fold)
        if not stages:
            raise SystemExit(f"fold {fold} has not finished its first schedule; train it before --extend-to")
        total = stages[-1]
    elif total >= args.extend_to:
        return
    else:
        os.replace(model_folder / f"fold_{fold}", model_folder / f"fold_{fold}_at_{total}")
    start = model_folder / f"fold_{fold}_at_{total}" / "checkpoint_final.pth"
    train(fold, args, model_folder, folders, start_from=start, epochs=args.extend_to - total)


def prepare(args, folders) -> dict[str, list[str]]:
    """Source folder, nnU-Net raw dataset, plans, preprocessing and splits (each once)."""
    from spineinstanceseg.stage1 import nnunet_adapter as adapter
    from spineinstanceseg.stage1.dataset import convert_dataset
    from spineinstanceseg.stage1.training import small_plans

    groups, relabelled = build_source(args.work / "source", args.phantoms)
    name = f"Dataset{DATASET_ID:03d}_{DATASET_NAME}"
    if relabelled or not (folders.raw / name / "dataset.json").is_file():
        convert_dataset("generic", args.work / "source", dataset_id=DATASET_ID, name=DATASET_NAME, raw_dir=folders.raw,
                        channel_name="image", overwrite=True)  # fmt: skip
    preprocessed = folders.preprocessed / name
    if relabelled and (preprocessed / "done.txt").is_file():
        from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess

        _say("== preprocessing again with the same plans (new labels)")
        preprocess([DATASET_ID], plans_identifier=PLANS, configurations=("3d_fullres",),
                   num_processes=[args.threads], verbose=False)  # fmt: skip
    if not (preprocessed / "done.txt").is_file():
        _say("== planning and preprocessing")
        adapter.plan_and_preprocess(DATASET_ID, num_processes=args.threads,
                                    edit_plans=lambda p: small_plans(p, _schedule(1, args)))  # fmt: skip
        (preprocessed / "done.txt").write_text("complete\n")
    write_splits(preprocessed, groups)
    return groups


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, required=True, help="work folder (sources, nnU-Net folders, exports)")
    parser.add_argument("--phantoms", type=int, default=48, help="training phantoms (default 48)")
    parser.add_argument("--base-epochs", type=int, default=30, help="epochs of the phantom-only base (fold 4)")
    parser.add_argument("--finetune-epochs", type=int, default=30, help="epochs of every fine-tuned fold")
    parser.add_argument("--iterations", type=int, default=50, help="optimiser steps per epoch")
    parser.add_argument("--patch", type=int, default=48, help="cubic patch size in voxels (multiple of 8)")
    parser.add_argument("--spacing", type=float, default=2.0, help="isotropic working spacing in mm")
    parser.add_argument("--folds", default="0,1,2,3,all", help="fine-tuned folds to train, in this order")
    parser.add_argument("--extend-to", type=int, default=0, metavar="TOTAL",
                        help="train finished folds of --folds on to TOTAL epochs in all")  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--state", type=Path, help="saved training state to resume from (see --save-state)")
    parser.add_argument("--save-state", type=Path, help="only save the current checkpoints into this folder and stop")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    from spineinstanceseg.stage1.environment import resolve_folders
    from spineinstanceseg.stage1.training import QUICK_TRAINER

    torch.set_num_threads(max(1, args.threads))
    os.environ.setdefault("nnUNet_n_proc_DA", "1")
    folders = resolve_folders(args.work / "nnunet")
    folders.apply()
    model_folder = folders.results / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}" / f"{QUICK_TRAINER}__{PLANS}__3d_fullres"
    if args.save_state:
        save_state(model_folder, args.save_state)
        return 0
    if args.state:
        restore_state(args.state, model_folder)
    groups = prepare(args, folders)
    complete_model_folder(model_folder, folders.preprocessed / f"Dataset{DATASET_ID:03d}_{DATASET_NAME}")
    train(str(BASE_FOLD), args, model_folder, folders, start_from=None, epochs=args.base_epochs)
    base = model_folder / f"fold_{BASE_FOLD}" / "checkpoint_final.pth"
    export = args.work / "export"
    export.mkdir(exist_ok=True)
    export_fold(model_folder, str(BASE_FOLD), groups, export / f"fold_{BASE_FOLD}")
    for fold in args.folds.split(","):
        if args.extend_to:
            extend(fold, args, model_folder, folders)
        else:
            train(fold, args, model_folder, folders, start_from=base, epochs=args.finetune_epochs)
        export_fold(model_folder, fold, groups, export / f"fold_{fold}")
        link_loo(export, groups)
    return 0


if __name__ == "__main__":
    sys.exit(main())
