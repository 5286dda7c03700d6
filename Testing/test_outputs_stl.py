"""STL surfaces: one closed, outward-facing LPS surface per vertebra, placed exactly on oblique grids."""

from __future__ import annotations

import numpy as np
import pytest
from outputs_cases import make_result, oblique_direction

from spineinstanceseg.outputs import write_stl

CASES = {
    "oblique": oblique_direction(),
    "oblique-left-handed": oblique_direction(left_handed=True),
}


def read_binary_stl(path) -> tuple[str, np.ndarray]:
    """A binary STL as ``(header text, triangles (F, 3, 3) float32)``, read independently of the writer."""
    raw = path.read_bytes()
    record = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])
    count = int(np.frombuffer(raw[80:84], dtype="<u4")[0])
    assert len(raw) == 84 + count * record.itemsize, "the file's size does not match its triangle count"
    return raw[:80].decode("ascii").rstrip(), np.frombuffer(raw[84:], dtype=record)["vertices"]


def _edge_use_counts(triangles: np.ndarray) -> np.ndarray:
    _, inverse = np.unique(triangles.reshape(-1, 3), axis=0, return_inverse=True)
    faces = inverse.reshape(-1, 3)
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def _signed_volume_ml(triangles: np.ndarray) -> float:
    a, b, c = (triangles[:, i].astype(np.float64) for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0 / 1000.0)


@pytest.mark.parametrize("smooth", [0.0, 1.0])
@pytest.mark.parametrize("kind", list(CASES))
def test_one_closed_surface_per_vertebra(tmp_path, kind, smooth):
    result = make_result(direction=CASES[kind])
    paths = write_stl(result, tmp_path / "stl", smooth=smooth)
    assert list(paths) == ["L3", "L4", "L5"]
    inst = np.asarray(result.instances.array)
    for record in result.vertebrae:
        header, triangles = read_binary_stl(paths[record.name])
        assert header.startswith("SPACE=LPS")  # the hint Slicer reads to interpret the coordinates
        assert len(triangles) > 100
        counts = _edge_use_counts(triangles)
        assert np.all(counts == 2), f"{record.name}: edges used {sorted(set(counts.tolist()))} times"
        volume = _signed_volume_ml(triangles)
        assert volume > 0  # outward normals
        assert volume == pytest.approx(record.volume_ml, rel=0.15)
        # Every vertex lies inside the vertebra's voxel box (voxel faces = +-0.5 voxel), in the grid's own frame.
        idx = np.argwhere(inst == record.label)
        lo, hi = idx.min(axis=0) - 0.5 - 1e-3, idx.max(axis=0) + 0.5 + 1e-3
        vertex_ijk = result.instances.world_to_index(triangles.reshape(-1, 3).astype(np.float64))
        assert np.all(vertex_ijk >= lo) and np.all(vertex_ijk <= hi)
        # ... and the surface surrounds the centroid.
        centre = np.asarray(record.centroid_lps)
        assert np.linalg.norm(triangles.reshape(-1, 3).mean(axis=0) - centre) < 2.0


def test_slicer_reads_the_stl_as_lps(tmp_path):
    slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
    if not hasattr(slicer, "vtkMRMLModelStorageNode"):
        pytest.skip("the installed 'slicer' package is not slicer-core")
    from vtk.util.numpy_support import vtk_to_numpy

    result = make_result()
    paths = write_stl(result, tmp_path / "stl", smooth=0.0)
    scene = slicer.vtkMRMLScene()
    node = scene.AddNode(slicer.vtkMRMLModelNode())
    storage = scene.AddNode(slicer.vtkMRMLModelStorageNode())
    storage.SetFileName(str(paths["L4"]))
    assert storage.ReadData(node)
    ras = vtk_to_numpy(node.GetPolyData().GetPoints().GetData())
    x, y, z = result.vertebrae[1].centroid_lps
    np.testing.assert_allclose(ras.mean(axis=0), [-x, -y, z], atol=2.0)
