"""The .seg.nrrd writer: Slicer/slicerio read back the same segments, labels, codes and the input's geometry."""

from __future__ import annotations

import numpy as np
import pytest
import slicerio
from outputs_cases import make_result, oblique_direction

from spineinstanceseg.io import read_volume
from spineinstanceseg.outputs import write_seg_nrrd
from spineinstanceseg.semantic import CANAL, DISC, SACRUM

DIRECTIONS = {
    "oblique": oblique_direction(),
    "oblique-left-handed": oblique_direction(left_handed=True),
    "axis-aligned-RAS": np.diag([-1.0, -1.0, 1.0]),
}


def _by_name(seg: dict) -> dict[str, dict]:
    return {s["name"]: s for s in seg["segments"]}


def test_segments_read_back_with_slicerio(tmp_path):
    result = make_result()
    path = write_seg_nrrd(result, tmp_path / "case.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    names = [s["name"] for s in seg["segments"]]
    assert names == ["L3", "L4", "L5", "L3-L4 disc", "L4-L5 disc", "Spinal canal", "Sacrum"]
    segments = _by_name(seg)
    inst = np.asarray(result.instances.array)
    sem = np.asarray(result.semantic.array)
    for record in result.vertebrae:
        assert segments[record.name]["labelValue"] == record.label
        np.testing.assert_array_equal(slicerio.segment_mask(seg, record.name), inst == record.label)
        idx = np.argwhere(inst == record.label)
        box = np.stack([idx.min(axis=0), idx.max(axis=0)], axis=1).ravel().tolist()
        assert segments[record.name]["extent"] == box  # i0 i1 j0 j1 k0 k1, inclusive
    discs = slicerio.segment_mask(seg, "L3-L4 disc") | slicerio.segment_mask(seg, "L4-L5 disc")
    np.testing.assert_array_equal(discs, sem == DISC)
    # The upper disc is the one between L3 and L4: it lies above (larger world z than) the L4-L5 disc.
    z = {name: result.instances.index_to_world(np.argwhere(slicerio.segment_mask(seg, name)).mean(0))[2]
         for name in ("L3-L4 disc", "L4-L5 disc")}  # fmt: skip
    assert z["L3-L4 disc"] > z["L4-L5 disc"]
    np.testing.assert_array_equal(slicerio.segment_mask(seg, "Spinal canal"), sem == CANAL)
    np.testing.assert_array_equal(slicerio.segment_mask(seg, "Sacrum"), sem == SACRUM)
    values = [s["labelValue"] for s in seg["segments"]]
    assert len(set(values)) == len(values)
    colours = [tuple(s["color"]) for s in seg["segments"][:3]]
    assert len(set(colours)) == 3


@pytest.mark.parametrize("kind", list(DIRECTIONS))
def test_geometry_equals_input(tmp_path, kind):
    result = make_result(direction=DIRECTIONS[kind])
    path = write_seg_nrrd(result, tmp_path / "case.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    np.testing.assert_allclose(seg["ijkToLPS"], result.instances.affine, atol=1e-9)
    assert seg["voxels"].shape == result.instances.shape
    back = read_volume(path, is_label=True)  # ITK's NRRD reader agrees
    assert back.same_grid(result.instances, tol=1e-9), back.geometry_differences(result.instances)


def test_terminology_codes(tmp_path):
    path = write_seg_nrrd(make_result(), tmp_path / "known.seg.nrrd")
    segments = _by_name(slicerio.read_segmentation(str(path), skip_voxels=True))
    assert segments["L4"]["terminology"]["type"] == ["SCT", "11994002", "L4 vertebra"]
    assert segments["L4"]["terminology"]["category"] == ["SCT", "123037004", "Anatomical Structure"]
    assert segments["L4-L5 disc"]["terminology"]["type"] == ["SCT", "84020006", "L4/L5 disc"]
    assert segments["Sacrum"]["terminology"]["type"][1] == "54735007"
    assert float(segments["L5"]["tags"]["SpineInstanceSeg.confidence"]) == pytest.approx(0.83)

    unknown = write_seg_nrrd(make_result(levels_known=False), tmp_path / "unknown.seg.nrrd")
    segments = _by_name(slicerio.read_segmentation(str(unknown), skip_voxels=True))
    assert list(segments)[:3] == ["Vertebra 1", "Vertebra 2", "Vertebra 3"]
    # No level is implied when it was not determined: generic bone / generic disc codes.
    assert segments["Vertebra 2"]["terminology"]["type"][1] == "272673000"
    assert segments["Vertebra 1-Vertebra 2 disc"]["terminology"]["type"][1] == "360499006"


def test_without_semantic_only_vertebrae(tmp_path):
    path = write_seg_nrrd(make_result(), tmp_path / "v.seg.nrrd", include_semantic=False)
    seg = slicerio.read_segmentation(str(path))
    assert [s["name"] for s in seg["segments"]] == ["L3", "L4", "L5"]
    assert set(np.unique(seg["voxels"])) == {0, 22, 23, 24}


def test_overlapping_semantic_segments_go_to_a_second_layer(tmp_path):
    result = make_result(overlap=True)  # one voxel is vertebra L4 in stage 2 and disc in stage 1
    path = write_seg_nrrd(result, tmp_path / "o.seg.nrrd")
    seg = slicerio.read_segmentation(str(path))
    assert seg["voxels"].shape == (2, *result.instances.shape)
    segments = _by_name(seg)
    assert segments["L4"]["layer"] == 0 and segments["L3-L4 disc"]["layer"] == 1
    np.testing.assert_array_equal(slicerio.segment_mask(seg, "L4"), np.asarray(result.instances.array) == 23)
    discs = slicerio.segment_mask(seg, "L3-L4 disc") | slicerio.segment_mask(seg, "L4-L5 disc")
    np.testing.assert_array_equal(discs, np.asarray(result.semantic.array) == DISC)
    np.testing.assert_allclose(seg["ijkToLPS"], result.instances.affine, atol=1e-9)


def test_opens_in_slicer_segmentation_storage_node(tmp_path):
    slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
    if not hasattr(slicer, "vtkMRMLSegmentationStorageNode"):
        pytest.skip("the installed 'slicer' package is not slicer-core")
    result = make_result()
    path = write_seg_nrrd(result, tmp_path / "case.seg.nrrd")
    scene = slicer.vtkMRMLScene()
    node = scene.AddNode(slicer.vtkMRMLSegmentationNode())
    storage = scene.AddNode(slicer.vtkMRMLSegmentationStorageNode())
    storage.SetFileName(str(path))
    assert storage.ReadData(node)
    segmentation = node.GetSegmentation()
    got = {}
    for index in range(segmentation.GetNumberOfSegments()):
        segment = segmentation.GetNthSegment(index)
        got[segment.GetName()] = segment.GetLabelValue()
    assert got == {"L3": 22, "L4": 23, "L5": 24, "L3-L4 disc": 122, "L4-L5 disc": 123, "Spinal canal": 200,
                   "Sacrum": 26}  # fmt: skip
