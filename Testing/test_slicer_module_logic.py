"""The Slicer module file's logic on a real MRML scene (slicer-core), running the real pipeline.

``SpineInstanceSeg.py`` is executed on slicer-core's ``slicer`` package; only what the application adds (Qt, the
scripted-module base classes, the parameter node wrapper) is stood in for (see ``slicer_module_loader``). The
module's logic then does what a user's click does: parameter node -> run options -> a background ``spineseg
segment`` child -> segments and centroid points in the scene -> exports. Stage 1 is the phantom's own semantic
map given as an existing segmentation (``--mask``), so only stage 2, fusion and naming run: a few seconds of CPU.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from slicer_module_loader import load_module

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

from spineinstanceseg.phantom import generate_phantom  # noqa: E402
from spineinstanceseg.pipeline.options import SegmentOptions  # noqa: E402
from spineinstanceseg.slicer.volume_nodes import RAS_FROM_LPS, volume_from_node, volume_to_node  # noqa: E402


@pytest.fixture(scope="module")
def phantom():
    return generate_phantom(3, modality="ct", region="lumbar", spacing=(2.0, 2.0, 2.0))


@pytest.fixture(scope="module")
def module():
    """The module file loaded on slicer-core with a fresh scene as ``slicer.mrmlScene``."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        loaded, _ = load_module(monkeypatch, version=(5, 12), testing=False)
        yield loaded


def _truth_ras(phantom) -> np.ndarray:
    truth = [c for code, c in phantom.centroids.items() if code != 26]  # vertebrae, not the sacrum
    return np.array([RAS_FROM_LPS[:3, :3] @ np.asarray(c) for c in truth])


def _assert_points_at_vertebrae(markups, true_ras: np.ndarray) -> None:
    for i in range(markups.GetNumberOfControlPoints()):
        position = np.array(markups.GetNthControlPointPositionWorld(i))
        nearest = float(np.min(np.linalg.norm(true_ras - position, axis=1)))
        assert nearest < 10.0, (markups.GetNthControlPointLabel(i), nearest)


@pytest.fixture(scope="module")
def console_run(module, phantom, tmp_path_factory):
    """The console / self-test entry (logic.segmentVolume, blocking) with the phantom's semantic map as stage 1."""
    out = tmp_path_factory.mktemp("module-console")
    volume = volume_to_node(phantom.image, slicer.mrmlScene, name="phantom")
    mask = volume_to_node(phantom.semantic, slicer.mrmlScene, name="phantom semantic")
    progress = []
    nodes = module.SpineInstanceSegLogic.segmentVolume(
        volume,
        outDir=str(out),
        timeout=1200,
        mask_node=mask,
        options=SegmentOptions(device="cpu", mask_convention="semantic"),
        on_progress=lambda step, fraction, message: progress.append(fraction),
    )
    return volume, nodes, progress, out


def test_segment_volume_with_an_existing_mask(module, phantom, console_run):
    """Progress is reported, one segment per vertebra and one point at each vertebra land in the volume's scene,
    and the CLI's files are kept in ``outDir``."""
    volume, nodes, progress, out = console_run
    logic = module.SpineInstanceSegLogic()
    assert progress and max(progress) > 0.5
    vertebrae = logic.vertebraSegmentIds(nodes.segmentation)
    truth = [code for code in phantom.centroids if code != 26]
    assert abs(len(vertebrae) - len(truth)) <= 1, (vertebrae, truth)
    assert nodes.markups.GetNumberOfControlPoints() == len(vertebrae)
    _assert_points_at_vertebrae(nodes.markups, _truth_ras(phantom))
    assert nodes.segmentation.GetScene() is volume.GetScene() and nodes.markups.GetScene() is volume.GetScene()
    report = json.loads((out / "phantom" / "phantom_report.json").read_text())  # the CLI's outputs were kept
    assert len(report["vertebrae"]) == len(vertebrae)
    assert (out / "phantom" / "phantom.seg.nrrd").is_file()


def test_export_buttons_write_seg_nrrd_and_a_label_map_on_the_input_grid(module, console_run, tmp_path):
    """The logic behind "Export .seg.nrrd" and "Export label map" on the result of a real run."""
    import slicerio

    from spineinstanceseg.io import read_label_map

    volume, nodes, _, out = console_run
    logic = module.SpineInstanceSegLogic()
    report = json.loads((out / "phantom" / "phantom_report.json").read_text())
    seg = logic.exportSegNrrd(nodes.segmentation, str(tmp_path / "export.seg.nrrd"))
    by_name = {s["name"]: s["labelValue"] for s in slicerio.read_segmentation(str(seg))["segments"]}
    assert {v["name"]: v["label"] for v in report["vertebrae"]}.items() <= by_name.items()
    labelmap = read_label_map(logic.exportLabelmap(nodes.segmentation, str(tmp_path / "labels.nrrd"), volume))
    assert labelmap.same_grid(volume_from_node(volume, world=False), tol=1e-4)
    assert {v["label"] for v in report["vertebrae"]} <= set(np.unique(labelmap.array).tolist())


def test_export_stl_button_writes_one_file_per_segment(module, console_run, tmp_path):
    _, nodes, _, _ = console_run
    logic = module.SpineInstanceSegLogic()
    files = logic.exportStl(nodes.segmentation, str(tmp_path / "stl"))
    assert len(files) >= len(logic.vertebraSegmentIds(nodes.segmentation))
    assert all(Path(p).stat().st_size > 0 for p in files.values())


def test_segment_button_logic_runs_the_parameter_node_in_the_background(module, small_example):
    """What "Segment spine" does: the parameter node (existing segmentation as stage 1, CPU, discs and canal
    off) becomes a background job that returns at once, reports progress and hands the result nodes to the
    widget's callback. On the small example (sacrum, L5, L4, the lower edge of L3)."""
    from spineinstanceseg.io import read_label_map, read_volume

    logic = module.SpineInstanceSegLogic()
    scene = slicer.mrmlScene
    p = logic.getParameterNode()
    assert logic.inputProblem(p) == "Select an input volume."
    p.inputVolume = volume_to_node(read_volume(small_example.image), scene, name="small")
    p.modelSource = module.ModelSource.MASK
    assert logic.inputProblem(p) == "Select the existing segmentation to use as stage 1."
    p.stage1Mask = volume_to_node(read_label_map(small_example.semantic), scene, name="small semantic")
    p.device = module.Device.CPU
    p.includeDiscsAndCanal = False
    assert logic.inputProblem(p) is None

    # On a Slicer with the packages installed "Segment spine" asks nothing and installs nothing.
    asked = []
    outcome = logic.ensureDependencies(confirm=lambda text: asked.append(text) or False)
    assert outcome.ready and not outcome.declined and not outcome.installed and asked == []
    assert logic.prepareSelfTest() is None

    steps, done = [], []
    started = time.monotonic()
    job = logic.startSegmentation(
        p,
        on_progress=lambda step, fraction, message: steps.append(logic.stepTitle(step)),
        on_done=lambda nodes, error: done.append((nodes, error)),
    )
    assert job.running and time.monotonic() - started < 5.0  # returned at once; the widget's timer polls
    deadline = time.monotonic() + 1200
    while job.poll() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(done) == 1, done
    nodes, error = done[0]
    assert error is None and nodes is not None
    assert "Stage 2: vertebrae" in steps
    segment_ids = logic.vertebraSegmentIds(nodes.segmentation)
    segmentation = nodes.segmentation.GetSegmentation()
    assert segmentation.GetNumberOfSegments() == len(segment_ids)  # no discs or canal: only vertebrae
    names = [segmentation.GetSegment(s).GetName() for s in segment_ids]
    assert names[-2:] == ["L4", "L5"], names  # sacrum in view: levels counted up from it
    assert nodes.markups.GetNumberOfControlPoints() == len(segment_ids)
    truth = read_label_map(small_example.instances)
    true_ras = np.array(
        [
            RAS_FROM_LPS[:3, :3] @ truth.index_to_world(np.argwhere(np.asarray(truth.array) == code).mean(axis=0))
            for code in small_example.complete_levels | small_example.cut_levels
        ]
    )
    _assert_points_at_vertebrae(nodes.markups, true_ras)
    reference = nodes.segmentation.GetNodeReferenceID(nodes.segmentation.GetReferenceImageGeometryReferenceRole())
    assert reference == p.inputVolume.GetID()
