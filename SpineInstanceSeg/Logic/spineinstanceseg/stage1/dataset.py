"""Writing an nnU-Net v2 raw dataset (imagesTr, labelsTr, dataset.json) from a spine dataset, and checking it.

Layout written (``RAW`` = the nnU-Net raw folder, e.g. ``$nnUNet_raw``)::

    RAW/DatasetNNN_NAME/imagesTr/<case>_0000.nii.gz     image, float32
    RAW/DatasetNNN_NAME/labelsTr/<case>.nii.gz          semantic labels, uint8, on exactly the image grid
    RAW/DatasetNNN_NAME/dataset.json                    channel_names, labels, numTraining, file_ending

Labels: the internal classes the source provides (``vertebra``, ``disc``, ``canal``, ``sacrum``), renumbered
consecutively from 1 in that order because nnU-Net requires consecutive label values (a generic source with only
vertebrae and sacrum gets ``{"background": 0, "vertebra": 1, "sacrum": 2}``). Voxels a source does not label
(``semantic.UNLABELLED``: VerSe beyond its labelled span, posterior elements of a body-only mask) become nnU-Net's
``"ignore"`` label, the highest value, which training leaves out of the loss. Stage-1 models map the class names
back to internal classes (:mod:`.model_card`).

Orientation: every case is written in our canonical axis order (array axes closest to L, P, S; exact
permutation/flip, no interpolation; see :mod:`spineinstanceseg.orientation`). nnU-Net feeds raw arrays to its
network, so training and inference must agree on the axis order; models trained on these datasets get
``"input_orientation": "lps"`` in their model card and the adapter reorients inputs the same way.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_directory, atomic_path
from ..errors import InputError
from ..io import read_label_map, read_volume, write_volume
from ..orientation import to_canonical
from ..progress import Progress
from ..resample import resample_to_grid
from ..semantic import SEMANTIC_NAMES, UNLABELLED
from .dataset_sources import SourceCase, declared_classes, default_channel_name, find_cases, semantic_labels

__all__ = ["ConvertedDataset", "dataset_folder_name", "convert_dataset", "verify_raw_dataset", "DATASET_ORIENTATION"]

log = logging.getLogger(__name__)

DATASET_ORIENTATION = "lps"
FILE_ENDING = ".nii.gz"


@dataclass(frozen=True)
class ConvertedDataset:
    """What :func:`convert_dataset` wrote."""

    folder: Path
    cases: tuple[str, ...]
    labels: dict[str, int]  # dataset.json labels (name -> model value)
    warnings: tuple[str, ...] = ()


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """``DatasetNNN_NAME`` as nnU-Net expects it (3-digit id, name without spaces or slashes)."""
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"dataset id {dataset_id} is out of range", fix="use an id from 1 to 999 (e.g. 501)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name or ""):
        raise InputError(f"invalid dataset name {name!r}", fix="use letters, digits, '_' and '-' only")
    return f"Dataset{int(dataset_id):03d}_{name}"


def _check_id_free(raw: Path, dataset_id: int, folder_name: str, overwrite: bool) -> None:
    if not raw.is_dir():
        return
    clashes = [p for p in raw.glob(f"Dataset{int(dataset_id):03d}_*") if p.is_dir() and p.name != folder_name]
    if clashes:
        raise InputError(
            f"dataset id {dataset_id:03d} is already used by {clashes[0].name}",
            fix="choose another --id (nnU-Net finds datasets by id)",
            path=raw,
        )
    if (raw / folder_name).exists() and not overwrite:
        raise InputError(
            "the dataset folder already exists", fix="pass --overwrite or another --id", path=raw / folder_name
        )


def convert_dataset(
    kind: str,
    src: str | Path,
    *,
    dataset_id: int,
    name: str,
    raw_dir: str | Path,
    channel_name: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> ConvertedDataset:
    """Convert the ``kind`` dataset in ``src`` into ``raw_dir/DatasetNNN_NAME`` and verify what was written.

    Args:
        kind: "phantom", "spider", "verse" or "generic" (see :mod:`.dataset_sources`).
        channel_name: nnU-Net channel name; "CT" selects CT normalisation. Default: "CT" when every case is CT.
        overwrite: Replace an existing folder of the same name (the new one appears only once complete).

    Raises:
        InputError: bad source, clashing id, a label map that cannot be converted, or a failed verification.
    """
    progress = progress or Progress()
    raw = Path(raw_dir)
    folder_name = dataset_folder_name(dataset_id, name)
    _check_id_free(raw, dataset_id, folder_name, overwrite)
    cases = find_cases(kind, src)
    classes = declared_classes(kind)
    warnings: list[str] = []
    written: list[tuple[str, np.ndarray]] = []  # (case, internal classes present)
    with atomic_directory(raw / folder_name) as tmp:
        (tmp / "imagesTr").mkdir()
        (tmp / "labelsTr").mkdir()
        for index, case in enumerate(cases):
            progress.update(index / len(cases), f"converting {case.name}")
            present = _write_case(kind, case, classes, tmp, warnings)
            written.append((case.name, present))
        if kind == "generic":  # "as the source has them": only classes that occur somewhere
            seen = set().union(*(set(int(v) for v in p) for _, p in written)) - {0}
            classes = tuple(c for c in classes if c in seen)
        remap, labels_json = _model_labels(classes, any(UNLABELLED in p for _, p in written))
        if any(k != v for k, v in remap.items()):
            _renumber_labels(tmp, [case_name for case_name, _ in written], remap)
        if any(c.group for c in cases):
            _write_grouped_splits(tmp, [(c.name, c.group or c.name) for c in cases])
        dataset_json = {
            "channel_names": {"0": channel_name or default_channel_name(cases)},
            "labels": labels_json,
            "numTraining": len(written),
            "file_ending": FILE_ENDING,
            "name": name,
            "description": f"spine semantic segmentation converted by spineinstanceseg from a {kind} dataset ({src})",
            "spineinstanceseg": {"source": kind, "orientation": DATASET_ORIENTATION, "warnings": warnings},
        }
        with atomic_path(tmp / "dataset.json") as path:
            path.write_text(json.dumps(dataset_json, indent=2) + "\n", encoding="utf-8")
        progress.update(0.95, "verifying")
        verify_raw_dataset(tmp)
    progress.update(1.0, f"wrote {len(written)} cases")
    return ConvertedDataset(raw / folder_name, tuple(n for n, _ in written), labels_json, tuple(warnings))


def _write_case(kind: str, case: SourceCase, classes: tuple[int, ...], folder: Path, warnings: list[str]) -> np.ndarray:
    """Write one case's image and semantic labels (internal values, canonical orientation) into ``folder``;
    return the label values present.

    A label map on another grid is resampled onto the image's (and a warning appended to ``warnings``).

    Raises:
        InputError: the labels hold a class the ``kind`` of dataset does not declare.
    """
    image = read_volume(case.image)
    labels = semantic_labels(kind, case, image=image)
    if not labels.same_grid(image):
        differences = "; ".join(labels.geometry_differences(image))
        note = f"{case.name}: label map on another grid ({differences}), resampled onto the image grid"
        log.warning(note)
        warnings.append(note)
        labels = resample_to_grid(labels, image)
    present = np.unique(labels.array)
    outside = sorted(int(v) for v in present if v not in (0, UNLABELLED) and int(v) not in classes)
    if outside:
        raise InputError(
            f"case {case.name} holds classes {outside} that a {kind} dataset does not declare",
            fix="check --from (or convert the labels first)",
            path=case.label,
        )
    image, _ = to_canonical(image.as_image(np.float32))
    labels, _ = to_canonical(labels)
    write_volume(image, folder / "imagesTr" / f"{case.name}_0000{FILE_ENDING}")
    # written with internal values; renumbered once the classes of the dataset are known
    write_volume(labels.as_label(np.uint8), folder / "labelsTr" / f"{case.name}{FILE_ENDING}")
    return present


def _model_labels(classes: tuple[int, ...], has_unlabelled: bool) -> tuple[dict[int, int], dict[str, int]]:
    """Internal class -> the model's label value (1, 2, ... in the order of ``classes``), and dataset.json's
    ``labels``; unlabelled voxels become nnU-Net's "ignore", which must be the highest label value."""
    remap = {internal: model for model, internal in enumerate(classes, start=1)}
    labels_json = {"background": 0, **{SEMANTIC_NAMES[c]: remap[c] for c in classes}}
    if has_unlabelled:
        remap[UNLABELLED] = len(classes) + 1
        labels_json["ignore"] = remap[UNLABELLED]
    return remap, labels_json


def _renumber_labels(folder: Path, case_names: list[str], remap: dict[int, int]) -> None:
    """Rewrite the label maps of ``case_names`` in ``folder`` from internal values to the model's."""
    lut = np.zeros(256, dtype=np.uint8)
    for internal, model in remap.items():
        lut[internal] = model
    for case_name in case_names:
        path = folder / "labelsTr" / f"{case_name}{FILE_ENDING}"
        vol = read_label_map(path)
        write_volume(vol.with_array(lut[vol.array]), path)


def _write_grouped_splits(folder: Path, cases: list[tuple[str, str]], *, n_folds: int = 5) -> None:
    """``splits_final.json`` with all cases of one patient in the same fold (SPIDER's T1 and T2 of a patient).

    nnU-Net copies a ``splits_final.json`` found in the raw dataset folder into the preprocessed folder when it
    plans, and its trainer then uses these folds instead of its own case-wise random split (which would put one
    patient's T1 in training and T2 in validation).
    """
    groups = sorted({g for _, g in cases})
    if len(groups) < n_folds:
        return
    order = np.random.default_rng(12345).permutation(len(groups))
    fold_of = {groups[i]: rank % n_folds for rank, i in enumerate(order)}
    splits = [
        {
            "train": sorted(n for n, g in cases if fold_of[g] != k),
            "val": sorted(n for n, g in cases if fold_of[g] == k),
        }
        for k in range(n_folds)
    ]
    with atomic_path(folder / "splits_final.json") as path:
        path.write_text(json.dumps(splits, indent=1) + "\n", encoding="utf-8")


def verify_raw_dataset(folder: str | Path) -> int:
    """Read a raw nnU-Net dataset back and check it: every label on its image's grid, labels within the declared set.

    Returns:
        The number of cases checked.

    Raises:
        InputError: naming the first problem found.
    """
    folder = Path(folder)
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise InputError("dataset.json is missing", fix="convert the dataset again", path=folder)
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    for key in ("channel_names", "labels", "numTraining", "file_ending"):
        if key not in meta:
            raise InputError(f"dataset.json has no '{key}'", fix="convert the dataset again", path=meta_path)
    values = sorted(int(v) for v in meta["labels"].values())
    if values != list(range(len(values))):
        raise InputError(f"label values {values} are not consecutive from 0", fix="renumber the labels", path=meta_path)
    ending, channels = meta["file_ending"], len(meta["channel_names"])
    labels = sorted((folder / "labelsTr").glob(f"*{ending}"))
    if len(labels) != int(meta["numTraining"]):
        raise InputError(
            f"numTraining is {meta['numTraining']} but labelsTr holds {len(labels)} files",
            fix="convert the dataset again",
            path=folder,
        )
    allowed = set(values)
    for label_path in labels:
        case = label_path.name[: -len(ending)]
        label = read_label_map(label_path)
        for channel in range(channels):
            image_path = folder / "imagesTr" / f"{case}_{channel:04d}{ending}"
            if not image_path.is_file():
                raise InputError("the image of this case is missing", fix="convert the dataset again", path=image_path)
            image = read_volume(image_path)
            if not label.same_grid(image):
                raise InputError(
                    f"label and image grids differ ({'; '.join(label.geometry_differences(image))})",
                    fix="convert the dataset again",
                    path=label_path,
                )
            if not np.all(np.isfinite(image.array)):
                raise InputError(
                    "the image holds NaN or infinite values", fix="clean the source image", path=image_path
                )
        extra = sorted(set(int(v) for v in np.unique(label.array)) - allowed)
        if extra:
            raise InputError(f"labels {extra} are not declared in dataset.json", fix="convert again", path=label_path)
    return len(labels)
