"""Vertebra centroids as a Slicer markups point list (``.mrk.json``) and as a CSV table.

The ``.mrk.json`` follows Slicer's markups schema v1.0.3 with ``coordinateSystem: "LPS"`` (allowed by the schema,
and what Slicer itself writes), so positions are the library's LPS millimetres unchanged; Slicer converts to its
internal RAS on load. The CSV gives both LPS and RAS (RAS = LPS with x and y negated).
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

from ..atomic import atomic_path
from ..results import SegmentationResult, VertebraRecord

__all__ = ["MARKUPS_SCHEMA", "CSV_COLUMNS", "write_markups", "write_centroids_csv", "lps_to_ras"]

MARKUPS_SCHEMA = (
    "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/Schema/"
    "markups-schema-v1.0.3.json#"
)

CSV_COLUMNS = (
    "label",
    "name",
    "level_code",
    "x_lps_mm",
    "y_lps_mm",
    "z_lps_mm",
    "x_ras_mm",
    "y_ras_mm",
    "z_ras_mm",
    "confidence",
    "voxel_count",
    "volume_ml",
)


def lps_to_ras(point: tuple[float, float, float]) -> tuple[float, float, float]:
    """LPS mm -> RAS mm (the two systems differ by the sign of x and y)."""
    return (-float(point[0]), -float(point[1]), float(point[2]))


def _description(record: VertebraRecord) -> str:
    level = f"VerSe code {record.level_code}" if record.level_code is not None else "level not determined"
    return f"confidence {record.confidence:.3f}; {level}; volume {record.volume_ml:.2f} ml"


def write_markups(
    result: SegmentationResult,
    path: str | os.PathLike[str],
    *,
    name: str = "Vertebra centroids",
) -> Path:
    """Write one labelled control point per vertebra (at its centroid, LPS mm) as a Slicer ``.mrk.json``.

    Control point ``label`` is the vertebra name ("L5", "Vertebra 3"); ``description`` gives the confidence,
    level code and volume; ``id`` is the vertebra's label value in the instance map.

    Returns:
        The path written.
    """
    points = []
    for record in result.vertebrae:
        points.append(
            {
                "id": str(record.label),
                "label": record.name,
                "description": _description(record),
                "associatedNodeID": "",
                "position": [float(c) for c in record.centroid_lps],
                "selected": True,
                "locked": False,
                "visibility": True,
                "positionStatus": "defined",
            }
        )
    colour = [1.0, 0.85, 0.2]  # one colour for the list: points are told apart by their labels
    document = {
        "@schema": MARKUPS_SCHEMA,
        "markups": [
            {
                "type": "Fiducial",
                "name": name,
                "coordinateSystem": "LPS",
                "coordinateUnits": "mm",
                "locked": False,
                "fixedNumberOfControlPoints": False,
                "labelFormat": "%N-%d",
                "controlPoints": points,
                "measurements": [],
                "display": {
                    "visibility": True,
                    "opacity": 1.0,
                    "color": colour,
                    "selectedColor": colour,
                    "pointLabelsVisibility": True,
                    "textScale": 3.0,
                    "glyphType": "Sphere3D",
                    "glyphScale": 1.5,
                },
            }
        ],
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def write_centroids_csv(result: SegmentationResult, path: str | os.PathLike[str]) -> Path:
    """Write one row per vertebra (top to bottom) with the columns of :data:`CSV_COLUMNS`.

    ``level_code`` is empty when the level is unknown. Coordinates are mm, rounded to 0.001 mm.

    Returns:
        The path written.
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for record in result.vertebrae:
            lps = [float(c) for c in record.centroid_lps]
            ras = lps_to_ras(record.centroid_lps)
            writer.writerow(
                [
                    int(record.label),
                    record.name,
                    "" if record.level_code is None else int(record.level_code),
                    *(f"{c:.3f}" for c in lps),
                    *(f"{c:.3f}" for c in ras),
                    f"{record.confidence:.4f}",
                    int(record.voxel_count),
                    f"{record.volume_ml:.3f}",
                ]
            )
    return path
