"""A segmentation node as the stage-1 mask: segments are read by terminology and name, never by their position.

The TotalSegmentator cases build the segmentation node exactly the way SlicerTotalSegmentator's
``readSegmentation`` does (lassoan/SlicerTotalSegmentator, TotalSegmentator.py): a label map file read by the
segmentation storage node through a colour table named after TotalSegmentator's classes (segment ID = class name,
e.g. ``vertebrae_L3``), then ``setTerminology``: the SNOMED-CT terminology entry from its
``totalsegmentator_snomed_mapping.csv`` as the segment's terminology tag and, with "use standard segment names"
(its default), the terminology's name ("L3 vertebra") as the segment name. The semantic mask made from the node
must put vertebra, disc, canal and sacrum where the ground truth has them, with the vertebrae's level codes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from outputs_cases import make_image, make_result

from spineinstanceseg.conventions.segment_names import NOT_SPINE, classify_segment
from spineinstanceseg.errors import InputError
from spineinstanceseg.pipeline.options import SegmentOptions
from spineinstanceseg.semantic import CANAL, DISC, SACRUM, VERTEBRA

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

from spineinstanceseg.slicer.job import SegmentJob  # noqa: E402
from spineinstanceseg.slicer.segment_mask import mask_from_segmentation  # noqa: E402
from spineinstanceseg.slicer.volume_nodes import volume_to_node  # noqa: E402

# From SlicerTotalSegmentator's totalsegmentator_snomed_mapping.csv: class name -> (SNOMED-CT code, meaning).
SNOMED = {
    "vertebrae_L3": ("36470004", "L3 vertebra"),
    "vertebrae_L4": ("11994002", "L4 vertebra"),
    "vertebrae_L5": ("49668003", "L5 vertebra"),
    "vertebrae_S1": ("65985001", "S1 vertebra"),
    "sacrum": ("54735007", "Sacrum"),
    "spinal_cord": ("2748008", "Spinal cord"),
    "vertebrae": ("51282000", "Vertebra"),
    "intervertebral_discs": ("360499006", "Intervertebral disc"),
    "liver": ("10200004", "Liver"),
    "auditory_canal_left": ("71471005", "Left external auditory canal"),
}
# TotalSegmentator class maps (totalsegmentator/map_to_binary.py), the classes used here.
TOTAL = {5: "liver", 25: "sacrum", 27: "vertebrae_L5", 28: "vertebrae_L4", 29: "vertebrae_L3", 79: "spinal_cord"}
TOTAL_MR = {18: "sacrum", 19: "vertebrae", 20: "intervertebral_discs", 21: "spinal_cord"}


def _terminology(class_name: str) -> str:
    """The entry SlicerTotalSegmentator builds for a class (category Anatomical Structure, DICOM master list)."""
    code, meaning = SNOMED[class_name]
    return (
        "Segmentation category and type - DICOM master list~SCT^123037004^Anatomical Structure"
        f"~SCT^{code}^{meaning}~^^~Anatomic codes - DICOM master list~^^~^^|"
    )


def _total_labels(result, class_map: dict[int, str]) -> np.ndarray:
    """The ground truth of ``make_result()`` in TotalSegmentator's values (plus a liver blob away from the spine)."""
    instances, semantic = np.asarray(result.instances.array), np.asarray(result.semantic.array)
    values = {name: value for value, name in class_map.items()}
    labels = np.zeros(instances.shape, np.uint8)
    if "vertebrae" in values:
        labels[semantic == VERTEBRA] = values["vertebrae"]
        labels[semantic == DISC] = values["intervertebral_discs"]
    else:
        for code in (22, 23, 24):  # L3-L5; TotalSegmentator total: value = 51 - VerSe code
            labels[instances == code] = values[f"vertebrae_L{code - 19}"]
    labels[semantic == SACRUM] = values["sacrum"]
    labels[semantic == CANAL] = values["spinal_cord"]
    if "liver" in values:
        labels[0:4, 0:4, 30:40] = values["liver"]
    return labels


def totalsegmentator_segmentation(scene, result, tmp_path: Path, class_map: dict[int, str], *, standard_names=True):
    """A segmentation node as SlicerTotalSegmentator's readSegmentation + setTerminology make it."""
    from spineinstanceseg.io import write_volume

    labels = result.instances.with_array(_total_labels(result, class_map), is_label=True)
    path = write_volume(labels, tmp_path / "totalseg.nii.gz")
    colors = slicer.vtkMRMLColorTableNode()
    colors.SetTypeToUser()
    colors.SetNumberOfColors(max(class_map) + 1)
    for value, name in class_map.items():
        colors.SetColor(value, 0.5, 0.4, 0.3, 1.0)
        colors.SetColorName(value, name)
    scene.AddNode(colors)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TotalSegmentator")
    node.SetLabelmapConversionColorTableNodeID(colors.GetID())
    node.AddDefaultStorageNode()
    node.GetStorageNode().SetFileName(str(path))
    assert node.GetStorageNode().ReadData(node)
    scene.RemoveNode(colors)
    for name in class_map.values():
        segment = node.GetSegmentation().GetSegment(name)  # segment ID = class name
        if segment is None:
            continue
        segment.SetTag(segment.GetTerminologyEntryTagName(), _terminology(name))
        if standard_names:
            segment.SetName(SNOMED[name][1])
    return node


@pytest.fixture
def case():
    result = make_result()
    scene = slicer.vtkMRMLScene()
    volume = volume_to_node(make_image(result), scene, name="ct")
    return scene, volume, result


def _expected_semantic(result, *, discs: bool) -> np.ndarray:
    semantic = np.asarray(result.semantic.array).copy()
    if not discs:
        semantic[semantic == DISC] = 0
    return semantic


@pytest.mark.parametrize("standard_names", [True, False])
def test_totalsegmentator_ct_total_segmentation(case, tmp_path, standard_names):
    scene, volume, result = case
    node = totalsegmentator_segmentation(scene, result, tmp_path, TOTAL, standard_names=standard_names)
    mask = mask_from_segmentation(node, reference_volume_node=volume)
    np.testing.assert_array_equal(mask.semantic.array, _expected_semantic(result, discs=False))
    truth = np.asarray(result.instances.array)
    np.testing.assert_array_equal(mask.levels.array, np.where(np.isin(truth, (22, 23, 24)), truth, 0))
    assert mask.levels_known and mask.semantic.same_grid(result.instances)
    assert [s.segment_id for s in mask.ignored] == ["liver"]
    assert all(s.reason.startswith("terminology") for s in mask.segments)


def test_totalsegmentator_mr_total_mr_segmentation(case, tmp_path):
    """total_mr: one class for all vertebrae, the discs, the cord and the sacrum."""
    scene, volume, result = case
    node = totalsegmentator_segmentation(scene, result, tmp_path, TOTAL_MR)
    mask = mask_from_segmentation(node, reference_volume_node=volume)
    np.testing.assert_array_equal(mask.semantic.array, _expected_semantic(result, discs=True))
    assert not mask.levels_known and not np.any(mask.levels.array)


def test_job_gives_the_child_the_mapped_mask(case, tmp_path):
    """Before, the segments' positions 1..N became label values: vertebrae_L5 (2nd) was read as a disc, the
    cord (5th) as nothing known. Now the child gets the right semantic mask and the log says how it was read."""
    scene, volume, result = case
    node = totalsegmentator_segmentation(scene, result, tmp_path, TOTAL)
    captured, logs = {}, []

    def factory(input_path, out_dir, options, *, case_name):
        from spineinstanceseg.io import read_label_map

        captured["mask"] = read_label_map(options.mask)
        captured["convention"] = options.mask_convention
        return [sys.executable, "-c", "pass"]

    job = SegmentJob(
        volume,
        SegmentOptions(mask_convention="totalseg_total"),  # what a user may have picked: not needed any more
        mask_node=node,
        on_log=logs.append,
        argv_factory=factory,
    )
    job.start()
    job.wait(timeout=60)
    assert captured["convention"] == "semantic"
    np.testing.assert_array_equal(captured["mask"].array, _expected_semantic(result, discs=False))
    assert any("'L3 vertebra' -> vertebra L3 (terminology 'L3 vertebra')" in line for line in logs), logs
    assert any("'Liver' ignored" in line for line in logs), logs


def test_unidentifiable_segment_is_refused_by_name(case, tmp_path):
    scene, volume, result = case
    node = totalsegmentator_segmentation(scene, result, tmp_path, TOTAL)
    drawn = slicer.vtkSegment()  # e.g. painted in the Segment Editor: default name, no terminology
    drawn.DeepCopy(node.GetSegmentation().GetSegment("spinal_cord"))
    drawn.SetName("Segment_1")
    drawn.RemoveTag(drawn.GetTerminologyEntryTagName())
    node.GetSegmentation().AddSegment(drawn, "Segment_1")
    job = SegmentJob(volume, SegmentOptions(), mask_node=node, argv_factory=lambda *a, **k: ["never started"])
    with pytest.raises(InputError, match=r"'Segment_1'.*cannot be read as spine.*Fix: rename each to what it is"):
        job.start()
    assert job.runner is None and not job.temp_dir.exists()


def test_our_own_segmentation_as_stage1_mask(case):
    """A result of this module (segments "L3".."L5", discs, canal, sacrum with its kind tags)."""
    from spineinstanceseg.slicer.mrml_adapter import add_result_to_scene

    scene, volume, result = case
    nodes = add_result_to_scene(result, volume)
    mask = mask_from_segmentation(nodes.segmentation, reference_volume_node=volume)
    np.testing.assert_array_equal(mask.semantic.array, result.semantic.array)
    truth = np.asarray(result.instances.array)
    np.testing.assert_array_equal(mask.levels.array, np.where(truth > 0, truth, 0))


def test_totalspineseg_names_without_terminology(case):
    """SlicerTotalSpineSeg names segments after TotalSpineSeg's classes and sets no terminology."""
    from spineinstanceseg.slicer.mrml_adapter import SegmentInfo, segmentation_from_labels

    scene, volume, result = case
    instances, semantic = np.asarray(result.instances.array), np.asarray(result.semantic.array)
    labels = np.zeros(instances.shape, np.uint8)
    labels[instances == 22], labels[instances == 23], labels[instances == 24] = 43, 44, 45
    labels[semantic == DISC], labels[semantic == CANAL], labels[semantic == SACRUM] = 94, 2, 50
    names = {43: "vertebrae_L3", 44: "vertebrae_L4", 45: "vertebrae_L5", 94: "disc_L3_L4", 2: "spinal_canal"}
    infos = [SegmentInfo(label=v, name=n, color_rgb=(0.5, 0.5, 0.5)) for v, n in {**names, 50: "sacrum"}.items()]
    node = segmentation_from_labels(scene, layers=[result.instances.with_array(labels)], segments=infos,
                                    reference_volume_node=volume)  # fmt: skip
    for segment_id in node.GetSegmentation().GetSegmentIDs():  # no kind tags: read by name only
        node.GetSegmentation().GetSegment(segment_id).RemoveTag("SpineInstanceSeg.kind")
    mask = mask_from_segmentation(node, reference_volume_node=volume)
    np.testing.assert_array_equal(mask.semantic.array, semantic)
    assert mask.levels_known


@pytest.mark.parametrize(
    ("name", "terminology", "semantic", "level"),
    [
        ("vertebrae_L1", None, VERTEBRA, 20),
        ("L1 vertebra", None, VERTEBRA, 20),
        ("C7", None, VERTEBRA, 7),
        ("T13", None, VERTEBRA, 28),
        ("Vertebra 3", None, VERTEBRA, None),
        ("vertebrae_S1", None, SACRUM, None),
        ("Sacrum", None, SACRUM, None),
        ("spinal_cord", None, CANAL, None),
        ("Spinal canal", None, CANAL, None),
        ("intervertebral_discs", None, DISC, None),
        ("L3-L4 disc", None, DISC, None),
        ("disc_L5_S1", None, DISC, None),
        ("anything", _terminology("vertebrae_L4"), VERTEBRA, 23),
        ("liver", _terminology("liver"), NOT_SPINE, None),
        ("auditory_canal_left", _terminology("auditory_canal_left"), NOT_SPINE, None),
    ],
)
def test_segment_names_and_terminology(name, terminology, semantic, level):
    found = classify_segment(name=name, terminology=terminology)
    assert found is not None and (found.semantic, found.level_code) == (semantic, level)


@pytest.mark.parametrize("name", ["Segment_1", "liver", "auditory_canal_left", "Label 5", ""])
def test_unknown_names_are_not_guessed(name):
    assert classify_segment(name=name) is None


def _totalsegmentator_node(scene, phantom, tmp_path):
    """The phantom's spine as SlicerTotalSegmentator loads a CT ``total`` result: a label map read through a colour
    table of class names (segment ID = class name), each segment with its SNOMED-CT terminology (the DICOM codes
    that SlicerTotalSegmentator's mapping table and this library share). ``total`` has no disc class."""
    from spineinstanceseg.conventions.terminology import canal_terminology, sacrum_terminology, vertebra_terminology
    from spineinstanceseg.io import write_volume
    from spineinstanceseg.levels import level_name
    from spineinstanceseg.semantic import CANAL, SACRUM

    instances, semantic = np.asarray(phantom.instances.array), np.asarray(phantom.semantic.array)
    labels = np.zeros(instances.shape, np.uint8)
    classes = {25: ("sacrum", sacrum_terminology()), 79: ("spinal_cord", canal_terminology())}
    for code in sorted(set(np.unique(instances)) - {0, 26}):
        labels[instances == code] = 51 - code  # total: 27 L5 ... 50 C1
        classes[51 - int(code)] = (f"vertebrae_{level_name(int(code))}", vertebra_terminology(int(code)))
    labels[semantic == SACRUM] = 25
    labels[semantic == CANAL] = 79
    path = write_volume(phantom.instances.with_array(labels, is_label=True), tmp_path / "total.nii.gz")
    colors = slicer.vtkMRMLColorTableNode()
    colors.SetTypeToUser()
    colors.SetNumberOfColors(80)
    for value, (name, _) in classes.items():
        colors.SetColorName(value, name)
    scene.AddNode(colors)
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "TotalSegmentator")
    node.SetLabelmapConversionColorTableNodeID(colors.GetID())
    node.AddDefaultStorageNode()
    node.GetStorageNode().SetFileName(str(path))
    assert node.GetStorageNode().ReadData(node)
    for name, terminology in classes.values():
        segment = node.GetSegmentation().GetSegment(name)
        segment.SetTag(segment.GetTerminologyEntryTagName(), terminology)
        segment.SetName(name.replace("vertebrae_", "") + " vertebra" if name.startswith("vertebrae_") else name)
    return node


@pytest.mark.slow
def test_totalsegmentator_segmentation_as_stage1_end_to_end(tmp_path):
    """A TotalSegmentator result in the scene as the existing stage-1 segmentation, through the real pipeline
    (``spineseg segment`` in a child process, bundled stage 2; 8-17 s on 2 busy cores, so slow-marked like the
    other console end-to-end tests): the vertebrae come out right (every
    lumbar vertebra found at its centroid, named by its level)."""
    from spineinstanceseg.levels import level_name
    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.pipeline.options import SegmentOptions
    from spineinstanceseg.slicer.console import segment_volume_node
    from spineinstanceseg.slicer.mrml_adapter import vertebra_segment_ids
    from spineinstanceseg.slicer.volume_nodes import RAS_FROM_LPS, volume_to_node

    phantom = generate_phantom(3, modality="ct", region="lumbar", spacing=(2.0, 2.0, 2.0))
    scene = slicer.vtkMRMLScene()
    volume = volume_to_node(phantom.image, scene, name="phantom")
    node = _totalsegmentator_node(scene, phantom, tmp_path)
    logs = []
    nodes = segment_volume_node(
        volume, mask_node=node, options=SegmentOptions(device="cpu"), on_log=logs.append, timeout=1200
    )
    assert any("'L3 vertebra' -> vertebra L3" in line for line in logs), logs[:20]
    segmentation = nodes.segmentation.GetSegmentation()
    names = [segmentation.GetSegment(i).GetName() for i in vertebra_segment_ids(nodes.segmentation)]
    truth = {code: c for code, c in phantom.centroids.items() if code != 26}
    lumbar = {level_name(code) for code in truth if 20 <= code <= 24}
    assert lumbar <= set(names), names
    true_ras = {level_name(code): RAS_FROM_LPS[:3, :3] @ np.asarray(c) for code, c in truth.items()}
    for i in range(nodes.markups.GetNumberOfControlPoints()):
        label = nodes.markups.GetNthControlPointLabel(i)
        if label in lumbar:
            position = np.array(nodes.markups.GetNthControlPointPositionWorld(i))
            assert np.linalg.norm(true_ras[label] - position) < 10.0, label
