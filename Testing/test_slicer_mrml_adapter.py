"""The MRML adapter with slicer-core (MRML without the Slicer application).

Volume nodes <-> library volumes (oblique, anisotropic, under a parent transform), a result -> segmentation node
(names, colours, terminology, label values, reference geometry), centroid markups (within half a voxel of the
true centroids) and the confidence table.
"""

from __future__ import annotations

import numpy as np
import pytest
from outputs_cases import make_image, make_result, rotation

from spineinstanceseg.errors import InputError
from spineinstanceseg.volume import Volume

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

from spineinstanceseg.slicer.mrml_adapter import (  # noqa: E402
    CONFIDENCE_TAG,
    LABEL_VALUE_TAG,
    SegmentInfo,
    add_result_to_scene,
    segmentation_from_labels,
    vertebra_segment_ids,
)
from spineinstanceseg.slicer.volume_nodes import (  # noqa: E402
    RAS_FROM_LPS,
    ijk_to_ras_matrix,
    numpy_to_vtk_matrix,
    volume_from_node,
    volume_to_node,
)


def _tag(segment, name):
    import vtk

    value = vtk.reference("")
    return str(value) if segment.GetTag(name, value) else None


def _rigid_transform(scene, degrees=30.0, shift=(15.0, -40.0, 7.5)):
    matrix = np.eye(4)
    matrix[:3, :3] = rotation((0.2, 1.0, 0.3), degrees)
    matrix[:3, 3] = shift
    node = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "patient position")
    node.SetMatrixTransformToParent(numpy_to_vtk_matrix(matrix))
    return node, matrix


def test_volume_round_trip_oblique_anisotropic(oblique_image_volume):
    scene = slicer.vtkMRMLScene()
    node = volume_to_node(oblique_image_volume, scene, name="ct")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    back = volume_from_node(node)
    np.testing.assert_array_equal(back.array, oblique_image_volume.array)
    assert back.same_grid(oblique_image_volume), back.geometry_differences(oblique_image_volume)
    assert not back.is_label
    # Slicer's IJKToRAS is the library's index->LPS matrix with x and y negated.
    np.testing.assert_allclose(
        ijk_to_ras_matrix(node, world=False), RAS_FROM_LPS @ oblique_image_volume.affine, atol=1e-9
    )
    # Voxel (i, j, k) of the library array is voxel (i, j, k) of the VTK image.
    from vtk.util.numpy_support import vtk_to_numpy

    nx, ny, nz = node.GetImageData().GetDimensions()
    vtk_view = vtk_to_numpy(node.GetImageData().GetPointData().GetScalars()).reshape(nz, ny, nx)
    assert vtk_view[4, 3, 2] == oblique_image_volume.array[2, 3, 4]


def test_label_volume_round_trip(oblique_label_volume):
    scene = slicer.vtkMRMLScene()
    node = volume_to_node(oblique_label_volume, scene, name="labels")
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    back = volume_from_node(node)
    assert back.is_label and back.same_grid(oblique_label_volume)
    np.testing.assert_array_equal(back.array, oblique_label_volume.array)


def test_parent_transform_is_composed_into_world_geometry(oblique_image_volume):
    scene = slicer.vtkMRMLScene()
    transform, matrix = _rigid_transform(scene)
    node = volume_to_node(oblique_image_volume, scene, name="ct", parent_transform_id=transform.GetID())
    assert node.GetTransformNodeID() == transform.GetID()
    world = volume_from_node(node)  # default: world coordinates, transform applied
    assert world.same_grid(oblique_image_volume), world.geometry_differences(oblique_image_volume)
    local = volume_from_node(node, world=False)
    assert not local.same_grid(oblique_image_volume)
    # The local grid moved by the transform is the world grid.
    corner_local_ras = RAS_FROM_LPS @ np.array([*local.index_to_world([3, 5, 2]), 1.0])
    corner_world_ras = RAS_FROM_LPS @ np.array([*world.index_to_world([3, 5, 2]), 1.0])
    np.testing.assert_allclose(matrix @ corner_local_ras, corner_world_ras, atol=1e-6)


def test_sheared_parent_transform_is_refused_with_a_fix(oblique_image_volume):
    scene = slicer.vtkMRMLScene()
    node = volume_to_node(oblique_image_volume, scene, name="ct")
    shear = np.eye(4)
    shear[0, 1] = 0.4
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shear")
    transform.SetMatrixTransformToParent(numpy_to_vtk_matrix(shear))
    node.SetAndObserveTransformNodeID(transform.GetID())
    with pytest.raises(InputError, match="harden"):
        volume_from_node(node)
    assert volume_from_node(node, world=False).same_grid(oblique_image_volume)


@pytest.fixture(scope="module")
def scene_with_result():
    """Input volume under a rigid parent transform, and the result added to the scene."""
    result = make_result()
    scene = slicer.vtkMRMLScene()
    transform, _ = _rigid_transform(scene)
    volume_node = volume_to_node(make_image(result), scene, name="case", parent_transform_id=transform.GetID())
    nodes = add_result_to_scene(result, volume_node)
    return result, scene, volume_node, transform, nodes


def test_segments_named_coloured_coded_with_label_values(scene_with_result):
    result, _, volume_node, transform, nodes = scene_with_result
    seg_node = nodes.segmentation
    segmentation = seg_node.GetSegmentation()
    segments = [segmentation.GetNthSegment(i) for i in range(segmentation.GetNumberOfSegments())]
    names = [s.GetName() for s in segments]
    assert names == ["L3", "L4", "L5", "L3-L4 disc", "L4-L5 disc", "Spinal canal", "Sacrum"]
    values = {s.GetName(): int(_tag(s, LABEL_VALUE_TAG)) for s in segments}
    assert values["L3"] == 22 and values["L4"] == 23 and values["L5"] == 24 and values["Spinal canal"] == 200
    assert {s.GetName(): s.GetLabelValue() for s in segments} == values  # shared-layer values are the labels
    colors = [tuple(round(c, 3) for c in s.GetColor()) for s in segments]
    assert len(set(colors)) == len(colors), "every segment needs its own colour"
    for a, b in zip(colors[:3], colors[1:3], strict=False):  # neighbouring vertebrae clearly differ
        assert np.abs(np.subtract(a, b)).max() > 0.2
    term = _tag(segments[1], segments[1].GetTerminologyEntryTagName())
    assert "SCT^11994002^L4 vertebra" in term and "SCT^123037004^Anatomical Structure" in term
    assert "SCT^2748008" in _tag(segments[5], segments[5].GetTerminologyEntryTagName())
    assert float(_tag(segments[2], CONFIDENCE_TAG)) == pytest.approx(0.83)
    assert vertebra_segment_ids(seg_node) == ["L3", "L4", "L5"]
    assert _tag(segments[3], CONFIDENCE_TAG) is None
    # Reference geometry = the input volume; both nodes under its parent transform.
    role = seg_node.GetReferenceImageGeometryReferenceRole()
    assert seg_node.GetNodeReferenceID(role) == volume_node.GetID()
    assert seg_node.GetTransformNodeID() == transform.GetID()
    assert nodes.markups.GetTransformNodeID() == transform.GetID()


def test_markups_at_true_centroids_within_half_a_voxel(scene_with_result):
    result, _, volume_node, _, nodes = scene_with_result
    markups = nodes.markups
    assert markups.IsA("vtkMRMLMarkupsFiducialNode")
    world = volume_from_node(volume_node)  # the grid the result is on
    inst = np.asarray(result.instances.array)
    labels = [markups.GetNthControlPointLabel(i) for i in range(markups.GetNumberOfControlPoints())]
    assert labels == ["L3", "L4", "L5"]  # one per vertebra, none for discs/canal/sacrum
    for i, (name, code) in enumerate(zip(labels, (22, 23, 24), strict=True)):
        true_ijk = np.argwhere(inst == code).mean(axis=0)  # centroid of the voxels, not a bounding-box centre
        position_ras = np.array(markups.GetNthControlPointPositionWorld(i))
        position_ijk = world.world_to_index(RAS_FROM_LPS[:3, :3] @ position_ras)
        assert np.all(np.abs(position_ijk - true_ijk) < 0.5), (name, position_ijk, true_ijk)
        assert "confidence" in markups.GetNthControlPointDescription(i)


def test_confidence_table_lists_every_vertebra(scene_with_result):
    result, _, _, _, nodes = scene_with_result
    table = nodes.table.GetTable()
    assert table.GetNumberOfRows() == len(result.vertebrae)
    rows = {
        table.GetColumnByName("Segment").GetValue(r): table.GetColumnByName("Confidence").GetValue(r)
        for r in range(table.GetNumberOfRows())
    }
    assert rows == {v.name: pytest.approx(v.confidence, abs=1e-4) for v in result.vertebrae}


def test_plain_inputs_unknown_levels_and_an_empty_segment():
    """The adapter works without a pipeline result: a label volume plus SegmentInfo records."""
    array = np.zeros((12, 10, 20), np.uint8)
    array[2:8, 2:8, 12:18] = 1
    array[2:8, 2:8, 3:9] = 2
    labels = Volume(array, (1.5, 1.5, 3.0), (10.0, -5.0, 80.0), rotation((0, 0, 1), 90.0), is_label=True)
    infos = [
        SegmentInfo(1, "Vertebra 1", (0.9, 0.2, 0.2), confidence=0.8, centroid_lps=(0.0, 0.0, 0.0)),
        SegmentInfo(2, "Vertebra 2", (0.2, 0.9, 0.2), confidence=0.7),
        SegmentInfo(5, "Vertebra 3", (0.2, 0.2, 0.9), confidence=0.1),  # no voxels with value 5
    ]
    scene = slicer.vtkMRMLScene()
    node = segmentation_from_labels(scene, layers=[labels], segments=infos)
    segmentation = node.GetSegmentation()
    assert [segmentation.GetNthSegment(i).GetName() for i in range(3)] == ["Vertebra 1", "Vertebra 2", "Vertebra 3"]
    term = _tag(segmentation.GetNthSegment(0), segmentation.GetNthSegment(0).GetTerminologyEntryTagName())
    assert term is None or "vertebra" not in term.lower()  # no terminology given: no level is implied
    # Reusing the node replaces the segments instead of adding more.
    segmentation_from_labels(scene, layers=[labels], segments=infos[:2], node=node)
    assert node.GetSegmentation().GetNumberOfSegments() == 2


def test_labels_on_another_grid_are_refused(scene_with_result):
    result, scene, volume_node, _, _ = scene_with_result
    shifted = Volume(
        np.asarray(result.instances.array),
        result.instances.spacing,
        (0.0, 0.0, 0.0),
        result.instances.direction,
        is_label=True,
    )
    with pytest.raises(InputError, match="not on the grid"):
        segmentation_from_labels(
            scene, layers=[shifted], segments=[SegmentInfo(22, "L3", (1, 0, 0))], reference_volume_node=volume_node
        )
