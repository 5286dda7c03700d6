"""Evaluating predicted label maps against references: pairing files by case, scoring, writing CSV and JSON.

Files are paired by *case name*: the file name without its image extension and without a trailing
role suffix such as ``_seg``, ``_instances``, ``_seg-vert_msk`` or ``_pred`` (see :func:`case_key`). Folders are
searched one level deep, so a pipeline output folder ``OUT/<case>/<case>_instances.nii.gz`` pairs with
``REF/<case>.nii.gz``. Each map is read in its own label convention and converted to the internal one
(:mod:`spineinstanceseg.conventions`); metrics come from :mod:`spineinstanceseg.metrics`.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path, full_suffix
from .conventions import from_internal, to_internal
from .errors import InputError
from .io import is_volume_path, read_label_map
from .metrics import dice, evaluate_instances, spider_evaluate
from .progress import Progress
from .resample import resample_to_grid
from .semantic import SEMANTIC_NAMES
from .volume import GRID_JITTER_VOXELS, Volume, compare_grids

__all__ = ["ROLE_SUFFIXES", "case_key", "find_label_files", "pair_cases", "CaseResult", "evaluate_case",
           "evaluate_paths", "summarize", "write_outputs"]  # fmt: skip

log = logging.getLogger(__name__)

# Trailing parts of a file name that say what the file is, not which case it belongs to (longest first).
ROLE_SUFFIXES = (
    "_seg-vert_msk", "_seg-spine_msk", "_seg-subreg_msk", "_instances", "_instance", "_prediction", "_reference",
    "_semantic", "_labels", "_label", "_mask", "_msk", "_seg", "_pred", "_gt", "_ref",
)  # fmt: skip
# Files with these roles are not instance maps; they are skipped when an instance map of the same case exists.
_SECONDARY_ROLES = ("_semantic", "_seg-spine_msk", "_seg-subreg_msk")


def _split_role(path: str | os.PathLike[str]) -> tuple[str, str]:
    """``(case name, outermost role suffix)``; role suffixes are stripped repeatedly (``a_gt_seg`` -> ``a``)."""
    name = Path(path).name
    suffix = full_suffix(name)
    stem = name[: len(name) - len(suffix)] if suffix else name
    outer = ""
    stripped = True
    while stripped:
        stripped = False
        for role in ROLE_SUFFIXES:
            if stem.lower().endswith(role) and len(stem) > len(role):
                stem, outer, stripped = stem[: -len(role)], outer or role, True
                break
    return stem, outer


def case_key(path: str | os.PathLike[str]) -> str:
    """Case name of a label file: ``sub-verse004_seg-vert_msk.nii.gz`` -> ``sub-verse004``."""
    return _split_role(path)[0]


def find_label_files(path: str | os.PathLike[str]) -> dict[str, Path]:
    """Case name -> label file, for a single file or a folder (searched one level deep).

    Raises:
        InputError: missing path, a folder without label files, or two files claiming one case.
    """
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", fix="check the path", path=path)
    if path.is_file():
        return {case_key(path): path}
    candidates = sorted(p for p in path.iterdir() if p.is_file() and is_volume_path(p))
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        candidates += sorted(p for p in sub.iterdir() if p.is_file() and is_volume_path(p))
    groups: dict[str, list[Path]] = {}
    for p in candidates:
        if not p.name.startswith("."):
            groups.setdefault(case_key(p), []).append(p)
    out = {}
    for key, files in groups.items():
        primary = [p for p in files if _split_role(p)[1] not in _SECONDARY_ROLES] or files
        if len(primary) > 1:
            raise InputError(
                f"case '{key}' has several label files: {', '.join(str(p) for p in primary)}",
                fix="keep one label map per case in the folder (or pass the files one by one)",
                path=path,
            )
        out[key] = primary[0]
    if not out:
        raise InputError(
            "the folder holds no label files (.nii.gz, .nii, .nrrd, .mha, .mhd)", fix="check the folder", path=path
        )
    return out


Pairs = list[tuple[str, Path, Path]]


def pair_cases(pred: str | os.PathLike[str], ref: str | os.PathLike[str]) -> tuple[Pairs, list[Path], list[Path]]:
    """Pair prediction and reference files: ``(pairs, unpaired_predictions, unpaired_references)``.

    Two single files always pair (named after the reference).
    """
    if Path(pred).is_file() and Path(ref).is_file():
        return [(case_key(ref), Path(pred), Path(ref))], [], []
    preds, refs = find_label_files(pred), find_label_files(ref)
    pairs = [(key, preds[key], refs[key]) for key in sorted(set(preds) & set(refs))]
    return pairs, [preds[k] for k in sorted(set(preds) - set(refs))], [refs[k] for k in sorted(set(refs) - set(preds))]


@dataclass
class CaseResult:
    """Everything measured on one case: ``values`` (one CSV row) and per-vertebra ``rows``."""

    case: str
    values: dict[str, object]
    rows: list[dict[str, object]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    grid_note: str = ""  # how the prediction was put on the reference grid ("" when the grids are equal)


def _aligned(pred: Volume, ref: Volume, *, resample: bool, pred_name: str, ref_name: str) -> tuple[Volume, str]:
    """The prediction on the reference grid, and a note saying how it got there ("" when the grids are equal).

    Grids that differ by less than :data:`~spineinstanceseg.volume.GRID_JITTER_VOXELS` of a voxel everywhere are
    the same grid (float jitter between tools); larger differences need ``resample`` (nearest neighbour).
    """
    if pred.same_grid(ref):
        return pred, ""
    grids = compare_grids(pred, ref)
    if grids.within():
        note = (
            f"grid: the prediction's grid differs from the reference's by at most {grids.max_shift_mm:.3g} mm "
            f"({grids.max_shift_voxels:.3g} voxel: {grids.describe()}), below the tolerance of "
            f"{GRID_JITTER_VOXELS:.0%} of a voxel, so it was compared as the same grid"
        )
        log.info("%s: %s", pred_name, note)
        return ref.with_array(pred.array, is_label=pred.is_label), note
    if not resample:
        raise InputError(
            f"prediction {pred_name} and reference {ref_name} are on different grids: {grids.describe()}",
            fix="pass --resample to resample the prediction onto the reference grid (nearest neighbour); "
            f"differences below {GRID_JITTER_VOXELS:.0%} of a voxel are accepted without it",
        )
    note = f"grid: the prediction was resampled onto the reference grid (nearest neighbour): {grids.describe()}"
    log.info("%s: %s", pred_name, note)
    return resample_to_grid(pred, ref), note


def evaluate_case(
    pred: Volume,
    ref: Volume,
    *,
    case: str,
    pred_convention: str = "internal",
    ref_convention: str = "internal",
    resample: bool = False,
    spider: bool = False,
    iou_threshold: float = 0.5,
    pred_name: str = "prediction",
    ref_name: str = "reference",
    pred_lowest_level: str | None = None,
    ref_lowest_level: str | None = None,
) -> CaseResult:
    """Score one prediction against one reference (label maps in the given conventions).

    Columns of ``values``: counts, precision/recall/F1(=RQ)/SQ/PQ, mean instance Dice (missed = 0) and matched-only,
    mean ASSD/HD95 (mm, matched pairs), level identification rate, semantic Dice per class, and with ``spider``
    the official SPIDER numbers prefixed ``spider_``. ``*_lowest_level`` name the level of SPIDER label 1
    (SPIDER maps only), which makes their levels known.

    Raises:
        InputError: the grids differ by more than float jitter (the message names each field, both values and
            the difference in voxels) and ``resample`` is off.
    """
    start = time.perf_counter()
    pred, grid_note = _aligned(pred, ref, resample=resample, pred_name=pred_name, ref_name=ref_name)
    p = to_internal(pred, pred_convention, lowest_level=pred_lowest_level)
    r = to_internal(ref, ref_convention, lowest_level=ref_lowest_level)
    levels = p.levels_known and r.levels_known
    scores = evaluate_instances(p.instances, r.instances, iou_threshold=iou_threshold, levels_known=levels)
    values: dict[str, object] = {
        "case": case,
        "n_ref": scores.tp + scores.fn,
        "n_pred": scores.tp + scores.fp,
        **{k: v for k, v in scores.summary().items() if k not in ("iou_threshold", "rq")},
    }
    for value, name in SEMANTIC_NAMES.items():
        values[f"semantic_dice_{name}"] = dice(p.semantic.array == value, r.semantic.array == value)
    if spider:
        pred_sp = pred if pred_convention == "spider" else from_internal(
            p.instances, p.semantic, "spider", levels_known=p.levels_known)  # fmt: skip
        ref_sp = ref if ref_convention == "spider" else from_internal(
            r.instances, r.semantic, "spider", levels_known=r.levels_known)  # fmt: skip
        values.update({f"spider_{k}": v for k, v in spider_evaluate(pred_sp, ref_sp).summary().items()})
    values["levels_compared"] = levels
    values["seconds"] = round(time.perf_counter() - start, 3)
    rows = [{"case": case, **row.__dict__} for row in scores.rows]
    notes = ([grid_note] if grid_note else []) + [f"prediction: {n}" for n in p.notes]
    notes += [f"reference: {n}" for n in r.notes]
    values["notes"] = " | ".join(notes)
    return CaseResult(case, values, rows, notes, grid_note)


def evaluate_paths(
    pred: str | os.PathLike[str],
    ref: str | os.PathLike[str],
    *,
    pred_convention: str = "internal",
    ref_convention: str = "internal",
    resample: bool = False,
    spider: bool = False,
    iou_threshold: float = 0.5,
    pred_lowest_level: str | None = None,
    ref_lowest_level: str | None = None,
    progress: Progress | None = None,
) -> tuple[list[CaseResult], list[Path], list[Path]]:
    """Pair files (or two folders) and evaluate every pair: ``(results, unpaired_predictions, unpaired_refs)``.

    Raises:
        InputError: nothing pairs, unreadable files, or different grids without ``resample``.
    """
    progress = progress or Progress()
    pairs, lone_pred, lone_ref = pair_cases(pred, ref)
    if not pairs:
        raise InputError(
            f"no prediction file has the case name of a reference file (predictions: "
            f"{', '.join(p.name for p in lone_pred[:5])}; references: {', '.join(p.name for p in lone_ref[:5])})",
            fix="name the files after their case, e.g. case01.nii.gz and case01_seg.nii.gz",
        )
    results = []
    for index, (case, pred_path, ref_path) in enumerate(pairs):
        progress.update(index / len(pairs), f"{case}")
        results.append(
            evaluate_case(
                read_label_map(pred_path),
                read_label_map(ref_path),
                case=case,
                pred_convention=pred_convention,
                ref_convention=ref_convention,
                resample=resample,
                spider=spider,
                iou_threshold=iou_threshold,
                pred_name=str(pred_path),
                ref_name=str(ref_path),
                pred_lowest_level=pred_lowest_level,
                ref_lowest_level=ref_lowest_level,
            )
        )
        results[-1].values = {"case": case, "pred_file": str(pred_path), "ref_file": str(ref_path),
                              **{k: v for k, v in results[-1].values.items() if k != "case"}}  # fmt: skip
    progress.update(1.0, "done")
    return results, lone_pred, lone_ref


def summarize(results: list[CaseResult]) -> dict[str, dict[str, float]]:
    """Mean, sample std (ddof=1), and count of finite values of every numeric column over the cases."""
    out: dict[str, dict[str, float]] = {}
    if not results:
        return out
    for key, first in results[0].values.items():
        if isinstance(first, bool) or not isinstance(first, (int, float, np.floating, np.integer)):
            continue
        column = np.array([float(r.values.get(key, np.nan)) for r in results])
        finite = column[np.isfinite(column)]
        out[key] = {
            "mean": float(finite.mean()) if finite.size else float("nan"),
            "std": float(finite.std(ddof=1)) if finite.size > 1 else float("nan"),
            "n": int(finite.size),
        }
    return out


def _csv_value(value: object) -> object:
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return "nan" if np.isnan(value) else ("inf" if np.isinf(value) else f"{float(value):.6g}")
    return value


def _write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})


def _json_safe(value: object) -> object:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)  # JSON has no nan/inf: null
    return value


def write_outputs(
    results: list[CaseResult],
    out_dir: str | os.PathLike[str],
    *,
    unpaired_predictions: list[Path] = (),  # type: ignore[assignment]
    unpaired_references: list[Path] = (),  # type: ignore[assignment]
    settings: dict[str, object] | None = None,
) -> dict[str, Path]:
    """Write ``cases.csv``, ``vertebrae.csv`` and ``evaluation.json`` (each atomically) into ``out_dir``.

    In the JSON, ``nan`` and ``inf`` are written as ``null`` (the CSVs keep the words ``nan``/``inf``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"cases": out / "cases.csv", "vertebrae": out / "vertebrae.csv", "json": out / "evaluation.json"}
    _write_csv(paths["cases"], [r.values for r in results])
    _write_csv(paths["vertebrae"], [row for r in results for row in r.rows])
    document = {
        "settings": settings or {},
        "summary": summarize(results),
        "cases": [r.values for r in results],
        "vertebrae": [row for r in results for row in r.rows],
        "unpaired_predictions": [str(p) for p in unpaired_predictions],
        "unpaired_references": [str(p) for p in unpaired_references],
    }
    with atomic_path(paths["json"]) as tmp:
        tmp.write_text(json.dumps(_json_safe(document), indent=2), encoding="utf-8")
    return paths
