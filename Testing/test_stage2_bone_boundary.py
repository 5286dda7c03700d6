"""The CT bone boundary step: vertebra surfaces from a coarse grid move to the bone edge the image shows, by mm and
HU, and never into the sacrum, the canal or the face two vertebrae share."""

from __future__ import annotations

import numpy as np
import pytest

from spineinstanceseg.phantom import generate_phantom
from spineinstanceseg.resample import resample_to_grid, resample_to_spacing
from spineinstanceseg.semantic import CANAL, DISC, SACRUM, VERTEBRA
from spineinstanceseg.stage2.bone_boundary import BoundaryParameters, refine_bone_boundary
from spineinstanceseg.volume import Volume

SOFT_HU, BONE_HU = 40.0, 600.0


def _box_scene(spacing=(1.0, 1.0, 1.0), *, shape=(30, 30, 30)):
    """A bone block (600 HU) in soft tissue (40 HU) at x, y, z 10..19 and its true label map."""
    truth = np.zeros(shape, np.int16)
    truth[10:20, 10:20, 10:20] = 1
    image = Volume(np.where(truth > 0, BONE_HU, SOFT_HU).astype(np.float32), spacing)
    return image, truth


def _semantic(image: Volume, instances: np.ndarray) -> Volume:
    return image.with_array((instances > 0).astype(np.uint8) * VERTEBRA, is_label=True)


def test_a_shifted_surface_moves_back_to_the_bone_edge():
    image, truth = _box_scene()
    coarse = np.zeros_like(truth)
    coarse[11:21, 10:20, 10:20] = 1  # one voxel short at x = 10 (bone lost), one over at x = 20 (soft tissue)
    refined = refine_bone_boundary(coarse, _semantic(image, coarse), image)
    np.testing.assert_array_equal(refined.instances, truth)
    assert (refined.grown, refined.trimmed) == (100, 100)
    sem = np.asarray(refined.semantic.array)
    assert np.all(sem[truth > 0] == VERTEBRA) and not np.any(sem[truth == 0])
    assert refined.semantic.same_grid(image)
    assert np.count_nonzero(coarse) == 1000, "the input map is not changed"


def test_distances_are_millimetres_on_an_anisotropic_grid():
    """With 3 mm slices a missed bone slice lies beyond the 2 mm reach: only the in-plane miss is grown."""
    image, truth = _box_scene((1.0, 1.0, 3.0))
    coarse = np.zeros_like(truth)
    coarse[11:20, 10:20, 11:20] = 1  # misses bone at x = 10 (1 mm away) and at z = 10 (3 mm away)
    refined = refine_bone_boundary(coarse, _semantic(image, coarse), image)
    grown = (refined.instances > 0) & (coarse == 0)
    assert grown[10, 10:20, 11:20].all()
    assert not grown[:, :, 10].any()


def test_bone_of_the_sacrum_or_canal_and_shared_faces_stay_where_they_are():
    image, truth = _box_scene()
    instances = np.zeros_like(truth)
    instances[10:15, 10:20, 10:20] = 1
    instances[15:20, 10:20, 11:20] = 2  # the lower vertebra misses its bone at z = 10
    semantic = np.asarray(_semantic(image, instances).array).copy()
    semantic[15:18, 10:20, 10] = SACRUM
    semantic[18:20, 10:20, 10] = CANAL
    refined = refine_bone_boundary(instances, image.with_array(semantic, is_label=True), image)
    np.testing.assert_array_equal(refined.instances, instances)  # bright, but sacrum and canal: not grown
    # the face between vertebra 1 and 2 is no outer surface: a dark voxel there is not trimmed
    dark = np.asarray(image.array).copy()
    dark[14:16, 15, 15] = SOFT_HU
    refined = refine_bone_boundary(instances, _semantic(image, instances), image.with_array(dark))
    assert refined.instances[14, 15, 15] == 1 and refined.instances[15, 15, 15] == 2


def test_a_disc_voxel_that_is_bone_joins_and_a_faint_vertebra_is_kept_whole():
    image, truth = _box_scene()
    coarse = truth.copy()
    coarse[19] = 0  # the last bone slice was called disc by stage 1
    semantic = np.asarray(_semantic(image, coarse).array).copy()
    semantic[19, 10:20, 10:20] = DISC
    refined = refine_bone_boundary(coarse, image.with_array(semantic, is_label=True), image)
    np.testing.assert_array_equal(refined.instances, truth)
    # no bone anywhere: the two outer voxel layers (488 of 1000 voxels) would go
    faint = image.with_array(np.full(image.shape, SOFT_HU, np.float32))
    kept = refine_bone_boundary(truth, _semantic(image, truth), faint, params=BoundaryParameters(max_trim_share=0.4))
    np.testing.assert_array_equal(kept.instances, truth)
    assert kept.trimmed == 0
    assert refine_bone_boundary(truth, _semantic(image, truth), faint).trimmed == 488  # default share 0.5


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


@pytest.mark.parametrize(("spacing", "tilt"), [((1.0, 1.0, 1.0), 0.0), ((0.9, 0.9, 1.6), 12.0)])
def test_on_a_ct_phantom_a_2mm_staircase_comes_closer_to_the_true_vertebrae(spacing, tilt):
    """The vertebrae passed through a 2 mm grid (as stage 1 sees them) score higher Dice per vertebra after the
    step, on a straight and on an oblique, anisotropic grid; the geometry is the image's."""
    case = generate_phantom(4242, modality="ct", region="lumbar", spacing=spacing, oblique_deg=tilt)
    truth = np.asarray(case.instances.array)
    truth = np.where(truth <= 24, truth, 0)  # vertebrae only (the sacrum is its own class)
    coarse_grid = resample_to_spacing(case.instances.with_array(truth, is_label=True), (2.0, 2.0, 2.0))
    coarse = np.asarray(resample_to_grid(coarse_grid, case.image).array)
    semantic = np.asarray(case.semantic.array).copy()
    semantic[semantic == VERTEBRA] = 0
    semantic[coarse > 0] = VERTEBRA
    refined = refine_bone_boundary(coarse, case.image.with_array(semantic, is_label=True), case.image)
    labels = [v for v in np.unique(truth) if v]
    before = np.mean([_dice(coarse == v, truth == v) for v in labels])
    after = np.mean([_dice(refined.instances == v, truth == v) for v in labels])
    assert after > before + 0.01, (before, after)
    assert refined.semantic.same_grid(case.image)


@pytest.fixture(scope="module")
def mask_case():
    return generate_phantom(4243, modality="ct", region="lumbar", spacing=(1.2, 1.2, 1.5), oblique_deg=8.0)


def test_segment_keeps_a_given_mask_unless_asked_and_leaves_mri_alone(mask_case):
    """``segment`` with a given mask: the default (None) and False agree; True moves the CT surfaces; on an MRI
    phantom True changes nothing."""
    from spineinstanceseg.pipeline import segment

    def run(case, bone_boundary):
        result = segment(case.image, stage1=case.semantic, device="cpu", bone_boundary=bone_boundary)
        return np.asarray(result.instances.array), result

    default, _ = run(mask_case, None)
    off, _ = run(mask_case, False)
    on, result_on = run(mask_case, True)
    np.testing.assert_array_equal(default, off)
    assert np.count_nonzero(on != off) > 0
    assert "bone_boundary" in result_on.timings
    assert [r.voxel_count for r in result_on.vertebrae] == [
        int(np.count_nonzero(on == r.label)) for r in result_on.vertebrae
    ]
    mri = generate_phantom(4243, modality="t2", region="lumbar", spacing=(3.5, 0.8, 0.8))
    np.testing.assert_array_equal(run(mri, True)[0], run(mri, False)[0])


def test_the_cli_switch_reaches_the_options(tmp_path):
    import argparse

    from spineinstanceseg.cli.segment_options import add_segment_options, options_from_args

    parser = argparse.ArgumentParser()
    add_segment_options(parser)
    assert options_from_args(parser.parse_args(["--device", "cpu"])).bone_boundary is True
    assert options_from_args(parser.parse_args(["--device", "cpu", "--no-bone-boundary"])).bone_boundary is False
