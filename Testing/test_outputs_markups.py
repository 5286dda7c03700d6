"""Centroid exports: the Slicer markups points and the CSV rows equal the vertebra centroids."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from outputs_cases import make_result, oblique_direction

from spineinstanceseg.outputs import write_centroids_csv, write_markups


def test_markups_points_equal_centroids(tmp_path):
    result = make_result(direction=oblique_direction(left_handed=True))
    path = write_markups(result, tmp_path / "c.mrk.json")
    document = json.loads(path.read_text())
    assert document["@schema"].endswith("markups-schema-v1.0.3.json#")
    (markup,) = document["markups"]
    assert markup["type"] == "Fiducial"
    assert markup["coordinateSystem"] == "LPS" and markup["coordinateUnits"] == "mm"
    points = markup["controlPoints"]
    assert [p["label"] for p in points] == ["L3", "L4", "L5"]
    for point, record in zip(points, result.vertebrae, strict=True):
        np.testing.assert_allclose(point["position"], record.centroid_lps, atol=1e-9)
        assert f"confidence {record.confidence:.3f}" in point["description"]
        assert point["positionStatus"] == "defined"


def test_markups_load_in_slicer_as_ras(tmp_path):
    slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
    if not hasattr(slicer, "vtkMRMLMarkupsJsonStorageNode"):
        pytest.skip("the installed 'slicer' package is not slicer-core")
    result = make_result()
    path = write_markups(result, tmp_path / "c.mrk.json")
    scene = slicer.vtkMRMLScene()
    node = scene.AddNode(slicer.vtkMRMLMarkupsFiducialNode())
    storage = scene.AddNode(slicer.vtkMRMLMarkupsJsonStorageNode())
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    assert node.GetNumberOfControlPoints() == len(result.vertebrae)
    for index, record in enumerate(result.vertebrae):
        ras = [0.0, 0.0, 0.0]
        node.GetNthControlPointPosition(index, ras)
        x, y, z = record.centroid_lps
        np.testing.assert_allclose(ras, [-x, -y, z], atol=1e-6)  # Slicer works in RAS internally
        assert node.GetNthControlPointLabel(index) == record.name


@pytest.mark.parametrize("levels_known", [True, False])
def test_centroids_csv(tmp_path, levels_known):
    result = make_result(levels_known=levels_known)
    path = write_centroids_csv(result, tmp_path / "c.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(result.vertebrae)
    for row, record in zip(rows, result.vertebrae, strict=True):
        assert int(row["label"]) == record.label and row["name"] == record.name
        assert row["level_code"] == ("" if record.level_code is None else str(record.level_code))
        lps = [float(row[f"{a}_lps_mm"]) for a in "xyz"]
        ras = [float(row[f"{a}_ras_mm"]) for a in "xyz"]
        np.testing.assert_allclose(lps, record.centroid_lps, atol=1e-3)
        np.testing.assert_allclose(ras, [-lps[0], -lps[1], lps[2]], atol=1e-9)
        assert float(row["confidence"]) == pytest.approx(record.confidence, abs=1e-4)
        assert float(row["volume_ml"]) == pytest.approx(record.volume_ml, abs=1e-3)
        assert int(row["voxel_count"]) == record.voxel_count
