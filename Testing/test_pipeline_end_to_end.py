"""End to end with the bundled models (CPU): accuracy, geometry of every output, Slicer files.

Every test runs on two runs:

* ``bundled``: the built-in example (a lumbar CT phantom on a grid tilted by 10 degrees) through both bundled models,
  as ``spineseg demo`` runs it (the session's one demo run, shared with ``test_cli_demo``);
* ``mask``: a lumbar CT phantom on an oblique (15 degrees), anisotropic (1.3 x 1.1 x 2.4 mm) grid, written to disk
  like a user's file, with its own semantic mask given as the stage-1 result (``--mask``), which isolates stage 2,
  fusion, naming and the outputs' geometry on an anisotropic grid.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from spineinstanceseg.io import read_label_map, read_volume, write_volume
from spineinstanceseg.metrics import evaluate_instances
from spineinstanceseg.outputs.writer import OUTPUT_KINDS
from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.pipeline.options import SegmentOptions
from spineinstanceseg.pipeline.segment_file import segment_file
from spineinstanceseg.stage1.sources import BUNDLED_STAGE1_NAME


@pytest.fixture(scope="module")
def mask_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    case = generate_phantom(4242, modality="ct", region="lumbar", spacing=(1.3, 1.1, 2.4), oblique_deg=15.0)
    image = write_volume(case.image, root / "patient.nii.gz")
    mask = write_volume(case.semantic, root / "patient_semantic.nii.gz")
    paths = segment_file(image, root / "out", SegmentOptions(device="cpu", exports=OUTPUT_KINDS, mask=str(mask)))
    return case.instances, read_volume(image), paths


@pytest.fixture(params=["bundled", "mask"])
def oblique_case(request):
    """(reference instances, the input image as read from its file, the output paths) of one run."""
    if request.param == "mask":
        return request.getfixturevalue("mask_run")
    from spineinstanceseg.examples import example_case

    demo = request.getfixturevalue("demo_run")
    assert demo.code == 0
    example = example_case()
    return read_label_map(example.instances), read_volume(example.image), demo.paths()


def test_accuracy_against_ground_truth(oblique_case, request):
    reference, _, paths = oblique_case
    scores = evaluate_instances(read_label_map(paths["instances"]), reference)
    source = request.node.callspec.params["oblique_case"]
    print(
        f"\nend-to-end phantom ({source}): F1 {scores.f1:.3f}, mean instance Dice {scores.mean_dice:.3f} "
        f"({scores.mean_dice_matched:.3f} over found vertebrae)"
    )
    if source == "mask":
        # The top edge of the view cuts T11 down to a 1.4 mL sliver. From the phantom's own mask it is found like
        # every other vertebra.
        assert (scores.tp, scores.fp, scores.fn) == (8, 0, 0), scores
        assert scores.mean_dice >= 0.95
    else:
        # At most the most superior vertebra, cut by the top edge of the view, may be missed; nothing spurious.
        assert scores.tp >= 6 and scores.fn <= 1 and scores.fp == 0, scores
        top = min(r.ref_label for r in scores.rows if r.ref_label is not None)
        assert all(r.ref_label == top for r in scores.rows if r.status == "FN"), scores.rows
        assert scores.mean_dice_matched >= 0.88
    report = json.loads(paths["report"].read_text())
    names = [v["name"] for v in report["vertebrae"]]
    assert names[-5:] == ["L1", "L2", "L3", "L4", "L5"], names  # sacrum in view: counted up from it
    if source == "bundled":
        assert report["models"]["stage1"]["name"] == BUNDLED_STAGE1_NAME


def test_every_output_has_the_input_geometry(oblique_case):
    _, image, paths = oblique_case
    for kind in ("instances", "semantic", "instances_nrrd", "semantic_nrrd"):
        out = read_label_map(paths[kind])
        assert out.same_grid(image, tol=1e-5), (kind, out.geometry_differences(image))
    import nrrd

    data, header = nrrd.read(str(paths["seg.nrrd"]))
    directions = np.asarray(header["space directions"], dtype=float)[-3:]
    np.testing.assert_allclose(directions, (image.direction * np.asarray(image.spacing)).T, atol=1e-5)
    np.testing.assert_allclose(header["space origin"], image.origin, atol=1e-5)
    assert header["space"] == "left-posterior-superior"


def test_seg_nrrd_reads_back_with_slicerio(oblique_case):
    import slicerio

    _, _, paths = oblique_case
    segmentation = slicerio.read_segmentation(str(paths["seg.nrrd"]))
    report = json.loads(paths["report"].read_text())
    by_name = {s["name"]: s["labelValue"] for s in segmentation["segments"]}
    for vertebra in report["vertebrae"]:
        assert by_name[vertebra["name"]] == vertebra["label"]


def test_markups_points_equal_the_centroids(oblique_case):
    _, _, paths = oblique_case
    markups = json.loads(paths["markups"].read_text())["markups"][0]
    report = json.loads(paths["report"].read_text())
    points = {p["label"]: np.asarray(p["position"]) for p in markups["controlPoints"]}
    sign = np.array([-1.0, -1.0, 1.0]) if markups.get("coordinateSystem") == "RAS" else np.ones(3)
    for vertebra in report["vertebrae"]:
        np.testing.assert_allclose(points[vertebra["name"]] * sign, vertebra["centroid_lps_mm"], atol=1e-3)
