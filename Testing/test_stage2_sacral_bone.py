"""On CT, sacral bone glued to the lowest vertebra goes back to the sacrum, on CT phantoms that rebuild the real-CT
failure (S1's articular processes and arch beside L5 in L5's instance); L5 itself keeps its voxels."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import glue_top_of_sacrum, returned_to_sacrum, vertebrae_top_to_bottom

from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.semantic import SACRUM
from spineinstanceseg.stage2.sacral_bone import give_sacral_bone_to_sacrum


@pytest.mark.parametrize(("seed", "spacing", "tilt"), [(5100, (1.0, 1.0, 1.0), 0.0), (5101, (0.9, 0.9, 2.0), 12.0)])
def test_sacral_bone_beside_l5_in_its_instance_goes_back_to_the_sacrum(seed, spacing, tilt):
    case = generate_phantom(seed, modality="ct", region="lumbar", spacing=spacing, oblique_deg=tilt)
    ordinal, centroids = vertebrae_top_to_bottom(case)
    n = len(centroids)
    instances, semantic, glued = glue_top_of_sacrum(case, ordinal, depth_mm=8.0)
    result = give_sacral_bone_to_sacrum(instances, semantic, case.image, n)
    back, lost = returned_to_sacrum(result, glued, ordinal)
    assert back >= 0.7 and lost <= 0.02
    assert "sacral bone" in result.message()
    others = (ordinal > 0) & (ordinal < n)
    np.testing.assert_array_equal(result.instances[others], instances[others])
    np.testing.assert_array_equal(instances, ordinal + (glued * (n - ordinal)))  # input untouched


def test_a_true_l5_keeps_its_voxels_and_no_sacrum_means_no_change():
    case = generate_phantom(5102, modality="ct", region="lumbar", spacing=(1.0, 1.0, 1.5), oblique_deg=8.0)
    ordinal, centroids = vertebrae_top_to_bottom(case)
    n = len(centroids)
    result = give_sacral_bone_to_sacrum(ordinal, case.semantic, case.image, n)
    assert result.moved_ml <= 0.01 * np.count_nonzero(ordinal == n) * case.image.voxel_volume_mm3 / 1000.0
    without = np.where(np.asarray(case.semantic.array) == SACRUM, 0, case.semantic.array)
    nothing = give_sacral_bone_to_sacrum(ordinal, case.semantic.with_array(without), case.image, n)
    assert nothing.moved_ml == 0 and nothing.instances is ordinal and nothing.message() is None


def test_segment_runs_it_on_ct_with_the_bone_steps_only(monkeypatch):
    """``segment`` hands it the lowest vertebra on CT when the bone steps run, and never on MRI or when they are off;
    the warnings say what it moved and the vertebra records count the voxels it leaves."""
    import spineinstanceseg.stage2.sacral_bone as module
    from spineinstanceseg.pipeline import segment

    calls = []
    real = module.give_sacral_bone_to_sacrum

    def recording(instances, semantic, image, lowest_label, **kwargs):
        calls.append(lowest_label)
        out = real(instances, semantic, image, lowest_label, **kwargs)
        moved = np.array(instances, copy=True)
        lowest = moved == lowest_label
        first = tuple(np.argwhere(lowest)[0])  # one more voxel to move, so that the wiring shows
        moved[first] = 0
        labels = np.array(out.semantic.array, copy=True)
        labels[first] = SACRUM
        return module.SacralBone(np.where(out.instances == 0, 0, moved), semantic.with_array(labels), 0.5)

    monkeypatch.setattr(module, "give_sacral_bone_to_sacrum", recording)
    case = generate_phantom(4243, modality="ct", region="lumbar", spacing=(1.2, 1.2, 1.5), oblique_deg=8.0)
    on = segment(case.image, stage1=case.semantic, device="cpu", bone_boundary=True)
    assert calls == [len(on.vertebrae)]
    assert any("0.5 mL of sacral bone" in w for w in on.warnings)
    assert [r.voxel_count for r in on.vertebrae] == [
        int(np.count_nonzero(np.asarray(on.instances.array) == r.label)) for r in on.vertebrae
    ]
    segment(case.image, stage1=case.semantic, device="cpu", bone_boundary=False)
    mri = generate_phantom(4243, modality="t2", region="lumbar", spacing=(3.5, 0.8, 0.8))
    segment(mri.image, stage1=mri.semantic, device="cpu", bone_boundary=True)
    assert calls == [len(on.vertebrae)]
