"""`spineseg demo`, the quick start's main job: the built-in example through both bundled models, every output
written, and a score the user can read. The demo runs once per session (``demo_run`` in conftest);
``test_pipeline_end_to_end`` checks the same outputs' accuracy, geometry and Slicer files."""

from __future__ import annotations

import json
import re

from spineinstanceseg.stage1.sources import BUNDLED_STAGE1_NAME


def test_demo_writes_every_output_and_scores_the_example(demo_run):
    assert demo_run.code == 0
    out, case = demo_run.stdout, demo_run.case_dir
    for suffix in ("_instances.nii.gz", "_semantic.nii.gz", ".seg.nrrd", "_centroids.mrk.json", "_preview.png"):
        assert (case / f"phantom_lumbar_ct{suffix}").is_file(), suffix
    assert len(list((case / "stl").glob("*.stl"))) >= 6
    report = json.loads((case / "phantom_lumbar_ct_report.json").read_text())
    assert report["models"]["stage1"]["name"] == BUNDLED_STAGE1_NAME
    found = re.search(r"(\d+) of (\d+) vertebrae found \((\d+) false\), instance F1 \(IoU >= 0.5\) = ([0-9.]+)", out)
    assert found, out
    tp, total, false, f1 = int(found[1]), int(found[2]), int(found[3]), float(found[4])
    assert total >= 7 and tp >= total - 1 and false == 0 and f1 >= 0.9
    assert f"preview:  {case / 'phantom_lumbar_ct_preview.png'}" in out
    assert f"outputs:  {case}" in out
