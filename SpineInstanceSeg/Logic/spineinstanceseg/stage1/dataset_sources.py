"""Finding the (image, label map) pairs of a source dataset and turning each label map into semantic classes.

Sources (``kind``):

* ``phantom``: a folder written by :func:`spineinstanceseg.phantom.write_phantom_case`
  (``{name}_image.nii.gz`` + ``{name}_semantic.nii.gz``; modality from ``{name}_meta.json``).
* ``spider``: the SPIDER challenge layout ``images/*.mha`` + ``masks/*.mha`` with the same file names
  (``1_t1.mha``, ``1_t2.mha``, ``1_t2_SPACE.mha``); labels read with the ``spider`` convention
  (vertebrae 1-25 and partial vertebrae 101-125 -> vertebra, 100 -> canal, 201-225 -> disc).
* ``verse``: VerSe ``rawdata/**/*_ct.nii.gz`` with ``derivatives/**/*_seg-vert_msk.nii.gz`` of the same subject
  and session prefix; labels 1-25/28 -> vertebra, 26 -> sacrum (VerSe has no discs or canal).
* ``generic``: ``images/`` and ``labels/`` with the same case names (images may end in ``_0000``); labels are
  already semantic (1 vertebra, 2 disc, 3 canal, 4 sacrum, and 255 for voxels the source does not label, which
  training ignores).

VerSe masks label vertebrae (and sometimes the sacrum) only: their discs and canal are derived from the vertebrae's
geometry and what lies beyond the labelled span is marked unlabelled (:mod:`spineinstanceseg.conventions.derived`),
so a network does not learn that discs are background.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import full_suffix
from ..conventions import to_internal
from ..conventions.derived import derive_training_labels
from ..conventions.sacrum_seed import derive_sacrum_seed
from ..errors import InputError
from ..io import READABLE_SUFFIXES, read_label_map
from ..levels import SACRUM_CODE
from ..semantic import CANAL, DISC, SACRUM, UNLABELLED, VERTEBRA
from ..volume import Volume
from .sources import align_mask

__all__ = ["SourceCase", "SOURCE_KINDS", "find_cases", "declared_classes", "semantic_labels", "default_channel_name"]

log = logging.getLogger(__name__)

SOURCE_KINDS = ("phantom", "spider", "verse", "generic")

# Internal classes each source can hold ("as the source has them"); generic: whatever the files hold.
_DECLARED: dict[str, tuple[int, ...]] = {
    "phantom": (VERTEBRA, DISC, CANAL, SACRUM),
    "spider": (VERTEBRA, DISC, CANAL),
    "verse": (VERTEBRA, DISC, CANAL, SACRUM),
    "generic": (VERTEBRA, DISC, CANAL, SACRUM),
}


@dataclass(frozen=True)
class SourceCase:
    """One training case: an image file, its label file, and facts needed to convert it."""

    name: str
    image: Path
    label: Path
    modality: str  # "ct", "mri" or "unknown"
    group: str = ""  # patient id: cases of one patient stay in the same cross-validation fold ("" = own group)


def _stem(path: Path) -> str:
    suffix = full_suffix(path)
    return path.name[: len(path.name) - len(suffix)] if suffix else path.name


def _volumes(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and full_suffix(p).lower() in READABLE_SUFFIXES)


def _need_dir(folder: Path, what: str) -> None:
    if not folder.is_dir():
        raise InputError(f"the {what} folder does not exist", fix="check the source path and --from", path=folder)


def _phantom(src: Path) -> list[SourceCase]:
    cases = []
    for image in sorted(src.glob("*_image.nii.gz")):
        name = image.name[: -len("_image.nii.gz")]
        label = src / f"{name}_semantic.nii.gz"
        if not label.is_file():
            raise InputError("the phantom case has no semantic label map", fix="rewrite the phantom case", path=label)
        modality = "unknown"
        meta = src / f"{name}_meta.json"
        if meta.is_file():
            modality = str(json.loads(meta.read_text(encoding="utf-8")).get("modality", "unknown")).lower()
        cases.append(SourceCase(name, image, label, "ct" if modality == "ct" else "mri"))
    return cases


def _spider(src: Path) -> list[SourceCase]:
    _need_dir(src / "images", "SPIDER images")
    _need_dir(src / "masks", "SPIDER masks")
    cases = []
    for image in _volumes(src / "images"):
        label = src / "masks" / image.name
        if not label.is_file():
            log.warning("SPIDER image %s has no mask %s; skipped", image.name, label)
            continue
        patient = _stem(image).split("_")[0]  # "12_t1", "12_t2" -> patient 12
        cases.append(SourceCase(f"spider_{_stem(image)}", image, label, "mri", group=patient))
    return cases


def _verse(src: Path) -> list[SourceCase]:
    masks = {p.name[: -len("_seg-vert_msk.nii.gz")]: p for p in src.rglob("*_seg-vert_msk.nii.gz")}
    cases = []
    for image in sorted(src.rglob("*_ct.nii.gz")):
        prefix = image.name[: -len("_ct.nii.gz")]
        label = masks.get(prefix)
        if label is None:
            log.warning("VerSe image %s has no *_seg-vert_msk.nii.gz; skipped", image)
            continue
        cases.append(SourceCase(prefix, image, label, "ct", group=prefix.split("_")[0]))
    return cases


def _generic(src: Path) -> list[SourceCase]:
    _need_dir(src / "images", "images")
    _need_dir(src / "labels", "labels")
    labels = {_stem(p): p for p in _volumes(src / "labels")}
    cases = []
    for image in _volumes(src / "images"):
        name = _stem(image)
        name = name[:-5] if name.endswith("_0000") else name
        if name not in labels:
            raise InputError(
                f"image {image.name} has no label map in labels/", fix=f"add labels/{name}.nii.gz", path=image
            )
        cases.append(SourceCase(name, image, labels[name], "unknown"))
    return cases


_FINDERS: dict[str, Callable[[Path], list[SourceCase]]] = {
    "phantom": _phantom,
    "spider": _spider,
    "verse": _verse,
    "generic": _generic,
}


def find_cases(kind: str, src: str | Path) -> list[SourceCase]:
    """All cases of a source folder, sorted by name.

    Raises:
        InputError: unknown kind, missing folder, no cases, or duplicate case names.
    """
    if kind not in _FINDERS:
        raise InputError(f"unknown dataset source {kind!r}", fix=f"use one of {', '.join(SOURCE_KINDS)}")
    src = Path(src)
    _need_dir(src, "source")
    cases = _FINDERS[kind](src)
    if not cases:
        raise InputError(f"no {kind} cases found", fix=f"check the folder layout expected for --from {kind}", path=src)
    names = [c.name for c in cases]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InputError(f"duplicate case names {duplicates}", fix="give every case a unique file name", path=src)
    return sorted(cases, key=lambda c: c.name)


def declared_classes(kind: str) -> tuple[int, ...]:
    """The internal semantic classes a source of this kind can provide."""
    return _DECLARED[kind]


def semantic_labels(kind: str, case: SourceCase, *, image: Volume | None = None) -> Volume:
    """The case's label map converted to internal semantic classes (uint8; ``UNLABELLED`` where unknown).

    ``image``: the case's image, read by the caller; a VerSe CT on the label map's grid lets the derivation find
    S1 and the L5-S1 disc under a mask that ends at L5 (:mod:`spineinstanceseg.conventions.sacrum_seed`).
    """
    labels = read_label_map(case.label)
    if kind in ("phantom", "generic"):
        known = labels.with_array(np.where(np.asarray(labels.array) == UNLABELLED, 0, labels.array))
        align_mask(known, known, source=str(case.label))  # raises InputError on non-semantic values
        return labels.as_label(dtype="uint8")
    if kind == "verse":
        return verse_training_labels(labels, ct=image if case.modality == "ct" else None)
    return to_internal(labels, kind).semantic


def verse_training_labels(instances: Volume, *, ct: Volume | None = None) -> Volume:
    """A VerSe mask as training labels: vertebrae, derived discs and canal, the sacrum where labelled, and
    ``UNLABELLED`` where the mask cannot tell (see :mod:`spineinstanceseg.conventions.derived`).

    With ``ct`` (the scan in HU, on the mask's grid) and a mask that ends at L5 or L6, the S1 bone and the L5-S1
    disc below it are labelled where the image shows them (:mod:`spineinstanceseg.conventions.sacrum_seed`); the
    rest below the mask stays ``UNLABELLED``.
    """
    derived = derive_training_labels(instances)
    semantic = np.array(derived.semantic.array, dtype=np.uint8)
    semantic[derived.unknown] = UNLABELLED
    semantic[np.asarray(instances.array) == SACRUM_CODE] = SACRUM
    if ct is not None and ct.same_grid(instances):
        seed = derive_sacrum_seed(ct, instances)
        semantic[seed.disc & np.isin(semantic, (0, UNLABELLED))] = DISC
        semantic[seed.sacrum] = SACRUM
    elif ct is not None:
        log.warning("the CT is not on the grid of its VerSe mask: no sacrum derived below the mask")
    return instances.with_array(semantic, is_label=True)


def default_channel_name(cases: list[SourceCase]) -> str:
    """nnU-Net channel name: "CT" (HU-based normalisation) only when every case is CT, else z-score ("image")."""
    return "CT" if cases and all(c.modality == "ct" for c in cases) else "image"
