"""The Slicer-side console helpers on the real pipeline with both bundled models (child process running
``spineseg segment``), as the module's in-app self-test does.

Slow (both bundled models on the CPU). The same console path with an existing segmentation as stage 1 (only stage 2
runs) is in the default suite: ``test_slicer_module_logic`` runs it through the module file's logic.
"""

from __future__ import annotations

import numpy as np
import pytest

from spineinstanceseg.stage1.sources import BUNDLED_STAGE1_NAME

slicer = pytest.importorskip("slicer", reason="slicer-core (MRML without the application) is not installed")
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the installed 'slicer' package is not slicer-core", allow_module_level=True)

pytestmark = pytest.mark.slow


def test_segment_volume_node_with_bundled_models(tmp_path):
    """What the in-app self-test does (SpineInstanceSegTest), minus the Qt widget: bundled stage 1 and stage 2."""
    from spineinstanceseg.phantom import generate_phantom
    from spineinstanceseg.pipeline.options import SegmentOptions
    from spineinstanceseg.slicer.console import segment_volume_node
    from spineinstanceseg.slicer.mrml_adapter import vertebra_segment_ids
    from spineinstanceseg.slicer.volume_nodes import RAS_FROM_LPS, volume_to_node

    phantom = generate_phantom(3, modality="ct", region="lumbar", spacing=(2.0, 2.0, 2.0))
    scene = slicer.vtkMRMLScene()
    volume = volume_to_node(phantom.image, scene, name="phantom")
    nodes = segment_volume_node(volume, options=SegmentOptions(device="cpu"), out_dir=tmp_path, timeout=1200)
    vertebrae = vertebra_segment_ids(nodes.segmentation)
    truth = {code: c for code, c in phantom.centroids.items() if code != 26}
    lumbar = [code for code in truth if 20 <= code <= 24]
    assert len(lumbar) - 1 <= len(vertebrae) <= len(truth) + 1
    true_ras = np.array([RAS_FROM_LPS[:3, :3] @ np.asarray(c) for c in truth.values()])
    for i in range(nodes.markups.GetNumberOfControlPoints()):
        position = np.array(nodes.markups.GetNthControlPointPositionWorld(i))
        assert np.min(np.linalg.norm(true_ras - position, axis=1)) < 10.0
    report = (tmp_path / "phantom" / "phantom_report.json").read_text()
    assert BUNDLED_STAGE1_NAME in report
