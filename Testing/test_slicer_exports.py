"""Exports from a segmentation node, checked on the files (slicer-core, no Slicer application)."""

from __future__ import annotations

import numpy as np
import pytest
import slicerio
from outputs_cases import make_image, make_result, rotation

from spineinstanceseg.io import read_label_map

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

from spineinstanceseg.slicer.exports import (  # noqa: E402
    export_labelmap_nrrd,
    export_seg_nrrd,
    export_stl,
    surface_is_closed,
)
from spineinstanceseg.slicer.mrml_adapter import add_result_to_scene  # noqa: E402
from spineinstanceseg.slicer.volume_nodes import numpy_to_vtk_matrix, volume_from_node, volume_to_node  # noqa: E402

NAMES = ["L3", "L4", "L5", "L3-L4 disc", "L4-L5 disc", "Spinal canal", "Sacrum"]


@pytest.fixture(scope="module")
def case():
    result = make_result()
    scene = slicer.vtkMRMLScene()
    matrix = np.eye(4)
    matrix[:3, :3] = rotation((1.0, 0.0, 0.2), 25.0)
    matrix[:3, 3] = (5.0, 12.0, -30.0)
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "T")
    transform.SetMatrixTransformToParent(numpy_to_vtk_matrix(matrix))
    volume_node = volume_to_node(make_image(result), scene, name="case", parent_transform_id=transform.GetID())
    nodes = add_result_to_scene(result, volume_node)
    yield result, volume_node, nodes.segmentation
    del scene  # the scene must outlive the tests: nodes lose their scene when it is collected


def test_stl_per_segment_non_empty_and_closed(case, tmp_path):
    result, _, seg_node = case
    files = export_stl(seg_node, tmp_path / "stl")
    assert sorted(files) == sorted(NAMES)
    on_disk = sorted(p.name for p in (tmp_path / "stl").iterdir())
    assert on_disk == sorted(f"{n}.stl" for n in NAMES)  # nothing else left behind (no partial folder)
    for name, path in files.items():
        cells, closed = surface_is_closed(path)
        assert cells > 20 and closed, (name, cells, closed)
    # The L4 surface lies where the L4 voxels are in world LPS (Slicer applies the parent transform).
    import vtk

    reader = vtk.vtkSTLReader()
    reader.SetFileName(str(files["L4"]))
    reader.Update()
    bounds = np.array(reader.GetOutput().GetBounds()).reshape(3, 2)
    world = volume_from_node(case[1], world=True)
    voxels_lps = world.index_to_world(np.argwhere(np.asarray(result.instances.array) == 23))
    assert np.all(np.abs(bounds[:, 0] - voxels_lps.min(0)) < 2.5)
    assert np.all(np.abs(bounds[:, 1] - voxels_lps.max(0)) < 2.5)


def test_labelmap_nrrd_has_the_input_geometry_and_label_values(case, tmp_path):
    result, volume_node, seg_node = case
    path = export_labelmap_nrrd(seg_node, tmp_path / "labels.nrrd", reference_volume_node=volume_node)
    labels = read_label_map(path)
    reference = volume_from_node(volume_node, world=False)  # what the input volume's own file holds
    assert labels.same_grid(reference), labels.geometry_differences(reference)
    inst = np.asarray(result.instances.array)
    for code in (22, 23, 24):
        np.testing.assert_array_equal(np.asarray(labels.array) == code, inst == code)
    assert set(np.unique(labels.array)) == {0, 22, 23, 24, 26, 122, 123, 200}
    assert not list(tmp_path.glob(".*partial*"))


def test_seg_nrrd_reads_back_with_slicerio(case, tmp_path):
    result, volume_node, seg_node = case
    path = export_seg_nrrd(seg_node, tmp_path / "case.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    segments = {s["name"]: s for s in seg["segments"]}
    assert list(segments) == NAMES
    assert {n: segments[n]["labelValue"] for n in ("L3", "L4", "L5", "Spinal canal")} == {
        "L3": 22,
        "L4": 23,
        "L5": 24,
        "Spinal canal": 200,
    }
    assert segments["L5"]["terminology"]["type"] == ["SCT", "49668003", "L5 vertebra"]
    # Voxels: L4 of the file, placed by the file's own geometry, is L4 of the result.
    local = volume_from_node(volume_node, world=False)
    mask = slicerio.segment_mask(seg, "L4")
    assert mask.shape == local.shape  # the input's own voxel grid, not a resampled one
    ijk_to_lps = np.asarray(seg["ijkToLPS"])
    file_points = np.argwhere(mask) @ ijk_to_lps[:3, :3].T + ijk_to_lps[:3, 3]
    expected = local.index_to_world(np.argwhere(np.asarray(result.instances.array) == 23))
    assert len(file_points) == len(expected)
    np.testing.assert_allclose(np.sort(file_points, axis=0), np.sort(expected, axis=0), atol=1e-3)
