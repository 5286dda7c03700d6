"""JSON report of one case: what went in, which models and versions ran, what came out, how sure it is.

The report is the last file written for a case and carries ``"complete": true``; a batch treats its presence as
"this case is finished". Paths of the other outputs are stored relative to the report's folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..atomic import atomic_path
from ..results import SegmentationResult
from .markups import lps_to_ras

__all__ = ["REPORT_FORMAT", "collect_versions", "report_dict", "write_report"]

REPORT_FORMAT = "spineinstanceseg-report/1"
_PACKAGES = {"spineinstanceseg": "spineinstanceseg", "torch": "torch", "nnunetv2": "nnunetv2",
             "SimpleITK": "SimpleITK", "numpy": "numpy"}  # fmt: skip


def collect_versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide the result, plus Python (``None`` = not installed).

    Uses package metadata only, so nothing heavy (torch) is imported.
    """
    out: dict[str, str | None] = {}
    for key, dist in _PACKAGES.items():
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    if out["spineinstanceseg"] is None:
        out["spineinstanceseg"] = __version__
    out["python"] = platform.python_version()
    return out


def _jsonable(value: Any) -> Any:
    """Numpy scalars/arrays, paths and tuples -> plain JSON types (recursively)."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and not np.isfinite(value):
        return None  # JSON has no NaN/inf
    return value


def report_dict(
    result: SegmentationResult,
    *,
    inputs: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    outputs: Mapping[str, str] | None = None,
    case_name: str | None = None,
) -> dict[str, Any]:
    """The report as a JSON-ready dict (see :func:`write_report`)."""
    grid = result.instances
    vertebrae = []
    for record in result.vertebrae:
        vertebrae.append(
            {
                "label": int(record.label),
                "name": record.name,
                "level_code": None if record.level_code is None else int(record.level_code),
                "centroid_lps_mm": [round(float(c), 4) for c in record.centroid_lps],
                "centroid_ras_mm": [round(float(c), 4) for c in lps_to_ras(record.centroid_lps)],
                "confidence": round(float(record.confidence), 4),
                "voxel_count": int(record.voxel_count),
                "volume_ml": round(float(record.volume_ml), 4),
            }
        )
    report = {
        "format": REPORT_FORMAT,
        "complete": True,
        "case": case_name,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "inputs": dict(inputs or {}),
        "geometry": {
            "shape": list(grid.shape),
            "spacing_mm": list(grid.spacing),
            "origin_lps_mm": list(grid.origin),
            "direction": np.asarray(grid.direction).tolist(),
        },
        "stage1_source": result.stage1_source,
        "models": dict(result.models),
        "versions": dict(versions) if versions is not None else collect_versions(),
        "naming_rule": result.naming_rule,
        "levels_known": bool(result.vertebrae) and all(v.level_code is not None for v in result.vertebrae),
        "vertebra_count": len(result.vertebrae),
        "vertebrae": vertebrae,
        "timings_s": {k: round(float(v), 4) for k, v in result.timings.items()},
        "warnings": list(result.warnings),
        "outputs": dict(outputs or {}),
    }
    return _jsonable(report)


def write_report(
    result: SegmentationResult,
    path: str | os.PathLike[str],
    *,
    inputs: Mapping[str, Any] | None = None,
    versions: Mapping[str, Any] | None = None,
    outputs: Mapping[str, str | os.PathLike[str]] | None = None,
    case_name: str | None = None,
) -> Path:
    """Write the JSON report of a case (write it last: its presence marks the case as complete).

    Args:
        result: Segmentation result (models with checksums, timings, warnings, naming rule, vertebrae).
        path: Output ``.json``.
        inputs: What went in (input path, options, ...), stored as given.
        versions: Package versions; default :func:`collect_versions`.
        outputs: ``{kind: path}`` of the other files of the case; stored relative to the report's folder.
        case_name: Name of the case.

    Returns:
        The path written.
    """
    path = Path(path)
    relative: dict[str, str] = {}
    for kind, file in (outputs or {}).items():
        file = Path(file)
        try:
            relative[kind] = file.relative_to(path.parent).as_posix()
        except ValueError:
            relative[kind] = file.as_posix()
    document = report_dict(result, inputs=inputs, versions=versions, outputs=relative, case_name=case_name)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    return path
